// Package store is cdsd's PostgreSQL store: the connection pool, the schema migrations
// embedded in the migrations package, and the queries of the domain.
//
// Tests use a real server through the storetest package.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound reports that a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// ErrInvalid reports a value the schema does not accept, such as an unknown role or a
// malformed username.
var ErrInvalid = errors.New("invalid value")

// connectTimeout bounds how long Open waits for the server to answer, since cdsd may
// start before its database does.
const connectTimeout = 10 * time.Second

// Store is a pool of connections to one PostgreSQL database. It is safe for concurrent
// use.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// Open connects to the database at url (a postgres:// URL or a keyword/value string) and
// waits until the server answers, retrying for up to 10 seconds or until ctx is done.
// Errors that retrying cannot cure, such as a wrong password or a missing database, are
// returned at once. A pool_max_conns in url is kept; otherwise the pool holds up to
// max(4, 4×GOMAXPROCS) connections. logger may be nil.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// Queries mostly wait on I/O, so more connections than cores pay off.
		cfg.MaxConns = int32(max(4, 4*runtime.GOMAXPROCS(0)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create connection pool: %w", err)
	}
	s := &Store{pool: pool, logger: logger}
	if err := s.waitReachable(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// waitReachable pings until the server answers, backing off from 100 ms to 1 s.
func (s *Store) waitReachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	delay := 100 * time.Millisecond
	var last error
	for {
		err := s.pool.Ping(ctx)
		if err == nil {
			return nil
		}
		if permanent(err) {
			return fmt.Errorf("connect to database: %w", err)
		}
		// An error caused by our own deadline says less than the one before it.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		s.logger.Debug("database not reachable yet; retrying", "err", err, "delay", delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to database: %w", last)
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// permanent reports whether a connection error will not go away by waiting: the server
// rejected the credentials (class 28) or the database does not exist (3D000).
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000")
}

// Pool returns the underlying connection pool, for packages that run their own queries.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// ServerVersion returns the server's version string, such as "15.14 (Debian 15.14-0+deb12u1)".
func (s *Store) ServerVersion(ctx context.Context) (string, error) {
	var v string
	if err := s.pool.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "", fmt.Errorf("query server version: %w", err)
	}
	return v, nil
}

// Close closes every connection of the pool, waiting for those in use to be released.
func (s *Store) Close() { s.pool.Close() }
