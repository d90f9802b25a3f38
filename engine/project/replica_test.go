package project_test

import (
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/project"
)

// TestCacheFollowsOtherProcesses runs two Services on one database, as two cdsd
// replicas would: a write through one must reach reads through the other, whose
// head cache is dropped by the database's change notification.
func TestCacheFollowsOtherProcesses(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	other, err := project.New(project.Config{DB: e.db, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, other)
	p := e.create(t, "shared")
	if _, err := e.svc.SaveFile(ctx, e.alice, p.ID, "f.txt", []byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	read := func(svc *project.Service) string {
		t.Helper()
		_, content, err := svc.ReadFile(ctx, e.alice, p.ID, "f.txt", 0)
		if err != nil {
			t.Fatal(err)
		}
		return string(content)
	}
	// Warm both caches.
	for range 3 {
		if read(e.svc) != "one" || read(other) != "one" {
			t.Fatal("first read")
		}
	}
	if _, err := other.SaveFile(ctx, e.alice, p.ID, "f.txt", []byte("two"), 1); err != nil {
		t.Fatal(err)
	}
	if got := read(other); got != "two" {
		t.Fatalf("writer reads %q after its own write", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for read(e.svc) != "two" {
		if time.Now().After(deadline) {
			t.Fatal("the other process kept serving the old head")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Access is still per user, cache or not.
	if _, _, err := e.svc.ReadFile(ctx, e.bob, p.ID, "f.txt", 0); err == nil {
		t.Fatal("bob read alice's cached file")
	}
}
