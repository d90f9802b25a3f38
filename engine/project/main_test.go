package project_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cyberdevstudio/cds/engine/project"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

// env is a Service on a fresh database with two users.
type env struct {
	svc    *project.Service
	db     *pgxpool.Pool
	dir    string
	alice  int64
	bob    int64
	events *recorder
}

// newEnv starts a Service; edit, if given, changes its Config first.
func newEnv(t testing.TB, edit ...func(*project.Config)) *env {
	t.Helper()
	st := storetest.New(t)
	ctx := t.Context()
	alice, err := st.EnsureUser(ctx, "alice", "developer")
	if err != nil {
		t.Fatalf("EnsureUser(alice): %v", err)
	}
	bob, err := st.EnsureUser(ctx, "bob", "developer")
	if err != nil {
		t.Fatalf("EnsureUser(bob): %v", err)
	}
	e := &env{db: st.Pool(), dir: t.TempDir(), alice: alice.ID, bob: bob.ID, events: &recorder{}}
	cfg := project.Config{DB: e.db, Dir: e.dir, Publish: e.events.publish}
	for _, f := range edit {
		f(&cfg)
	}
	e.svc, err = project.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	watch(t, e.svc)
	return e
}

// watch runs svc.Watch, as cdsd does, so that every test also exercises the head
// cache, until the test ends.
func watch(t testing.TB, svc *project.Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
}

// create creates a project of alice's.
func (e *env) create(t testing.TB, name string) project.Project {
	t.Helper()
	p, err := e.svc.Create(t.Context(), e.alice, name)
	if err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	return p
}

// save saves a file of alice's and fails the test on error.
func (e *env) save(t testing.TB, pid, path, content string, base int64) project.File {
	t.Helper()
	f, err := e.svc.SaveFile(t.Context(), e.alice, pid, path, []byte(content), base)
	if err != nil {
		t.Fatalf("SaveFile(%q, base %d): %v", path, base, err)
	}
	return f
}

// read reads a file of alice's at a revision and fails the test on error.
func (e *env) read(t testing.TB, pid, path string, rev int64) (project.File, string) {
	t.Helper()
	f, content, err := e.svc.ReadFile(t.Context(), e.alice, pid, path, rev)
	if err != nil {
		t.Fatalf("ReadFile(%q, %d): %v", path, rev, err)
	}
	return f, string(content)
}

// count returns the result of a SELECT count(*) query.
func (e *env) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// recorded is one published event.
type recorded struct {
	Stream, Type string
	Data         any
}

// recorder collects published events.
type recorder struct {
	mu  sync.Mutex
	evs []recorded
}

func (r *recorder) publish(stream, typ string, data any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, recorded{stream, typ, data})
}

// take returns the events recorded so far and forgets them.
func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	return evs
}

// tree returns the regular files under dir (relative slash paths → contents) and
// fails the test on anything else but directories, and on empty directories.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			entries, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			if len(entries) == 0 && p != dir {
				t.Errorf("working copy has an empty directory %q", rel)
			}
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[rel] = string(b)
		default:
			t.Errorf("working copy has %q of type %v", rel, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk working copy: %v", err)
	}
	return files
}

// wantConflict asserts that err is a *ConflictError whose Current has the given
// path, revision and deleted state, and returns it.
func wantConflict(t testing.TB, err error, path string, rev int64, deleted bool) *project.ConflictError {
	t.Helper()
	var ce *project.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a *ConflictError", err)
	}
	if ce.Current.Path != path || ce.Current.Revision != rev || ce.Current.Deleted != deleted {
		t.Fatalf("conflict Current = {%q rev %d deleted %v}, want {%q rev %d deleted %v}",
			ce.Current.Path, ce.Current.Revision, ce.Current.Deleted, path, rev, deleted)
	}
	if ce.Reason == "" || !strings.Contains(ce.Error(), path) {
		t.Errorf("conflict error %q has no reason or does not name %q", ce.Error(), path)
	}
	return ce
}

// wantNotFound asserts that err wraps ErrNotFound.
func wantNotFound(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, project.ErrNotFound) {
		t.Fatalf("error = %v, want ErrNotFound", err)
	}
}
