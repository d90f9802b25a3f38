package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cyberdevstudio/cds/engine/auth"
)

func TestHashPasswordRoundTrip(t *testing.T) {
	t.Parallel()
	other := auth.Params{Memory: 2048, Iterations: 2, Threads: 2, KeyLen: 24, SaltLen: 12}
	tests := []struct {
		name     string
		params   auth.Params
		wantHead string
	}{
		{"fast", fastParams, "$argon2id$v=19$m=1024,t=1,p=1$"},
		{"other params", other, "$argon2id$v=19$m=2048,t=2,p=2$"},
		{"defaults", auth.DefaultParams(), "$argon2id$v=19$m=19456,t=2,p=1$"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := auth.HashPassword("pässwörd-Ω1", tc.params)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(h, tc.wantHead) {
				t.Errorf("hash %q does not record the parameters %q", h, tc.wantHead)
			}
			if ok, err := auth.VerifyPassword(h, "pässwörd-Ω1"); !ok || err != nil {
				t.Errorf("VerifyPassword(right) = %v, %v", ok, err)
			}
			if ok, err := auth.VerifyPassword(h, "pässwörd-Ω2"); ok || err != nil {
				t.Errorf("VerifyPassword(wrong) = %v, %v", ok, err)
			}
			// NFD input (decomposed umlauts) is the same password.
			if ok, _ := auth.VerifyPassword(h, "pa\u0308sswo\u0308rd-Ω1"); !ok {
				t.Error("decomposed Unicode form not accepted")
			}
			h2, _ := auth.HashPassword("pässwörd-Ω1", tc.params)
			if h == h2 {
				t.Error("two hashes of one password are equal: no random salt")
			}
		})
	}
}

func TestHashPasswordRejectsBadParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    auth.Params
	}{
		{"no threads", auth.Params{Memory: 1024, Iterations: 1, KeyLen: 32, SaltLen: 16}},
		{"too little memory", auth.Params{Memory: 4, Iterations: 1, Threads: 1, KeyLen: 32, SaltLen: 16}},
		{"no iterations", auth.Params{Memory: 1024, Threads: 1, KeyLen: 32, SaltLen: 16}},
		{"short key", auth.Params{Memory: 1024, Iterations: 1, Threads: 1, KeyLen: 8, SaltLen: 16}},
		{"short salt", auth.Params{Memory: 1024, Iterations: 1, Threads: 1, KeyLen: 32, SaltLen: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.HashPassword("x", tc.p); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	t.Parallel()
	good, _ := auth.HashPassword("x", fastParams)
	parts := strings.Split(good, "$")
	tests := []struct {
		name, hash string
	}{
		{"empty", ""},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuu"},
		{"version", strings.Replace(good, "v=19", "v=16", 1)},
		{"param syntax", strings.Replace(good, "m=1024", "m1024", 1)},
		{"param value", strings.Replace(good, "m=1024", "m=x", 1)},
		{"unknown param", strings.Replace(good, "m=1024", "q=1024", 1)},
		{"salt", strings.Join([]string{"", parts[1], parts[2], parts[3], "!!", parts[5]}, "$")},
		{"key", strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4], "!!"}, "$")},
		{"threads", strings.Replace(good, "p=1", "p=300", 1)},
		{"huge memory", strings.Replace(good, "m=1024", "m=4000000000", 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ok, err := auth.VerifyPassword(tc.hash, "x"); ok || err == nil {
				t.Errorf("VerifyPassword = %v, %v; want an error", ok, err)
			}
		})
	}
}

func TestCheckPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, username, password string
		unmet                    []string // substrings of the unmet rules, in order
	}{
		{"strong", "alice", "Correct-Horse-9", nil},
		{"too short", "alice", "Ab1-", []string{"at least 12 characters"}},
		{"no upper", "alice", "correct-horse-9", []string{"uppercase"}},
		{"no lower", "alice", "CORRECT-HORSE-9", []string{"lowercase"}},
		{"no digit", "alice", "Correct-Horse-X", []string{"digit"}},
		{"no special", "alice", "CorrectHorse99", []string{"special"}},
		{"space is special", "alice", "Correct Horse 9", nil},
		{"everything", "alice", "", []string{"12 characters", "uppercase", "lowercase", "digit", "special"}},
		{"equals username", "Str0ng-Passw0rd", "str0ng-passw0rd", []string{"uppercase", "username"}},
		{"equals username with case", "Str0ng-Passw0rd", "Str0ng-Passw0rd", []string{"username"}},
		{"unicode letters count", "alice", "Ärger-über-ß-9", nil},
		{"unicode length in characters", "alice", "Äö-1ÄöÄöÄö", []string{"12 characters"}},
		{"unicode digits", "alice", "Passwort-٣٣٣٣", nil},
		{"too long", "alice", "Aa1-" + strings.Repeat("x", 1021), []string{"at most 1024"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := auth.CheckPolicy(tc.username, tc.password)
			if tc.unmet == nil {
				if err != nil {
					t.Fatalf("CheckPolicy = %v, want nil", err)
				}
				return
			}
			var pe *auth.PolicyError
			if !errors.As(err, &pe) || !errors.Is(err, auth.ErrWeakPassword) {
				t.Fatalf("CheckPolicy = %v, want a *PolicyError matching ErrWeakPassword", err)
			}
			if len(pe.Unmet) != len(tc.unmet) {
				t.Fatalf("unmet = %q, want %d rules like %q", pe.Unmet, len(tc.unmet), tc.unmet)
			}
			for i, want := range tc.unmet {
				if !strings.Contains(pe.Unmet[i], want) {
					t.Errorf("unmet[%d] = %q, want it to mention %q", i, pe.Unmet[i], want)
				}
				if !strings.Contains(err.Error(), pe.Unmet[i]) {
					t.Errorf("message %q lacks %q", err, pe.Unmet[i])
				}
			}
		})
	}
}

func TestPasswordRequirements(t *testing.T) {
	t.Parallel()
	r := auth.PasswordRequirements()
	if r.MinLength != 12 || !r.Upper || !r.Lower || !r.Digit || !r.Special || r.History != 5 || !r.NotUsername {
		t.Errorf("requirements = %+v, want the issue's policy", r)
	}
}

func TestGeneratePasswordMeetsPolicy(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 50 {
		p := auth.GeneratePassword()
		if err := auth.CheckPolicy("admin", p); err != nil {
			t.Fatalf("generated %q: %v", p, err)
		}
		if seen[p] {
			t.Fatalf("generated %q twice", p)
		}
		seen[p] = true
	}
}

func TestLoadOrCreateSigningKey(t *testing.T) {
	t.Parallel()
	t.Run("env used", func(t *testing.T) {
		k, err := auth.LoadOrCreateSigningKey(t.TempDir(), strings.Repeat("k", 32))
		if err != nil || string(k) != strings.Repeat("k", 32) {
			t.Fatalf("= %q, %v", k, err)
		}
	})
	t.Run("env too short", func(t *testing.T) {
		_, err := auth.LoadOrCreateSigningKey(t.TempDir(), "short-secret")
		if err == nil || strings.Contains(err.Error(), "short-secret") {
			t.Fatalf("err = %v, want an error that does not echo the secret", err)
		}
	})
	t.Run("created 0600 and reused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		k1, err := auth.LoadOrCreateSigningKey(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(k1) < 32 {
			t.Fatalf("key has %d bytes", len(k1))
		}
		fi, err := os.Stat(filepath.Join(dir, auth.SigningKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode = %04o, want 0600", fi.Mode().Perm())
		}
		k2, err := auth.LoadOrCreateSigningKey(dir, "")
		if err != nil || string(k1) != string(k2) {
			t.Errorf("second load = %q, %v; want the same key", k2, err)
		}
		// The file's content works as CDS_JWT_SECRET.
		b, _ := os.ReadFile(filepath.Join(dir, auth.SigningKeyFile))
		k3, err := auth.LoadOrCreateSigningKey(t.TempDir(), strings.TrimSpace(string(b)))
		if err != nil || string(k3) != string(k1) {
			t.Errorf("file content as env = %q, %v", k3, err)
		}
		tmp, _ := filepath.Glob(filepath.Join(dir, ".jwt.key-*"))
		if len(tmp) != 0 {
			t.Errorf("temporary files left: %v", tmp)
		}
	})
	bad := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"group readable", func(t *testing.T, path string) { writeFile(t, path, strings.Repeat("a", 64), 0o640) }},
		{"world readable", func(t *testing.T, path string) { writeFile(t, path, strings.Repeat("a", 64), 0o604) }},
		{"too short", func(t *testing.T, path string) { writeFile(t, path, "abc\n", 0o600) }},
		{"symlink", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "k")
			writeFile(t, target, strings.Repeat("a", 64), 0o600)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range bad {
		t.Run("refused "+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, filepath.Join(dir, auth.SigningKeyFile))
			if k, err := auth.LoadOrCreateSigningKey(dir, ""); err == nil {
				t.Fatalf("accepted key %q", k)
			}
		})
	}
	t.Run("unwritable dir", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "file")
		writeFile(t, parent, "x", 0o600)
		if _, err := auth.LoadOrCreateSigningKey(filepath.Join(parent, "data"), ""); err == nil {
			t.Fatal("created a key under a file")
		}
	})
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
