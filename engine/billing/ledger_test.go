package billing_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/billing"
)

func TestNewRejectsBadConfig(t *testing.T) {
	db := newEnv(t, 0).db
	tests := []struct {
		name string
		cfg  billing.Config
	}{
		{"no database", billing.Config{}},
		{"negative TTL", billing.Config{DB: db, ReservationTTL: -time.Second}},
		{"negative sweep interval", billing.Config{DB: db, SweepInterval: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := billing.New(tc.cfg); !errors.Is(err, billing.ErrInvalid) {
				t.Errorf("New = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCost(t *testing.T) {
	e := newEnv(t, 0)
	models := map[string]int64{
		"free":  e.model(t, "free", "0"),
		"half":  e.model(t, "half", "0.5"),
		"micro": e.model(t, "micro", "0.000001"),
		"two":   e.model(t, "two", "2"),
	}
	tests := []struct {
		name    string
		model   string
		tokens  int64
		want    int64
		wantErr error
	}{
		{name: "free model", model: "free", tokens: 1000, want: 0},
		{name: "whole product", model: "two", tokens: 10, want: 20},
		{name: "fraction rounds up", model: "half", tokens: 3, want: 2},
		{name: "tiny price still costs a credit", model: "micro", tokens: 1, want: 1},
		{name: "exact decimal, no float error", model: "micro", tokens: 3_000_000, want: 3},
		{name: "zero tokens", model: "two", tokens: 0, want: 0},
		{name: "negative tokens", model: "two", tokens: -1, wantErr: billing.ErrInvalid},
		{name: "unknown model", model: "", tokens: 1, wantErr: billing.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := models[tc.model]
			if !ok {
				id = 1 << 40
			}
			got, err := e.ledger.Cost(t.Context(), id, tc.tokens)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Cost = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("Cost(%s, %d) = %d, want %d", tc.model, tc.tokens, got, tc.want)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	tests := []struct {
		name        string
		balance     int64
		amount      int64
		noUser      bool
		noModel     bool
		wantErr     error
		wantBalance int64 // after the call
	}{
		{name: "takes the amount", balance: 1000, amount: 300, wantBalance: 700},
		{name: "whole balance", balance: 300, amount: 300, wantBalance: 0},
		{name: "free call", balance: 0, amount: 0, wantBalance: 0},
		{name: "one credit short", balance: 299, amount: 300, wantErr: billing.ErrInsufficientBalance, wantBalance: 299},
		{name: "negative amount", balance: 10, amount: -1, wantErr: billing.ErrInvalid, wantBalance: 10},
		{name: "unknown model leaves the balance", balance: 1000, amount: 300, noModel: true, wantErr: billing.ErrNotFound, wantBalance: 1000},
		{name: "unknown user", amount: 1, noUser: true, wantErr: billing.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 0)
			user := e.user(t, "alice", tc.balance)
			model := e.model(t, "m", "1")
			if tc.noModel {
				model = 1 << 40
			}
			if tc.noUser {
				user = 1 << 40
			}
			start := e.clock.Now()
			r, err := e.ledger.Reserve(t.Context(), user, &model, tc.amount, "/v1/completions", "req-7")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Reserve = %v, want error %v", err, tc.wantErr)
			}
			if tc.noUser {
				return
			}
			if got := e.balance(t, user); got != tc.wantBalance {
				t.Errorf("balance = %d, want %d", got, tc.wantBalance)
			}
			if err != nil {
				return
			}
			if r.ID == 0 || r.UserID != user || r.ModelID == nil || *r.ModelID != model || r.Amount != tc.amount ||
				!r.ExpiresAt.Equal(start.Add(billing.DefaultReservationTTL)) {
				t.Errorf("Reserve = %+v", r)
			}
		})
	}
}

func TestInsufficientBalanceSaysBalanceAndCost(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 42)
	_, err := e.ledger.Reserve(t.Context(), user, nil, 100, "", "")
	var ib *billing.InsufficientBalanceError
	if !errors.As(err, &ib) {
		t.Fatalf("Reserve = %v, want *InsufficientBalanceError", err)
	}
	if ib.Balance != 42 || ib.Cost != 100 {
		t.Errorf("error = %+v, want balance 42 and cost 100", ib)
	}
	for _, want := range []string{"42", "100", "balance"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %q", err, want)
		}
	}
}

func TestSettle(t *testing.T) {
	tests := []struct {
		name          string
		balance       int64 // before reserving
		reserve       int64
		usage         billing.Usage
		want          billing.Charge // UsageID is not compared
		wantShortfall bool
	}{
		{
			name: "cheaper than reserved refunds the rest", balance: 1000, reserve: 300,
			usage: billing.Usage{PromptTokens: 100, CompletionTokens: 20, Cost: 120},
			want:  billing.Charge{Cost: 120, Refund: 180, Balance: 880},
		},
		{
			name: "exactly as reserved", balance: 1000, reserve: 300,
			usage: billing.Usage{PromptTokens: 200, CompletionTokens: 100, Cost: 300},
			want:  billing.Charge{Cost: 300, Balance: 700},
		},
		{
			name: "no tokens refunds all", balance: 1000, reserve: 300,
			usage: billing.Usage{},
			want:  billing.Charge{Refund: 300, Balance: 1000},
		},
		{
			name: "dearer than reserved takes the difference", balance: 1000, reserve: 300,
			usage: billing.Usage{PromptTokens: 300, CompletionTokens: 100, Cost: 400},
			want:  billing.Charge{Cost: 400, Balance: 600},
		},
		{
			name: "dearer than the balance allows charges the reservation", balance: 350, reserve: 300,
			usage: billing.Usage{PromptTokens: 300, CompletionTokens: 100, Cost: 400},
			want:  billing.Charge{Cost: 300, Shortfall: 100, Balance: 50}, wantShortfall: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 0)
			user := e.user(t, "alice", tc.balance)
			model := e.model(t, "m", "1")
			r := e.reserve(t, user, &model, tc.reserve)
			e.clock.Advance(time.Second)
			got, err := e.ledger.Settle(t.Context(), r.ID, tc.usage)
			if err != nil {
				t.Fatalf("Settle: %v", err)
			}
			usageID := got.UsageID
			got.UsageID = 0
			if got != tc.want {
				t.Errorf("Settle = %+v, want %+v", got, tc.want)
			}
			if b := e.balance(t, user); b != tc.want.Balance {
				t.Errorf("balance = %d, want %d", b, tc.want.Balance)
			}
			row := e.usage(t, usageID)
			if row.UserID != user || row.ModelID == nil || *row.ModelID != model ||
				row.Tokens != int64(tc.usage.PromptTokens+tc.usage.CompletionTokens) ||
				row.Prompt != int64(tc.usage.PromptTokens) || row.Complete != int64(tc.usage.CompletionTokens) ||
				row.Cost != tc.want.Cost || row.Endpoint != "/v1/chat/completions" ||
				row.RequestID == nil || *row.RequestID != "req-1" ||
				row.ReservationID == nil || *row.ReservationID != r.ID || !row.CreatedAt.Equal(e.clock.Now()) {
				t.Errorf("usage row = %+v", row)
			}
			if tc.wantShortfall {
				if row.Metadata["shortfall"] != tc.want.Shortfall || row.Metadata["actual_cost"] != tc.usage.Cost {
					t.Errorf("usage metadata = %v, want the shortfall and actual cost", row.Metadata)
				}
			} else if len(row.Metadata) != 0 {
				t.Errorf("usage metadata = %v, want none", row.Metadata)
			}
		})
	}
}

func TestSettleWithoutModelOrRequestID(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 10)
	r, err := e.ledger.Reserve(t.Context(), user, nil, 5, "agent", "")
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	c, err := e.ledger.Settle(t.Context(), r.ID, billing.Usage{PromptTokens: 1, Cost: 1})
	if err != nil {
		t.Fatalf("Settle: %v", err)
	}
	row := e.usage(t, c.UsageID)
	if row.ModelID != nil || row.RequestID != nil || row.Endpoint != "agent" || row.Cost != 1 {
		t.Errorf("usage row = %+v", row)
	}
}

func TestSettleRejectsBadUsage(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 10)
	r := e.reserve(t, user, nil, 5)
	tests := []struct {
		name  string
		usage billing.Usage
	}{
		{"negative prompt tokens", billing.Usage{PromptTokens: -1}},
		{"negative completion tokens", billing.Usage{CompletionTokens: -1}},
		{"negative cost", billing.Usage{Cost: -1}},
		{"more tokens than a row holds", billing.Usage{PromptTokens: 1 << 31, CompletionTokens: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.ledger.Settle(t.Context(), r.ID, tc.usage); !errors.Is(err, billing.ErrInvalid) {
				t.Errorf("Settle = %v, want ErrInvalid", err)
			}
		})
	}
	// The reservation is still open and settles normally.
	if _, err := e.ledger.Settle(t.Context(), r.ID, billing.Usage{Cost: 5}); err != nil {
		t.Errorf("Settle after rejected attempts: %v", err)
	}
}

func TestReservationClosesOnce(t *testing.T) {
	settle := func(t *testing.T, e *env, id int64) error {
		_, err := e.ledger.Settle(t.Context(), id, billing.Usage{PromptTokens: 1, Cost: 10})
		return err
	}
	release := func(t *testing.T, e *env, id int64) error { return e.ledger.Release(t.Context(), id) }
	tests := []struct {
		name          string
		first, second func(*testing.T, *env, int64) error
		wantBalance   int64 // of 100, reserving 40
	}{
		{"settle twice", settle, settle, 90},
		{"settle then release", settle, release, 90},
		{"release twice", release, release, 100},
		{"release then settle", release, settle, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 0)
			user := e.user(t, "alice", 100)
			r := e.reserve(t, user, nil, 40)
			if err := tc.first(t, e, r.ID); err != nil {
				t.Fatalf("first close: %v", err)
			}
			if err := tc.second(t, e, r.ID); !errors.Is(err, billing.ErrNotOpen) {
				t.Errorf("second close = %v, want ErrNotOpen", err)
			}
			if b := e.balance(t, user); b != tc.wantBalance {
				t.Errorf("balance = %d, want %d", b, tc.wantBalance)
			}
			var rows int
			if err := e.db.QueryRow(t.Context(), "SELECT count(*) FROM tokens_used").Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.wantBalance == 90]; rows != want {
				t.Errorf("%d usage rows, want %d", rows, want)
			}
		})
	}
}

func TestUnknownReservation(t *testing.T) {
	e := newEnv(t, 0)
	if _, err := e.ledger.Settle(t.Context(), 1<<40, billing.Usage{}); !errors.Is(err, billing.ErrNotFound) {
		t.Errorf("Settle = %v, want ErrNotFound", err)
	}
	if err := e.ledger.Release(t.Context(), 1<<40); !errors.Is(err, billing.ErrNotFound) {
		t.Errorf("Release = %v, want ErrNotFound", err)
	}
	if _, err := e.ledger.Balance(t.Context(), 1<<40); !errors.Is(err, billing.ErrNotFound) {
		t.Errorf("Balance = %v, want ErrNotFound", err)
	}
}

func TestClosedDatabase(t *testing.T) {
	e := newEnv(t, 0)
	user := e.user(t, "alice", 100)
	r := e.reserve(t, user, nil, 10)
	e.db.Close()
	ctx := t.Context()
	calls := map[string]func() error{
		"Cost":        func() error { _, err := e.ledger.Cost(ctx, 1, 1); return err },
		"Balance":     func() error { _, err := e.ledger.Balance(ctx, user); return err },
		"Reserve":     func() error { _, err := e.ledger.Reserve(ctx, user, nil, 1, "", ""); return err },
		"Settle":      func() error { _, err := e.ledger.Settle(ctx, r.ID, billing.Usage{}); return err },
		"Release":     func() error { return e.ledger.Release(ctx, r.ID) },
		"ExpireStale": func() error { _, err := e.ledger.ExpireStale(ctx); return err },
		"Report":      func() error { _, err := e.ledger.Report(ctx, billing.ReportFilter{GroupBy: "day"}); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if err == nil {
				t.Fatal("no error from a closed pool")
			}
			if errors.Is(err, billing.ErrNotFound) || errors.Is(err, billing.ErrNotOpen) || errors.Is(err, billing.ErrInsufficientBalance) {
				t.Errorf("error %v is mistaken for a ledger outcome", err)
			}
		})
	}
}
