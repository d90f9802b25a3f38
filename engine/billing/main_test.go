package billing_test

import (
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cyberdevstudio/cds/engine/billing"
	"github.com/cyberdevstudio/cds/engine/clock/clocktest"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

// env is a Ledger on a fresh database, with its pool and clock.
type env struct {
	ledger *billing.Ledger
	db     *pgxpool.Pool
	clock  *clocktest.Clock
}

// newEnv opens a fresh database with a pool of poolSize connections (0: the store's
// default) and a Ledger on it.
func newEnv(t *testing.T, poolSize int) *env {
	t.Helper()
	var db *pgxpool.Pool
	if poolSize == 0 {
		db = storetest.New(t).Pool()
	} else {
		cfg, err := pgxpool.ParseConfig(storetest.NewURL(t))
		if err != nil {
			t.Fatalf("parse test database url: %v", err)
		}
		cfg.MaxConns = int32(poolSize)
		db, err = pgxpool.NewWithConfig(t.Context(), cfg)
		if err != nil {
			t.Fatalf("open pool: %v", err)
		}
		t.Cleanup(db.Close)
	}
	c := clocktest.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	l, err := billing.New(billing.Config{DB: db, Clock: c.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &env{ledger: l, db: db, clock: c}
}

// user creates a user with the given balance and returns its id.
func (e *env) user(t *testing.T, name string, balance int64) int64 {
	t.Helper()
	var id int64
	if err := e.db.QueryRow(t.Context(),
		"INSERT INTO users (username, token_balance) VALUES ($1, $2) RETURNING id", name, balance).Scan(&id); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	return id
}

// model creates a model with the given cost per token (a decimal string) and returns its
// id.
func (e *env) model(t *testing.T, name, costPerToken string) int64 {
	t.Helper()
	var id int64
	if err := e.db.QueryRow(t.Context(),
		"INSERT INTO models (name, cost_per_token) VALUES ($1, $2::numeric) RETURNING id", name, costPerToken).Scan(&id); err != nil {
		t.Fatalf("create model %s: %v", name, err)
	}
	return id
}

// balance returns the user's balance, failing the test on error.
func (e *env) balance(t *testing.T, userID int64) int64 {
	t.Helper()
	b, err := e.ledger.Balance(t.Context(), userID)
	if err != nil {
		t.Fatalf("Balance(%d): %v", userID, err)
	}
	return b
}

// reserve reserves amount for the user, failing the test on error.
func (e *env) reserve(t *testing.T, userID int64, modelID *int64, amount int64) billing.Reservation {
	t.Helper()
	r, err := e.ledger.Reserve(t.Context(), userID, modelID, amount, "/v1/chat/completions", "req-1")
	if err != nil {
		t.Fatalf("Reserve(%d): %v", amount, err)
	}
	return r
}

// usageRow is a tokens_used row as the tests read it.
type usageRow struct {
	UserID                   int64
	ModelID                  *int64
	Tokens, Prompt, Complete int64
	Cost                     int64
	Endpoint                 string
	RequestID                *string
	ReservationID            *int64
	Metadata                 map[string]int64
	CreatedAt                time.Time
}

// usage reads the tokens_used row with the given id.
func (e *env) usage(t *testing.T, id int64) usageRow {
	t.Helper()
	var u usageRow
	if err := e.db.QueryRow(t.Context(), `
		SELECT user_id, model_id, tokens, prompt_tokens, completion_tokens, cost, endpoint,
			request_id, reservation_id, metadata, created_at
		FROM tokens_used WHERE id = $1`, id).Scan(&u.UserID, &u.ModelID, &u.Tokens, &u.Prompt, &u.Complete,
		&u.Cost, &u.Endpoint, &u.RequestID, &u.ReservationID, &u.Metadata, &u.CreatedAt); err != nil {
		t.Fatalf("read usage %d: %v", id, err)
	}
	return u
}

func ptr[T any](v T) *T { return &v }
