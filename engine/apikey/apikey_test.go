package apikey_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cyberdevstudio/cds/engine/apikey"
	"github.com/cyberdevstudio/cds/engine/audit"
	"github.com/cyberdevstudio/cds/engine/clock/clocktest"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

type env struct {
	svc        *apikey.Service
	db         *pgxpool.Pool
	clock      *clocktest.Clock // settable, for expiry and last-use tests
	alice, bob int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := storetest.New(t)
	alice, err := st.EnsureUser(t.Context(), "alice", "developer")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := st.EnsureUser(t.Context(), "bob", "admin")
	if err != nil {
		t.Fatal(err)
	}
	c := clocktest.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	svc, err := apikey.New(apikey.Config{DB: st.Pool(), Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, db: st.Pool(), clock: c, alice: alice.ID, bob: bob.ID}
}

func (e *env) create(t *testing.T, user int64, role, name string, exp *time.Time, scope string) (apikey.Key, string) {
	t.Helper()
	k, full, err := e.svc.Create(t.Context(), user, role, name, exp, scope)
	if err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	return k, full
}

func TestNewRequiresDB(t *testing.T) {
	if _, err := apikey.New(apikey.Config{}); err == nil {
		t.Error("New without DB succeeded")
	}
}

func TestCreateAndVerify(t *testing.T) {
	e := newEnv(t)
	k, full := e.create(t, e.alice, "developer", "  ci  ", nil, "")
	if !strings.HasPrefix(full, "cds_"+k.PublicID+"_") || len(full) != 60 {
		t.Fatalf("key %q does not read cds_<public id>_<43-char secret>", full)
	}
	if !apikey.IsKey(full) {
		t.Error("IsKey(new key) = false")
	}
	if k.Name != "ci" || k.UserID != e.alice || k.Scope != "" || k.ExpiresAt != nil || !k.CreatedAt.Equal(e.clock.Now()) {
		t.Errorf("key = %+v", k)
	}
	// Only a hash is stored: the secret appears nowhere in the row.
	var row string
	if err := e.db.QueryRow(t.Context(), "SELECT api_keys::text FROM api_keys WHERE id = $1", k.ID).Scan(&row); err != nil {
		t.Fatal(err)
	}
	secret := full[len("cds_")+13:]
	if strings.Contains(row, secret) {
		t.Errorf("the secret is stored in the clear: %s", row)
	}

	got, err := e.svc.Verify(t.Context(), full)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.ID != k.ID || got.UserID != e.alice || got.LastUsedAt == nil || !got.LastUsedAt.Equal(e.clock.Now()) {
		t.Errorf("Verify = %+v", got)
	}

	// Each key is different.
	_, full2 := e.create(t, e.alice, "developer", "ci", nil, "")
	if full2 == full {
		t.Error("two keys are equal")
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t)
	past := e.clock.Now().Add(-time.Second)
	now := e.clock.Now()
	tests := []struct {
		name      string
		role      string
		keyName   string
		exp       *time.Time
		scope     string
		want      error
		wantScope string
	}{
		{"scope equal to role", "developer", "k", nil, "developer", nil, "developer"},
		{"scope below role", "admin", "k", nil, "viewer", nil, "viewer"},
		{"scope above role", "developer", "k", nil, "admin", apikey.ErrScopeTooHigh, ""},
		{"viewer asks developer", "viewer", "k", nil, "developer", apikey.ErrScopeTooHigh, ""},
		{"unknown scope", "admin", "k", nil, "root", apikey.ErrInvalid, ""},
		{"unknown owner role", "root", "k", nil, "", apikey.ErrInvalid, ""},
		{"empty name", "developer", "   ", nil, "", apikey.ErrInvalid, ""},
		{"64 characters", "developer", strings.Repeat("ä", 64), nil, "", nil, ""},
		{"65 characters", "developer", strings.Repeat("a", 65), nil, "", apikey.ErrInvalid, ""},
		{"control character", "developer", "a\nb", nil, "", apikey.ErrInvalid, ""},
		{"invalid UTF-8", "developer", "a\xffb", nil, "", apikey.ErrInvalid, ""},
		{"expiry in the past", "developer", "k", &past, "", apikey.ErrInvalid, ""},
		{"expiry now", "developer", "k", &now, "", apikey.ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, full, err := e.svc.Create(t.Context(), e.alice, tt.role, tt.keyName, tt.exp, tt.scope)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Create error = %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				if full != "" {
					t.Error("a failed Create returned a key")
				}
				return
			}
			if k.Scope != tt.wantScope {
				t.Errorf("scope = %q, want %q", k.Scope, tt.wantScope)
			}
		})
	}
	t.Run("unknown user", func(t *testing.T) {
		if _, _, err := e.svc.Create(t.Context(), e.bob+100, "admin", "k", nil, ""); !errors.Is(err, apikey.ErrInvalid) {
			t.Errorf("Create for a missing user = %v, want ErrInvalid", err)
		}
	})
}

func TestVerifyRejects(t *testing.T) {
	e := newEnv(t)
	_, full := e.create(t, e.alice, "developer", "k", nil, "")
	pub := full[4:16]
	secret := full[17:]
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct{ name, key string }{
		{"empty", ""},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.e30.sig"},
		{"wrong prefix", "cdx_" + pub + "_" + secret},
		{"short", full[:len(full)-1]},
		{"long", full + "A"},
		{"upper-case public id", "cds_" + strings.ToUpper(pub) + "_" + secret},
		{"missing separator", "cds_" + pub + "-" + secret},
		{"secret not base64url", "cds_" + pub + "_" + secret[:42] + "+"},
		{"non-canonical base64 tail", "cds_" + pub + "_" + secret[:42] + "B"},
		{"unknown public id", "cds_000000000000_" + secret},
		{"wrong secret", "cds_" + pub + "_" + flip(secret, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Verify(t.Context(), tt.key)
			// Exactly the sentinel, so that no answer tells the cases apart.
			if err != apikey.ErrInvalid { //nolint:errorlint // identity is the point
				t.Errorf("Verify = %v, want exactly ErrInvalid", err)
			}
		})
	}
}

func TestIsKey(t *testing.T) {
	tests := []struct {
		token string
		want  bool
	}{
		{"cds_abcdefghij12_x", true},
		{"cds_abcdefghij12_" + strings.Repeat("A", 43), true},
		{"cds_ABCDEFGHIJ12_x", false},
		{"cds_abcdefghij1", false},
		{"cds_abcdefghij12", false},
		{"cds_abcdefghij12x", false},
		{"eyJhbGciOiJIUzI1NiJ9.e30.sig", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			if got := apikey.IsKey(tt.token); got != tt.want {
				t.Errorf("IsKey(%q) = %v, want %v", tt.token, got, tt.want)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	e := newEnv(t)
	exp := e.clock.Now().Add(time.Hour)
	k, full := e.create(t, e.alice, "developer", "k", &exp, "")
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
		t.Fatalf("ExpiresAt = %v, want %v", k.ExpiresAt, exp)
	}
	if _, err := e.svc.Verify(t.Context(), full); err != nil {
		t.Fatalf("Verify before expiry: %v", err)
	}
	e.clock.Advance(time.Hour - time.Second)
	if _, err := e.svc.Verify(t.Context(), full); err != nil {
		t.Fatalf("Verify a second before expiry: %v", err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.svc.Verify(t.Context(), full); !errors.Is(err, apikey.ErrExpired) {
		t.Fatalf("Verify at expiry = %v, want ErrExpired", err)
	}
}

func TestLastUsedAtMostOncePerMinute(t *testing.T) {
	e := newEnv(t)
	_, full := e.create(t, e.alice, "developer", "k", nil, "")
	start := e.clock.Now()
	steps := []struct {
		advance time.Duration
		want    time.Time
	}{
		{0, start},
		{30 * time.Second, start},
		{29 * time.Second, start},
		{2 * time.Second, start.Add(61 * time.Second)},
		{time.Second, start.Add(61 * time.Second)},
	}
	for i, s := range steps {
		e.clock.Advance(s.advance)
		k, err := e.svc.Verify(t.Context(), full)
		if err != nil {
			t.Fatalf("step %d: Verify: %v", i, err)
		}
		if k.LastUsedAt == nil || !k.LastUsedAt.Equal(s.want) {
			t.Errorf("step %d: LastUsedAt = %v, want %v", i, k.LastUsedAt, s.want)
		}
		var stored time.Time
		if err := e.db.QueryRow(t.Context(), "SELECT last_used_at FROM api_keys WHERE id = $1", k.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !stored.Equal(s.want) {
			t.Errorf("step %d: stored last_used_at = %v, want %v", i, stored, s.want)
		}
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	k, full := e.create(t, e.alice, "developer", "k", nil, "")
	other, otherFull := e.create(t, e.alice, "developer", "other", nil, "")

	// Bob, not as admin, cannot see alice's key.
	if _, err := e.svc.Revoke(t.Context(), e.bob, k.ID, false); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Revoke of another's key = %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Revoke(t.Context(), e.alice, k.ID+1000, false); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Revoke of a missing key = %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Verify(t.Context(), full); err != nil {
		t.Fatalf("key stopped working after a refused revoke: %v", err)
	}

	got, err := e.svc.Revoke(t.Context(), e.alice, k.ID, false)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got.RevokedAt == nil || !got.RevokedAt.Equal(e.clock.Now()) {
		t.Errorf("RevokedAt = %v", got.RevokedAt)
	}
	if _, err := e.svc.Verify(t.Context(), full); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify of a revoked key = %v, want ErrRevoked", err)
	}
	// Revoking again keeps the first revocation time.
	e.clock.Advance(time.Hour)
	again, err := e.svc.Revoke(t.Context(), e.alice, k.ID, false)
	if err != nil || !again.RevokedAt.Equal(*got.RevokedAt) {
		t.Errorf("second Revoke = %v, %v; want the first time", again.RevokedAt, err)
	}

	// An admin may revoke anyone's key.
	if _, err := e.svc.Revoke(t.Context(), e.bob, other.ID, true); err != nil {
		t.Fatalf("admin Revoke: %v", err)
	}
	if _, err := e.svc.Verify(t.Context(), otherFull); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify after admin revoke = %v", err)
	}

	// Both revocations and both creations are in the audit log; the second revoke is not.
	entries, err := audit.List(t.Context(), e.db, audit.Filter{TargetType: audit.TargetAPIKey})
	if err != nil {
		t.Fatal(err)
	}
	var creates, revokes int
	for _, en := range entries {
		switch en.Action {
		case audit.ActionAPIKeyCreate:
			creates++
			for _, f := range []map[string]any{en.Before, en.After} {
				for _, v := range f {
					if s, ok := v.(string); ok && strings.Contains(full, s) && len(s) > 12 {
						t.Errorf("audit entry holds part of the secret: %v", en)
					}
				}
			}
		case audit.ActionAPIKeyRevoke:
			revokes++
		}
	}
	if creates != 2 || revokes != 2 {
		t.Errorf("audit has %d creates and %d revokes, want 2 and 2", creates, revokes)
	}
	adminRevoke, err := audit.List(t.Context(), e.db, audit.Filter{Action: audit.ActionAPIKeyRevoke, ActorID: e.bob})
	if err != nil || len(adminRevoke) != 1 || adminRevoke[0].Before["owner_id"] != float64(e.alice) {
		t.Errorf("admin revoke entry = %+v, %v", adminRevoke, err)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t)
	a1, _ := e.create(t, e.alice, "developer", "one", nil, "")
	a2, _ := e.create(t, e.alice, "developer", "two", nil, "viewer")
	e.create(t, e.bob, "admin", "bobs", nil, "")
	if _, err := e.svc.Revoke(t.Context(), e.alice, a1.ID, false); err != nil {
		t.Fatal(err)
	}
	keys, err := e.svc.List(t.Context(), e.alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != a2.ID || keys[1].ID != a1.ID {
		t.Fatalf("List = %+v, want alice's two keys newest first", keys)
	}
	if keys[0].Scope != "viewer" || keys[1].RevokedAt == nil {
		t.Errorf("List lost fields: %+v", keys)
	}
	none, err := e.svc.List(t.Context(), e.bob+100)
	if err != nil || len(none) != 0 {
		t.Errorf("List of a user without keys = %v, %v", none, err)
	}
}

func TestEffectiveRole(t *testing.T) {
	tests := []struct{ scope, owner, want string }{
		{"", "admin", "admin"},
		{"", "viewer", "viewer"},
		{"viewer", "admin", "viewer"},
		{"developer", "developer", "developer"},
		// The owner was demoted after creating an admin key: the key follows.
		{"admin", "viewer", "viewer"},
	}
	for _, tt := range tests {
		t.Run(tt.scope+"/"+tt.owner, func(t *testing.T) {
			if got := (apikey.Key{Scope: tt.scope}).EffectiveRole(tt.owner); got != tt.want {
				t.Errorf("EffectiveRole = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDeletedOwnerKeysGo(t *testing.T) {
	e := newEnv(t)
	_, full := e.create(t, e.alice, "developer", "k", nil, "")
	if _, err := e.db.Exec(t.Context(), "DELETE FROM users WHERE id = $1", e.alice); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Verify(t.Context(), full); err != apikey.ErrInvalid { //nolint:errorlint
		t.Errorf("Verify of a deleted user's key = %v, want ErrInvalid", err)
	}
}
