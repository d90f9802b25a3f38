package billing_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cyberdevstudio/cds/engine/billing"
)

// The test: 1,000 concurrent reserve/settle calls on one user whose balance
// covers 600 of them. Exactly 600 succeed, the others are refused for insufficient
// balance, and the balance and the usage records add up to the credit.
func TestConcurrentReserveSettle(t *testing.T) {
	const (
		calls   = 1000
		covered = 600
		cost    = 100
		rest    = 50 // less than one call, so it is never spent
		workers = 32 // the pool's size: enough to contend, few enough for two cores
	)
	e := newEnv(t, workers)
	user := e.user(t, "alice", covered*cost+rest)
	model := e.model(t, "m", "1")

	var ok, refused atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range jobs {
				r, err := e.ledger.Reserve(t.Context(), user, &model, cost, "/v1/chat/completions", "")
				var ib *billing.InsufficientBalanceError
				switch {
				case errors.As(err, &ib):
					refused.Add(1)
					if ib.Balance != rest || ib.Cost != cost {
						t.Errorf("refusal says balance %d and cost %d, want %d and %d", ib.Balance, ib.Cost, rest, cost)
					}
					continue
				case err != nil:
					t.Errorf("Reserve: %v", err)
					continue
				}
				if _, err := e.ledger.Settle(t.Context(), r.ID, billing.Usage{PromptTokens: 70, CompletionTokens: 30, Cost: cost}); err != nil {
					t.Errorf("Settle: %v", err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	for i := range calls {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	if ok.Load() != covered || refused.Load() != calls-covered {
		t.Errorf("%d succeeded and %d were refused, want %d and %d", ok.Load(), refused.Load(), covered, calls-covered)
	}
	if b := e.balance(t, user); b != rest {
		t.Errorf("final balance = %d, want %d", b, rest)
	}
	var rows, sum, tokens int64
	if err := e.db.QueryRow(t.Context(),
		"SELECT count(*), coalesce(sum(cost), 0), coalesce(sum(tokens), 0) FROM tokens_used WHERE user_id = $1",
		user).Scan(&rows, &sum, &tokens); err != nil {
		t.Fatal(err)
	}
	if rows != covered || sum != covered*cost || tokens != covered*100 {
		t.Errorf("tokens_used has %d rows costing %d for %d tokens, want %d rows costing %d for %d tokens",
			rows, sum, tokens, covered, covered*cost, covered*100)
	}
	var open int64
	if err := e.db.QueryRow(t.Context(),
		"SELECT count(*) FROM token_reservations WHERE settled_at IS NULL AND released_at IS NULL").Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d reservations left open", open)
	}
}

// Settle and Release racing on one reservation: exactly one wins, and the balance
// reflects only the winner.
func TestConcurrentSettleAndRelease(t *testing.T) {
	e := newEnv(t, 8)
	user := e.user(t, "alice", 10_000)
	const rounds = 50
	for range rounds {
		r := e.reserve(t, user, nil, 100)
		var wg sync.WaitGroup
		var settleErr, releaseErr error
		wg.Go(func() {
			_, settleErr = e.ledger.Settle(t.Context(), r.ID, billing.Usage{CompletionTokens: 1, Cost: 100})
		})
		wg.Go(func() { releaseErr = e.ledger.Release(t.Context(), r.ID) })
		wg.Wait()
		if (settleErr == nil) == (releaseErr == nil) {
			t.Fatalf("settle = %v, release = %v; want exactly one to succeed", settleErr, releaseErr)
		}
		if err := errors.Join(settleErr, releaseErr); !errors.Is(err, billing.ErrNotOpen) {
			t.Fatalf("loser's error = %v, want ErrNotOpen", err)
		}
	}
	var charged int64
	if err := e.db.QueryRow(t.Context(), "SELECT coalesce(sum(cost), 0) FROM tokens_used").Scan(&charged); err != nil {
		t.Fatal(err)
	}
	if b := e.balance(t, user); b != 10_000-charged {
		t.Errorf("balance = %d, want 10000 - %d charged", b, charged)
	}
}
