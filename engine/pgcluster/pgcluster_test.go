package pgcluster

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// clusterDir returns a cluster directory inside parent, removed with Remove when the test
// ends: as root, the cluster may keep its data under fallbackRoot.
func clusterDir(t *testing.T, parent string) string {
	t.Helper()
	dir := filepath.Join(parent, "pg")
	t.Cleanup(func() {
		if err := Remove(dir); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return dir
}

// traversableDir returns a new temporary directory that every user may pass through, so
// that a root test's cluster lives in it rather than under fallbackRoot.
func traversableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// start starts a cluster that is stopped when the test ends.
func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

// queryString runs a query returning one text value on database postgres.
func queryString(t *testing.T, c *Cluster, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.ConnString("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(t.Context(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

// waitGone waits until none of pids is alive; a killed process needs a moment to exit.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	for range 300 {
		left := 0
		for _, pid := range pids {
			if alive(pid) {
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d is still running", pid)
		}
	}
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t, t.TempDir())
	c, err := Start(t.Context(), Options{Dir: dir})
	if err != nil {
		t.Fatalf("first Start: %v", err)
	}
	if c.Dir() != dir {
		t.Errorf("Dir = %q, want %q", c.Dir(), dir)
	}
	conn, err := pgx.Connect(t.Context(), c.ConnString("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	// Stop must not wait for clients to leave: fast shutdown ends their sessions.
	pid := c.pid
	children := childPIDs(pid)
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	conn.Close(context.Background())
	select {
	case <-c.Done():
	default:
		t.Error("Done is open after Stop returned")
	}
	waitGone(t, append(children, pid)...)
	if err := c.Stop(t.Context()); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	c = start(t, Options{Dir: dir})
	if got := queryString(t, c, "SELECT body FROM notes"); got != "kept" {
		t.Errorf("after restart the row is %q, want %q", got, "kept")
	}
}

func TestConnString(t *testing.T) {
	t.Parallel()
	c := start(t, Options{Dir: clusterDir(t, t.TempDir()), Ephemeral: true})
	cfg, err := pgconn.ParseConfig(c.ConnString("some db"))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Host != c.sockDir || cfg.Port != port || cfg.User != SuperUser || cfg.Database != "some db" || cfg.Password == "" {
		t.Errorf("ConnString parses to host=%s port=%d user=%s database=%q", cfg.Host, cfg.Port, cfg.User, cfg.Database)
	}
	if got := queryString(t, c, "SELECT current_user || ' ' || current_setting('listen_addresses')"); got != "cds " {
		t.Errorf("user and listen_addresses = %q, want the superuser and no TCP", got)
	}
	if got := queryString(t, c, "SELECT current_setting('server_encoding')"); got != "UTF8" {
		t.Errorf("server_encoding = %q, want UTF8", got)
	}
	// Without the password the server turns a client away.
	noPassword := strings.Replace(c.ConnString("postgres"), ":"+c.password+"@", "@", 1)
	if conn, err := pgx.Connect(t.Context(), noPassword+"&password=wrong"); err == nil {
		conn.Close(context.Background())
		t.Error("connected with a wrong password")
	}
}

func TestClusterUserAndLayout(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the cluster runs as another user only when the tests run as root")
	}
	tests := []struct {
		name     string
		parent   func(t *testing.T) string
		wantLink bool
	}{
		// t.TempDir's directories are 0700: the cluster user cannot pass through them.
		{name: "unreachable parent", parent: func(t *testing.T) string { return t.TempDir() }, wantLink: true},
		{name: "traversable parent", parent: traversableDir, wantLink: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := clusterDir(t, tt.parent(t))
			c := start(t, Options{Dir: dir, Ephemeral: true})
			fi, err := os.Lstat(dir)
			if err != nil {
				t.Fatal(err)
			}
			isLink := fi.Mode()&fs.ModeSymlink != 0
			if isLink != tt.wantLink {
				t.Fatalf("cluster dir is a symlink: %v, want %v", isLink, tt.wantLink)
			}
			if isLink {
				target, _ := os.Readlink(dir)
				if filepath.Dir(target) != fallbackRoot {
					t.Errorf("cluster dir links to %s, want a dir in %s", target, fallbackRoot)
				}
			}

			u, err := user.Lookup(DefaultUser)
			if err != nil {
				t.Fatalf("cluster user: %v", err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			for _, item := range []struct {
				name string
				perm fs.FileMode
			}{{".", 0o700}, {dataName, 0o700}, {passwordName, 0o600}, {logName, 0o600}, {"run", 0o700}} {
				fi, err := os.Stat(filepath.Join(dir, item.name))
				if err != nil {
					t.Error(err)
					continue
				}
				if owner := fi.Sys().(*syscall.Stat_t).Uid; int(owner) != uid || fi.Mode().Perm() != item.perm {
					t.Errorf("%s: owner %d mode %v, want %d %v", item.name, owner, fi.Mode().Perm(), uid, item.perm)
				}
			}
			status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.pid), "status"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(status), "\nUid:\t"+u.Uid+"\t") {
				t.Errorf("postgres does not run as %s:\n%s", DefaultUser, status)
			}
		})
	}
}

func TestRunAccountFallback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root picks a user to run PostgreSQL as")
	}
	// useradd rejects the name, so the postgres user (or nobody) stands in.
	a, err := runAccount(t.Context(), slog.New(slog.DiscardHandler), "no such user!")
	if err != nil {
		t.Fatalf("runAccount: %v", err)
	}
	if a.name != "postgres" && a.name != "nobody" {
		t.Errorf("fallback user = %s, want postgres or nobody", a.name)
	}
	if a.uid == 0 || a.cred == nil {
		t.Errorf("fallback account %+v would run as root", a)
	}
}

func TestLongDirUsesTempSocketDir(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t, filepath.Join(traversableDir(t), strings.Repeat("long-name-", 10)))
	c := start(t, Options{Dir: dir, Ephemeral: true})
	if !strings.HasPrefix(c.sockDir, filepath.Join(os.TempDir(), "cds-pg-")) {
		t.Fatalf("socket dir = %s, want one in %s", c.sockDir, os.TempDir())
	}
	if len(filepath.Join(c.sockDir, socketName)) > maxSocketPath {
		t.Errorf("socket path %s is too long", c.sockDir)
	}
	if got := queryString(t, c, "SELECT 'ok'"); got != "ok" {
		t.Errorf("query = %q", got)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.sockDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket dir %s left behind after Stop: %v", c.sockDir, err)
	}
}

func TestSecondStartOnRunningCluster(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t, t.TempDir())
	first := start(t, Options{Dir: dir, Ephemeral: true})

	second, err := Start(t.Context(), Options{Dir: dir, Ephemeral: true})
	if err == nil {
		second.Stop(context.Background())
		t.Fatal("second Start on a running cluster succeeded")
	}
	var startErr *StartError
	if !errors.As(err, &startErr) {
		t.Fatalf("error %v is not a *StartError", err)
	}
	// postgres' own lock names the cause and the running server's PID.
	for _, want := range []string{"postmaster.pid", "already exists", strconv.Itoa(first.pid)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if got := queryString(t, first, "SELECT 'still up'"); got != "still up" {
		t.Errorf("first cluster after the failed second Start: %q", got)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		parent  func(t *testing.T) string
		running bool
		wantErr string
	}{
		{name: "stopped", parent: func(t *testing.T) string { return t.TempDir() }},
		{name: "stopped in traversable dir", parent: traversableDir},
		{name: "running", parent: func(t *testing.T) string { return t.TempDir() }, running: true, wantErr: "is running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := clusterDir(t, tt.parent(t))
			c := start(t, Options{Dir: dir, Ephemeral: true})
			if !tt.running {
				if err := c.Stop(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			err := Remove(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Remove = %v, want an error containing %q", err, tt.wantErr)
				}
				if got := queryString(t, c, "SELECT 'alive'"); got != "alive" {
					t.Errorf("cluster after a refused Remove: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			for _, path := range []string{dir, c.home} {
				if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s still exists after Remove: %v", path, err)
				}
			}
		})
	}
}

func TestRemoveKeepsForeignSymlinkTarget(t *testing.T) {
	t.Parallel()
	target := t.TempDir()
	dir := filepath.Join(t.TempDir(), "pg")
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("symlink still exists: %v", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("Remove deleted a target outside %s: %v", fallbackRoot, err)
	}
}
