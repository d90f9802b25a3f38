package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// logTailLines is how many lines of the server log a StartError carries.
const logTailLines = 30

// initialize runs initdb when the cluster has no data directory yet and returns the
// superuser password. initdb writes into a temporary directory that is renamed into place
// only when it succeeded, so an interrupted initdb never leaves a half-made cluster.
func (c *Cluster) initialize(ctx context.Context, binDir string, acct account, ephemeral bool) (string, error) {
	data := filepath.Join(c.home, dataName)
	pwPath := filepath.Join(c.home, passwordName)
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil {
		pw, err := os.ReadFile(pwPath)
		if err != nil {
			return "", fmt.Errorf("read the superuser password of the existing cluster: %w", err)
		}
		// The cluster may have been made by another user (cdsd ran as root before, or
		// not): postgres insists on owning its data directory.
		if owned, err := acct.owns(data); err == nil && !owned {
			c.logger.Info("giving the cluster to its user", "user", acct.name)
			if err := acct.chownTree(c.home); err != nil {
				return "", err
			}
		}
		return strings.TrimSpace(string(pw)), nil
	}
	if entries, err := os.ReadDir(data); err == nil && len(entries) > 0 {
		return "", fmt.Errorf("%s is not empty but holds no PostgreSQL cluster (no PG_VERSION); remove it", data)
	}

	password := randomPassword()
	if err := os.WriteFile(pwPath, []byte(password+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write superuser password: %w", err)
	}
	if err := acct.chown(pwPath); err != nil {
		return "", err
	}
	tmp := data + ".init"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("remove an interrupted initdb: %w", err)
	}
	offset := c.logSize()
	c.logger.Info("creating PostgreSQL cluster", "bin_dir", binDir, "user", acct.name)
	var err error
	// C.UTF-8 sorts and classifies Unicode text sensibly; machines without it get C.
	for _, locale := range []string{"C.UTF-8", "C"} {
		args := []string{"-D", tmp, "--auth=scram-sha-256", "-U", SuperUser, "--pwfile=" + pwPath,
			"-E", "UTF8", "--locale=" + locale}
		if ephemeral {
			args = append(args, "--no-sync")
		}
		if err = c.runInitdb(ctx, filepath.Join(binDir, "initdb"), args, acct); err == nil {
			break
		}
		c.logger.Warn("initdb failed", "locale", locale, "err", err)
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			return "", fmt.Errorf("remove a failed initdb: %w", rmErr)
		}
	}
	if err != nil {
		return "", &StartError{Dir: c.dir, LogTail: c.logTail(offset), Err: fmt.Errorf("initdb: %w", err)}
	}
	if err := os.Remove(data); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("replace the empty data dir: %w", err)
	}
	if err := os.Rename(tmp, data); err != nil {
		return "", fmt.Errorf("move the new cluster into place: %w", err)
	}
	return password, nil
}

// runInitdb runs initdb as the cluster user with its output appended to the log.
func (c *Cluster) runInitdb(ctx context.Context, initdb string, args []string, acct account) error {
	logf, err := c.openLog(acct)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, initdb, args...)
	cmd.Dir = c.home
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = acct.sysProcAttr(syscall.SIGKILL)
	exited := make(chan error, 1)
	if err := startLocked(cmd, func(err error) { exited <- err }); err != nil {
		return err
	}
	return <-exited
}

// launch starts postgres and returns the log size before it, where its output begins.
func (c *Cluster) launch(binDir string, acct account, ephemeral bool) (int64, error) {
	logf, err := c.openLog(acct)
	if err != nil {
		return 0, err
	}
	defer logf.Close() // postgres has its own descriptor.
	offset := c.logSize()
	args := []string{
		"-D", filepath.Join(c.home, dataName),
		"-c", "listen_addresses=",
		"-c", "port=" + strconv.Itoa(port),
		"-c", "unix_socket_directories=" + quoteListItem(c.sockDir),
		"-c", "unix_socket_permissions=0700",
		"-c", "logging_collector=off",
	}
	if ephemeral {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	cmd.Dir = c.home
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its children down
	// too, and the next start recovers from the WAL.
	cmd.SysProcAttr = acct.sysProcAttr(syscall.SIGQUIT)
	c.exited = make(chan struct{})
	onExit := func(err error) {
		c.waitErr = err
		// Start reports exits before ready itself; Stop expects the exit.
		if c.ready.Load() && !c.stopping.Load() {
			c.logger.Error("PostgreSQL exited unexpectedly", "err", err)
		}
		close(c.exited)
	}
	if err := startLocked(cmd, onExit); err != nil {
		return 0, fmt.Errorf("start postgres: %w", err)
	}
	c.pid = cmd.Process.Pid
	return offset, nil
}

// startLocked starts cmd from a goroutine that keeps its OS thread until cmd has exited,
// then calls onExit with the result of Wait. Linux sends the parent-death signal when the thread that forked the
// child ends, not the process, so the child must not be started from a thread that the
// Go runtime might retire.
func startLocked(cmd *exec.Cmd, onExit func(error)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		onExit(cmd.Wait())
	}()
	return <-started
}

// clearStalePID removes a postmaster.pid whose process is alive but is not PostgreSQL.
// postgres itself ignores a lock file whose PID is dead or belongs to another user, but a
// PID reused after a crash by another process of the cluster user (common in containers,
// where PIDs are small and repeat) would make it refuse to start.
func (c *Cluster) clearStalePID() {
	data := filepath.Join(c.home, dataName)
	pid := lockPID(data)
	if pid == 0 {
		return // no lock file, or one postgres reports as malformed itself.
	}
	program, alive := processName(pid)
	if !alive || program == "postgres" || program == "postmaster" {
		// Dead: postgres handles it. Postgres: possibly a running server of this cluster,
		// whose lock must stand. (An unreadable name counts as alive and is left alone.)
		return
	}
	c.logger.Warn("removing stale postmaster.pid; its PID now belongs to another program",
		"pid", pid, "program", program)
	if err := os.Remove(filepath.Join(data, "postmaster.pid")); err != nil {
		c.logger.Warn("cannot remove stale postmaster.pid", "err", err)
	}
}

// lockPID returns the PID in the postmaster.pid of the data directory data, 0 when there
// is none or it is malformed.
func lockPID(data string) int {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// processName returns the command name of process pid and whether the process exists.
// The name is empty when it cannot be read.
func processName(pid int) (string, bool) {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return "", false
	}
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return "", true
	}
	return strings.TrimSpace(string(comm)), true
}

// openLog opens the server log for appending, owned by the cluster user so that a later
// non-root run can still write it.
func (c *Cluster) openLog(acct account) (*os.File, error) {
	path := filepath.Join(c.home, logName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	if err := acct.chown(path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// logSize returns the current size of the server log, 0 when it does not exist.
func (c *Cluster) logSize() int64 {
	fi, err := os.Stat(filepath.Join(c.home, logName))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the last lines written to the server log after offset.
func (c *Cluster) logTail(offset int64) string {
	f, err := os.Open(filepath.Join(c.home, logName))
	if err != nil {
		return ""
	}
	defer f.Close()
	// 64 KiB holds far more than the lines we want, and bounds the read of a huge log.
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > 64<<10 {
		offset = fi.Size() - 64<<10
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "\n")
}

// childEnv is the environment of initdb and postgres: ours without PG* variables, which
// would otherwise change their defaults (PGPORT, PGDATA, ...).
func childEnv() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// quoteListItem quotes a path as one element of a PostgreSQL list setting such as
// unix_socket_directories, where commas and spaces would split it.
func quoteListItem(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// parentPID returns the parent of process pid, or 0 when it cannot be read.
func parentPID(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// The command name in parentheses may contain spaces; the fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// childPIDs returns the processes whose parent is pid.
func childPIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if parentPID(child) == pid {
			out = append(out, child)
		}
	}
	return out
}
