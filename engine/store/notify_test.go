package store_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/store"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

// recorder is a Subscriber that remembers what it was told.
type recorder struct {
	mu       sync.Mutex
	resets   []bool
	payloads []string
}

func (r *recorder) Reset(listening bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets = append(r.resets, listening)
}

func (r *recorder) Notify(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.payloads = append(r.payloads, p)
}

func (r *recorder) snapshot() ([]bool, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.resets...), append([]string(nil), r.payloads...)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListen checks delivery, the reconnect after the listening backend is killed
// (the subscriber is told to drop its cache, then that listening resumed) and the
// final reset when the context ends.
func TestListen(t *testing.T) {
	st := storetest.New(t)
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Listen(ctx, st.Pool(), slog.New(slog.DiscardHandler), "cds_test", rec) }()
	listening := func(n int) func() bool {
		return func() bool {
			resets, _ := rec.snapshot()
			count := 0
			for _, r := range resets {
				if r {
					count++
				}
			}
			return count >= n
		}
	}
	waitFor(t, "listening", listening(1))
	if _, err := st.Pool().Exec(t.Context(), `SELECT pg_notify('cds_test', 'hello')`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { _, p := rec.snapshot(); return len(p) == 1 && p[0] == "hello" })

	// Kill the listening backend: the listener must notice, reset and come back.
	if _, err := st.Pool().Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconnect", listening(2))
	resets, _ := rec.snapshot()
	if !slicesContainsFalseBetween(resets) {
		t.Fatalf("no reset(false) between the two listens: %v", resets)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if resets, _ := rec.snapshot(); resets[len(resets)-1] {
		t.Fatalf("last reset is not false: %v", resets)
	}
}

func slicesContainsFalseBetween(resets []bool) bool {
	seenTrue := false
	for _, r := range resets {
		if r {
			seenTrue = true
		} else if seenTrue {
			return true
		}
	}
	return false
}
