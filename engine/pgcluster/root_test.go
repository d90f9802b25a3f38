package pgcluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// These tests exercise what only a root process does: pick, create and switch to the
// cluster user, and guard directories shared with other users.

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func TestCreatesClusterUser(t *testing.T) {
	skipUnlessRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := "cds-test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	a, err := runAccount(t.Context(), slog.New(slog.DiscardHandler), name)
	if err != nil {
		t.Fatalf("runAccount: %v", err)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s was not created: %v", name, err)
	}
	if a.name != name || strconv.Itoa(int(a.uid)) != u.Uid || a.uid == 0 {
		t.Errorf("account = %+v, want the new user %s (uid %s)", a, name, u.Uid)
	}
	if u.HomeDir != "/nonexistent" {
		t.Errorf("home of %s = %s, want /nonexistent", name, u.HomeDir)
	}
}

func TestTakesOverClusterOfAnotherUser(t *testing.T) {
	t.Parallel()
	skipUnlessRoot(t)
	// A cluster made while cdsd ran as another user: postgres would refuse a data
	// directory it does not own.
	dir := initialized(t)
	home, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(home, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
	c := start(t, Options{Dir: dir, Ephemeral: true})
	if got := queryString(t, c, "SELECT 'taken over'"); got != "taken over" {
		t.Errorf("query = %q", got)
	}
}

func TestSharedSocketDirGuard(t *testing.T) {
	t.Parallel()
	skipUnlessRoot(t)
	tests := []struct {
		name    string
		squat   func(t *testing.T, path string) // what another user left at the socket path
		wantErr string
	}{
		{name: "directory of another user", squat: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not owned by user"},
		{name: "file", squat: func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := clusterDir(t, filepath.Join(traversableDir(t), strings.Repeat("long-name-", 10)))
			sum := sha256.Sum256([]byte(dir))
			sock := filepath.Join(os.TempDir(), "cds-pg-"+hex.EncodeToString(sum[:])[:8])
			tt.squat(t, sock)
			t.Cleanup(func() { os.RemoveAll(sock) })
			_, err := Start(t.Context(), Options{Dir: dir, Ephemeral: true})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Start = %v, want an error containing %q", err, tt.wantErr)
			}
			if fi, err := os.Lstat(sock); err == nil && fi.IsDir() && fi.Sys().(*syscall.Stat_t).Uid != 65534 {
				t.Errorf("the other user's directory %s was taken over", sock)
			}
		})
	}
}

func TestAccountTraversal(t *testing.T) {
	skipUnlessRoot(t)
	a := account{name: "probe", uid: 4242, gid: 4343}
	tests := []struct {
		name      string
		uid, gid  int
		perm      fs.FileMode
		traversal bool
	}{
		{name: "owner with x", uid: 4242, gid: 0, perm: 0o700, traversal: true},
		{name: "owner without x", uid: 4242, gid: 0, perm: 0o077, traversal: false},
		{name: "group with x", uid: 0, gid: 4343, perm: 0o710, traversal: true},
		{name: "group without x", uid: 0, gid: 4343, perm: 0o701, traversal: false},
		{name: "other with x", uid: 0, gid: 0, perm: 0o711, traversal: true},
		{name: "other without x", uid: 0, gid: 0, perm: 0o770, traversal: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, tt.uid, tt.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.perm); err != nil {
				t.Fatal(err)
			}
			got, err := a.canTraverse(dir)
			if err != nil || got != tt.traversal {
				t.Errorf("canTraverse(%s %d:%d %v) = %v, %v; want %v", dir, tt.uid, tt.gid, tt.perm, got, err, tt.traversal)
			}
		})
	}
	if _, err := a.canTraverse(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("canTraverse of a missing dir succeeded")
	}
}
