package store_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cyberdevstudio/cds/engine/store"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

// withParam returns connString with one more connection parameter, in URL or
// keyword/value form; a later parameter overrides an earlier one in both.
func withParam(connString, key, value string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		sep := "?"
		if strings.Contains(connString, "?") {
			sep = "&"
		}
		return connString + sep + url.QueryEscape(key) + "=" + url.QueryEscape(value)
	}
	return connString + " " + key + "='" + value + "'"
}

func TestOpen(t *testing.T) {
	base := storetest.NewURL(t)
	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		wantErr string // empty: Open succeeds
		pgCode  string // the server's SQLSTATE in the error, if any
		// needsPassword marks cases that only a server checking passwords can fail
		// (CDS_TEST_DATABASE_URL may name one that trusts local users).
		needsPassword bool
	}{
		{name: "valid", url: base},
		{name: "malformed", url: "postgres://%zz", wantErr: "parse database url"},
		{name: "wrong password", url: withParam(base, "password", "wrong"), wantErr: "password authentication failed", pgCode: "28P01", needsPassword: true},
		{name: "missing database", url: withParam(base, "dbname", "no_such_db"), wantErr: "does not exist", pgCode: "3D000"},
		// A socket directory nobody listens in: Open retries until its context ends.
		{name: "unreachable", url: withParam(base, "host", t.TempDir()), timeout: 500 * time.Millisecond, wantErr: "connect to database"},
	}
	cfg, err := pgconn.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsPassword && cfg.Password == "" {
				t.Skip("the test server does not ask for a password")
			}
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			s, err := store.Open(ctx, tt.url, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer s.Close()
				if err := s.Ping(ctx); err != nil {
					t.Errorf("Ping: %v", err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			var pgErr *pgconn.PgError
			if tt.pgCode != "" && (!errors.As(err, &pgErr) || pgErr.Code != tt.pgCode) {
				t.Errorf("error %v is not a PgError with code %s", err, tt.pgCode)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestPoolSize(t *testing.T) {
	base := storetest.NewURL(t)
	tests := []struct {
		name string
		url  string
		want int32
	}{
		{name: "default", url: base, want: int32(max(4, 4*runtime.GOMAXPROCS(0)))},
		{name: "from url", url: withParam(base, "pool_max_conns", "2"), want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.Open(t.Context(), tt.url, nil)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if got := s.Pool().Config().MaxConns; got != tt.want {
				t.Errorf("MaxConns = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestServerVersion(t *testing.T) {
	s := storetest.New(t)
	v, err := s.ServerVersion(t.Context())
	if err != nil {
		t.Fatalf("ServerVersion: %v", err)
	}
	var num int
	if err := s.Pool().QueryRow(t.Context(), "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		t.Fatal(err)
	}
	// server_version_num 150014 belongs to the version string "15.14 (...)".
	if want := strconv.Itoa(num/10000) + "."; !strings.HasPrefix(v, want) {
		t.Errorf("ServerVersion = %q, want it to start with %q", v, want)
	}
}

func TestClosedStore(t *testing.T) {
	s := storetest.New(t)
	s.Close()
	if err := s.Ping(t.Context()); err == nil {
		t.Error("Ping after Close succeeded")
	}
	if _, err := s.ServerVersion(t.Context()); err == nil {
		t.Error("ServerVersion after Close succeeded")
	}
	if _, err := s.MigrationVersion(t.Context()); err == nil {
		t.Error("MigrationVersion after Close succeeded")
	}
	if _, err := s.Migrate(t.Context()); err == nil {
		t.Error("Migrate after Close succeeded")
	}
	if _, err := s.UserByID(t.Context(), 1); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserByID after Close = %v, want a connection error", err)
	}
	if _, err := s.EnsureUser(t.Context(), "alice", "viewer"); err == nil {
		t.Error("EnsureUser after Close succeeded")
	}
}
