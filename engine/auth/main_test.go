package auth_test

import (
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cyberdevstudio/cds/engine/auth"
	"github.com/cyberdevstudio/cds/engine/clock/clocktest"
	"github.com/cyberdevstudio/cds/engine/store"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

// fastParams keep argon2id cheap in tests; the parameters are recorded in each hash, so
// the code path is the production one.
var fastParams = auth.Params{Memory: 1024, Iterations: 1, Threads: 1, KeyLen: 32, SaltLen: 16}

// testKey is the signing key of test services.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// strongPassword meets the policy.
const strongPassword = "Correct-Horse-9"

// env is a service on a fresh database with a settable clock.
type env struct {
	svc   *auth.Service
	st    *store.Store
	db    *pgxpool.Pool
	clock *clocktest.Clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := storetest.New(t)
	c := clocktest.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	svc, err := auth.New(auth.Config{DB: st.Pool(), SigningKey: testKey, Argon2: fastParams, Clock: c.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &env{svc: svc, st: st, db: st.Pool(), clock: c}
}

// user creates a user with strongPassword.
func (e *env) user(t *testing.T, name, role string) auth.User {
	t.Helper()
	u, err := e.svc.CreateUser(t.Context(), name, strongPassword, role, false)
	if err != nil {
		t.Fatalf("CreateUser %s: %v", name, err)
	}
	return u
}

// login logs name in with strongPassword from 10.0.0.1.
func (e *env) login(t *testing.T, name string) auth.Tokens {
	t.Helper()
	tok, err := e.svc.Login(t.Context(), name, strongPassword, "10.0.0.1", "test-agent")
	if err != nil {
		t.Fatalf("Login %s: %v", name, err)
	}
	return tok
}

// exec runs SQL on the test database.
func (e *env) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.db.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
