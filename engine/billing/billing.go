// Package billing is the token billing ledger: users' balances, the reservations that
// metered calls (LLM inference) hold while they run, the usage records they leave, and
// usage reports.
//
// PostgreSQL is the only source of truth; the ledger keeps no state of its own, so any
// number of cdsd replicas may share a database.
//
// # Units
//
// users.token_balance is in credits, a whole number. models.cost_per_token is in credits
// per token and may be fractional (NUMERIC(12,6)); the cost of a call is rounded up to
// whole credits (see Ledger.Cost).
//
// # Flow of a metered call
//
//  1. Reserve the estimated cost. It is taken from the balance at once, in one statement
//     that refuses to go below zero, so the balance never goes negative whatever the
//     concurrency. Too little balance gives an *InsufficientBalanceError.
//  2. Settle with the real usage. One transaction refunds the unused part, writes the
//     tokens_used row and closes the reservation. Or Release, when the call failed
//     before producing anything, to refund all of it.
//  3. A reservation left open past its expiry (the process died mid-call) is released,
//     and refunded, by ExpireStale, which Run calls every minute.
package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultReservationTTL is how long a reservation stays open when Config.ReservationTTL
// is zero. It must exceed the longest metered call: a call settled after its reservation
// expired gets ErrNotOpen and its usage is not recorded.
const DefaultReservationTTL = 10 * time.Minute

// DefaultSweepInterval is how often Run releases expired reservations when
// Config.SweepInterval is zero.
const DefaultSweepInterval = time.Minute

// ErrInsufficientBalance reports that a user's balance does not cover a reservation. The
// error returned is an *InsufficientBalanceError, which matches it with errors.Is.
var ErrInsufficientBalance = errors.New("insufficient balance")

// ErrNotOpen reports that a reservation was already settled, released or expired.
var ErrNotOpen = errors.New("reservation is not open: already settled, released or expired")

// ErrNotFound reports that a user, model or reservation does not exist.
var ErrNotFound = errors.New("not found")

// ErrInvalid reports an argument the ledger does not accept, such as a negative amount.
var ErrInvalid = errors.New("invalid argument")

// InsufficientBalanceError says how much a user had and how much the call needed; the
// server turns it into HTTP 402 or JSON-RPC CodeInsufficientBalance with this message.
type InsufficientBalanceError struct {
	// Balance is the user's balance, in credits, when the reservation was refused.
	Balance int64
	// Cost is the amount, in credits, that the call needed.
	Cost int64
}

// Error says the balance and the cost.
func (e *InsufficientBalanceError) Error() string {
	return fmt.Sprintf("insufficient balance: the balance is %d credits, the call costs %d", e.Balance, e.Cost)
}

// Is makes errors.Is(err, ErrInsufficientBalance) true.
func (e *InsufficientBalanceError) Is(target error) bool { return target == ErrInsufficientBalance }

// Config configures a Ledger.
type Config struct {
	// DB is the pool of the migrated cdsd database. Required.
	DB *pgxpool.Pool
	// Clock gives the current time; nil means time.Now. Tests inject their own to expire
	// reservations without waiting.
	Clock func() time.Time
	// ReservationTTL is how long a reservation stays open; zero means
	// DefaultReservationTTL.
	ReservationTTL time.Duration
	// SweepInterval is how often Run releases expired reservations; zero means
	// DefaultSweepInterval.
	SweepInterval time.Duration
	// Logger receives the sweep's reports; nil discards them.
	Logger *slog.Logger
}

// Ledger reads and writes balances, reservations and usage. It is safe for concurrent
// use, and several Ledgers (one per replica) may share a database.
type Ledger struct {
	db     *pgxpool.Pool
	clock  func() time.Time
	ttl    time.Duration
	sweep  time.Duration
	logger *slog.Logger
}

// New returns a Ledger on cfg.DB.
func New(cfg Config) (*Ledger, error) {
	if cfg.DB == nil {
		return nil, fmt.Errorf("billing: no database: %w", ErrInvalid)
	}
	if cfg.ReservationTTL < 0 || cfg.SweepInterval < 0 {
		return nil, fmt.Errorf("billing: negative reservation TTL or sweep interval: %w", ErrInvalid)
	}
	l := &Ledger{
		db:     cfg.DB,
		clock:  cfg.Clock,
		ttl:    cfg.ReservationTTL,
		sweep:  cfg.SweepInterval,
		logger: cfg.Logger,
	}
	if l.clock == nil {
		l.clock = time.Now
	}
	if l.ttl == 0 {
		l.ttl = DefaultReservationTTL
	}
	if l.sweep == 0 {
		l.sweep = DefaultSweepInterval
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

// Cost returns what tokens tokens of the model cost, in credits: tokens ×
// models.cost_per_token, rounded up to a whole credit. The product is computed in SQL
// NUMERIC, so no precision is lost to floating point. A model that does not exist gives
// ErrNotFound.
func (l *Ledger) Cost(ctx context.Context, modelID int64, tokens int64) (int64, error) {
	if tokens < 0 {
		return 0, fmt.Errorf("cost of %d tokens: %w", tokens, ErrInvalid)
	}
	var cost int64
	err := l.db.QueryRow(ctx,
		"SELECT ceil($2::numeric * cost_per_token)::bigint FROM models WHERE id = $1",
		modelID, tokens).Scan(&cost)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("model %d: %w", modelID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("compute cost: %w", err)
	}
	return cost, nil
}

// Balance returns the user's balance in credits: what is left after open reservations.
// A user that does not exist gives ErrNotFound.
func (l *Ledger) Balance(ctx context.Context, userID int64) (int64, error) {
	var balance int64
	err := l.db.QueryRow(ctx, "SELECT token_balance FROM users WHERE id = $1", userID).Scan(&balance)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("user %d: %w", userID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("read balance: %w", err)
	}
	return balance, nil
}
