package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cyberdevstudio/cds/engine/auth"
)

// sign signs claims with method and key, as an attacker (or a buggy client) might.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// payload decodes the claims of a JWT without checking it.
func payload(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAccessTokenClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	c := payload(t, tok.AccessToken)
	now := e.clock.Now()
	if c["sub"] != strconv.FormatInt(u.ID, 10) || c["username"] != "alice" || c["role"] != "developer" ||
		c["sid"] != tok.SessionID || c["iss"] != "cdsd" || len(c["jti"].(string)) != 32 ||
		int64(c["exp"].(float64)) != now.Add(15*time.Minute).Unix() || int64(c["iat"].(float64)) != now.Unix() {
		t.Errorf("claims = %v", c)
	}
	if tok2 := e.login(t, "alice"); payload(t, tok2.AccessToken)["jti"] == c["jti"] {
		t.Error("two tokens share a jti")
	}
}

func TestVerifyAccessTokenRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	good := payload(t, tok.AccessToken)
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range good {
			c[k] = v
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	parts := strings.Split(tok.AccessToken, ".")
	tampered := with("role", "admin")
	tamperedJSON, _ := json.Marshal(tampered)
	tests := []struct {
		name  string
		token func() string
		want  error
	}{
		{"alg none", func() string { return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good) }, auth.ErrTokenInvalid},
		{"alg none, hand-made", func() string {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			return h + "." + parts[1] + "."
		}, auth.ErrTokenInvalid},
		{"HS512 with the right key", func() string { return sign(t, jwt.SigningMethodHS512, testKey, good) }, auth.ErrTokenInvalid},
		{"wrong key", func() string {
			return sign(t, jwt.SigningMethodHS256, []byte("another-key-another-key-another-key"), good)
		}, auth.ErrTokenInvalid},
		{"tampered claims", func() string {
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedJSON) + "." + parts[2]
		}, auth.ErrTokenInvalid},
		{"no exp", func() string { return sign(t, jwt.SigningMethodHS256, testKey, with("exp", nil)) }, auth.ErrTokenInvalid},
		{"other issuer", func() string { return sign(t, jwt.SigningMethodHS256, testKey, with("iss", "evil")) }, auth.ErrTokenInvalid},
		{"no jti", func() string { return sign(t, jwt.SigningMethodHS256, testKey, with("jti", nil)) }, auth.ErrTokenInvalid},
		{"bad sub", func() string { return sign(t, jwt.SigningMethodHS256, testKey, with("sub", "alice")) }, auth.ErrTokenInvalid},
		{"bad sid", func() string { return sign(t, jwt.SigningMethodHS256, testKey, with("sid", "x")) }, auth.ErrTokenInvalid},
		{"unknown sid", func() string {
			return sign(t, jwt.SigningMethodHS256, testKey, with("sid", "00000000-0000-0000-0000-000000000001"))
		}, auth.ErrTokenRevoked},
		{"unknown user", func() string { return sign(t, jwt.SigningMethodHS256, testKey, with("sub", "999")) }, auth.ErrTokenInvalid},
		{"issued in the future", func() string {
			return sign(t, jwt.SigningMethodHS256, testKey, with("iat", e.clock.Now().Add(time.Hour).Unix()))
		}, auth.ErrTokenInvalid},
		{"garbage", func() string { return "not.a.jwt" }, auth.ErrTokenInvalid},
		{"empty", func() string { return "" }, auth.ErrTokenInvalid},
		{"huge", func() string { return strings.Repeat("a", 5000) }, auth.ErrTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.svc.VerifyAccessToken(t.Context(), tc.token())
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyAccessToken = %+v, %v; want %v", p, err, tc.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		e.clock.Advance(15*time.Minute + time.Second)
		if _, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken); !errors.Is(err, auth.ErrTokenExpired) {
			t.Fatalf("VerifyAccessToken = %v, want ErrTokenExpired", err)
		}
	})
}

func TestVerifyAccessTokenFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(t *testing.T, e *env, tok auth.Tokens, p auth.Principal)
		want   error
		role   string
	}{
		{"unchanged", func(*testing.T, *env, auth.Tokens, auth.Principal) {}, nil, "developer"},
		{"role change applies at once", func(t *testing.T, e *env, _ auth.Tokens, _ auth.Principal) {
			e.exec(t, "UPDATE users SET role = 'viewer' WHERE username = 'alice'")
		}, nil, "viewer"},
		{"disabled user", func(t *testing.T, e *env, _ auth.Tokens, _ auth.Principal) {
			e.exec(t, "UPDATE users SET disabled_at = now() WHERE username = 'alice'")
		}, auth.ErrUserDisabled, ""},
		{"deleted user", func(t *testing.T, e *env, _ auth.Tokens, _ auth.Principal) {
			e.exec(t, "DELETE FROM users WHERE username = 'alice'")
		}, auth.ErrTokenInvalid, ""},
		{"logout", func(t *testing.T, e *env, _ auth.Tokens, p auth.Principal) {
			if err := e.svc.Logout(t.Context(), p); err != nil {
				t.Fatal(err)
			}
		}, auth.ErrTokenRevoked, ""},
		{"session revoked", func(t *testing.T, e *env, tok auth.Tokens, p auth.Principal) {
			if err := e.svc.RevokeSession(t.Context(), p.UserID, tok.SessionID); err != nil {
				t.Fatal(err)
			}
		}, auth.ErrTokenRevoked, ""},
		{"logout all", func(t *testing.T, e *env, _ auth.Tokens, p auth.Principal) {
			if err := e.svc.LogoutAll(t.Context(), p.UserID); err != nil {
				t.Fatal(err)
			}
		}, auth.ErrTokenRevoked, ""},
		{"jti revoked alone", func(t *testing.T, e *env, _ auth.Tokens, p auth.Principal) {
			if err := e.svc.Logout(t.Context(), auth.Principal{UserID: p.UserID, TokenID: p.TokenID}); err != nil {
				t.Fatal(err)
			}
		}, auth.ErrTokenRevoked, ""},
		{"password reset by an admin", func(t *testing.T, e *env, _ auth.Tokens, p auth.Principal) {
			if err := e.svc.SetPassword(t.Context(), p.UserID, "Another-Horse-7", true); err != nil {
				t.Fatal(err)
			}
		}, auth.ErrTokenRevoked, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user(t, "alice", auth.RoleDeveloper)
			tok := e.login(t, "alice")
			p, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			tc.change(t, e, tok, p)
			got, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyAccessToken = %+v, %v; want %v", got, err, tc.want)
			}
			if tc.want == nil && got.Role != tc.role {
				t.Errorf("role = %q, want %q", got.Role, tc.role)
			}
		})
	}
}

func TestLogoutRevokesOnlyItsToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	p, _ := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken)
	// The jti alone: a later token of the same session is still good.
	next, err := e.svc.Refresh(t.Context(), tok.RefreshToken, "10.0.0.1", "ua")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Logout(t.Context(), auth.Principal{UserID: p.UserID, TokenID: p.TokenID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), tok.AccessToken); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("revoked jti: %v", err)
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), next.AccessToken); err != nil {
		t.Errorf("other jti of the session: %v", err)
	}
	// A full logout also kills the refresh token.
	p2, _ := e.svc.VerifyAccessToken(t.Context(), next.AccessToken)
	if err := e.svc.Logout(t.Context(), p2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Refresh(t.Context(), next.RefreshToken, "10.0.0.1", "ua"); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("Refresh after Logout = %v, want ErrTokenRevoked", err)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	other := e.login(t, "alice") // another login: another family

	e.clock.Advance(time.Minute)
	next, err := e.svc.Refresh(t.Context(), tok.RefreshToken, "10.9.9.9", "new-agent")
	if err != nil {
		t.Fatal(err)
	}
	if next.SessionID != tok.SessionID || next.RefreshToken == tok.RefreshToken || next.AccessToken == tok.AccessToken {
		t.Errorf("refresh = %+v, want a new pair in the same session", next)
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), next.AccessToken); err != nil {
		t.Errorf("new access token: %v", err)
	}
	sessions, _ := e.svc.Sessions(t.Context(), 1)
	if len(sessions) != 2 || sessions[0].ID != tok.SessionID || sessions[0].IP != "10.9.9.9" ||
		sessions[0].UserAgent != "new-agent" || !sessions[0].LastUsedAt.Equal(e.clock.Now()) {
		t.Errorf("sessions after refresh = %+v", sessions)
	}

	// The old token again: reuse. The whole family goes, the other login stays.
	if _, err := e.svc.Refresh(t.Context(), tok.RefreshToken, "10.6.6.6", "thief"); !errors.Is(err, auth.ErrRefreshReused) {
		t.Fatalf("reused refresh = %v, want ErrRefreshReused", err)
	}
	if _, err := e.svc.Refresh(t.Context(), next.RefreshToken, "10.9.9.9", "ua"); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("refresh of the family after reuse = %v, want ErrTokenRevoked", err)
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), next.AccessToken); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("access token of the family after reuse = %v, want ErrTokenRevoked", err)
	}
	if _, err := e.svc.Refresh(t.Context(), other.RefreshToken, "10.0.0.1", "ua"); err != nil {
		t.Errorf("other login after reuse = %v", err)
	}
}

func TestRefreshRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token func(t *testing.T, e *env, tok auth.Tokens) string
		want  error
	}{
		{"garbage", func(*testing.T, *env, auth.Tokens) string { return "%%%" }, auth.ErrTokenInvalid},
		{"wrong length", func(*testing.T, *env, auth.Tokens) string { return "YWJj" }, auth.ErrTokenInvalid},
		{"unknown", func(*testing.T, *env, auth.Tokens) string {
			return base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		}, auth.ErrTokenInvalid},
		{"access token", func(_ *testing.T, _ *env, tok auth.Tokens) string { return tok.AccessToken }, auth.ErrTokenInvalid},
		{"expired", func(_ *testing.T, e *env, tok auth.Tokens) string {
			e.clock.Advance(24 * time.Hour)
			return tok.RefreshToken
		}, auth.ErrTokenExpired},
		{"disabled user", func(t *testing.T, e *env, tok auth.Tokens) string {
			e.exec(t, "UPDATE users SET disabled_at = now()")
			return tok.RefreshToken
		}, auth.ErrUserDisabled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user(t, "alice", auth.RoleDeveloper)
			tok := e.login(t, "alice")
			if _, err := e.svc.Refresh(t.Context(), tc.token(t, e, tok), "10.0.0.1", "ua"); !errors.Is(err, tc.want) {
				t.Fatalf("Refresh = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRefreshExtendsTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	for range 3 { // 69 hours in all, each refresh within 24 hours of the last
		e.clock.Advance(23 * time.Hour)
		next, err := e.svc.Refresh(t.Context(), tok.RefreshToken, "10.0.0.1", "ua")
		if err != nil {
			t.Fatalf("Refresh = %v", err)
		}
		tok = next
	}
}

func TestConcurrentRefreshOneWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.user(t, "alice", auth.RoleDeveloper)
	tok := e.login(t, "alice")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = e.svc.Refresh(t.Context(), tok.RefreshToken, "10.0.0.1", "ua")
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, auth.ErrRefreshReused):
			t.Errorf("loser got %v, want ErrRefreshReused", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d refreshes succeeded, want exactly 1 (errors %v)", wins, errs)
	}
}

func TestSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice", auth.RoleDeveloper)
	bob := e.user(t, "bob", auth.RoleDeveloper)
	a1 := e.login(t, "alice")
	e.clock.Advance(time.Minute)
	a2, err := e.svc.Login(t.Context(), "alice", strongPassword, "10.0.0.2", "phone")
	if err != nil {
		t.Fatal(err)
	}
	b1 := e.login(t, "bob")

	list, err := e.svc.Sessions(t.Context(), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a2.SessionID || list[0].IP != "10.0.0.2" || list[0].UserAgent != "phone" ||
		list[1].ID != a1.SessionID || !list[0].ExpiresAt.Equal(e.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("Sessions = %+v", list)
	}

	revokes := []struct {
		name       string
		user       int64
		session    string
		want       error
		aliceAfter int
	}{
		{"another user's session", alice.ID, b1.SessionID, auth.ErrNotFound, 2},
		{"malformed id", alice.ID, "nope", auth.ErrNotFound, 2},
		{"own session", alice.ID, a1.SessionID, nil, 1},
		{"already revoked", alice.ID, a1.SessionID, auth.ErrNotFound, 1},
	}
	for _, tc := range revokes {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.svc.RevokeSession(t.Context(), tc.user, tc.session); !errors.Is(err, tc.want) {
				t.Fatalf("RevokeSession = %v, want %v", err, tc.want)
			}
			if list, _ := e.svc.Sessions(t.Context(), alice.ID); len(list) != tc.aliceAfter {
				t.Errorf("alice has %d sessions, want %d", len(list), tc.aliceAfter)
			}
		})
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), b1.AccessToken); err != nil {
		t.Errorf("bob's session was touched: %v", err)
	}
	t.Run("expired sessions not listed", func(t *testing.T) {
		e.clock.Advance(24 * time.Hour)
		if list, _ := e.svc.Sessions(t.Context(), bob.ID); len(list) != 0 {
			t.Errorf("Sessions = %+v, want none", list)
		}
	})
}

func TestLogoutAllAndOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice", auth.RoleDeveloper)
	e.user(t, "bob", auth.RoleDeveloper)
	a1, a2, a3 := e.login(t, "alice"), e.login(t, "alice"), e.login(t, "alice")
	b1 := e.login(t, "bob")

	if err := e.svc.LogoutOthers(t.Context(), alice.ID, a3.SessionID); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []auth.Tokens{a1, a2} {
		if _, err := e.svc.Refresh(t.Context(), tok.RefreshToken, "", ""); !errors.Is(err, auth.ErrTokenRevoked) {
			t.Errorf("Refresh after LogoutOthers = %v", err)
		}
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), a3.AccessToken); err != nil {
		t.Errorf("kept session: %v", err)
	}
	if err := e.svc.LogoutOthers(t.Context(), alice.ID, "bad"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("LogoutOthers(bad id) = %v", err)
	}

	if err := e.svc.LogoutAll(t.Context(), alice.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), a3.AccessToken); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("access token after LogoutAll = %v", err)
	}
	if _, err := e.svc.Refresh(t.Context(), a3.RefreshToken, "", ""); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("refresh after LogoutAll = %v", err)
	}
	if list, _ := e.svc.Sessions(t.Context(), alice.ID); len(list) != 0 {
		t.Errorf("sessions after LogoutAll: %+v", list)
	}
	if _, err := e.svc.VerifyAccessToken(t.Context(), b1.AccessToken); err != nil {
		t.Errorf("bob after alice's LogoutAll: %v", err)
	}
}
