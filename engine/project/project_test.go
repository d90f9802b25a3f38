package project_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cyberdevstudio/cds/engine/project"
)

func TestNewValidatesConfig(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		cfg  project.Config
	}{
		{"no database", project.Config{Dir: t.TempDir()}},
		{"no directory", project.Config{DB: e.db}},
		{"negative size limit", project.Config{DB: e.db, Dir: t.TempDir(), MaxFileSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := project.New(tt.cfg); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

func TestCreateListOpenDelete(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()

	b := e.create(t, "beta")
	a := e.create(t, "  Alpha ")
	if a.Name != "Alpha" || a.OwnerID != e.alice || a.ID == "" || a.CreatedAt.IsZero() {
		t.Fatalf("Create = %+v, want trimmed name Alpha owned by alice", a)
	}
	if fi, err := os.Stat(e.svc.WorkingCopy(a.ID)); err != nil || !fi.IsDir() {
		t.Fatalf("working copy of a new project: %v", err)
	}
	if got := e.svc.WorkingCopy(a.ID); got != filepath.Join(e.dir, a.ID) || !filepath.IsAbs(got) {
		t.Errorf("WorkingCopy = %q, want %q", got, filepath.Join(e.dir, a.ID))
	}

	list, err := e.svc.List(ctx, e.alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("List = %+v, want Alpha then beta", list)
	}

	p, files, err := e.svc.Open(ctx, e.alice, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p != a || files == nil || len(files) != 0 {
		t.Fatalf("Open = %+v, %v; want %+v and no files", p, files, a)
	}

	e.save(t, a.ID, "x.txt", "x", 0)
	e.events.take()
	if err := e.svc.Delete(ctx, e.alice, a.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = e.svc.Open(ctx, e.alice, a.ID)
	wantNotFound(t, err)
	wantNotFound(t, e.svc.Delete(ctx, e.alice, a.ID))
	if _, err := os.Stat(e.svc.WorkingCopy(a.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("working copy of a deleted project: stat error %v, want not exist", err)
	}
	if n := e.count(t, `SELECT count(*) FROM project_files`); n != 0 {
		t.Errorf("%d file rows left after delete", n)
	}
	evs := e.events.take()
	if len(evs) != 1 || evs[0].Type != project.EventProjectDeleted || evs[0].Stream != "project:"+a.ID {
		t.Fatalf("events = %+v, want one project.deleted on project:%s", evs, a.ID)
	}
	if d, ok := evs[0].Data.(*project.ProjectEvent); !ok || d.ID != a.ID || d.Name != "Alpha" {
		t.Errorf("project.deleted data = %#v", evs[0].Data)
	}
	list, err = e.svc.List(ctx, e.alice)
	if err != nil || len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("List after delete = %+v, %v; want only beta", list, err)
	}
}

func TestProjectNames(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, in, want string
		err            error
	}{
		{"plain", "My Project", "My Project", nil},
		{"trimmed", "\t spaced  \n", "spaced", nil},
		{"unicode at limit", strings.Repeat("ä", 128), strings.Repeat("ä", 128), nil},
		{"empty", "", "", project.ErrInvalidName},
		{"only spaces", "   ", "", project.ErrInvalidName},
		{"too long", strings.Repeat("x", 129), "", project.ErrInvalidName},
		{"slash", "a/b", "", project.ErrInvalidName},
		{"control character", "a\x01b", "", project.ErrInvalidName},
		{"NUL", "a\x00b", "", project.ErrInvalidName},
		{"invalid UTF-8", "a\xffb", "", project.ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := e.svc.Create(t.Context(), e.alice, tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Create(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if err == nil && p.Name != tt.want {
				t.Errorf("Name = %q, want %q", p.Name, tt.want)
			}
		})
	}

	t.Run("taken, case-insensitively", func(t *testing.T) {
		e.create(t, "Shared")
		if _, err := e.svc.Create(t.Context(), e.alice, "sHARED"); !errors.Is(err, project.ErrNameTaken) {
			t.Fatalf("second Create error = %v, want ErrNameTaken", err)
		}
		if _, err := e.svc.Create(t.Context(), e.bob, "Shared"); err != nil {
			t.Fatalf("another owner's project of the same name: %v", err)
		}
	})
}

func TestOtherUsersSeeNothing(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "private")
	e.save(t, p.ID, "secret.txt", "alice only", 0)
	e.events.take()

	list, err := e.svc.List(ctx, e.bob)
	if err != nil || len(list) != 0 {
		t.Fatalf("bob's List = %+v, %v; want empty", list, err)
	}
	calls := []struct {
		name string
		call func(id string) error
	}{
		{"Open", func(id string) error { _, _, err := e.svc.Open(ctx, e.bob, id); return err }},
		{"ReadFile", func(id string) error { _, _, err := e.svc.ReadFile(ctx, e.bob, id, "secret.txt", 0); return err }},
		{"ReadFile old revision", func(id string) error { _, _, err := e.svc.ReadFile(ctx, e.bob, id, "secret.txt", 1); return err }},
		{"ListFiles", func(id string) error { _, err := e.svc.ListFiles(ctx, e.bob, id, ""); return err }},
		{"History", func(id string) error { _, err := e.svc.History(ctx, e.bob, id, "secret.txt", 0); return err }},
		{"SaveFile", func(id string) error {
			_, err := e.svc.SaveFile(ctx, e.bob, id, "secret.txt", []byte("bob"), 1)
			return err
		}},
		{"SaveFile new", func(id string) error {
			_, err := e.svc.SaveFile(ctx, e.bob, id, "new.txt", []byte("bob"), 0)
			return err
		}},
		{"DeleteFile", func(id string) error { _, err := e.svc.DeleteFile(ctx, e.bob, id, "secret.txt", 0); return err }},
		{"RenameFile", func(id string) error {
			_, err := e.svc.RenameFile(ctx, e.bob, id, "secret.txt", "b.txt", 0)
			return err
		}},
		{"Delete", func(id string) error { return e.svc.Delete(ctx, e.bob, id) }},
	}
	ids := []struct{ name, id string }{
		{"alice's project", p.ID},
		{"unknown id", "6f1c2a9e-0000-4000-8000-000000000000"},
		{"malformed id", "../" + p.ID},
		{"id in braces", "{" + p.ID + "}"},
	}
	for _, c := range calls {
		for _, id := range ids {
			t.Run(c.name+"/"+id.name, func(t *testing.T) {
				err := c.call(id.id)
				wantNotFound(t, err)
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q leaks a file name", err)
				}
			})
		}
	}

	// Nothing changed for alice.
	f, content := e.read(t, p.ID, "secret.txt", 0)
	if content != "alice only" || f.Revision != 1 {
		t.Errorf("alice's file = rev %d %q, want rev 1 %q", f.Revision, content, "alice only")
	}
	if got := tree(t, e.svc.WorkingCopy(p.ID)); len(got) != 1 || got["secret.txt"] != "alice only" {
		t.Errorf("working copy = %v", got)
	}
	if evs := e.events.take(); len(evs) != 0 {
		t.Errorf("refused calls published events: %+v", evs)
	}
	if e.svc.WorkingCopy("../etc") != "" {
		t.Error(`WorkingCopy("../etc") is not ""`)
	}
}

func TestDeleteCollectsUnusedBlobs(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a := e.create(t, "a")
	b := e.create(t, "b")
	e.save(t, a.ID, "shared.txt", "same bytes", 0)
	e.save(t, a.ID, "copy.txt", "same bytes", 0)
	e.save(t, b.ID, "other.txt", "same bytes", 0)
	f := e.save(t, a.ID, "only-a.txt", "v1", 0)
	e.save(t, a.ID, "only-a.txt", "v2", f.Revision)
	if _, err := e.svc.DeleteFile(ctx, e.alice, a.ID, "only-a.txt", 0); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM blobs`); n != 3 {
		t.Fatalf("%d blobs, want 3 (same bytes, v1, v2)", n)
	}

	if err := e.svc.Delete(ctx, e.alice, a.ID); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM blobs`); n != 1 {
		t.Fatalf("%d blobs after deleting a, want 1 (still used by b)", n)
	}
	if _, content := e.read(t, b.ID, "other.txt", 0); content != "same bytes" {
		t.Fatalf("b's file = %q after deleting a", content)
	}
	if err := e.svc.Delete(ctx, e.alice, b.ID); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM blobs`); n != 0 {
		t.Fatalf("%d blobs after deleting both projects, want 0", n)
	}
}
