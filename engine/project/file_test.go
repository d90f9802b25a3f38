package project_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cyberdevstudio/cds/engine/project"
)

// ops returns the ops of a history, newest first, as "op:path@rev".
func ops(revs []project.Revision) string {
	var s []string
	for _, r := range revs {
		s = append(s, fmt.Sprintf("%s:%s@%d", r.Op, r.Path, r.Revision))
	}
	return strings.Join(s, " ")
}

func TestSaveReadHistory(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")

	f1 := e.save(t, p.ID, "src/main.go", "package main\n", 0)
	if f1.Revision != 1 || f1.Size != 13 || f1.SHA256 != sha256.Sum256([]byte("package main\n")) || f1.Deleted || f1.UpdatedAt.IsZero() {
		t.Fatalf("create = %+v", f1)
	}
	f2 := e.save(t, p.ID, "src/main.go", "package main\n\nfunc main() {}\n", 1)
	if f2.Revision != 2 {
		t.Fatalf("update revision = %d, want 2", f2.Revision)
	}
	f3 := e.save(t, p.ID, "src/main.go", "package main\n\nfunc main() {}\n", 2)
	if f3.Revision != 3 || f3.SHA256 != f2.SHA256 {
		t.Fatalf("saving the same content = %+v, want revision 3 with the same hash", f3)
	}

	head, content := e.read(t, p.ID, "src/main.go", 0)
	if head.Revision != 3 || content != "package main\n\nfunc main() {}\n" || head.SHA256 != f3.SHA256 || head.Size != f3.Size {
		t.Fatalf("head = %+v %q", head, content)
	}
	old, content := e.read(t, p.ID, "src/main.go", 1)
	if old.Revision != 1 || content != "package main\n" || old.Path != "src/main.go" || old.SHA256 != f1.SHA256 {
		t.Fatalf("revision 1 = %+v %q", old, content)
	}
	for _, rev := range []int64{4, -1} {
		_, _, err := e.svc.ReadFile(ctx, e.alice, p.ID, "src/main.go", rev)
		wantNotFound(t, err)
	}
	_, _, err := e.svc.ReadFile(ctx, e.alice, p.ID, "missing.go", 0)
	wantNotFound(t, err)
	_, _, err = e.svc.ReadFile(ctx, e.alice, p.ID, "missing.go", 1)
	wantNotFound(t, err)

	revs, err := e.svc.History(ctx, e.alice, p.ID, "src/main.go", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ops(revs); got != "update:src/main.go@3 update:src/main.go@2 create:src/main.go@1" {
		t.Fatalf("history = %s", got)
	}
	for _, r := range revs {
		if r.AuthorID != e.alice || r.CreatedAt.IsZero() || r.SHA256 == [32]byte{} {
			t.Errorf("revision %+v lacks author, time or hash", r)
		}
	}

	empty := e.save(t, p.ID, "empty", "", 0)
	if ef, content, err := e.svc.ReadFile(ctx, e.alice, p.ID, "empty", 0); err != nil || content == nil || len(content) != 0 || ef.SHA256 != empty.SHA256 {
		t.Fatalf("empty file read = %+v %v %v", ef, content, err)
	}
}

func TestProjectUpdatedAtAdvances(t *testing.T) {
	e := newEnv(t)
	p := e.create(t, "p")
	e.save(t, p.ID, "a", "a", 0)
	got, _, err := e.svc.Open(t.Context(), e.alice, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.UpdatedAt.After(p.UpdatedAt) {
		t.Errorf("UpdatedAt %v not after creation's %v", got.UpdatedAt, p.UpdatedAt)
	}
}

func TestHistoryLimit(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	for rev := range int64(5) {
		e.save(t, p.ID, "f", fmt.Sprint(rev), rev)
	}
	tests := []struct {
		limit int
		want  string
	}{
		{0, "update:f@5 update:f@4 update:f@3 update:f@2 create:f@1"},
		{-3, "update:f@5 update:f@4 update:f@3 update:f@2 create:f@1"},
		{2, "update:f@5 update:f@4"},
		{1 << 20, "update:f@5 update:f@4 update:f@3 update:f@2 create:f@1"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("limit ", tt.limit), func(t *testing.T) {
			revs, err := e.svc.History(ctx, e.alice, p.ID, "f", tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := ops(revs); got != tt.want {
				t.Errorf("history = %s, want %s", got, tt.want)
			}
		})
	}
	_, err := e.svc.History(ctx, e.alice, p.ID, "nope", 0)
	wantNotFound(t, err)
	_, err = e.svc.History(ctx, e.alice, p.ID, "../f", 0)
	if !errors.Is(err, project.ErrInvalidPath) {
		t.Errorf("History of a bad path: %v, want ErrInvalidPath", err)
	}
}

func TestDeleteAndRevive(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	e.save(t, p.ID, "doc.md", "one", 0)

	del, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "doc.md", 1)
	if err != nil {
		t.Fatal(err)
	}
	if del.Revision != 2 || !del.Deleted || del.Size != 0 || del.SHA256 != [32]byte{} {
		t.Fatalf("DeleteFile = %+v, want deleted revision 2", del)
	}
	_, _, err = e.svc.ReadFile(ctx, e.alice, p.ID, "doc.md", 0)
	wantNotFound(t, err)
	_, _, err = e.svc.ReadFile(ctx, e.alice, p.ID, "doc.md", 2)
	wantNotFound(t, err)
	if _, content := e.read(t, p.ID, "doc.md", 1); content != "one" {
		t.Fatalf("revision 1 of a deleted file = %q", content)
	}
	if files, err := e.svc.ListFiles(ctx, e.alice, p.ID, ""); err != nil || len(files) != 0 {
		t.Fatalf("ListFiles = %+v, %v; want none", files, err)
	}

	// Writes based on the deleted file conflict; unconditional ones find nothing.
	_, err = e.svc.DeleteFile(ctx, e.alice, p.ID, "doc.md", 0)
	wantNotFound(t, err)
	_, err = e.svc.RenameFile(ctx, e.alice, p.ID, "doc.md", "x.md", 0)
	wantNotFound(t, err)
	_, err = e.svc.DeleteFile(ctx, e.alice, p.ID, "doc.md", 1)
	wantConflict(t, err, "doc.md", 2, true)
	_, err = e.svc.RenameFile(ctx, e.alice, p.ID, "doc.md", "x.md", 1)
	wantConflict(t, err, "doc.md", 2, true)
	_, err = e.svc.SaveFile(ctx, e.alice, p.ID, "doc.md", []byte("two"), 2)
	wantConflict(t, err, "doc.md", 2, true)

	// A create revives the file and continues its numbering.
	rev := e.save(t, p.ID, "doc.md", "two", 0)
	if rev.Revision != 3 {
		t.Fatalf("revived revision = %d, want 3", rev.Revision)
	}
	revs, err := e.svc.History(ctx, e.alice, p.ID, "doc.md", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ops(revs); got != "create:doc.md@3 delete:doc.md@2 create:doc.md@1" {
		t.Fatalf("history = %s", got)
	}
	if revs[1].SHA256 != [32]byte{} || revs[1].Size != 0 {
		t.Errorf("delete revision = %+v, want no hash and size 0", revs[1])
	}
	if n := e.count(t, `SELECT count(*) FROM project_files`); n != 1 {
		t.Errorf("%d file rows, want 1 (the revived one)", n)
	}

	// Deleting a file whose path later got a new file: the history of the path is
	// the live file's.
	e.save(t, p.ID, "doc.md", "three", 3)
	if _, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "doc.md", 0); err != nil {
		t.Fatal(err)
	}
	if revs, _ := e.svc.History(ctx, e.alice, p.ID, "doc.md", 1); ops(revs) != "delete:doc.md@5" {
		t.Fatalf("history after the second delete = %s", ops(revs))
	}
}

func TestRename(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	e.save(t, p.ID, "a.txt", "v1", 0)
	e.save(t, p.ID, "a.txt", "v2", 1)
	e.save(t, p.ID, "taken.txt", "other", 0)
	e.save(t, p.ID, "dir/inner.txt", "inner", 0)
	e.events.take()

	t.Run("conflicts", func(t *testing.T) {
		tests := []struct {
			name, from, to string
			base           int64
			current        string
			rev            int64
		}{
			{"target exists", "a.txt", "taken.txt", 2, "taken.txt", 1},
			{"same path", "a.txt", "a.txt", 0, "a.txt", 2},
			{"stale base", "a.txt", "b.txt", 1, "a.txt", 2},
			{"target is a directory", "a.txt", "dir", 0, "dir/inner.txt", 1},
			{"target's parent is a file", "a.txt", "taken.txt/a.txt", 0, "taken.txt", 1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := e.svc.RenameFile(ctx, e.alice, p.ID, tt.from, tt.to, tt.base)
				wantConflict(t, err, tt.current, tt.rev, false)
			})
		}
		_, err := e.svc.RenameFile(ctx, e.alice, p.ID, "nope.txt", "b.txt", 0)
		wantNotFound(t, err)
		_, err = e.svc.RenameFile(ctx, e.alice, p.ID, "a.txt", "/b.txt", 0)
		if !errors.Is(err, project.ErrInvalidPath) {
			t.Fatalf("rename to /b.txt: %v, want ErrInvalidPath", err)
		}
		if evs := e.events.take(); len(evs) != 0 {
			t.Fatalf("failed renames published %+v", evs)
		}
	})

	f, err := e.svc.RenameFile(ctx, e.alice, p.ID, "a.txt", "sub/b.txt", 2)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != "sub/b.txt" || f.Revision != 3 || f.SHA256 != sha256.Sum256([]byte("v2")) || f.Size != 2 {
		t.Fatalf("RenameFile = %+v", f)
	}
	_, _, err = e.svc.ReadFile(ctx, e.alice, p.ID, "a.txt", 0)
	wantNotFound(t, err)
	if head, content := e.read(t, p.ID, "sub/b.txt", 0); head.Revision != 3 || content != "v2" {
		t.Fatalf("renamed head = %+v %q", head, content)
	}
	if old, content := e.read(t, p.ID, "sub/b.txt", 1); old.Path != "a.txt" || content != "v1" {
		t.Fatalf("revision 1 of the renamed file = %+v %q, want a.txt v1", old, content)
	}
	revs, err := e.svc.History(ctx, e.alice, p.ID, "sub/b.txt", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ops(revs); got != "rename:sub/b.txt@3 update:a.txt@2 create:a.txt@1" {
		t.Fatalf("history = %s", got)
	}
	_, err = e.svc.History(ctx, e.alice, p.ID, "a.txt", 0)
	wantNotFound(t, err)

	// A file may move into the directory named like itself, and back.
	e.save(t, p.ID, "x", "x", 0)
	if _, err := e.svc.RenameFile(ctx, e.alice, p.ID, "x", "x/x", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RenameFile(ctx, e.alice, p.ID, "x/x", "x", 0); err != nil {
		t.Fatal(err)
	}
	// A new file can take the freed path, with its own history.
	if f := e.save(t, p.ID, "a.txt", "new", 0); f.Revision != 1 {
		t.Fatalf("new file at a renamed-away path: revision %d, want 1", f.Revision)
	}
	want := map[string]string{"a.txt": "new", "sub/b.txt": "v2", "taken.txt": "other", "dir/inner.txt": "inner", "x": "x"}
	if got := tree(t, e.svc.WorkingCopy(p.ID)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("working copy = %v, want %v", got, want)
	}
}

func TestConflicts(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	e.save(t, p.ID, "f.txt", "v1", 0)
	e.save(t, p.ID, "f.txt", "v2", 1)
	e.save(t, p.ID, "dir/inner.txt", "inner", 0)

	tests := []struct {
		name, path string
		base       int64
		current    string
		rev        int64
	}{
		{"stale base", "f.txt", 1, "f.txt", 2},
		{"base ahead of head", "f.txt", 7, "f.txt", 2},
		{"create over existing", "f.txt", 0, "f.txt", 2},
		{"file where a directory is", "dir", 0, "dir/inner.txt", 1},
		{"file under a file", "f.txt/x", 0, "f.txt", 2},
	}
	for _, tt := range tests {
		t.Run("save/"+tt.name, func(t *testing.T) {
			_, err := e.svc.SaveFile(ctx, e.alice, p.ID, tt.path, []byte("mine"), tt.base)
			wantConflict(t, err, tt.current, tt.rev, false)
		})
	}
	t.Run("delete/stale base", func(t *testing.T) {
		_, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "f.txt", 1)
		wantConflict(t, err, "f.txt", 2, false)
	})
	t.Run("save/base on a missing file", func(t *testing.T) {
		_, err := e.svc.SaveFile(ctx, e.alice, p.ID, "missing.txt", []byte("x"), 3)
		wantNotFound(t, err)
	})
	t.Run("delete/missing file", func(t *testing.T) {
		_, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "missing.txt", 0)
		wantNotFound(t, err)
	})

	if head, content := e.read(t, p.ID, "f.txt", 0); head.Revision != 2 || content != "v2" {
		t.Fatalf("after conflicts head = rev %d %q, want rev 2 v2", head.Revision, content)
	}
	want := map[string]string{"f.txt": "v2", "dir/inner.txt": "inner"}
	if got := tree(t, e.svc.WorkingCopy(p.ID)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("working copy = %v, want %v", got, want)
	}
}

func TestConcurrentWrites(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	e.save(t, p.ID, "f.txt", "base", 0)
	const writers = 8

	// race runs writers goroutines that save path based on base and returns the
	// winning contents and the errors of the others.
	race := func(path string, base int64) (won []string, errs []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				content := fmt.Sprintf("writer %d", i)
				_, err := e.svc.SaveFile(ctx, e.alice, p.ID, path, []byte(content), base)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					won = append(won, content)
				} else {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		return won, errs
	}

	tests := []struct {
		name, path string
		base       int64
		headRev    int64
	}{
		{"same base", "f.txt", 1, 2},
		{"same create", "new.txt", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			won, errs := race(tt.path, tt.base)
			if len(won) != 1 {
				t.Fatalf("%d writers won (%v), want exactly 1; errors: %v", len(won), won, errs)
			}
			for _, err := range errs {
				wantConflict(t, err, tt.path, tt.headRev, false)
			}
			head, content := e.read(t, p.ID, tt.path, 0)
			if head.Revision != tt.headRev || content != won[0] {
				t.Fatalf("head = rev %d %q, want rev %d %q", head.Revision, content, tt.headRev, won[0])
			}
			if got := tree(t, e.svc.WorkingCopy(p.ID))[tt.path]; got != won[0] {
				t.Fatalf("working copy has %q, want the winner's %q", got, won[0])
			}
		})
	}

	t.Run("sequenced updates keep the working copy at the head", func(t *testing.T) {
		// Each writer retries on conflict, so every save lands; the working copy
		// must end with the head's content, whatever the order.
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				for {
					head, _, err := e.svc.ReadFile(ctx, e.alice, p.ID, "f.txt", 0)
					if err != nil {
						t.Error(err)
						return
					}
					_, err = e.svc.SaveFile(ctx, e.alice, p.ID, "f.txt", []byte(fmt.Sprint("retry ", i)), head.Revision)
					var ce *project.ConflictError
					if !errors.As(err, &ce) {
						if err != nil {
							t.Error(err)
						}
						return
					}
				}
			})
		}
		wg.Wait()
		head, content := e.read(t, p.ID, "f.txt", 0)
		if head.Revision != 2+writers {
			t.Errorf("head revision = %d, want %d", head.Revision, 2+writers)
		}
		if got := tree(t, e.svc.WorkingCopy(p.ID))["f.txt"]; got != content {
			t.Errorf("working copy has %q, head is %q", got, content)
		}
	})
}

func TestSizeLimit(t *testing.T) {
	const limit = 16
	e := newEnv(t, func(c *project.Config) { c.MaxFileSize = limit })
	ctx := t.Context()
	p := e.create(t, "p")

	if f := e.save(t, p.ID, "exact", strings.Repeat("x", limit), 0); f.Size != limit {
		t.Fatalf("size = %d", f.Size)
	}
	tests := []struct {
		name, path string
		base       int64
	}{
		{"create", "big", 0},
		{"update", "exact", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.SaveFile(ctx, e.alice, p.ID, tt.path, []byte(strings.Repeat("y", limit+1)), tt.base)
			var tl *project.TooLargeError
			if !errors.As(err, &tl) || tl.Size != limit+1 || tl.Limit != limit {
				t.Fatalf("error = %v, want TooLargeError{%d, %d}", err, limit+1, limit)
			}
		})
	}
	files, err := e.svc.ListFiles(ctx, e.alice, p.ID, "")
	if err != nil || len(files) != 1 || files[0].Revision != 1 {
		t.Fatalf("files = %+v, %v; want only exact at revision 1", files, err)
	}
	if got := tree(t, e.svc.WorkingCopy(p.ID)); len(got) != 1 || got["exact"] != strings.Repeat("x", limit) {
		t.Fatalf("working copy = %v", got)
	}
	if n := e.count(t, `SELECT count(*) FROM blobs`); n != 1 {
		t.Fatalf("%d blobs, want 1", n)
	}

	t.Run("default limit", func(t *testing.T) {
		e := newEnv(t)
		p := e.create(t, "p")
		_, err := e.svc.SaveFile(t.Context(), e.alice, p.ID, "big", make([]byte, project.DefaultMaxFileSize+1), 0)
		var tl *project.TooLargeError
		if !errors.As(err, &tl) || tl.Limit != project.DefaultMaxFileSize {
			t.Fatalf("error = %v, want TooLargeError with the default limit", err)
		}
	})
}

func TestBlobsAreShared(t *testing.T) {
	e := newEnv(t)
	p := e.create(t, "p")
	a := e.save(t, p.ID, "a.txt", "same", 0)
	b := e.save(t, p.ID, "b/b.txt", "same", 0)
	e.save(t, p.ID, "a.txt", "same", 1)
	if a.SHA256 != b.SHA256 {
		t.Fatal("same content, different hashes")
	}
	if n := e.count(t, `SELECT count(*) FROM blobs`); n != 1 {
		t.Fatalf("%d blobs, want 1", n)
	}
	var size int64
	if err := e.db.QueryRow(t.Context(), `SELECT size FROM blobs WHERE sha256 = $1`, a.SHA256[:]).Scan(&size); err != nil || size != 4 {
		t.Fatalf("blob size = %d, %v", size, err)
	}
}

func TestListFiles(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	for _, path := range []string{"srcx.txt", "src/sub/c.go", "a.txt", "src/b.go", "Z.txt"} {
		e.save(t, p.ID, path, path, 0)
	}
	tests := []struct {
		prefix string
		want   string
	}{
		{"", "Z.txt a.txt src/b.go src/sub/c.go srcx.txt"},
		{"src", "src/b.go src/sub/c.go"},
		{"src/", "src/b.go src/sub/c.go"},
		{"src/sub", "src/sub/c.go"},
		{"nothing/here", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("prefix %q", tt.prefix), func(t *testing.T) {
			files, err := e.svc.ListFiles(ctx, e.alice, p.ID, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if files == nil {
				t.Fatal("nil list, want an empty one")
			}
			var got []string
			for _, f := range files {
				got = append(got, f.Path)
				if f.Revision != 1 || f.SHA256 != sha256.Sum256([]byte(f.Path)) || f.Size != int64(len(f.Path)) {
					t.Errorf("file %+v", f)
				}
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("ListFiles = %v, want %s", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"../", "/src", "src//"} {
		if _, err := e.svc.ListFiles(ctx, e.alice, p.ID, bad); !errors.Is(err, project.ErrInvalidPath) {
			t.Errorf("ListFiles(%q): %v, want ErrInvalidPath", bad, err)
		}
	}
	_, files, err := e.svc.Open(ctx, e.alice, p.ID)
	if err != nil || len(files) != 5 || files[0].Path != "Z.txt" {
		t.Fatalf("Open files = %+v, %v", files, err)
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.create(t, "p")
	stream := project.Stream(p.ID)
	if stream != "project:"+p.ID {
		t.Fatalf("Stream = %q", stream)
	}
	sum := sha256.Sum256([]byte("hello"))
	e.save(t, p.ID, "a.txt", "hello", 0)
	if _, err := e.svc.RenameFile(ctx, e.alice, p.ID, "a.txt", "b.txt", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DeleteFile(ctx, e.alice, p.ID, "b.txt", 2); err != nil {
		t.Fatal(err)
	}
	want := []recorded{
		{stream, project.EventFileSaved, &project.FileEvent{Path: "a.txt", Revision: 1, Size: 5, SHA256: hex.EncodeToString(sum[:])}},
		{stream, project.EventFileRenamed, &project.FileEvent{Path: "b.txt", OldPath: "a.txt", Revision: 2, Size: 5, SHA256: hex.EncodeToString(sum[:])}},
		{stream, project.EventFileDeleted, &project.FileEvent{Path: "b.txt", Revision: 3, Deleted: true}},
	}
	got := e.events.take()
	if len(got) != len(want) {
		t.Fatalf("events = %+v, want %d", got, len(want))
	}
	for i := range want {
		if got[i].Stream != want[i].Stream || got[i].Type != want[i].Type || fmt.Sprint(got[i].Data) != fmt.Sprint(want[i].Data) {
			t.Errorf("event %d = %s %s %+v, want %s %s %+v", i, got[i].Stream, got[i].Type, got[i].Data,
				want[i].Stream, want[i].Type, want[i].Data)
		}
	}

	t.Run("no publisher", func(t *testing.T) {
		e := newEnv(t, func(c *project.Config) { c.Publish = nil })
		p := e.create(t, "p")
		e.save(t, p.ID, "a", "a", 0)
		if err := e.svc.Delete(t.Context(), e.alice, p.ID); err != nil {
			t.Fatal(err)
		}
	})
}
