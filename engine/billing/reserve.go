package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// sweepLockID is the advisory lock that lets one replica at a time sweep expired
// reservations ("cdsbill" in ASCII), so that concurrent sweeps never lock users' rows in
// different orders.
const sweepLockID int64 = 0x636473_62696c6c

// sweepBatch bounds how many reservations one sweep transaction releases, so that a large
// backlog does not hold many row locks for long.
const sweepBatch = 1000

// Reservation is an amount taken from a user's balance for a call that has not been
// settled yet.
type Reservation struct {
	// ID identifies the reservation to Settle and Release.
	ID int64
	// UserID is the user whose balance holds the amount.
	UserID int64
	// ModelID is the metered model, nil when the call has none.
	ModelID *int64
	// Amount is what was taken from the balance, in credits.
	Amount int64
	// ExpiresAt is when the sweep releases the reservation if it is still open.
	ExpiresAt time.Time
}

// Usage is what a call really used, given to Settle.
type Usage struct {
	// PromptTokens and CompletionTokens are the tokens read and written; their sum is
	// recorded as tokens_used.tokens and must fit in 32 bits.
	PromptTokens, CompletionTokens int
	// Cost is the call's real cost in credits, usually Ledger.Cost of the tokens.
	Cost int64
}

// Charge is the outcome of Settle.
type Charge struct {
	// UsageID is the id of the tokens_used row written.
	UsageID int64
	// Cost is what the call was charged in credits (tokens_used.cost). It equals
	// Usage.Cost unless there was a shortfall, in which case it is the reserved amount.
	Cost int64
	// Refund is what went back to the balance: the reserved amount minus Cost, or zero.
	Refund int64
	// Shortfall is the part of Usage.Cost that was not charged because the balance could
	// not cover more than the reservation; zero normally.
	Shortfall int64
	// Balance is the user's balance after the settlement.
	Balance int64
}

// Reserve takes amount credits from the user's balance for a call about to run and
// records the reservation, which expires after the ledger's reservation TTL. Both happen
// in one statement, which refuses to take more than the balance: when the balance is
// too small, nothing changes and the error is an *InsufficientBalanceError (matching
// ErrInsufficientBalance) that says the balance and the cost. modelID may be nil;
// endpoint and requestID are copied to the usage record. A zero amount (a free model)
// is allowed, so that free calls are recorded too.
func (l *Ledger) Reserve(ctx context.Context, userID int64, modelID *int64, amount int64, endpoint, requestID string) (Reservation, error) {
	if amount < 0 {
		return Reservation{}, fmt.Errorf("reserve %d credits: %w", amount, ErrInvalid)
	}
	now := l.clock()
	r := Reservation{UserID: userID, ModelID: modelID, Amount: amount, ExpiresAt: now.Add(l.ttl)}
	err := l.db.QueryRow(ctx, `
		WITH debit AS (
			UPDATE users SET token_balance = token_balance - $2
			WHERE id = $1 AND token_balance >= $2
			RETURNING id
		)
		INSERT INTO token_reservations (user_id, model_id, amount, endpoint, request_id, created_at, expires_at)
		SELECT id, $3, $2, $4, $5, $6, $7 FROM debit
		RETURNING id`,
		userID, amount, modelID, endpoint, nullable(requestID), now, r.ExpiresAt).Scan(&r.ID)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return r, nil
	case errors.As(err, &pgErr) && pgErr.Code == "23503" && modelID != nil: // foreign_key_violation
		return Reservation{}, fmt.Errorf("reserve for model %d: %w", *modelID, ErrNotFound)
	case !errors.Is(err, pgx.ErrNoRows):
		return Reservation{}, fmt.Errorf("reserve credits: %w", err)
	}
	// No row: the user does not exist or cannot afford it. The balance read now is the
	// one that refused, or a later one; either way it is what the user sees.
	balance, err := l.Balance(ctx, userID)
	if err != nil {
		return Reservation{}, err
	}
	return Reservation{}, &InsufficientBalanceError{Balance: balance, Cost: amount}
}

// Settle closes an open reservation with the call's real usage, in one transaction: it
// refunds the reserved amount minus usage.Cost, writes the tokens_used row (user, model,
// prompt and completion tokens, cost, endpoint, request id, reservation) and marks the
// reservation settled.
//
// When usage.Cost exceeds the reservation (the estimate was too low), the difference is
// taken from the balance if the balance covers all of it. Otherwise only the reserved
// amount is charged, the balance is left as it is (never negative), and the uncovered
// difference is returned as Charge.Shortfall and recorded in the usage row's metadata as
// {"actual_cost": …, "shortfall": …}, so that admins can see undercharged calls.
//
// A reservation already settled, released or expired gives ErrNotOpen; one that does
// not exist, ErrNotFound.
func (l *Ledger) Settle(ctx context.Context, reservationID int64, usage Usage) (Charge, error) {
	if usage.PromptTokens < 0 || usage.CompletionTokens < 0 || usage.Cost < 0 ||
		int64(usage.PromptTokens)+int64(usage.CompletionTokens) > math.MaxInt32 {
		return Charge{}, fmt.Errorf("settle with usage %+v: %w", usage, ErrInvalid)
	}
	var c Charge
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		var (
			userID, amount int64
			modelID        *int64
			endpoint       string
			requestID      *string
			open           bool
		)
		err := tx.QueryRow(ctx, `
			SELECT user_id, model_id, amount, endpoint, request_id, settled_at IS NULL AND released_at IS NULL
			FROM token_reservations WHERE id = $1 FOR UPDATE`, reservationID).
			Scan(&userID, &modelID, &amount, &endpoint, &requestID, &open)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("reservation %d: %w", reservationID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("lock reservation: %w", err)
		}
		if !open {
			return fmt.Errorf("reservation %d: %w", reservationID, ErrNotOpen)
		}

		// delta is negative when the call cost more than was reserved; the WHERE clause
		// then takes the difference only if the balance covers it.
		c.Cost = usage.Cost
		delta := amount - usage.Cost
		err = tx.QueryRow(ctx, `
			UPDATE users SET token_balance = token_balance + $2
			WHERE id = $1 AND token_balance + $2 >= 0
			RETURNING token_balance`, userID, delta).Scan(&c.Balance)
		if errors.Is(err, pgx.ErrNoRows) {
			c.Cost, c.Shortfall = amount, -delta
			err = tx.QueryRow(ctx, "SELECT token_balance FROM users WHERE id = $1", userID).Scan(&c.Balance)
		}
		if err != nil {
			return fmt.Errorf("settle balance: %w", err)
		}
		c.Refund = max(0, amount-c.Cost)

		metadata := []byte("{}")
		if c.Shortfall > 0 {
			// Marshalling a map of strings to integers cannot fail.
			metadata, _ = json.Marshal(map[string]int64{"actual_cost": usage.Cost, "shortfall": c.Shortfall})
		}
		now := l.clock()
		if err := tx.QueryRow(ctx, `
			INSERT INTO tokens_used (user_id, model_id, tokens, prompt_tokens, completion_tokens, cost,
				endpoint, request_id, reservation_id, metadata, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			RETURNING id`,
			userID, modelID, usage.PromptTokens+usage.CompletionTokens, usage.PromptTokens,
			usage.CompletionTokens, c.Cost, endpoint, requestID, reservationID, metadata, now).Scan(&c.UsageID); err != nil {
			return fmt.Errorf("record usage: %w", err)
		}
		if _, err := tx.Exec(ctx, "UPDATE token_reservations SET settled_at = $2 WHERE id = $1", reservationID, now); err != nil {
			return fmt.Errorf("close reservation: %w", err)
		}
		return nil
	})
	if err != nil {
		return Charge{}, err
	}
	return c, nil
}

// Release closes an open reservation without usage and refunds all of it, for a call
// that failed before producing any token. A reservation already settled, released or
// expired gives ErrNotOpen; one that does not exist, ErrNotFound.
func (l *Ledger) Release(ctx context.Context, reservationID int64) error {
	// One statement: closing the reservation and refunding it cannot be separated, and
	// the row lock taken by the first UPDATE makes a concurrent Settle wait and then see
	// the reservation closed.
	tag, err := l.db.Exec(ctx, `
		WITH closed AS (
			UPDATE token_reservations SET released_at = $2
			WHERE id = $1 AND settled_at IS NULL AND released_at IS NULL
			RETURNING user_id, amount
		)
		UPDATE users u SET token_balance = u.token_balance + closed.amount
		FROM closed WHERE u.id = closed.user_id`, reservationID, l.clock())
	if err != nil {
		return fmt.Errorf("release reservation: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := l.db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM token_reservations WHERE id = $1)",
		reservationID).Scan(&exists); err != nil {
		return fmt.Errorf("look up reservation: %w", err)
	}
	if !exists {
		return fmt.Errorf("reservation %d: %w", reservationID, ErrNotFound)
	}
	return fmt.Errorf("reservation %d: %w", reservationID, ErrNotOpen)
}

// ExpireStale releases every open reservation whose expiry has passed, refunding it, and
// returns how many it released. Reservations being settled at that moment are skipped
// (their settlement wins). When another replica is sweeping, it returns 0 at once.
func (l *Ledger) ExpireStale(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := l.expireBatch(ctx)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}

// expireBatch releases up to sweepBatch expired reservations in one transaction.
func (l *Ledger) expireBatch(ctx context.Context) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", sweepLockID).Scan(&mine); err != nil {
			return fmt.Errorf("take sweep lock: %w", err)
		}
		if !mine {
			return nil
		}
		// Data-modifying CTEs always run to completion, so every refund is applied even
		// though the final SELECT reads only the count.
		err := tx.QueryRow(ctx, `
			WITH expired AS (
				UPDATE token_reservations t SET released_at = $1
				WHERE t.id IN (
					SELECT id FROM token_reservations
					WHERE settled_at IS NULL AND released_at IS NULL AND expires_at <= $1
					ORDER BY expires_at LIMIT $2
					FOR UPDATE SKIP LOCKED)
				RETURNING t.user_id, t.amount
			), per_user AS (
				SELECT user_id, sum(amount)::bigint AS amount FROM expired GROUP BY user_id
			), refund AS (
				UPDATE users u SET token_balance = u.token_balance + p.amount
				FROM per_user p WHERE u.id = p.user_id
			)
			SELECT count(*) FROM expired`, l.clock(), sweepBatch).Scan(&n)
		if err != nil {
			return fmt.Errorf("release expired reservations: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Run releases expired reservations at once (a previous process may have died mid-call)
// and then every sweep interval, until ctx ends; then it returns nil. A failed sweep is
// logged and retried at the next interval. The daemon runs it in a goroutine it owns.
func (l *Ledger) Run(ctx context.Context) error {
	ticker := time.NewTicker(l.sweep)
	defer ticker.Stop()
	for {
		n, err := l.ExpireStale(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			l.logger.Warn("billing: expiring stale reservations", "err", err)
		case n > 0:
			l.logger.Info("billing: released expired reservations", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// nullable maps "" to SQL NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
