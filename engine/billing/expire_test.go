package billing_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cyberdevstudio/cds/engine/billing"
)

// A request killed between Reserve and Settle leaves an open reservation; once it
// expires, the sweep gives the credits back and a late Settle is refused.
func TestExpireStaleRestoresBalance(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 1000)
	other := e.user(t, "bob", 500)
	stale := e.reserve(t, user, nil, 300)
	staleBob := e.reserve(t, other, nil, 200)
	e.clock.Advance(billing.DefaultReservationTTL / 2)
	fresh := e.reserve(t, user, nil, 100)

	e.clock.Set(stale.ExpiresAt.Add(-time.Nanosecond))
	if n, err := e.ledger.ExpireStale(t.Context()); err != nil || n != 0 {
		t.Fatalf("ExpireStale before expiry = %d, %v; want 0", n, err)
	}

	e.clock.Set(stale.ExpiresAt)
	n, err := e.ledger.ExpireStale(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("ExpireStale = %d, %v; want 2", n, err)
	}
	if b := e.balance(t, user); b != 900 { // only the fresh reservation is still held
		t.Errorf("alice's balance = %d, want 900", b)
	}
	if b := e.balance(t, other); b != 500 {
		t.Errorf("bob's balance = %d, want 500", b)
	}
	if _, err := e.ledger.Settle(t.Context(), stale.ID, billing.Usage{Cost: 1}); !errors.Is(err, billing.ErrNotOpen) {
		t.Errorf("Settle of an expired reservation = %v, want ErrNotOpen", err)
	}
	if err := e.ledger.Release(t.Context(), staleBob.ID); !errors.Is(err, billing.ErrNotOpen) {
		t.Errorf("Release of an expired reservation = %v, want ErrNotOpen", err)
	}
	if n, err := e.ledger.ExpireStale(t.Context()); err != nil || n != 0 {
		t.Errorf("second ExpireStale = %d, %v; want 0", n, err)
	}
	if _, err := e.ledger.Settle(t.Context(), fresh.ID, billing.Usage{Cost: 100}); err != nil {
		t.Errorf("Settle of the unexpired reservation: %v", err)
	}
}

func TestExpireStaleReleasesLargeBacklog(t *testing.T) {
	e := newEnv(t, 0)
	const n = 2500 // more than one sweep batch
	user := e.user(t, "alice", n)
	if _, err := e.db.Exec(t.Context(), `
		INSERT INTO token_reservations (user_id, amount, expires_at)
		SELECT $1, 1, $2 FROM generate_series(1, $3)`, user, e.clock.Now(), n); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(t.Context(), "UPDATE users SET token_balance = 0 WHERE id = $1", user); err != nil {
		t.Fatal(err)
	}
	got, err := e.ledger.ExpireStale(t.Context())
	if err != nil || got != n {
		t.Fatalf("ExpireStale = %d, %v; want %d", got, err, n)
	}
	if b := e.balance(t, user); b != n {
		t.Errorf("balance = %d, want %d", b, n)
	}
}

// Only one replica sweeps at a time; the others return at once instead of waiting.
func TestExpireStaleYieldsToAnotherSweeper(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 100)
	e.reserve(t, user, nil, 100)
	e.clock.Advance(billing.DefaultReservationTTL)

	tx, err := e.db.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	// The same key as the ledger's sweep lock, held as another replica would.
	if _, err := tx.Exec(t.Context(), "SELECT pg_advisory_xact_lock($1)", int64(0x636473_62696c6c)); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ledger.ExpireStale(t.Context()); err != nil || n != 0 {
		t.Errorf("ExpireStale while another sweeps = %d, %v; want 0", n, err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ledger.ExpireStale(t.Context()); err != nil || n != 1 {
		t.Errorf("ExpireStale after = %d, %v; want 1", n, err)
	}
}

func TestRunSweepsUntilCancelled(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 100)
	e.reserve(t, user, nil, 100)
	e.clock.Advance(billing.DefaultReservationTTL)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.ledger.Run(ctx) }()
	// Run sweeps once at start; wait for its refund.
	for e.balance(t, user) != 100 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

// recordingHandler signals the first warning it receives.
type recordingHandler struct {
	once   sync.Once
	warned chan struct{}
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.once.Do(func() { close(h.warned) })
	}
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// A sweep that fails (the database is gone) is logged, and Run keeps going until
// cancelled.
func TestRunLogsFailedSweeps(t *testing.T) {
	e := newEnv(t, 0)
	h := &recordingHandler{warned: make(chan struct{})}
	l, err := billing.New(billing.Config{DB: e.db, Logger: slog.New(h), SweepInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.db.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	<-h.warned
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

// A reservation being settled while the sweep runs is skipped, not released twice.
func TestExpireStaleSkipsReservationBeingSettled(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 100)
	r := e.reserve(t, user, nil, 100)
	e.clock.Advance(billing.DefaultReservationTTL)

	err := pgx.BeginFunc(t.Context(), e.db, func(tx pgx.Tx) error {
		// Hold the row lock a Settle would hold.
		if _, err := tx.Exec(t.Context(), "SELECT 1 FROM token_reservations WHERE id = $1 FOR UPDATE", r.ID); err != nil {
			return err
		}
		n, err := e.ledger.ExpireStale(t.Context())
		if err != nil || n != 0 {
			t.Errorf("ExpireStale during a settle = %d, %v; want 0", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.ledger.ExpireStale(t.Context()); err != nil || n != 1 {
		t.Errorf("ExpireStale after = %d, %v; want 1", n, err)
	}
}
