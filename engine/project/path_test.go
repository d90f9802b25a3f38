package project_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cyberdevstudio/cds/engine/project"
)

func TestCleanPath(t *testing.T) {
	valid := []string{
		"a",
		"a.txt",
		"src/main.go",
		".gitignore",
		".git/config",
		"..a/b..",
		"a b/ü.txt",
		"...",
		strings.Repeat("s", 255),
		strings.Repeat("abc/", 255) + "abcd",
		strings.Repeat("d", 255) + "/" + strings.Repeat("e", 255),
	}
	for _, p := range valid {
		t.Run("valid/"+p[:min(len(p), 20)], func(t *testing.T) {
			got, err := project.CleanPath(p)
			if err != nil || got != p {
				t.Fatalf("CleanPath(%q) = %q, %v; want it unchanged", p, got, err)
			}
		})
	}

	invalid := []struct {
		name, path, reason string
	}{
		{"empty", "", "empty"},
		{"parent", "../x", `".."`},
		{"parent alone", "..", `".."`},
		{"dot alone", ".", `"."`},
		{"parent inside", "a/../../b", `".."`},
		{"parent at end", "a/..", `".."`},
		{"absolute", "/etc/passwd", "relative"},
		{"dot segment first", "./a", `"."`},
		{"dot segment inside", "a/./b", `"."`},
		{"double slash", "a//b", "empty segment"},
		{"trailing slash", "a/", "end with"},
		{"backslash", `a\b`, "backslash"},
		{"windows parent", `..\x`, "backslash"},
		{"NUL", "a\x00b", "NUL"},
		{"newline", "a\nb", "control"},
		{"escape", "a\x1b[31m", "control"},
		{"DEL", "a\x7f", "control"},
		{"C1 control", "a\u0085b", "control"},
		{"invalid UTF-8", "a\xff.txt", "UTF-8"},
		{"overlong UTF-8 slash", "a\xc0\xafb", "UTF-8"},
		{"too long", strings.Repeat("a/", 512) + "b", "limit is 1024"},
		{"segment too long", strings.Repeat("s", 256), "limit is 255"},
	}
	for _, tt := range invalid {
		t.Run("invalid/"+tt.name, func(t *testing.T) {
			_, err := project.CleanPath(tt.path)
			var pe *project.PathError
			if !errors.As(err, &pe) || !errors.Is(err, project.ErrInvalidPath) {
				t.Fatalf("CleanPath(%q) error = %v, want a *PathError wrapping ErrInvalidPath", tt.path, err)
			}
			if pe.Path != tt.path || !strings.Contains(pe.Reason, tt.reason) {
				t.Errorf("PathError = {%q, %q}, want the path and a reason mentioning %q", pe.Path, pe.Reason, tt.reason)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("%q", tt.path)) || !strings.Contains(msg, pe.Reason) {
				t.Errorf("Error() = %q, want the quoted path and the reason", msg)
			}
		})
	}
}

// TestPathAttacks checks that every write and read refuses bad paths before it
// touches anything.
func TestPathAttacks(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	e.save(t, p.ID, "ok.txt", "ok", 0)
	e.events.take()
	attacks := []string{"../x", "/etc/passwd", "a/../../b", "x\x00y", `..\..\x`, strings.Repeat("a", 2000),
		"a//b", ".", "..", "a\x01b", "\xfe\xff"}
	for _, path := range attacks {
		t.Run(strings.ToValidUTF8(path[:min(len(path), 20)], "?"), func(t *testing.T) {
			calls := map[string]error{}
			_, calls["SaveFile"] = e.svc.SaveFile(ctx, e.alice, p.ID, path, []byte("x"), 0)
			_, _, calls["ReadFile"] = e.svc.ReadFile(ctx, e.alice, p.ID, path, 0)
			_, calls["DeleteFile"] = e.svc.DeleteFile(ctx, e.alice, p.ID, path, 0)
			_, calls["RenameFile from"] = e.svc.RenameFile(ctx, e.alice, p.ID, path, "b", 0)
			_, calls["RenameFile to"] = e.svc.RenameFile(ctx, e.alice, p.ID, "ok.txt", path, 0)
			_, calls["History"] = e.svc.History(ctx, e.alice, p.ID, path, 0)
			for name, err := range calls {
				if !errors.Is(err, project.ErrInvalidPath) {
					t.Errorf("%s: error = %v, want ErrInvalidPath", name, err)
				}
			}
		})
	}
	if got := tree(t, e.svc.WorkingCopy(p.ID)); len(got) != 1 || got["ok.txt"] != "ok" {
		t.Errorf("working copy = %v, want only ok.txt", got)
	}
	if got := tree(t, e.dir); len(got) != 1 {
		t.Errorf("working copy root = %v, want only the project's ok.txt", got)
	}
	if evs := e.events.take(); len(evs) != 0 {
		t.Errorf("events = %+v", evs)
	}
}
