package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cyberdevstudio/cds/engine/auth"
)

func TestCreateUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	tests := []struct {
		name, username, password, role string
		want                           error
	}{
		{"ok", "bob", strongPassword, auth.RoleViewer, nil},
		{"taken, other case", "ALICE", strongPassword, auth.RoleViewer, auth.ErrUserExists},
		{"bad username", "bad name", strongPassword, auth.RoleViewer, auth.ErrInvalidUsername},
		{"bad role", "carol", strongPassword, "root", auth.ErrInvalidRole},
		{"weak password", "carol", "password", auth.RoleViewer, auth.ErrWeakPassword},
		{"password is the username", "Str0ng-Passw0rd", "Str0ng-Passw0rd", auth.RoleViewer, auth.ErrWeakPassword},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := e.svc.CreateUser(t.Context(), tc.username, tc.password, tc.role, true)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CreateUser = %+v, %v; want %v", u, err, tc.want)
			}
			if tc.want != nil {
				return
			}
			got, err := e.svc.User(t.Context(), u.ID)
			if err != nil || got != u || got.Username != tc.username || got.Role != tc.role || !got.MustChangePassword ||
				got.Disabled || !got.CreatedAt.Equal(e.clock.Now()) {
				t.Errorf("User = %+v, %v; CreateUser gave %+v", got, err, u)
			}
		})
	}
	if _, err := e.svc.User(t.Context(), 999); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("User(999) = %v", err)
	}
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, err := e.svc.CreateUser(t.Context(), "alice", strongPassword, auth.RoleDeveloper, true)
	if err != nil {
		t.Fatal(err)
	}
	tok := e.login(t, "alice")
	if !tok.MustChangePassword {
		t.Error("login does not say the password must be changed")
	}
	tests := []struct {
		name, old, new string
		want           error
	}{
		{"wrong old password", "Wrong-Horse-99", "Fresh-Horse-11", auth.ErrInvalidCredentials},
		{"weak", strongPassword, "weak", auth.ErrWeakPassword},
		{"equals username", strongPassword, "Alice", auth.ErrWeakPassword},
		{"same as current", strongPassword, strongPassword, auth.ErrPasswordReused},
		{"ok", strongPassword, "Fresh-Horse-11", nil},
		{"back to the previous", "Fresh-Horse-11", strongPassword, auth.ErrPasswordReused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.svc.ChangePassword(t.Context(), u.ID, tc.old, tc.new); !errors.Is(err, tc.want) {
				t.Fatalf("ChangePassword = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("effects", func(t *testing.T) {
		got, _ := e.svc.User(t.Context(), u.ID)
		if got.MustChangePassword {
			t.Error("must_change_password not cleared")
		}
		if _, err := e.svc.Login(t.Context(), "alice", strongPassword, "10.0.0.1", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("old password still logs in: %v", err)
		}
		if tok, err := e.svc.Login(t.Context(), "alice", "Fresh-Horse-11", "10.0.0.1", ""); err != nil || tok.MustChangePassword {
			t.Errorf("new password: %+v, %v", tok, err)
		}
		// The session of the change stays open.
		if _, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken); err != nil {
			t.Errorf("session after the change: %v", err)
		}
	})
	t.Run("history of five", func(t *testing.T) {
		// Current: Fresh-Horse-11. After four more changes the last five are
		// Fresh-Horse-11 and History-1..4; the original is out of the window.
		cur := "Fresh-Horse-11"
		for i := 1; i <= 4; i++ {
			next := fmt.Sprintf("History-Pw-%d", i)
			if err := e.svc.ChangePassword(t.Context(), u.ID, cur, next); err != nil {
				t.Fatalf("change %d: %v", i, err)
			}
			cur = next
		}
		if err := e.svc.ChangePassword(t.Context(), u.ID, cur, "Fresh-Horse-11"); !errors.Is(err, auth.ErrPasswordReused) {
			t.Errorf("fifth-last password = %v, want ErrPasswordReused", err)
		}
		if err := e.svc.ChangePassword(t.Context(), u.ID, cur, strongPassword); err != nil {
			t.Errorf("sixth-last password = %v, want accepted", err)
		}
		var n int
		_ = e.db.QueryRow(t.Context(), "SELECT count(*) FROM password_history WHERE user_id = $1", u.ID).Scan(&n)
		if n != 5 {
			t.Errorf("%d hashes kept in the history, want 5", n)
		}
	})
	t.Run("user without password", func(t *testing.T) {
		dev, _ := e.st.EnsureUser(t.Context(), "dev", auth.RoleAdmin)
		if err := e.svc.ChangePassword(t.Context(), dev.ID, "", "Fresh-Horse-11"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("= %v", err)
		}
	})
	t.Run("disabled user", func(t *testing.T) {
		e.exec(t, "UPDATE users SET disabled_at = now() WHERE id = $1", u.ID)
		if err := e.svc.ChangePassword(t.Context(), u.ID, strongPassword, "Other-Horse-12"); !errors.Is(err, auth.ErrUserDisabled) {
			t.Errorf("= %v", err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if err := e.svc.ChangePassword(t.Context(), 999, strongPassword, "Other-Horse-12"); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("= %v", err)
		}
	})
}

func TestSetPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	tests := []struct {
		name     string
		user     int64
		password string
		want     error
	}{
		{"unknown user", 999, "Reset-Horse-12", auth.ErrNotFound},
		{"weak", u.ID, "short", auth.ErrWeakPassword},
		{"ok", u.ID, "Reset-Horse-12", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.svc.SetPassword(t.Context(), tc.user, tc.password, true); !errors.Is(err, tc.want) {
				t.Fatalf("SetPassword = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := e.svc.Refresh(t.Context(), tok.RefreshToken, "", ""); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("session survived the reset: %v", err)
	}
	next, err := e.svc.Login(t.Context(), "alice", "Reset-Horse-12", "10.0.0.1", "")
	if err != nil || !next.MustChangePassword {
		t.Errorf("login after reset = %+v, %v; want must change", next, err)
	}
	p, _ := e.svc.VerifyAccessToken(t.Context(), next.AccessToken)
	if !p.MustChangePassword {
		t.Error("principal does not say the password must be changed")
	}
}

func TestRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	steps := []struct {
		name     string
		mode     string // set first unless empty
		setErr   error
		username string
		want     error
	}{
		{"closed by default", "", nil, "alice", auth.ErrRegistrationClosed},
		{"invite", auth.RegistrationInvite, nil, "alice", auth.ErrRegistrationClosed},
		{"unknown mode", "sometimes", auth.ErrInvalidMode, "alice", auth.ErrRegistrationClosed},
		{"open", auth.RegistrationOpen, nil, "alice", nil},
		{"open, name taken", "", nil, "Alice", auth.ErrUserExists},
		{"closed again", auth.RegistrationClosed, nil, "bob", auth.ErrRegistrationClosed},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mode != "" {
				if err := e.svc.SetRegistrationMode(t.Context(), tc.mode); !errors.Is(err, tc.setErr) {
					t.Fatalf("SetRegistrationMode = %v, want %v", err, tc.setErr)
				}
				if got, _ := e.svc.RegistrationMode(t.Context()); tc.setErr == nil && got != tc.mode {
					t.Errorf("RegistrationMode = %q, want %q", got, tc.mode)
				}
			}
			u, err := e.svc.Register(t.Context(), tc.username, strongPassword, "")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Register = %+v, %v; want %v", u, err, tc.want)
			}
			if err == nil && (u.Role != auth.RoleDeveloper || u.MustChangePassword) {
				t.Errorf("registered %+v, want a developer", u)
			}
		})
	}
	t.Run("missing setting means closed", func(t *testing.T) {
		e.exec(t, "DELETE FROM settings")
		if m, err := e.svc.RegistrationMode(t.Context()); err != nil || m != auth.RegistrationClosed {
			t.Errorf("RegistrationMode = %q, %v", m, err)
		}
	})
}

func TestBootstrap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(t *testing.T, e *env)
		env      string
		created  bool
		mustChg  bool
		wantErr  error
		anyError bool
	}{
		{"fresh, env password", nil, "Automation-Pw-1", true, false, nil, false},
		{"fresh, random password", nil, "", true, true, nil, false},
		{"weak env password", nil, "admin", false, false, auth.ErrWeakPassword, false},
		{"password-less dev admin ignored", func(t *testing.T, e *env) {
			if _, err := e.st.EnsureUser(t.Context(), "dev", auth.RoleAdmin); err != nil {
				t.Fatal(err)
			}
		}, "", true, true, nil, false},
		{"developers with passwords do not count", func(t *testing.T, e *env) {
			e.user(t, "alice", auth.RoleDeveloper)
		}, "", true, true, nil, false},
		{"password-less user named admin is taken over", func(t *testing.T, e *env) {
			if _, err := e.st.EnsureUser(t.Context(), "Admin", auth.RoleViewer); err != nil {
				t.Fatal(err)
			}
		}, "Automation-Pw-1", true, false, nil, false},
		{"an admin exists", func(t *testing.T, e *env) {
			e.user(t, "root", auth.RoleAdmin)
		}, "Automation-Pw-1", false, false, nil, false},
		{"admin exists as a developer with a password", func(t *testing.T, e *env) {
			e.user(t, "admin", auth.RoleDeveloper)
		}, "", false, false, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			pw, created, err := e.svc.Bootstrap(t.Context(), tc.env)
			if tc.anyError {
				if err == nil {
					t.Fatal("Bootstrap succeeded, want an error")
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || created != tc.created {
				t.Fatalf("Bootstrap = %v, %v; want created %v, error %v", created, err, tc.created, tc.wantErr)
			}
			if !created {
				if pw != "" {
					t.Error("a password was returned without creating anything")
				}
				return
			}
			if tc.env != "" && pw != tc.env {
				t.Errorf("password = %q, want the env's", pw)
			}
			tok, err := e.svc.Login(t.Context(), "admin", pw, "127.0.0.1", "")
			if err != nil || tok.MustChangePassword != tc.mustChg {
				t.Fatalf("admin login = %+v, %v; want must change %v", tok, err, tc.mustChg)
			}
			p, _ := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken)
			if p.Role != auth.RoleAdmin {
				t.Errorf("role = %q", p.Role)
			}
			// Idempotent.
			if pw2, again, err := e.svc.Bootstrap(t.Context(), tc.env); err != nil || again || pw2 != "" {
				t.Errorf("second Bootstrap = %q, %v, %v; want nothing done", pw2, again, err)
			}
		})
	}
}

func TestBootstrapConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 4
	var wg sync.WaitGroup
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, created[i], errs[i] = e.svc.Bootstrap(t.Context(), "") })
	}
	wg.Wait()
	count := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Bootstrap: %v", errs[i])
		}
		if created[i] {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d bootstraps created an admin, want 1", count)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name string
		cfg  auth.Config
	}{
		{"no database", auth.Config{SigningKey: testKey}},
		{"short key", auth.Config{DB: e.db, SigningKey: []byte("short")}},
		{"bad params", auth.Config{DB: e.db, SigningKey: testKey, Argon2: auth.Params{Memory: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.New(tc.cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		svc, err := auth.New(auth.Config{DB: e.db, SigningKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.CreateUser(t.Context(), "alice", strongPassword, auth.RoleViewer, false); err != nil {
			t.Fatal(err)
		}
		tok, err := svc.Login(t.Context(), "alice", strongPassword, "10.0.0.1", "")
		if err != nil || tok.ExpiresIn != 900 {
			t.Fatalf("Login = %+v, %v", tok, err)
		}
		var hash string
		_ = e.db.QueryRow(t.Context(), "SELECT password_hash FROM users").Scan(&hash)
		if want := "$argon2id$v=19$m=19456,t=2,p=1$"; hash[:len(want)] != want {
			t.Errorf("default hash %q, want OWASP parameters", hash)
		}
	})
}

func TestCustomTTLs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc, err := auth.New(auth.Config{DB: e.db, SigningKey: testKey, Argon2: fastParams, Clock: e.clock.Now,
		AccessTTL: 5 * time.Minute, RefreshTTL: time.Hour, LockoutAttempts: 2,
		LockoutWindow: time.Minute, LockoutDuration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.user(t, "alice", auth.RoleDeveloper)
	tok, err := svc.Login(t.Context(), "alice", strongPassword, "10.0.0.1", "")
	if err != nil || tok.ExpiresIn != 300 {
		t.Fatalf("Login = %+v, %v; want a 5-minute token", tok, err)
	}
	e.clock.Advance(time.Hour)
	if _, err := svc.Refresh(t.Context(), tok.RefreshToken, "", ""); !errors.Is(err, auth.ErrTokenExpired) {
		t.Errorf("Refresh after an hour = %v, want expired", err)
	}
	for range 2 {
		_, _ = svc.Login(t.Context(), "alice", "Wrong-Horse-99", "10.0.0.2", "")
	}
	var le *auth.LockedError
	if _, err := svc.Login(t.Context(), "alice", strongPassword, "10.0.0.3", ""); !errors.As(err, &le) ||
		!le.Until.Equal(e.clock.Now().Add(time.Hour)) {
		t.Errorf("after 2 failures = %v, want locked for an hour", err)
	}
}

func TestClientStringsAreCleaned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice", auth.RoleDeveloper)
	ua := "agent\x00" + strings.Repeat("é", 400) + "\xff"
	if _, err := e.svc.Login(t.Context(), "alice", strongPassword, "10.0.0.1\x00", ua); err != nil {
		t.Fatal(err)
	}
	list, _ := e.svc.Sessions(t.Context(), u.ID)
	if len(list) != 1 || list[0].IP != "10.0.0.1" || len(list[0].UserAgent) > 512 ||
		!utf8.ValidString(list[0].UserAgent) || !strings.HasPrefix(list[0].UserAgent, "agenté") {
		t.Errorf("sessions = %+v", list)
	}
}

func TestDatabaseErrorsAreReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	p, _ := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"Login": func() error {
			_, err := e.svc.Login(ctx, "alice", strongPassword, "", "")
			return err
		},
		"Refresh": func() error {
			_, err := e.svc.Refresh(ctx, tok.RefreshToken, "", "")
			return err
		},
		"VerifyAccessToken": func() error {
			_, err := e.svc.VerifyAccessToken(ctx, tok.AccessToken)
			return err
		},
		"Logout":        func() error { return e.svc.Logout(ctx, p) },
		"LogoutAll":     func() error { return e.svc.LogoutAll(ctx, u.ID) },
		"RevokeSession": func() error { return e.svc.RevokeSession(ctx, u.ID, tok.SessionID) },
		"Sessions": func() error {
			_, err := e.svc.Sessions(ctx, u.ID)
			return err
		},
		"User": func() error {
			_, err := e.svc.User(ctx, u.ID)
			return err
		},
		"CreateUser": func() error {
			_, err := e.svc.CreateUser(ctx, "bob", strongPassword, auth.RoleViewer, false)
			return err
		},
		"Register": func() error {
			_, err := e.svc.Register(ctx, "bob", strongPassword, "")
			return err
		},
		"SetRegistrationMode": func() error { return e.svc.SetRegistrationMode(ctx, auth.RegistrationOpen) },
		"ChangePassword":      func() error { return e.svc.ChangePassword(ctx, u.ID, strongPassword, "Fresh-Horse-11") },
		"SetPassword":         func() error { return e.svc.SetPassword(ctx, u.ID, "Fresh-Horse-11", false) },
		"Bootstrap": func() error {
			_, _, err := e.svc.Bootstrap(ctx, "")
			return err
		},
		"Prune": func() error { return e.svc.Prune(ctx) },
	}
	sentinels := []error{auth.ErrInvalidCredentials, auth.ErrLocked, auth.ErrTokenInvalid, auth.ErrTokenExpired,
		auth.ErrTokenRevoked, auth.ErrRefreshReused, auth.ErrUserDisabled, auth.ErrNotFound, auth.ErrRegistrationClosed}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if err == nil {
				t.Fatal("no error with a cancelled context")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					t.Errorf("database failure reported as %v", s)
				}
			}
		})
	}
	// Nothing changed: the session still works.
	if _, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken); err != nil {
		t.Errorf("after failed calls: %v", err)
	}
}
