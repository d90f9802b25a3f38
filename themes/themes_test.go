package themes

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

func TestNames(t *testing.T) {
	want := []string{"NeonCyberNight", "SerialSteel"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if !slices.Contains(Names(), Default) {
		t.Errorf("Default %q is not a theme", Default)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name, arg, want string
		wantDark        bool
	}{
		{"exact name", "NeonCyberNight", "NeonCyberNight", true},
		{"lower case", "serialsteel", "SerialSteel", false},
		{"surrounding space", " SerialSteel\n", "SerialSteel", false},
		{"default", Default, "NeonCyberNight", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th, err := Load(tt.arg)
			if err != nil {
				t.Fatal(err)
			}
			if th.Name != tt.want || th.Dark != tt.wantDark {
				t.Errorf("Load(%q) = %s dark=%v, want %s dark=%v", tt.arg, th.Name, th.Dark, tt.want, tt.wantDark)
			}
			if err := th.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLoadUnknown(t *testing.T) {
	_, err := Load("Solarized")
	if !errors.Is(err, ErrUnknownTheme) {
		t.Fatalf("err = %v, want ErrUnknownTheme", err)
	}
	if !strings.Contains(err.Error(), "NeonCyberNight, SerialSteel") {
		t.Errorf("error %q does not list the themes", err)
	}
}

// luminance is the WCAG 2 relative luminance of a "#rrggbb" colour.
func luminance(t *testing.T, hex string) float64 {
	t.Helper()
	var l float64
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		v, err := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		c := float64(v) / 255
		if c <= 0.03928 {
			c /= 12.92
		} else {
			c = math.Pow((c+0.055)/1.055, 2.4)
		}
		l += w * c
	}
	return l
}

// contrast is the WCAG 2 contrast ratio of two colours.
func contrast(t *testing.T, a, b string) float64 {
	la, lb := luminance(t, a), luminance(t, b)
	return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
}

// TestReadability checks what makes a theme usable: body text meets WCAG AAA
// (7:1) on the background and on the selection, and every other text colour meets
// the 3:1 of large text and UI components.
func TestReadability(t *testing.T) {
	for _, name := range Names() {
		th, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			if got := contrast(t, th.FG, th.BG); got < 7 {
				t.Errorf("fg on bg contrast %.2f, want at least 7", got)
			}
			if got := contrast(t, th.FG, th.Selection); got < 7 {
				t.Errorf("fg on selection contrast %.2f, want at least 7", got)
			}
			for _, c := range [][2]string{{"accent", th.Accent}, {"accent2", th.Accent2}, {"muted", th.Muted},
				{"success", th.Success}, {"warning", th.Warning}, {"error", th.Error}} {
				if got := contrast(t, c[1], th.BG); got < 3 {
					t.Errorf("%s on bg contrast %.2f, want at least 3", c[0], got)
				}
			}
			if dark := luminance(t, th.BG) < 0.2; dark != th.Dark {
				t.Errorf("dark = %v, but the background's luminance says %v", th.Dark, dark)
			}
		})
	}
}

func TestDecodeDirRejectsBadFiles(t *testing.T) {
	const good = `{"name":"X","dark":true,"fg":"#ffffff","bg":"#000000","accent":"#ff00ff","accent2":"#00ffff",
		"muted":"#888888","success":"#00ff00","warning":"#ffff00","error":"#ff0000","selection":"#333333","border":"#444444"}`
	tests := []struct {
		name, file, data, wantErr string
	}{
		{"valid", "x.json", good, ""},
		{"short colour", "x.json", strings.Replace(good, `"#ff00ff"`, `"#f0f"`, 1), `accent "#f0f"`},
		{"not hex", "x.json", strings.Replace(good, `"#000000"`, `"#00000g"`, 1), `bg "#00000g"`},
		{"missing colour", "x.json", strings.Replace(good, `"border":"#444444"`, `"dark":true`, 1), `border ""`},
		{"unknown field", "x.json", strings.Replace(good, `"dark":true`, `"drak":true`, 1), `unknown field "drak"`},
		{"no name", "x.json", strings.Replace(good, `"name":"X"`, `"name":" "`, 1), "theme has no name"},
		{"name does not match the file", "y.json", good, `name "X" does not match the file name`},
		{"invalid JSON", "x.json", good[:20], "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			themes, err := decodeDir(fstest.MapFS{tt.file: {Data: []byte(tt.data)}})
			if tt.wantErr == "" {
				if err != nil || len(themes) != 1 || themes[0].Name != "X" {
					t.Fatalf("decodeDir = %+v, %v", themes, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.file) {
				t.Errorf("error %q does not name the file %s", err, tt.file)
			}
		})
	}
}
