// Package themes holds the colour themes of CyberDevStudio, NeonCyberNight and
// SerialSteel, as JSON data files shared by the terminal studio (which embeds them
// through this package) and the web studio (which imports the same files).
package themes

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Default is the name of the theme used when none is chosen.
const Default = "NeonCyberNight"

// ErrUnknownTheme reports a theme name that no theme file has.
var ErrUnknownTheme = errors.New("unknown theme")

//go:embed *.json
var files embed.FS

// Theme is a colour palette. Every colour is "#rrggbb".
type Theme struct {
	// Name is the theme's display name, e.g. "NeonCyberNight".
	Name string `json:"name"`
	// Dark reports a dark background, for choosing matching syntax highlighting.
	Dark bool `json:"dark"`
	// FG is the text colour and BG the background.
	FG string `json:"fg"`
	BG string `json:"bg"`
	// Accent marks focus and primary actions; Accent2 is the secondary highlight.
	Accent  string `json:"accent"`
	Accent2 string `json:"accent2"`
	// Muted is for secondary text such as hints and timestamps.
	Muted string `json:"muted"`
	// Success, Warning and Error colour status messages.
	Success string `json:"success"`
	Warning string `json:"warning"`
	Error   string `json:"error"`
	// Selection is the background of selected text and items.
	Selection string `json:"selection"`
	// Border is the colour of panel borders and separators.
	Border string `json:"border"`
}

// colour matches the one colour syntax themes use.
var colour = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// Colors returns the theme's colours by JSON field name, in a fixed order.
func (t Theme) Colors() [][2]string {
	return [][2]string{
		{"fg", t.FG}, {"bg", t.BG}, {"accent", t.Accent}, {"accent2", t.Accent2},
		{"muted", t.Muted}, {"success", t.Success}, {"warning", t.Warning},
		{"error", t.Error}, {"selection", t.Selection}, {"border", t.Border},
	}
}

// Validate reports a missing name or a colour that is not "#rrggbb".
func (t Theme) Validate() error {
	if strings.TrimSpace(t.Name) == "" {
		return errors.New("theme has no name")
	}
	var bad []string
	for _, c := range t.Colors() {
		if !colour.MatchString(c[1]) {
			bad = append(bad, fmt.Sprintf("%s %q", c[0], c[1]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("theme %s: colours must be #rrggbb: %s", t.Name, strings.Join(bad, ", "))
	}
	return nil
}

// Names returns the names of all themes, sorted.
func Names() []string {
	all, err := loadAll()
	if err != nil {
		// The files are embedded and checked by the tests: this is a build defect.
		panic(err)
	}
	names := make([]string, len(all))
	for i, t := range all {
		names[i] = t.Name
	}
	slices.Sort(names)
	return names
}

// Load returns the theme with the given name, ignoring case ("serialsteel" works).
func Load(name string) (Theme, error) {
	all, err := loadAll()
	if err != nil {
		return Theme{}, err
	}
	for _, t := range all {
		if strings.EqualFold(t.Name, strings.TrimSpace(name)) {
			return t, nil
		}
	}
	return Theme{}, fmt.Errorf("%q (have %s): %w", name, strings.Join(Names(), ", "), ErrUnknownTheme)
}

// loadAll decodes and validates every embedded theme file.
func loadAll() ([]Theme, error) {
	return decodeDir(files)
}

// decodeDir decodes every *.json file of fsys as a theme.
func decodeDir(fsys fs.FS) ([]Theme, error) {
	paths, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, fmt.Errorf("list theme files: %w", err)
	}
	themes := make([]Theme, 0, len(paths))
	for _, p := range paths {
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("read theme file: %w", err)
		}
		t, err := decode(data)
		if err != nil {
			return nil, fmt.Errorf("theme file %s: %w", p, err)
		}
		if stem := strings.TrimSuffix(path.Base(p), ".json"); !strings.EqualFold(stem, t.Name) {
			return nil, fmt.Errorf("theme file %s: name %q does not match the file name", p, t.Name)
		}
		themes = append(themes, t)
	}
	return themes, nil
}

// decode parses one theme file strictly: unknown fields are typos.
func decode(data []byte) (Theme, error) {
	var t Theme
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Theme{}, fmt.Errorf("decode: %w", err)
	}
	if err := t.Validate(); err != nil {
		return Theme{}, err
	}
	return t, nil
}
