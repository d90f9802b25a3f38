package pgcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultUser is the system user the cluster runs as when cdsd runs as root.
const DefaultUser = "cds-postgres"

// fallbackRoot holds the real cluster directories of clusters whose requested directory
// the cluster user cannot reach (see the package documentation). A variable so that
// tests can see where their data went.
var fallbackRoot = "/var/lib/cds-postgres"

// account is the OS user that initdb and postgres run as.
type account struct {
	name string
	uid  uint32
	gid  uint32
	// cred switches the children to the account; nil when the process already is it.
	cred *syscall.Credential
}

// sysProcAttr returns the process attributes of a cluster child: its own process group,
// the cluster user, and a parent-death signal so that it does not outlive cdsd.
func (a account) sysProcAttr(deathSignal syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  deathSignal,
		Credential: a.cred,
	}
}

// chown gives path to the account; it is a no-op when the process is not root, because
// then the account is the process's own user and owns what it creates.
func (a account) chown(path string) error {
	if a.cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(a.uid), int(a.gid)); err != nil {
		return fmt.Errorf("give %s to user %s: %w", path, a.name, err)
	}
	return nil
}

// chownTree gives path and everything below it to the account.
func (a account) chownTree(path string) error {
	if a.cred == nil {
		return nil
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return a.chown(p)
	})
}

// owns reports whether path belongs to the account.
func (a account) owns(path string) (bool, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == a.uid, nil
}

// canTraverse reports whether the account may search the directory dir. Only the owner,
// the primary group and the other bits are considered; missing a supplementary group
// only makes us choose the fallback directory when it was not needed.
func (a account) canTraverse(dir string) (bool, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, nil
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == a.uid:
		return perm&0o100 != 0, nil
	case st.Gid == a.gid:
		return perm&0o010 != 0, nil
	default:
		return perm&0o001 != 0, nil
	}
}

// reachable reports whether the account can traverse every ancestor of path; the first
// one it cannot is returned for error messages.
func (a account) reachable(path string) (bool, string, error) {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		ok, err := a.canTraverse(dir)
		if err != nil {
			return false, dir, err
		}
		if !ok {
			return false, dir, nil
		}
		if dir == filepath.Dir(dir) {
			return true, "", nil
		}
	}
}

// runAccount chooses the user that initdb and postgres run as. A non-root process runs
// them as itself. PostgreSQL refuses to run as root, so a root process uses the system
// user name (created when missing), or else the postgres user, or else nobody.
func runAccount(ctx context.Context, logger *slog.Logger, name string) (account, error) {
	if os.Geteuid() != 0 {
		a := account{name: strconv.Itoa(os.Geteuid()), uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
		if u, err := user.LookupId(a.name); err == nil {
			a.name = u.Username
		}
		return a, nil
	}
	if name == "" {
		name = DefaultUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return account{}, fmt.Errorf("look up user %s: %w", name, err)
		}
		u, err = createSystemUser(ctx, logger, name)
	}
	if err != nil {
		for _, fallback := range []string{"postgres", "nobody"} {
			if fu, ferr := user.Lookup(fallback); ferr == nil {
				logger.Warn("cannot use the cluster user; falling back to another system user",
					"user", name, "fallback", fallback, "err", err)
				u, err = fu, nil
				break
			}
		}
		if err != nil {
			return account{}, fmt.Errorf("no unprivileged user to run PostgreSQL as: %w", err)
		}
	}
	return accountOf(u)
}

// createSystemUser adds a system user without home or login shell for the cluster.
func createSystemUser(ctx context.Context, logger *slog.Logger, name string) (*user.User, error) {
	out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("create system user %s: %s: %w", name, strings.TrimSpace(string(out)), err)
	}
	logger.Info("created system user for the PostgreSQL cluster", "user", name)
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up created user %s: %w", name, err)
	}
	return u, nil
}

// accountOf turns a looked-up user into an account whose children drop every group of
// the root process.
func accountOf(u *user.User) (account, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return account{}, fmt.Errorf("user %s has a non-numeric uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return account{}, fmt.Errorf("user %s has a non-numeric gid %q: %w", u.Username, u.Gid, err)
	}
	a := account{name: u.Username, uid: uint32(uid), gid: uint32(gid)}
	a.cred = &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: []uint32{}}
	return a, nil
}

// prepareDir creates the cluster directory dir (absolute) for the account and returns
// the directory that really holds the cluster: dir itself, the target of dir when dir is
// a symlink, or, when the account cannot reach dir, a directory under fallbackRoot that
// dir is turned into a symlink to.
func prepareDir(dir string, a account) (string, error) {
	home := dir
	fi, err := os.Lstat(dir)
	isLink := err == nil && fi.Mode()&fs.ModeSymlink != 0
	switch {
	case isLink:
		if home, err = filepath.EvalSymlinks(dir); err != nil {
			return "", fmt.Errorf("follow cluster dir symlink %s: %w", dir, err)
		}
	case err == nil && !fi.IsDir():
		return "", fmt.Errorf("cluster dir %s exists and is not a directory", dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("inspect cluster dir: %w", err)
	}
	// Ancestors we create must be traversable by the cluster user, hence 0755.
	if err := os.MkdirAll(filepath.Dir(home), 0o755); err != nil {
		return "", fmt.Errorf("create parent of cluster dir: %w", err)
	}
	// A non-root process is the cluster user: what it can create, postgres can reach.
	if a.cred == nil {
		return home, mkdirPrivate(home, a)
	}
	// The user needs to traverse the directories the path really runs through.
	check := home
	if parent, err := filepath.EvalSymlinks(filepath.Dir(home)); err == nil {
		check = filepath.Join(parent, filepath.Base(home))
	}
	ok, blocker, err := a.reachable(check)
	if err != nil {
		return "", fmt.Errorf("check access to cluster dir: %w", err)
	}
	if !ok {
		if isLink {
			return "", fmt.Errorf("cluster dir %s links to %s, but user %s cannot traverse %s",
				dir, home, a.name, blocker)
		}
		if home, err = linkFallback(dir, a, blocker); err != nil {
			return "", err
		}
	}

	return home, mkdirPrivate(home, a)
}

// mkdirPrivate creates the directory dir when missing and makes it the account's alone.
func mkdirPrivate(dir string, a account) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create cluster dir: %w", err)
	}
	if err := a.chown(dir); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict cluster dir: %w", err)
	}
	return nil
}

// linkFallback moves the cluster of dir to a private directory under fallbackRoot, named
// by a hash of dir so that the same dir always finds its data again, and makes dir a
// symlink to it. dir must not exist or be an empty directory.
func linkFallback(dir string, a account, blocker string) (string, error) {
	sum := sha256.Sum256([]byte(dir))
	home := filepath.Join(fallbackRoot, hex.EncodeToString(sum[:])[:16])
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Only an empty directory can be replaced without losing anything.
		return "", fmt.Errorf("user %s cannot traverse %s to reach cluster dir %s, "+
			"and the dir is not empty so it cannot become a link to %s; "+
			"make %s traversable (chmod o+x) or choose another dir: %w", a.name, blocker, dir, home, blocker, err)
	}
	if err := os.MkdirAll(fallbackRoot, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", fallbackRoot, err)
	}
	if err := os.Mkdir(home, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create fallback cluster dir: %w", err)
	}
	if err := os.Symlink(home, dir); err != nil {
		return "", fmt.Errorf("link cluster dir to %s: %w", home, err)
	}
	return home, nil
}

// socketDir returns the private directory for the server's unix socket. It is run/ in
// the cluster directory unless that path is too long for a unix socket address, then a
// directory in os.TempDir named by a hash of the cluster directory.
func socketDir(dir, home string, a account) (string, error) {
	sock := filepath.Join(home, "run")
	shared := false
	if len(filepath.Join(sock, socketName)) > maxSocketPath {
		sum := sha256.Sum256([]byte(dir))
		sock = filepath.Join(os.TempDir(), "cds-pg-"+hex.EncodeToString(sum[:])[:8])
		shared = true
	}
	err := os.Mkdir(sock, 0o700)
	created := err == nil
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create socket dir: %w", err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		return "", fmt.Errorf("inspect socket dir: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("socket dir %s is not a directory", sock)
	}
	// A directory in the shared temp dir that someone else made stays theirs: a socket in
	// it could be replaced by them. Inside the cluster dir everything is ours to take.
	if created || !shared {
		if err := a.chown(sock); err != nil {
			return "", err
		}
	}
	if owned, err := a.owns(sock); err != nil || !owned {
		return "", fmt.Errorf("socket dir %s is not owned by user %s; remove it", sock, a.name)
	}
	if err := os.Chmod(sock, 0o700); err != nil {
		return "", fmt.Errorf("restrict socket dir: %w", err)
	}
	return sock, nil
}
