package project_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRecover simulates crashes between a commit and the working copy update and
// checks that Recover finishes them and removes temporaries of uncommitted writes.
func TestRecover(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "crashy")
	wc := e.svc.WorkingCopy(p.ID)
	if _, err := e.svc.SaveFile(ctx, e.alice, p.ID, "src/a.txt", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SaveFile(ctx, e.alice, p.ID, "src/a.txt", []byte("v2"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SaveFile(ctx, e.alice, p.ID, "moved/b.txt", []byte("b"), 0); err != nil {
		t.Fatal(err)
	}
	write := func(rel, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(wc, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Save of v2 committed, rename lost: the old content and the temporary remain.
	write("src/a.txt", "v1")
	write("src/.cds-0123456789abcdef.tmp", "v2")
	// A move committed, second rename lost: the file sits in a root temporary.
	if err := os.RemoveAll(filepath.Join(wc, "moved")); err != nil {
		t.Fatal(err)
	}
	write(".cds-fedcba9876543210.tmp", "b")
	// A write that never committed.
	write("src/.cds-00000000000000aa.tmp", "never committed")
	// Not ours: left alone.
	write("src/.cds-notes.tmp", "user file")

	n, err := e.svc.Recover(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Recover = %d, %v; want 2 repairs", n, err)
	}
	for rel, want := range map[string]string{"src/a.txt": "v2", "moved/b.txt": "b", "src/.cds-notes.tmp": "user file"} {
		got, err := os.ReadFile(filepath.Join(wc, rel))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", rel, got, err, want)
		}
	}
	for _, rel := range []string{"src/.cds-0123456789abcdef.tmp", ".cds-fedcba9876543210.tmp", "src/.cds-00000000000000aa.tmp"} {
		if _, err := os.Lstat(filepath.Join(wc, rel)); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", rel, err)
		}
	}
	if n, err := e.svc.Recover(ctx); err != nil || n != 0 {
		t.Fatalf("second Recover = %d, %v", n, err)
	}
}
