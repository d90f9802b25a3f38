package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/server/rpc"
)

func TestCredentialStore(t *testing.T) {
	cfg := isolate(t)
	e := &env{stderr: &bytes.Buffer{}}
	s, err := e.openCredStore()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cfg, "cds", credentialsFile); s.path != want {
		t.Fatalf("path = %s, want %s", s.path, want)
	}
	// A directory made with looser permissions is tightened.
	if err := os.Mkdir(filepath.Dir(s.path), 0o755); err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a := credential{Server: "http://a:1", AccessToken: "at-a", RefreshToken: "rt-a", ExpiresAt: exp, Username: "alice"}
	b := credential{Server: "http://b:2", AccessToken: "at-b", RefreshToken: "rt-b", ExpiresAt: exp, Username: "bob"}

	t.Run("missing file is empty", func(t *testing.T) {
		if _, ok, err := s.get(a.Server); ok || err != nil {
			t.Errorf("get = %v, %v", ok, err)
		}
	})
	t.Run("one login per server", func(t *testing.T) {
		for _, c := range []credential{a, b} {
			if err := s.put(c); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []credential{a, b} {
			got, ok, err := s.get(want.Server)
			if err != nil || !ok || got != want {
				t.Errorf("get(%s) = %+v, %v, %v", want.Server, got, ok, err)
			}
		}
	})
	t.Run("private modes", func(t *testing.T) {
		for path, want := range map[string]os.FileMode{filepath.Dir(s.path): 0o700, s.path: 0o600} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
			}
		}
	})
	t.Run("atomic write leaves no temporary file", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Dir(s.path))
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if strings.HasSuffix(en.Name(), ".tmp") {
				t.Errorf("temporary file %s left behind", en.Name())
			}
		}
	})
	t.Run("remove", func(t *testing.T) {
		found, err := s.remove(a.Server)
		if err != nil || !found {
			t.Fatalf("remove = %v, %v", found, err)
		}
		if found, err = s.remove(a.Server); err != nil || found {
			t.Errorf("second remove = %v, %v", found, err)
		}
		if _, ok, _ := s.get(b.Server); !ok {
			t.Error("removing one server's login removed another's")
		}
	})
	t.Run("a readable file draws a warning", func(t *testing.T) {
		if err := os.Chmod(s.path, 0o644); err != nil {
			t.Fatal(err)
		}
		var warned string
		s2 := &credStore{path: s.path, warn: func(m string) { warned = m }}
		if _, _, err := s2.get(b.Server); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(warned, "chmod 600") {
			t.Errorf("warning = %q", warned)
		}
		if err := s2.put(b); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(s.path); fi.Mode().Perm() != 0o600 {
			t.Errorf("rewritten with mode %v", fi.Mode().Perm())
		}
	})
	t.Run("a damaged file says what to do", func(t *testing.T) {
		if err := os.WriteFile(s.path, []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.get(a.Server)
		if err == nil || !strings.Contains(err.Error(), "delete it and run cds login again") {
			t.Errorf("err = %v", err)
		}
		if err := s.put(a); err == nil {
			t.Error("put over a damaged file succeeded and would lose its content")
		}
	})
}

func TestCredentialsDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	tests := []struct {
		name, xdg, want string
	}{
		{"XDG_CONFIG_HOME", "/x/config", "/x/config/cds"},
		{"relative XDG_CONFIG_HOME is ignored", "rel", filepath.Join(home, ".config", "cds")},
		{"default", "", filepath.Join(home, ".config", "cds")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_CONFIG_HOME", tt.xdg)
			got, err := credentialsDir()
			if err != nil || got != tt.want {
				t.Errorf("credentialsDir() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestWriteFileAtomicFailure(t *testing.T) {
	dir := t.TempDir()
	// The target is a directory: the rename fails and the temporary file goes.
	target := filepath.Join(dir, "taken")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(target, []byte("x")); err == nil {
		t.Fatal("writeFileAtomic over a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left %d entries, want only the directory", len(entries))
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x")); err == nil {
		t.Error("writeFileAtomic into a missing directory succeeded")
	}
}

func TestReadFromPipe(t *testing.T) {
	// A pipe is not a terminal: cds reads lines without prompts and without
	// touching the terminal's echo.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, err := w.WriteString("alice\r\ns3cret pass\nnew-one\ny\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var stderr bytes.Buffer
	e := &env{stdin: r, stderr: &stderr}
	if e.interactive() {
		t.Fatal("a pipe counts as a terminal")
	}
	steps := []struct {
		name string
		read func() (string, error)
		want string
	}{
		{"line without CR", func() (string, error) { return e.readLine("Username: ") }, "alice"},
		{"secret keeps spaces", func() (string, error) { return e.readSecret("Password: ") }, "s3cret pass"},
		{"new password read once", func() (string, error) { return e.readNewPassword("New: ") }, "new-one"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got, err := s.read()
			if err != nil || got != s.want {
				t.Errorf("got %q, %v; want %q", got, err, s.want)
			}
		})
	}
	if ok, err := e.confirm("Sure?"); !ok || err != nil {
		t.Errorf("confirm = %v, %v", ok, err)
	}
	if strings.Contains(stderr.String(), "Username:") || strings.Contains(stderr.String(), "Password:") {
		t.Errorf("prompts shown for a pipe: %q", stderr.String())
	}
	if !strings.Contains(stderr.String(), "Sure? [y/N]") {
		t.Errorf("the question is not logged: %q", stderr.String())
	}
	if _, err := e.readLine(""); !errors.Is(err, errNoInput) {
		t.Errorf("read past the end: %v", err)
	}
}

func TestPromptAnswers(t *testing.T) {
	tests := []struct {
		name, in    string
		wantConfirm bool
		wantNewErr  string
	}{
		{"yes", "yes\n", true, ""},
		{"Y without newline", "Y", true, ""},
		{"no", "n\n", false, ""},
		{"empty", "\n", false, "the password is empty"},
		{"nothing", "", false, "standard input ended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{stdin: strings.NewReader(tt.in), stderr: &bytes.Buffer{}}
			if ok, err := e.confirm("Go?"); ok != tt.wantConfirm || err != nil {
				t.Errorf("confirm = %v, %v", ok, err)
			}
			e = &env{stdin: strings.NewReader(tt.in), stderr: &bytes.Buffer{}}
			_, err := e.readNewPassword("New: ")
			if tt.wantNewErr == "" && err != nil || tt.wantNewErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantNewErr)) {
				t.Errorf("readNewPassword: %v, want %q", err, tt.wantNewErr)
			}
		})
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"30d", now.AddDate(0, 0, 30), ""},
		{"720h", now.Add(720 * time.Hour), ""},
		{"2025-12-31", time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), ""},
		{"2026-01-01T10:00:00Z", time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC), ""},
		{"xd", time.Time{}, "number of days"},
		{"soon", time.Time{}, "want a duration"},
		{"-1h", time.Time{}, "not in the future"},
		{"2020-01-01", time.Time{}, "not in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseExpiry(tt.in, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("parseExpiry = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestAuthUsageErrors(t *testing.T) {
	isolate(t)
	addr := closedPort(t)
	tests := []struct {
		name string
		args []string
		want string
		help string
	}{
		{"admin without subcommand", []string{"admin"}, "admin needs a subcommand: users, keys, audit, registration", "admin"},
		{"unknown admin users subcommand", []string{"admin", "users", "frob"}, `unknown command "admin users frob"; admin users has: list, create`, "admin users"},
		{"create without role", []string{"admin", "users", "create", "bob"}, "--role is required", "admin users create"},
		{"create with a bad role", []string{"admin", "users", "create", "bob", "--role", "root"}, `unknown role "root"`, "admin users create"},
		{"negative balance", []string{"admin", "users", "create", "bob", "--role", "viewer", "--balance", "-1"}, "--balance must not be negative", "admin users create"},
		{"role without role", []string{"admin", "users", "role", "bob"}, "admin users role needs USER ROLE", "admin users role"},
		{"bad role", []string{"admin", "users", "role", "bob", "boss"}, `unknown role "boss"`, "admin users role"},
		{"bad balance", []string{"admin", "users", "balance", "bob", "lots"}, "CREDITS must be a whole number", "admin users balance"},
		{"list: both states", []string{"admin", "users", "list", "--disabled", "--enabled"}, "exclude each other", "admin users list"},
		{"list: bad role", []string{"admin", "users", "list", "--role", "x"}, "--role", "admin users list"},
		{"list: negative limit", []string{"admin", "users", "list", "--limit", "-5"}, "must not be negative", "admin users list"},
		{"usage: bad date", []string{"admin", "users", "usage", "bob", "--since", "yesterday"}, `--since "yesterday" is neither a date`, "admin users usage"},
		{"keys: bad expiry", []string{"admin", "keys", "create", "ci", "--expires", "later"}, "--expires", "admin keys create"},
		{"keys: bad scope", []string{"admin", "keys", "create", "ci", "--scope", "god"}, "--scope", "admin keys create"},
		{"keys: bad id", []string{"admin", "keys", "revoke", "abc"}, "ID must be a key's number", "admin keys revoke"},
		{"audit: bad until", []string{"admin", "audit", "--until", "31.12.2025"}, "--until", "admin audit"},
		{"audit: negative before", []string{"admin", "audit", "--before", "-1"}, "must not be negative", "admin audit"},
		{"registration: bad mode", []string{"admin", "registration", "ajar"}, `registration mode "ajar"`, "admin registration"},
		{"registration: two modes", []string{"admin", "registration", "open", "closed"}, "takes only [open|invite|closed]", "admin registration"},
		{"login: unknown flag", []string{"login", "--user", "x"}, "flag provided but not defined: -user", "login"},
		{"login: no username", []string{"login"}, "no username given", "login"},
		{"zero user id", []string{"admin", "users", "disable", "0"}, "user id 0 is not positive", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := runIO(t.Context(), append([]string{"--server", addr}, tt.args...), strings.NewReader("\n"), &stdout, &bytes.Buffer{})
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a *UsageError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if ue.Command != tt.help {
				t.Errorf("help points to %q, want %q", ue.Command, tt.help)
			}
			if stdout.Len() > 0 {
				t.Errorf("printed %q", stdout.String())
			}
		})
	}
}

func TestAuthCommandsUnreachable(t *testing.T) {
	isolate(t)
	addr := closedPort(t)
	tests := []struct {
		name  string
		args  []string
		stdin string
	}{
		{"login", []string{"login", "--username", "bob"}, "pw\n"},
		{"whoami", []string{"whoami"}, ""},
		{"users list", []string{"admin", "users", "list"}, ""},
		{"users create", []string{"admin", "users", "create", "bob", "--role", "viewer"}, "pw\n"},
		{"users role by name", []string{"admin", "users", "role", "bob", "viewer"}, ""},
		{"users balance by id", []string{"admin", "users", "balance", "7", "10"}, ""},
		{"users delete", []string{"admin", "users", "delete", "7", "--yes"}, ""},
		{"users usage", []string{"admin", "users", "usage", "7"}, ""},
		{"keys create", []string{"admin", "keys", "create", "ci"}, ""},
		{"keys list", []string{"admin", "keys", "list"}, ""},
		{"keys revoke", []string{"admin", "keys", "revoke", "3"}, ""},
		{"audit", []string{"admin", "audit", "--actor", "bob"}, ""},
		{"registration", []string{"admin", "registration"}, ""},
		{"set registration", []string{"admin", "registration", "closed"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runIO(t.Context(), append([]string{"--server", addr}, tt.args...), strings.NewReader(tt.stdin), &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), "cannot reach cdsd at http://"+addr) || !strings.Contains(err.Error(), "hint: is cdsd running?") {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestDescribeRequirements(t *testing.T) {
	got := describeRequirements(rpcRequirements())
	want := "12 to 128 characters, with an upper-case letter, a lower-case letter, a digit and a special character, not the username nor one of the last 5 passwords"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func rpcRequirements() rpc.PasswordRequirements {
	return rpc.PasswordRequirements{MinLength: 12, MaxLength: 128, Upper: true, Lower: true, Digit: true, Special: true, History: 5, NotUsername: true}
}

func TestTables(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	past, future := at.Add(-time.Hour), at.Add(time.Hour)
	var usage, audit, keys bytes.Buffer
	if err := writeUsageReport(&usage, "dev", "2025-01-01", "2025-04-01", rpc.UsageReport{Total: 30,
		ByModel: []rpc.ModelUsage{{ModelID: 1, Model: "tiny", Tokens: 20}, {Tokens: 10}},
		ByDay:   []rpc.DayUsage{{Day: "2025-03-01", Tokens: 30}}}); err != nil {
		t.Fatal(err)
	}
	if err := writeAudit(&audit, []rpc.AuditEntry{
		{ID: 9, At: at, ActorID: 1, ActorName: "admin", Action: "user.role", TargetType: "user", TargetID: "2", IP: "127.0.0.1",
			Before: map[string]any{"role": "viewer"}, After: map[string]any{"role": "developer", "disabled": true}},
		{ID: 8, At: at, ActorName: "mallory", Action: "login.failed"},
	}, time.UTC); err != nil {
		t.Fatal(err)
	}
	if err := writeKeys(&keys, []rpc.APIKeyInfo{
		{ID: 1, Name: "live", CreatedAt: at, ExpiresAt: &future, LastUsedAt: &at},
		{ID: 2, Name: "old", Scope: "viewer", CreatedAt: at, ExpiresAt: &past},
		{ID: 3, Name: "gone", CreatedAt: at, RevokedAt: &at},
	}, at); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, got string
		want      []string
	}{
		{"usage", usage.String(), []string{"dev used 30 tokens since 2025-01-01 until 2025-04-01.", "tiny", "(removed model)", "DAY (UTC)", "2025-03-01"}},
		{"audit", audit.String(), []string{"2025-03-04 05:06:07", "admin (1)", "user 2", "disabled: →true, role: viewer→developer", "mallory", "login.failed"}},
		{"keys", keys.String(), []string{"live", "active", "old", "viewer", "expired", "gone", "revoked", "never"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.got, w) {
					t.Errorf("%q missing in:\n%s", w, tt.got)
				}
			}
		})
	}
	if got := registrationText("bogus"); got != "unknown mode" {
		t.Errorf("registrationText = %q", got)
	}
}
