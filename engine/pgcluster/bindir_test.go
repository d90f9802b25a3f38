package pgcluster

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFindBinDir(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Fatalf("FindBinDir: %v", err)
	}
	if !hasServer(dir) {
		t.Errorf("FindBinDir = %s, which lacks initdb or postgres", dir)
	}
}

// fakeServer creates dir with executables named initdb and postgres (and pg_config when
// bindir is set, printing it).
func fakeServer(t *testing.T, dir, bindir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{"initdb": "#!/bin/sh\n", "postgres": "#!/bin/sh\n"}
	if bindir != "" {
		scripts = map[string]string{"pg_config": "#!/bin/sh\necho " + bindir + "\n"}
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindBinDirOrder(t *testing.T) {
	root := t.TempDir()
	pgConfigTarget := filepath.Join(root, "pgconfig-target")
	fakeServer(t, pgConfigTarget, "")
	fakeServer(t, filepath.Join(root, "pgconfig"), pgConfigTarget)
	fakeServer(t, filepath.Join(root, "debian", "16", "bin"), "")
	fakeServer(t, filepath.Join(root, "onpath"), "")
	tests := []struct {
		name    string
		path    string // PATH
		glob    string // debianBinGlob
		want    string
		wantErr error
	}{
		{name: "pg_config first", path: filepath.Join(root, "pgconfig") + ":" + filepath.Join(root, "onpath"),
			glob: filepath.Join(root, "debian", "*", "bin"), want: pgConfigTarget},
		{name: "then Debian's directories", path: filepath.Join(root, "onpath"),
			glob: filepath.Join(root, "debian", "*", "bin"), want: filepath.Join(root, "debian", "16", "bin")},
		{name: "then PATH", path: filepath.Join(root, "onpath"),
			glob: filepath.Join(root, "none", "*", "bin"), want: filepath.Join(root, "onpath")},
		{name: "nowhere", path: filepath.Join(root, "none"),
			glob: filepath.Join(root, "none", "*", "bin"), wantErr: ErrNoServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			defer func(g string) { debianBinGlob = g }(debianBinGlob)
			debianBinGlob = tt.glob
			got, err := FindBinDir()
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("FindBinDir = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestNewestBinDir(t *testing.T) {
	// makeTree creates root/VERSION/bin for each version, with the server binaries where
	// the value is true.
	makeTree := func(t *testing.T, versions map[string]bool) string {
		root := t.TempDir()
		for v, withServer := range versions {
			bin := filepath.Join(root, v, "bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if withServer {
				for _, name := range []string{"initdb", "postgres"} {
					if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		return root
	}
	tests := []struct {
		name     string
		versions map[string]bool
		want     string // empty: none found
	}{
		{name: "newest wins", versions: map[string]bool{"9.6": true, "13": true, "15": true}, want: "15"},
		{name: "numeric not lexical", versions: map[string]bool{"9.6": true, "10": true}, want: "10"},
		{name: "newest without server skipped", versions: map[string]bool{"14": true, "16": false}, want: "14"},
		{name: "none with server", versions: map[string]bool{"16": false}},
		{name: "empty", versions: map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := makeTree(t, tt.versions)
			got, ok := newestBinDir(filepath.Join(root, "*", "bin"))
			if tt.want == "" {
				if ok {
					t.Errorf("newestBinDir = %s, want none", got)
				}
				return
			}
			if want := filepath.Join(root, tt.want, "bin"); !ok || got != want {
				t.Errorf("newestBinDir = %q, %v; want %q", got, ok, want)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"15", "15", 0},
		{"9.6", "15", -1},
		{"15.1", "15", 1},
		{"16", "15.9", 1},
		{"beta", "9", -1},
	}
	for _, tt := range tests {
		t.Run(tt.a+"_vs_"+tt.b, func(t *testing.T) {
			if got := compareVersions(tt.a, tt.b); got != tt.want {
				t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
