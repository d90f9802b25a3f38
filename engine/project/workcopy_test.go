package project_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestWorkingCopyFollowsChanges(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	wc := e.svc.WorkingCopy(p.ID)

	steps := []struct {
		name string
		do   func(t *testing.T)
		want map[string]string
	}{
		{"save", func(t *testing.T) {
			e.save(t, p.ID, "README.md", "# p\n", 0)
			e.save(t, p.ID, "src/deep/main.go", "package main\n", 0)
		}, map[string]string{"README.md": "# p\n", "src/deep/main.go": "package main\n"}},
		{"update", func(t *testing.T) {
			e.save(t, p.ID, "README.md", "# p, v2\n", 1)
		}, map[string]string{"README.md": "# p, v2\n", "src/deep/main.go": "package main\n"}},
		{"rename removes emptied directories", func(t *testing.T) {
			if _, err := e.svc.RenameFile(ctx, e.alice, p.ID, "src/deep/main.go", "cmd/main.go", 1); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"README.md": "# p, v2\n", "cmd/main.go": "package main\n"}},
		{"delete removes emptied directories", func(t *testing.T) {
			if _, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "cmd/main.go", 0); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"README.md": "# p, v2\n"}},
		{"revive", func(t *testing.T) {
			e.save(t, p.ID, "cmd/main.go", "package main // again\n", 0)
		}, map[string]string{"README.md": "# p, v2\n", "cmd/main.go": "package main // again\n"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			if got := tree(t, wc); fmt.Sprint(got) != fmt.Sprint(st.want) {
				t.Fatalf("working copy = %v, want %v", got, st.want)
			}
		})
	}
}

func TestWorkingCopyIsRecreated(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	want := map[string]string{"a.txt": "a", "d/e/f.txt": "f", "empty": ""}
	setup := func(t *testing.T) (id, wc string) {
		p := e.create(t, strings.ReplaceAll(t.Name(), "/", " "))
		for path, content := range want {
			e.save(t, p.ID, path, content, 0)
		}
		e.save(t, p.ID, "gone.txt", "gone", 0)
		if _, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "gone.txt", 0); err != nil {
			t.Fatal(err)
		}
		wc = e.svc.WorkingCopy(p.ID)
		if err := os.RemoveAll(wc); err != nil {
			t.Fatal(err)
		}
		return p.ID, wc
	}

	t.Run("by Open", func(t *testing.T) {
		id, wc := setup(t)
		if _, _, err := e.svc.Open(ctx, e.alice, id); err != nil {
			t.Fatal(err)
		}
		if got := tree(t, wc); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("recreated working copy = %v, want %v", got, want)
		}
	})
	t.Run("by a write", func(t *testing.T) {
		id, wc := setup(t)
		e.save(t, id, "new.txt", "new", 0)
		got := tree(t, wc)
		if got["new.txt"] != "new" || got["d/e/f.txt"] != "f" || len(got) != len(want)+1 {
			t.Fatalf("working copy after a write = %v", got)
		}
	})
	t.Run("not for another user", func(t *testing.T) {
		id, wc := setup(t)
		_, _, err := e.svc.Open(ctx, e.bob, id)
		wantNotFound(t, err)
		if _, err := os.Stat(wc); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("another user's Open recreated the working copy: %v", err)
		}
	})
	if entries, _ := os.ReadDir(e.dir); len(entries) != 2 {
		t.Errorf("working copy root holds %d entries, want the 2 recreated projects' (no temporary directories)", len(entries))
	}
}

// TestSymlinksDoNotEscape plants symbolic links in a working copy, as a process
// running in it could, and checks that no write goes through them to the outside.
func TestSymlinksDoNotEscape(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	wc := e.svc.WorkingCopy(p.ID)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	if err := os.WriteFile(secret, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkOutside := func(t *testing.T) {
		t.Helper()
		entries, err := os.ReadDir(outside)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("outside directory holds %d entries, want only secret.txt", len(entries))
		}
		if b, err := os.ReadFile(secret); err != nil || string(b) != "outside" {
			t.Errorf("outside file = %q, %v; want it untouched", b, err)
		}
	}

	t.Run("file link is replaced, not followed", func(t *testing.T) {
		f := e.save(t, p.ID, "link.txt", "v1", 0)
		for _, target := range []string{secret, "../../" + filepath.Base(outside) + "/secret.txt"} {
			if err := os.Remove(filepath.Join(wc, "link.txt")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(wc, "link.txt")); err != nil {
				t.Fatal(err)
			}
			f = e.save(t, p.ID, "link.txt", "inside", f.Revision)
			checkOutside(t)
			fi, err := os.Lstat(filepath.Join(wc, "link.txt"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("link.txt after save: %v, %v; want a regular file", fi, err)
			}
		}
	})

	t.Run("directory link refuses the write", func(t *testing.T) {
		if err := os.Symlink(outside, filepath.Join(wc, "evil")); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.SaveFile(ctx, e.alice, p.ID, "evil/secret.txt", []byte("pwned"), 0)
		if err == nil {
			t.Fatal("save through a link to the outside succeeded")
		}
		_, err = e.svc.SaveFile(ctx, e.alice, p.ID, "evil/new.txt", []byte("pwned"), 0)
		if err == nil {
			t.Fatal("save through a link to the outside succeeded")
		}
		checkOutside(t)
		_, _, err = e.svc.ReadFile(ctx, e.alice, p.ID, "evil/new.txt", 0)
		wantNotFound(t, err)
	})

	t.Run("delete and rename through a directory link", func(t *testing.T) {
		e.save(t, p.ID, "d/secret.txt", "inside", 0)
		e.save(t, p.ID, "m/secret.txt", "inside", 0)
		for _, dir := range []string{"d", "m"} {
			if err := os.RemoveAll(filepath.Join(wc, dir)); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(wc, dir)); err != nil {
				t.Fatal(err)
			}
		}
		// The changes stand in the database; the working copy refuses them.
		if _, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "d/secret.txt", 0); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.RenameFile(ctx, e.alice, p.ID, "m/secret.txt", "moved.txt", 0); err != nil {
			t.Fatal(err)
		}
		checkOutside(t)
		if fi, err := os.Lstat(filepath.Join(wc, "d")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link d was replaced or removed: %v, %v", fi, err)
		}
	})
}

func TestWriteFailsCleanlyWhenWorkingCopyIsBlocked(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	wc := e.svc.WorkingCopy(p.ID)
	// A file where the database has no file (made by a process, say) blocks the
	// directory a save needs.
	if err := os.WriteFile(filepath.Join(wc, "blocker"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.SaveFile(ctx, e.alice, p.ID, "blocker/a.txt", []byte("a"), 0)
	if err == nil || !strings.Contains(err.Error(), "blocker/a.txt") {
		t.Fatalf("save under a blocking file: %v, want an error naming the path", err)
	}
	_, _, err = e.svc.ReadFile(ctx, e.alice, p.ID, "blocker/a.txt", 0)
	wantNotFound(t, err)
	if n := e.count(t, `SELECT count(*) FROM file_revisions`); n != 0 {
		t.Errorf("%d revisions after a failed save, want 0", n)
	}
	entries, _ := os.ReadDir(wc)
	if len(entries) != 1 {
		t.Errorf("working copy holds %d entries, want only the blocker (no temporary file)", len(entries))
	}
}

func BenchmarkReadFile(b *testing.B) {
	e := newEnv(b)
	p := e.create(b, "bench")
	content := bytes.Repeat([]byte("x"), 1024)
	if _, err := e.svc.SaveFile(b.Context(), e.alice, p.ID, "src/file.txt", content, 0); err != nil {
		b.Fatal(err)
	}
	// 64 concurrent clients, however many CPUs there are.
	b.SetParallelism(max(1, (64+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(content)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, got, err := e.svc.ReadFile(b.Context(), e.alice, p.ID, "src/file.txt", 0)
			if err != nil || len(got) != len(content) {
				b.Errorf("ReadFile = %d bytes, %v", len(got), err)
				return
			}
		}
	})
}

// TestUniqueIndexCatchesConcurrentCreate races a create against a writer that does
// not take the project lock (another version of cdsd, say): the partial unique index
// decides, and the loser gets a *ConflictError carrying the winner's file.
func TestUniqueIndexCatchesConcurrentCreate(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	e.save(t, p.ID, "seed.txt", "seed", 0) // Its blob is reused below.

	other, err := e.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(context.WithoutCancel(ctx))
	if _, err := other.Exec(ctx, `
		INSERT INTO project_files (project_id, path, head_revision, blob_sha256, size)
		SELECT project_id, 'race.txt', 1, blob_sha256, size FROM project_files WHERE path = 'seed.txt'`); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := e.svc.SaveFile(ctx, e.alice, p.ID, "race.txt", []byte("mine"), 0)
		done <- err
	}()
	// Wait until the save waits for the other transaction's index entry.
	for waiting := 0; waiting == 0; {
		select {
		case err := <-done:
			t.Fatalf("SaveFile returned %v before it waited for the other transaction", err)
		default:
		}
		waiting = e.count(t, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO project_files%'`)
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ce := wantConflict(t, <-done, "race.txt", 1, false)
	if ce.Current.SHA256 != sha256.Sum256([]byte("seed")) {
		t.Errorf("conflict Current = %+v, want the winner's content", ce.Current)
	}
	if got := tree(t, e.svc.WorkingCopy(p.ID)); len(got) != 1 {
		t.Errorf("working copy = %v, want only seed.txt (no temporary file)", got)
	}
}

// TestRecreateSkipsUnrepresentableFiles checks that a file the working copy cannot
// hold (left by data from before the clash check) does not make the project unusable.
func TestRecreateSkipsUnrepresentableFiles(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	e.save(t, p.ID, "a", "file a", 0)
	if _, err := e.db.Exec(ctx, `
		INSERT INTO project_files (project_id, path, head_revision, blob_sha256, size)
		SELECT project_id, 'a/b', 1, blob_sha256, size FROM project_files WHERE path = 'a'`); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(e.svc.WorkingCopy(p.ID)); err != nil {
		t.Fatal(err)
	}
	_, files, err := e.svc.Open(ctx, e.alice, p.ID)
	if err != nil || len(files) != 2 {
		t.Fatalf("Open = %+v, %v; want both files listed", files, err)
	}
	if got := tree(t, e.svc.WorkingCopy(p.ID)); len(got) != 1 || got["a"] != "file a" {
		t.Fatalf("working copy = %v, want only a", got)
	}
}
