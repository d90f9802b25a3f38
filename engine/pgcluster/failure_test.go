package pgcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// initialized creates a stopped cluster in a new directory and returns the directory.
func initialized(t *testing.T) string {
	t.Helper()
	dir := clusterDir(t, t.TempDir())
	c, err := Start(t.Context(), Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	return dir
}

func TestStartFailureShowsLogTail(t *testing.T) {
	t.Parallel()
	dir := initialized(t)
	conf := filepath.Join(dir, dataName, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "this is = not a valid ' line")
	f.Close()

	_, err = Start(t.Context(), Options{Dir: dir, Ephemeral: true})
	var startErr *StartError
	if !errors.As(err, &startErr) {
		t.Fatalf("Start with a broken config = %v, want a *StartError", err)
	}
	// The log names the file and the problem, which is what an operator needs.
	for _, want := range []string{"postgresql.conf", "syntax error"} {
		if !strings.Contains(startErr.LogTail, want) {
			t.Errorf("log tail does not mention %q:\n%s", want, startErr.LogTail)
		}
	}
	if !strings.Contains(err.Error(), startErr.LogTail) || !strings.Contains(err.Error(), "postgres exited") {
		t.Errorf("error message lacks the cause or the log tail:\n%v", err)
	}
	if n := strings.Count(startErr.LogTail, "\n") + 1; n > logTailLines {
		t.Errorf("log tail has %d lines, want at most %d", n, logTailLines)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    func(t *testing.T) Options
		wantErr string
	}{
		{name: "no dir", opts: func(*testing.T) Options { return Options{} }, wantErr: "Dir is empty"},
		{name: "bin dir without server", opts: func(t *testing.T) Options {
			return Options{Dir: clusterDir(t, t.TempDir()), BinDir: t.TempDir()}
		}, wantErr: "does not hold the initdb and postgres binaries"},
		{name: "dir is a file", opts: func(t *testing.T) Options {
			dir := clusterDir(t, traversableDir(t))
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return Options{Dir: dir}
		}, wantErr: "not a directory"},
		{name: "data without cluster", opts: func(t *testing.T) Options {
			dir := clusterDir(t, traversableDir(t))
			if err := os.MkdirAll(filepath.Join(dir, dataName), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dataName, "stray"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return Options{Dir: dir}
		}, wantErr: "holds no PostgreSQL cluster"},
		{name: "cluster without password", opts: func(t *testing.T) Options {
			dir := initialized(t)
			if err := os.Remove(filepath.Join(dir, passwordName)); err != nil {
				t.Fatal(err)
			}
			return Options{Dir: dir}
		}, wantErr: "superuser password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Start(t.Context(), tt.opts(t))
			if err == nil {
				c.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestStartErrorsAsRoot(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("directory access is checked for another user only as root")
	}
	tests := []struct {
		name    string
		dir     func(t *testing.T) string
		wantErr string
	}{
		{name: "unreachable dir with files", dir: func(t *testing.T) string {
			dir := clusterDir(t, t.TempDir())
			if err := os.MkdirAll(filepath.Join(dir, "something"), 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, wantErr: "cannot traverse"},
		{name: "symlink to unreachable dir", dir: func(t *testing.T) string {
			dir := clusterDir(t, traversableDir(t))
			if err := os.Symlink(t.TempDir(), dir); err != nil {
				t.Fatal(err)
			}
			return dir
		}, wantErr: "cannot traverse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Start(t.Context(), Options{Dir: tt.dir(t)})
			if err == nil {
				c.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestStartNotReady(t *testing.T) {
	dir := initialized(t)
	defer func(d time.Duration) { readyTimeout = d }(readyTimeout)
	readyTimeout = time.Nanosecond
	_, err := Start(t.Context(), Options{Dir: dir, Ephemeral: true})
	var startErr *StartError
	if !errors.As(err, &startErr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start without time to get ready = %v, want a *StartError wrapping the deadline", err)
	}
	// The server that did not answer in time must not be left running.
	readyTimeout = time.Minute
	c := start(t, Options{Dir: dir, Ephemeral: true})
	if got := queryString(t, c, "SELECT 'restarted'"); got != "restarted" {
		t.Errorf("query = %q", got)
	}
}

func TestStalePostmasterPID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// holder returns the PID to write into postmaster.pid.
		holder func(t *testing.T, uid, gid uint32) int
	}{
		{name: "dead process", holder: func(t *testing.T, _, _ uint32) int {
			cmd := exec.Command("true")
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			return cmd.Process.Pid
		}},
		// A PID reused by another program of the cluster user: postgres alone would take
		// the lock for a running server.
		{name: "other program of the cluster user", holder: func(t *testing.T, uid, gid uint32) int {
			cmd := exec.Command("sleep", "600")
			if os.Geteuid() == 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
			})
			return cmd.Process.Pid
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := clusterDir(t, t.TempDir())
			c, err := Start(t.Context(), Options{Dir: dir, Ephemeral: true})
			if err != nil {
				t.Fatal(err)
			}
			pidFile := filepath.Join(dir, dataName, "postmaster.pid")
			lock, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if err := c.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}

			// What a crash leaves: the lock file of the old server, with its PID now
			// dead or reused.
			_, rest, _ := strings.Cut(string(lock), "\n")
			pid := tt.holder(t, st.Uid, st.Gid)
			if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"+rest), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(pidFile, int(st.Uid), int(st.Gid)); err != nil {
				t.Fatal(err)
			}

			c = start(t, Options{Dir: dir, Ephemeral: true})
			if got := queryString(t, c, "SELECT 'recovered'"); got != "recovered" {
				t.Errorf("query = %q", got)
			}
		})
	}
}

func TestStopEscalates(t *testing.T) {
	defer func(stop, quit time.Duration) { stopTimeout, quitTimeout = stop, quit }(stopTimeout, quitTimeout)
	stopTimeout, quitTimeout = time.Second, time.Second
	tests := []struct {
		name string
		// prepare makes the server slow to stop and returns the context for Stop.
		prepare func(t *testing.T, c *Cluster) context.Context
		wantErr string
	}{
		{name: "context ends: immediate shutdown", prepare: func(t *testing.T, c *Cluster) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}, wantErr: "immediate shutdown"},
		// A stopped process acts on no signal but SIGKILL.
		{name: "server hangs: killed", prepare: func(t *testing.T, c *Cluster) context.Context {
			if err := syscall.Kill(c.pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			return t.Context()
		}, wantErr: "killed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := start(t, Options{Dir: clusterDir(t, t.TempDir()), Ephemeral: true})
			pids := append(childPIDs(c.pid), c.pid)
			err := c.Stop(tt.prepare(t, c))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Stop = %v, want an error mentioning %q", err, tt.wantErr)
			}
			waitGone(t, pids...)
		})
	}
}

// TestHelperProcess is not a test: TestPostgresDiesWithParent runs the test binary with
// it as a stand-in for cdsd, which starts a cluster and waits to be killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("PGCLUSTER_HELPER_DIR")
	if dir == "" {
		t.Skip("only run by TestPostgresDiesWithParent")
	}
	c, err := Start(context.Background(), Options{Dir: dir, Ephemeral: true})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("PID", c.pid)
	select {}
}

func TestPostgresDiesWithParent(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t, t.TempDir())
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	helper.Env = append(os.Environ(), "PGCLUSTER_HELPER_DIR="+dir)
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		helper.Process.Kill()
		helper.Wait()
		t.Fatalf("helper output: %v", err)
	}
	pidText, ok := strings.CutPrefix(strings.TrimSpace(line), "PID ")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil {
		helper.Process.Kill()
		helper.Wait()
		t.Fatalf("helper said %q", line)
	}
	children := childPIDs(pid)

	// SIGKILL gives the helper no chance to stop the cluster itself.
	helper.Process.Kill()
	helper.Wait()
	waitGone(t, append(children, pid)...)

	// The next start recovers from the immediate shutdown.
	c := start(t, Options{Dir: dir, Ephemeral: true})
	if got := queryString(t, c, "SELECT 'recovered'"); got != "recovered" {
		t.Errorf("query = %q", got)
	}
}

func TestStartErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  StartError
		want []string
	}{
		{name: "with log", err: StartError{Dir: "/d", LogTail: "FATAL: boom", Err: errors.New("exit status 1")},
			want: []string{"/d", "exit status 1", "/d/postgres.log", "FATAL: boom"}},
		{name: "empty log", err: StartError{Dir: "/d", Err: errors.New("exit status 1")},
			want: []string{"(no output)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if !errors.Is(&tt.err, tt.err.Err) {
				t.Error("StartError does not unwrap to its cause")
			}
		})
	}
}

// wrappedBinDir returns a bin dir whose initdb runs script before the real initdb, and
// whose postgres is the real one.
func wrappedBinDir(t *testing.T, script string) string {
	t.Helper()
	sysBin, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(traversableDir(t), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "#!/bin/sh\n" + script + "\nexec " + filepath.Join(sysBin, "initdb") + ` "$@"` + "\n"
	if err := os.WriteFile(filepath.Join(bin, "initdb"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(sysBin, "postgres"), filepath.Join(bin, "postgres")); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestInitdbLocaleFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		script      string
		wantCollate string // empty: Start fails
		wantErr     string
	}{
		{name: "C.UTF-8 missing", wantCollate: "C",
			script: `case "$*" in *--locale=C.UTF-8*) echo "initdb: error: invalid locale name" >&2; exit 1;; esac`},
		{name: "initdb broken", wantErr: "disk on fire",
			script: `echo "initdb: error: disk on fire" >&2; exit 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Dir: clusterDir(t, t.TempDir()), BinDir: wrappedBinDir(t, tt.script), Ephemeral: true}
			if tt.wantCollate == "" {
				_, err := Start(t.Context(), opts)
				var startErr *StartError
				if !errors.As(err, &startErr) || !strings.Contains(startErr.LogTail, tt.wantErr) {
					t.Errorf("Start = %v, want a *StartError showing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(opts.Dir, dataName)); err == nil {
					t.Error("a failed initdb left a data dir")
				}
				return
			}
			c := start(t, opts)
			if got := queryString(t, c, "SELECT datcollate FROM pg_database WHERE datname = 'postgres'"); got != tt.wantCollate {
				t.Errorf("collation = %q, want %q", got, tt.wantCollate)
			}
		})
	}
}

func TestLogTail(t *testing.T) {
	t.Parallel()
	c := &Cluster{home: t.TempDir()}
	if got := c.logTail(0); got != "" {
		t.Errorf("tail of a missing log = %q, want empty", got)
	}
	var b strings.Builder
	for i := range 10000 { // over the 64 KiB that logTail reads
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(filepath.Join(c.home, logName), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		offset int64
		want   string
	}{
		{name: "whole log", offset: 0, want: "line 9970\n"},
		{name: "from the end", offset: int64(b.Len()) - int64(len("line 9998\nline 9999\n")), want: "line 9998\nline 9999"},
		{name: "nothing new", offset: int64(b.Len()), want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.logTail(tt.offset)
			if !strings.HasPrefix(got, tt.want) || strings.Count(got, "\n") >= logTailLines {
				t.Errorf("logTail(%d) = %q, want at most %d lines starting with %q", tt.offset, got, logTailLines, tt.want)
			}
		})
	}
}

func TestParentPID(t *testing.T) {
	t.Parallel()
	if got := parentPID(os.Getpid()); got != os.Getppid() {
		t.Errorf("parentPID(self) = %d, want %d", got, os.Getppid())
	}
	if got := parentPID(-1); got != 0 {
		t.Errorf("parentPID(-1) = %d, want 0", got)
	}
}

func TestDoneWhenServerDies(t *testing.T) {
	t.Parallel()
	var log strings.Builder
	c := start(t, Options{
		Dir:       clusterDir(t, t.TempDir()),
		Ephemeral: true,
		Logger:    slog.New(slog.NewTextHandler(&log, nil)),
	})
	pids := append(childPIDs(c.pid), c.pid)
	if err := syscall.Kill(c.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-t.Context().Done():
		t.Fatal("Done stayed open after the server died")
	}
	if !strings.Contains(log.String(), "exited unexpectedly") {
		t.Errorf("the log does not report the death:\n%s", log.String())
	}
	// Stop of a dead server has nothing to do; the orphaned children exit on their own.
	if err := c.Stop(t.Context()); err != nil {
		t.Errorf("Stop: %v", err)
	}
	waitGone(t, pids...)
}
