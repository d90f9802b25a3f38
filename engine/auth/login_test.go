package auth_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/auth"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	e.user(t, "mallory", auth.RoleViewer)
	e.exec(t, "UPDATE users SET disabled_at = now() WHERE username = 'mallory'")
	if _, err := e.st.EnsureUser(t.Context(), "dev", auth.RoleAdmin); err != nil { // no password
		t.Fatal(err)
	}
	tests := []struct {
		name, username, password string
		want                     error
	}{
		{"ok", "alice", strongPassword, nil},
		{"username case ignored", "ALICE", strongPassword, nil},
		{"wrong password", "alice", "Wrong-Horse-99", auth.ErrInvalidCredentials},
		{"unknown user", "bob", strongPassword, auth.ErrInvalidCredentials},
		{"malformed username", "bob\x00; DROP", strongPassword, auth.ErrInvalidCredentials},
		{"password-less user", "dev", "", auth.ErrInvalidCredentials},
		{"disabled, right password", "mallory", strongPassword, auth.ErrUserDisabled},
		{"disabled, wrong password", "mallory", "Wrong-Horse-99", auth.ErrInvalidCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := e.svc.Login(t.Context(), tc.username, tc.password, "10.0.0.9", "ua")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Login = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				// Unknown user and wrong password must be indistinguishable.
				if tc.want == auth.ErrInvalidCredentials && err.Error() != auth.ErrInvalidCredentials.Error() {
					t.Errorf("message %q differs from ErrInvalidCredentials'", err)
				}
				if strings.Contains(err.Error(), tc.password) && tc.password != "" {
					t.Errorf("error %q contains the password", err)
				}
				return
			}
			if tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || tok.AccessToken == "" ||
				tok.RefreshToken == "" || tok.SessionID == "" || tok.MustChangePassword {
				t.Errorf("tokens = %+v", tok)
			}
			p, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken)
			if err != nil || p.Username != "alice" || p.Role != auth.RoleDeveloper || p.SessionID != tok.SessionID {
				t.Errorf("VerifyAccessToken = %+v, %v", p, err)
			}
		})
	}
}

// fail makes one failed login of username from ip.
func (e *env) fail(t *testing.T, username, ip string) {
	t.Helper()
	_, err := e.svc.Login(t.Context(), username, "Wrong-Horse-99", ip, "ua")
	if !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("failed login of %s from %s = %v, want ErrInvalidCredentials", username, ip, err)
	}
}

func TestLockout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// run makes attempts and returns the username and IP whose right-password login
		// is then checked, and whether it must be locked.
		run func(t *testing.T, e *env) (user, ip string, locked bool)
	}{
		{"per account, from many IPs", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 5 {
				e.fail(t, "alice", fmt.Sprintf("10.1.0.%d", i))
			}
			return "alice", "10.2.0.1", true
		}},
		{"per account, unknown-case username", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 5 {
				e.fail(t, "ALICE", fmt.Sprintf("10.1.0.%d", i))
			}
			return "alice", "10.2.0.1", true
		}},
		{"four failures do not lock", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 4 {
				e.fail(t, "alice", fmt.Sprintf("10.1.0.%d", i))
			}
			return "alice", "10.2.0.1", false
		}},
		{"per IP, across accounts", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 5 {
				e.fail(t, fmt.Sprintf("nobody%d", i), "10.3.0.1")
			}
			return "alice", "10.3.0.1", true
		}},
		{"per IP lock does not lock the account elsewhere", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 5 {
				e.fail(t, fmt.Sprintf("nobody%d", i), "10.3.0.1")
			}
			return "alice", "10.4.0.1", false
		}},
		{"a success does not reset the IP counter", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 4 {
				e.fail(t, fmt.Sprintf("nobody%d", i), "10.3.0.1")
			}
			if _, err := e.svc.Login(t.Context(), "bob", strongPassword, "10.3.0.1", "ua"); err != nil {
				t.Fatal(err)
			}
			e.fail(t, "nobody9", "10.3.0.1")
			return "alice", "10.3.0.1", true
		}},
		{"a success resets the account counter", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 4 {
				e.fail(t, "alice", fmt.Sprintf("10.1.0.%d", i))
			}
			if _, err := e.svc.Login(t.Context(), "alice", strongPassword, "10.5.0.1", "ua"); err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				e.fail(t, "alice", fmt.Sprintf("10.6.0.%d", i))
			}
			return "alice", "10.2.0.1", false
		}},
		{"failures spread beyond the window do not lock", func(t *testing.T, e *env) (string, string, bool) {
			for i := range 4 {
				e.fail(t, "alice", fmt.Sprintf("10.1.0.%d", i))
			}
			e.clock.Advance(16 * time.Minute)
			e.fail(t, "alice", "10.1.0.9")
			return "alice", "10.2.0.1", false
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user(t, "alice", auth.RoleDeveloper)
			e.user(t, "bob", auth.RoleDeveloper)
			user, ip, locked := tc.run(t, e)
			_, err := e.svc.Login(t.Context(), user, strongPassword, ip, "ua")
			if !locked {
				if err != nil {
					t.Fatalf("Login = %v, want success", err)
				}
				return
			}
			var le *auth.LockedError
			if !errors.As(err, &le) || !errors.Is(err, auth.ErrLocked) {
				t.Fatalf("Login with the right password = %v, want *LockedError", err)
			}
			want := e.clock.Now().Add(15 * time.Minute)
			if !le.Until.Equal(want) {
				t.Errorf("Until = %v, want %v", le.Until, want)
			}
			if !strings.Contains(err.Error(), want.Format(time.RFC3339)) {
				t.Errorf("message %q does not say when to retry", err)
			}
		})
	}
}

func TestLockoutExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	for i := range 5 {
		e.fail(t, "alice", fmt.Sprintf("10.1.0.%d", i))
	}
	start := e.clock.Now()
	// Attempts while locked are refused and do not extend the lock.
	for _, d := range []time.Duration{time.Minute, 10 * time.Minute, 14*time.Minute + 59*time.Second} {
		e.clock.Advance(d - e.clock.Now().Sub(start))
		for _, pw := range []string{strongPassword, "Wrong-Horse-99"} {
			if _, err := e.svc.Login(t.Context(), "alice", pw, "10.2.0.1", "ua"); !errors.Is(err, auth.ErrLocked) {
				t.Fatalf("after %v: Login = %v, want locked", d, err)
			}
		}
	}
	e.clock.Advance(time.Second)
	if _, err := e.svc.Login(t.Context(), "alice", strongPassword, "10.2.0.1", "ua"); err != nil {
		t.Fatalf("after the lock: Login = %v", err)
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	e.fail(t, "alice", "10.0.0.1")
	tok := e.login(t, "alice")
	p, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Logout(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	count := func(table string) int {
		var n int
		if err := e.db.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := e.svc.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	if count("login_attempts") != 2 || count("revoked_tokens") != 1 || count("sessions") != 1 {
		t.Fatal("Prune removed current rows")
	}
	e.clock.Advance(9 * 24 * time.Hour)
	// Logins prune now and then on their own.
	for range 100 {
		_, _ = e.svc.Login(t.Context(), "-", "x", "10.0.0.1", "ua")
	}
	for _, table := range []string{"login_attempts", "revoked_tokens", "sessions"} {
		if n := count(table); n != 0 {
			t.Errorf("%s has %d rows after pruning", table, n)
		}
	}
}

// TestUnknownUsersCostTheSame checks, without timing anything, what makes a login for
// an unknown user take as long as one with a wrong password: the dummy hash it
// verifies has exactly the parameters of a real user's hash, and both answer the
// same error.
func TestUnknownUsersCostTheSame(t *testing.T) {
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	var stored string
	if err := e.db.QueryRow(t.Context(), `SELECT password_hash FROM users WHERE username = 'alice'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	real, err := auth.HashParams(stored)
	if err != nil {
		t.Fatal(err)
	}
	dummy, err := auth.HashParams(auth.DummyHash(e.svc))
	if err != nil {
		t.Fatal(err)
	}
	if real != dummy {
		t.Fatalf("dummy hash params %+v differ from a user's %+v", dummy, real)
	}
	_, errUnknown := e.svc.Login(t.Context(), "nobody", "Wrong-Horse-99", "10.1.1.1", "ua")
	_, errWrong := e.svc.Login(t.Context(), "alice", "Wrong-Horse-99", "10.1.1.2", "ua")
	if errUnknown == nil || errUnknown.Error() != errWrong.Error() {
		t.Fatalf("unknown user: %v; wrong password: %v", errUnknown, errWrong)
	}
}
