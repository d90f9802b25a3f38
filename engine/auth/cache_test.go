package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/auth"
)

// watch runs svc.Watch until the test ends, as cdsd does.
func watch(t *testing.T, svc *auth.Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = svc.Watch(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// eventually polls check until it is true (bounded; not a timing assertion).
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestVerifyCacheFollowsChanges checks that cached token checks never outlive what
// decides them: in this process at once, in another process through the
// database's notification.
func TestVerifyCacheFollowsChanges(t *testing.T) {
	e := newEnv(t)
	watch(t, e.svc)
	other, err := auth.New(auth.Config{DB: e.db, SigningKey: testKey, Argon2: fastParams, Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, other)
	u := e.user(t, "carol", auth.RoleDeveloper)
	ctx := t.Context()
	tok := e.login(t, "carol")
	verify := func(s *auth.Service) (auth.Principal, error) { return s.VerifyAccessToken(ctx, tok.AccessToken) }
	for range 3 { // warm both caches
		if _, err := verify(e.svc); err != nil {
			t.Fatal(err)
		}
		if _, err := verify(other); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("role change by another process", func(t *testing.T) {
		e.exec(t, "UPDATE users SET role = 'viewer' WHERE id = $1", u.ID)
		eventually(t, "the new role", func() bool { p, err := verify(e.svc); return err == nil && p.Role == auth.RoleViewer })
	})
	t.Run("balance changes do not flush", func(t *testing.T) {
		e.exec(t, "UPDATE users SET token_balance = 5 WHERE id = $1", u.ID)
		if _, err := verify(e.svc); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a cached token still expires", func(t *testing.T) {
		e.clock.Advance(16 * time.Minute)
		defer e.clock.Advance(-16 * time.Minute)
		if _, err := verify(e.svc); !errors.Is(err, auth.ErrTokenExpired) {
			t.Fatalf("expired cached token: %v", err)
		}
	})
	t.Run("logout here applies at once", func(t *testing.T) {
		p, err := verify(e.svc)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Logout(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := verify(e.svc); !errors.Is(err, auth.ErrTokenRevoked) {
			t.Fatalf("after logout: %v", err)
		}
		eventually(t, "the other process refusing the token", func() bool {
			_, err := verify(other)
			return errors.Is(err, auth.ErrTokenRevoked)
		})
	})
}
