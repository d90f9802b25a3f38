// Package storetest gives tests a real, migrated PostgreSQL database of their own.
//
// One PostgreSQL server serves a whole test binary: the package's TestMain calls Run,
//
//	func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }
//
// and each test calls New (a *store.Store) or NewURL (a connection URL, to start a real
// cdsd against). Each gets a fresh database cloned from a template that was migrated
// once, and dropped when the test ends, so tests may run in parallel and never see each
// other's rows.
//
// The server is a private cluster (package pgcluster) in a temporary directory, started
// by the first New or NewURL and removed when Run returns; a binary whose tests never ask
// for a database starts none. When CDS_TEST_DATABASE_URL is set, its server is used
// instead; the URL must be a superuser's (the tests create and drop databases). On such a
// shared server, whose test binaries run concurrently, each binary makes its own template
// cds_template_HEX and drops it at the end; the private cluster's template is cds_template.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cyberdevstudio/cds/engine/pgcluster"
	"github.com/cyberdevstudio/cds/engine/store"
)

// EnvURL names the environment variable with a superuser URL of an existing server to
// use instead of a private cluster.
const EnvURL = "CDS_TEST_DATABASE_URL"

// setupTimeout bounds starting the cluster and migrating the template (initdb included).
const setupTimeout = 2 * time.Minute

// server is the test binary's database server, set up on first use.
type server struct {
	mu      sync.Mutex
	running bool // inside Run
	ready   bool // set up (or failed: err)
	err     error

	logger   *slog.Logger
	dir      string             // temporary directory of the private cluster
	cluster  *pgcluster.Cluster // nil with CDS_TEST_DATABASE_URL
	adminURL string             // a superuser URL of the maintenance database
	admin    *pgxpool.Pool
	template string
	shared   bool // the server is CDS_TEST_DATABASE_URL's, so the template must be dropped
}

// the is the only server of the test binary.
var the server

// Run runs the tests of m with a database server available to New and NewURL, then stops
// the server and returns the exit code for os.Exit. A failure to clean up turns a passing
// run into a failing one, since it leaves processes or files behind.
func Run(m *testing.M) int {
	the.mu.Lock()
	the.running = true
	// Warnings only: the tests' own output is what a reader wants to see.
	the.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	the.mu.Unlock()

	code := m.Run()

	the.mu.Lock()
	defer the.mu.Unlock()
	the.running = false
	if err := the.teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// New returns a Store on a new database cloned from the migrated template. The store is
// closed and the database dropped when the test ends.
func New(t testing.TB) *store.Store {
	t.Helper()
	url := NewURL(t)
	s, err := store.Open(t.Context(), url, the.logger)
	if err != nil {
		t.Fatalf("storetest: open test database: %v", err)
	}
	t.Cleanup(s.Close) // runs before NewURL's cleanup drops the database.
	return s
}

// NewURL creates a new database cloned from the migrated template and returns a superuser
// URL of it. The database is dropped, even with sessions still connected, when the test
// ends.
func NewURL(t testing.TB) string {
	t.Helper()
	srv, err := the.get()
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	name := "test_" + randomHex(8)
	if _, err := srv.admin.Exec(t.Context(),
		"CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{srv.template}.Sanitize()); err != nil {
		t.Fatalf("storetest: create test database: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("storetest: drop test database %s: %v", name, err)
		}
	})
	return withDatabase(srv.adminURL, name)
}

// get returns the set-up server, setting it up on the first call. A failed setup is not
// retried: every test that asks gets the same error.
func (s *server) get() (*server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil, fmt.Errorf("no database server: the package's tests must call storetest.Run; " +
			"add `func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }`")
	}
	if !s.ready {
		s.ready = true
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		s.err = s.setup(ctx)
	}
	return s, s.err
}

// setup starts the private cluster (or takes CDS_TEST_DATABASE_URL's server) and creates
// the migrated template database.
func (s *server) setup(ctx context.Context) error {
	s.adminURL = os.Getenv(EnvURL)
	s.template = "cds_template"
	if s.adminURL != "" {
		s.shared = true
		s.template = "cds_template_" + randomHex(4)
	} else {
		dir, err := os.MkdirTemp("", "cds-storetest-")
		if err != nil {
			return fmt.Errorf("create cluster dir: %w", err)
		}
		s.dir = dir
		// When tests run as root the cluster runs as another user, who must be able to
		// pass through this directory to reach the cluster in it.
		if err := os.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("open cluster dir: %w", err)
		}
		s.cluster, err = pgcluster.Start(ctx, pgcluster.Options{
			Dir:       filepath.Join(dir, "pg"),
			Logger:    s.logger,
			Ephemeral: true,
		})
		if err != nil {
			return fmt.Errorf("start PostgreSQL: %w", err)
		}
		s.adminURL = s.cluster.ConnString("postgres")
	}

	// A few connections suffice: the pool only creates and drops databases.
	admin, err := pgxpool.New(ctx, withPoolSize(s.adminURL, 4))
	if err != nil {
		return fmt.Errorf("connect to the test server: %w", err)
	}
	s.admin = admin
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.template}.Sanitize()); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	tmpl, err := store.Open(ctx, withDatabase(s.adminURL, s.template), s.logger)
	if err != nil {
		return fmt.Errorf("open template database: %w", err)
	}
	_, err = tmpl.Migrate(ctx)
	// Cloning needs the template without sessions.
	tmpl.Close()
	if err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	// Marked as a template that takes no connections, nobody can change it by accident.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{s.template}.Sanitize()+
		" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("mark template database: %w", err)
	}
	return nil
}

// teardown drops a shared server's template, stops the private cluster and removes its
// directory.
func (s *server) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []string
	if s.admin != nil {
		if s.shared {
			t := pgx.Identifier{s.template}.Sanitize()
			if _, err := s.admin.Exec(ctx, "ALTER DATABASE "+t+" WITH IS_TEMPLATE false"); err != nil {
				errs = append(errs, fmt.Sprintf("unmark template database: %v", err))
			} else if _, err := s.admin.Exec(ctx, "DROP DATABASE "+t+" WITH (FORCE)"); err != nil {
				errs = append(errs, fmt.Sprintf("drop template database: %v", err))
			}
		}
		s.admin.Close()
	}
	if s.cluster != nil {
		if err := s.cluster.Stop(ctx); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Sprintf("remove cluster dir: %v", err))
		}
	}
	s.ready, s.err, s.dir, s.cluster, s.adminURL, s.admin, s.template, s.shared = false, nil, "", nil, "", nil, "", false
	if len(errs) > 0 {
		return fmt.Errorf("clean up: %s", strings.Join(errs, "; "))
	}
	return nil
}

// withDatabase returns connString (a postgres:// URL or a keyword/value string) with its
// database replaced by db.
func withDatabase(connString, db string) string {
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		rest, ok := strings.CutPrefix(connString, scheme)
		if !ok {
			continue
		}
		// As in libpq, only a '/' ends the host part; the path runs to the query.
		query := ""
		if i := strings.IndexByte(rest, '?'); i >= 0 {
			rest, query = rest[:i], rest[i:]
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		return scheme + rest + "/" + pathEscape(db) + query
	}
	return connString + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db) + "'"
}

// withPoolSize returns connString with a pool_max_conns setting of n.
func withPoolSize(connString string, n int) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		sep := "?"
		if strings.Contains(connString, "?") {
			sep = "&"
		}
		return fmt.Sprintf("%s%spool_max_conns=%d", connString, sep, n)
	}
	return fmt.Sprintf("%s pool_max_conns=%d", connString, n)
}

// pathEscape percent-encodes everything in a database name but unreserved characters.
func pathEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// randomHex returns n random bytes in hex, for names that must not collide.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux.
	return hex.EncodeToString(b)
}
