// Package pgcluster runs a private PostgreSQL cluster for cdsd from the machine's
// PostgreSQL server binaries, so that cdsd needs no database setup on a first run.
//
// A cluster lives in one directory:
//
//	DIR/data/          the PostgreSQL data directory (initdb on the first Start)
//	DIR/password       the password of the superuser "cds" (mode 0600)
//	DIR/postgres.log   the output of initdb and of the server, appended
//	DIR/run/           the unix socket directory (mode 0700)
//
// The server listens on no TCP address, only on a unix socket in a directory that only
// the cluster user can enter, and clients authenticate with scram-sha-256. A unix socket
// path is limited to about 107 bytes; when DIR/run is too long the socket directory is
// /tmp/cds-pg-HASH (os.TempDir) instead, HASH being the start of sha256(DIR).
//
// postgres is a direct child of the calling process: it is in its own process group,
// gets SIGQUIT if the thread that started it dies (so it goes down with a killed cdsd),
// and Stop shuts it down. The server's output goes to DIR/postgres.log; when the server
// does not come up, Start returns a *StartError holding the end of that log.
//
// # Running as root
//
// PostgreSQL refuses to run as root. When the process is root, initdb and postgres run as
// the unprivileged system user Options.User (default "cds-postgres"), which is created
// with useradd when missing; if that fails, the existing "postgres" user and then
// "nobody" are used. The cluster directory is given to that user.
//
// That user must be able to traverse every ancestor of DIR, and often cannot: /root and
// the directories of t.TempDir are mode 0700. Then the cluster's real directory is
// /var/lib/cds-postgres/HASH (HASH being the start of sha256 of the absolute DIR), created
// for the user with mode 0700, and DIR becomes a symlink to it. A DIR that already is a
// symlink is followed, so later runs find the same data. Removing DIR by hand removes
// only the symlink and leaves the data under /var/lib/cds-postgres; Remove deletes both.
package pgcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// SuperUser is the name of the cluster's superuser role.
const SuperUser = "cds"

const (
	dataName     = "data"
	passwordName = "password"
	logName      = "postgres.log"

	// port only names the socket file (listen_addresses is empty); it is set explicitly
	// so that a PGPORT in the environment cannot move it.
	port       = 5432
	socketName = ".s.PGSQL.5432"
	// maxSocketPath is the longest socket path a sockaddr_un holds (108 bytes with NUL).
	maxSocketPath = 107
)

// Timeouts of startup and shutdown. Variables so that tests can shorten them.
var (
	readyTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	quitTimeout  = 5 * time.Second
)

// Options configures Start.
type Options struct {
	// Dir is the cluster directory. It is created when missing, and initdb runs on the
	// first Start; later Starts reuse the cluster and its data.
	Dir string
	// BinDir holds initdb and postgres; empty means FindBinDir.
	BinDir string
	// User is the OS user the cluster runs as when the process is root; empty means
	// DefaultUser. It is ignored when the process is not root.
	User string
	// Logger receives the cluster's lifecycle events; nil discards them.
	Logger *slog.Logger
	// Ephemeral trades durability for speed: initdb and the server skip fsync. Only for
	// clusters that are thrown away, such as those of tests; a crash can corrupt them.
	Ephemeral bool
}

// Cluster is a running PostgreSQL server started by Start. Its methods are safe for
// concurrent use.
type Cluster struct {
	dir      string // the directory the caller named, absolute
	home     string // the directory that holds the cluster (dir, or its symlink target)
	sockDir  string
	password string
	logger   *slog.Logger

	pid    int
	exited chan struct{} // closed once the postmaster has been reaped
	// waitErr is the postmaster's exit status; written before exited is closed.
	waitErr error

	// ready and stopping tell the process's waiter whether an exit is news worth logging.
	ready    atomic.Bool
	stopping atomic.Bool

	stopMu  sync.Mutex
	stopped bool
}

// StartError reports that the server did not come up. It carries the end of the server
// log, which usually names the cause.
type StartError struct {
	// Dir is the cluster directory.
	Dir string
	// LogTail is the last lines postgres (or initdb) wrote during this Start.
	LogTail string
	// Err is what went wrong: the process's exit status, a timeout or a cancellation.
	Err error
}

// Error returns the cause followed by the log tail.
func (e *StartError) Error() string {
	tail := e.LogTail
	if tail == "" {
		tail = "(no output)"
	}
	return fmt.Sprintf("start PostgreSQL cluster in %s: %v\n--- end of %s ---\n%s",
		e.Dir, e.Err, filepath.Join(e.Dir, logName), tail)
}

// Unwrap returns the cause.
func (e *StartError) Unwrap() error { return e.Err }

// Start creates the cluster in opts.Dir on the first run, starts postgres and waits until
// it accepts connections (at most a minute, or until ctx is done). ctx bounds only the
// startup: the server runs until Stop. When postgres exits or does not become ready, the
// error is a *StartError with the end of its log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, errors.New("pgcluster: Options.Dir is empty")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve cluster dir: %w", err)
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	} else if !hasServer(binDir) {
		return nil, fmt.Errorf("%s does not hold the initdb and postgres binaries: %w", binDir, ErrNoServer)
	}
	acct, err := runAccount(ctx, logger, opts.User)
	if err != nil {
		return nil, err
	}
	home, err := prepareDir(dir, acct)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, home: home, logger: logger.With("cluster", dir)}
	if home != dir {
		c.logger.Info("cluster data lives outside the cluster dir", "user", acct.name, "data", home)
	}
	if c.sockDir, err = socketDir(dir, home, acct); err != nil {
		return nil, err
	}
	if err := c.run(ctx, binDir, acct, opts.Ephemeral); err != nil {
		c.removeSharedSocketDir()
		return nil, err
	}
	c.ready.Store(true)
	c.logger.Info("PostgreSQL cluster ready", "pid", c.pid, "user", acct.name, "socket_dir", c.sockDir)
	return c, nil
}

// run initializes the cluster when needed, starts postgres and waits until it is ready.
func (c *Cluster) run(ctx context.Context, binDir string, acct account, ephemeral bool) error {
	var err error
	if c.password, err = c.initialize(ctx, binDir, acct, ephemeral); err != nil {
		return err
	}
	c.clearStalePID()
	offset, err := c.launch(binDir, acct, ephemeral)
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		return &StartError{Dir: c.dir, LogTail: c.logTail(offset), Err: err}
	}
	return nil
}

// Dir returns the cluster directory as named in Options.Dir, made absolute.
func (c *Cluster) Dir() string { return c.dir }

// Done returns a channel that is closed when the server process has exited, whether by
// Stop or on its own.
func (c *Cluster) Done() <-chan struct{} { return c.exited }

// ConnString returns a postgres:// URL that connects to database as the superuser over
// the cluster's unix socket. pgx and libpq accept it.
func (c *Cluster) ConnString(database string) string {
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(port))
	q.Set("sslmode", "disable")
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(SuperUser, c.password),
		Path:     "/" + database,
		RawQuery: q.Encode(),
	}
	return u.String()
}

// Stop shuts the server down: a fast shutdown (SIGINT, which rolls back open
// transactions), then after 30 seconds or when ctx is done an immediate shutdown
// (SIGQUIT), then SIGKILL for the server and its children. It returns when the server
// has exited, and reports an error only when it had to escalate. Later calls do nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	c.stopping.Store(true)
	defer c.removeSharedSocketDir()

	select {
	case <-c.exited:
		return nil
	default:
	}
	c.signal(syscall.SIGINT)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	var cause error
	select {
	case <-c.exited:
		c.logger.Info("PostgreSQL cluster stopped")
		return nil
	case <-timer.C:
		cause = fmt.Errorf("no fast shutdown within %s", stopTimeout)
	case <-ctx.Done():
		cause = fmt.Errorf("no fast shutdown before the context ended: %w", ctx.Err())
	}

	c.logger.Warn("PostgreSQL is slow to shut down; sending SIGQUIT", "err", cause)
	c.signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
		return fmt.Errorf("stop PostgreSQL: immediate shutdown after %w", cause)
	case <-time.After(quitTimeout):
	}
	c.logger.Warn("PostgreSQL ignores SIGQUIT; killing it")
	c.kill()
	return fmt.Errorf("stop PostgreSQL: killed after %w", cause)
}

// Remove deletes the stopped cluster in dir: the directory and, when dir is a symlink into
// /var/lib/cds-postgres made by Start as root, the data it links to. A symlink to any
// other place is removed without its target. Removing dir by hand would leave such data
// behind, which matters for tests that run as root in t.TempDir. Remove refuses a cluster
// whose server is running.
func Remove(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve cluster dir: %w", err)
	}
	home := dir
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		home = ""
		if target, err := filepath.EvalSymlinks(dir); err == nil && filepath.Dir(target) == fallbackRoot {
			home = target
		}
	}
	if home != "" {
		if pid := lockPID(filepath.Join(home, dataName)); pid != 0 {
			if program, alive := processName(pid); alive && (program == "postgres" || program == "postmaster" || program == "") {
				return fmt.Errorf("cluster in %s is running (PID %d); stop it first", dir, pid)
			}
		}
		if err := os.RemoveAll(home); err != nil {
			return fmt.Errorf("remove cluster: %w", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove cluster dir: %w", err)
	}
	return nil
}

// signal sends sig to the postmaster, which passes shutdown requests on to its children.
func (c *Cluster) signal(sig syscall.Signal) {
	// ESRCH only means it has already exited, which the caller sees on c.exited.
	_ = syscall.Kill(c.pid, sig)
}

// kill SIGKILLs the postmaster, its process group and its children (each postgres child
// is a process group of its own), and waits until the postmaster is reaped.
func (c *Cluster) kill() {
	children := childPIDs(c.pid)
	_ = syscall.Kill(-c.pid, syscall.SIGKILL)
	for _, pid := range children {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-c.exited
}

// removeSharedSocketDir removes the socket directory when it is one in os.TempDir;
// postgres has removed its socket and lock files by then.
func (c *Cluster) removeSharedSocketDir() {
	if !strings.HasPrefix(c.sockDir, c.home+string(filepath.Separator)) {
		_ = os.Remove(c.sockDir)
	}
}

// waitReady polls the server until it accepts a connection from itself (not from another
// server on the same socket), exits, or the deadline passes. On a timeout the server is
// stopped so that no process is left behind.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.isReady(ctx) {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited: %w", c.waitErr)
		case <-ctx.Done():
			stopCtx, cancelStop := context.WithTimeout(context.Background(), quitTimeout)
			defer cancelStop()
			_ = c.Stop(stopCtx) // its error adds nothing to the startup failure.
			return fmt.Errorf("postgres not ready: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// isReady reports whether a connection succeeds and is served by a child of our
// postmaster. The check of the parent matters when a second Start races a running
// server of the same cluster: its socket answers until our postgres fails on the lock.
func (c *Cluster) isReady(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	return parentPID(int(conn.PID())) == c.pid
}

// randomPassword returns a new superuser password. Hex needs no escaping in URLs or
// connection strings.
func randomPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux.
	return hex.EncodeToString(b)
}
