package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Subscriber receives the notifications of one channel for an in-memory cache that
// must follow the database.
type Subscriber interface {
	// Reset is called with true once LISTEN is in effect (after every
	// reconnect: changes made while disconnected were never seen, so the cache
	// must start empty) and with false when notifications stop arriving.
	Reset(listening bool)
	// Notify is called for every notification on the channel.
	Notify(payload string)
}

// Listener liveness: after probeEvery the listener sends itself a notification and
// must see it within probeTimeout. This catches a connection that died silently (no
// TCP reset) and a pooler that drops notifications, either of which would leave a
// cache on while deaf to other processes' writes.
const (
	probeEvery   = 15 * time.Second
	probeTimeout = 5 * time.Second
	probePayload = "cds-listener-probe"
)

// Listen holds a LISTEN connection on channel (a connection of its own, outside the
// pool), reconnecting with backoff when it is lost, and passes what arrives to sub.
// It returns when ctx ends; sub is then Reset(false).
func Listen(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, channel string, sub Subscriber) error {
	defer sub.Reset(false)
	backoff := 100 * time.Millisecond
	for {
		err := listenOnce(ctx, pool, channel, sub)
		sub.Reset(false)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("database notifications lost; cache off until reconnected", "channel", channel, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func listenOnce(ctx context.Context, pool *pgxpool.Pool, channel string, sub Subscriber) error {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	sub.Reset(true)
	for {
		if err := dispatch(ctx, conn, sub, probeEvery, false); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", channel, probePayload); err != nil {
			return fmt.Errorf("send listener probe: %w", err)
		}
		if err := dispatch(ctx, conn, sub, probeTimeout, true); err != nil {
			return err
		}
	}
}

// dispatch passes notifications on for up to wait. With untilProbe it returns as
// soon as the probe came back, and fails if it did not within wait.
func dispatch(ctx context.Context, conn *pgx.Conn, sub Subscriber, wait time.Duration, untilProbe bool) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(wctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && untilProbe:
			return fmt.Errorf("listener probe not delivered within %s", wait)
		case errors.Is(err, context.DeadlineExceeded):
			return nil
		case err != nil:
			return fmt.Errorf("wait for notification: %w", err)
		case n.Payload == probePayload:
			if untilProbe {
				return nil
			}
		default:
			sub.Notify(n.Payload)
		}
	}
}
