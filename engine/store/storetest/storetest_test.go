package storetest

import (
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestNewGivesIsolatedMigratedDatabases(t *testing.T) {
	a, b := New(t), New(t)
	if _, err := a.EnsureUser(t.Context(), "alice", "admin"); err != nil {
		t.Fatalf("EnsureUser in a migrated clone: %v", err)
	}
	var n int
	if err := b.Pool().QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("second database sees %d users of the first, want 0", n)
	}
	if v, err := b.MigrationVersion(t.Context()); err != nil || v == 0 {
		t.Errorf("MigrationVersion = %d, %v; want a migrated database", v, err)
	}
}

func TestNewURLDatabaseIsDroppedAfterTest(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		url := NewURL(t)
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatalf("connect to NewURL: %v", err)
		}
		// Left open on purpose: the drop must not wait for the test's sessions.
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "test_") {
			t.Errorf("database name %q, want a test_ prefix", name)
		}
	})
	srv, err := the.get()
	if err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := srv.admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestGetWithoutRun(t *testing.T) {
	var s server // what New sees in a package without TestMain
	_, err := s.get()
	if err == nil || !strings.Contains(err.Error(), "func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }") {
		t.Errorf("error = %v, want advice to add TestMain", err)
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, in, db, want string
	}{
		{"url with query", "postgres://u:p@/postgres?host=%2Frun&port=5432", "test_1", "postgres://u:p@/test_1?host=%2Frun&port=5432"},
		{"url without path", "postgresql://u@localhost:6472", "x", "postgresql://u@localhost:6472/x"},
		{"url without path with query", "postgres://localhost?sslmode=disable", "x", "postgres://localhost/x?sslmode=disable"},
		{"url escapes", "postgres://h/db", "a b/c", "postgres://h/a%20b%2Fc"},
		{"keyword", "host=/run user=u dbname=postgres", "t", "host=/run user=u dbname=postgres dbname='t'"},
		{"keyword quotes", "host=h", `it's`, `host=h dbname='it\'s'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withDatabase(tt.in, tt.db); got != tt.want {
				t.Errorf("withDatabase(%q, %q) = %q, want %q", tt.in, tt.db, got, tt.want)
			}
		})
	}
}

func TestWithPoolSize(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"url with query", "postgres://h/db?sslmode=disable", "postgres://h/db?sslmode=disable&pool_max_conns=4"},
		{"url", "postgres://h/db", "postgres://h/db?pool_max_conns=4"},
		{"keyword", "host=h", "host=h pool_max_conns=4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withPoolSize(tt.in, 4); got != tt.want {
				t.Errorf("withPoolSize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
