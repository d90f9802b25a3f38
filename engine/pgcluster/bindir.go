package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrNoServer reports that no PostgreSQL server binaries (initdb and postgres) were found.
var ErrNoServer = errors.New("no PostgreSQL server binaries found (tried pg_config --bindir, " +
	"/usr/lib/postgresql/*/bin and PATH); install the PostgreSQL server package")

// debianBinGlob matches the per-version binary directories of Debian and Ubuntu packages,
// which are not on PATH by default. A variable so that tests can move it.
var debianBinGlob = "/usr/lib/postgresql/*/bin"

// FindBinDir returns the directory holding the PostgreSQL server binaries initdb and
// postgres. It asks pg_config --bindir first (the installation the machine's tools agree
// on), then takes the newest /usr/lib/postgresql/VERSION/bin, then the directory of
// postgres found on PATH. It returns ErrNoServer when none has both binaries.
func FindBinDir() (string, error) {
	if dir, ok := pgConfigBinDir(); ok {
		return dir, nil
	}
	if dir, ok := newestBinDir(debianBinGlob); ok {
		return dir, nil
	}
	if dir, ok := pathBinDir(); ok {
		return dir, nil
	}
	return "", ErrNoServer
}

// pgConfigBinDir asks pg_config for its binary directory. pg_config may belong to a
// client-only package, so the directory counts only when it has the server binaries.
func pgConfigBinDir() (string, bool) {
	pgConfig, err := exec.LookPath("pg_config")
	if err != nil {
		return "", false
	}
	// pg_config answers at once; the timeout only guards against a broken wrapper.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
	if err != nil {
		return "", false
	}
	dir := string(bytes.TrimSpace(out))
	return dir, hasServer(dir)
}

// newestBinDir returns the directory matching pattern (whose second-to-last element is a
// version such as 15 or 9.6) with the highest version that has the server binaries.
func newestBinDir(pattern string) (string, bool) {
	dirs, err := filepath.Glob(pattern)
	if err != nil {
		return "", false
	}
	slices.SortFunc(dirs, func(a, b string) int {
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, true
		}
	}
	return "", false
}

// compareVersions orders dotted numeric versions ("9.6" < "15" < "15.1"); a part that is
// not a number sorts before every number.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		av, bv := -1, -1
		if i < len(as) {
			if n, err := strconv.Atoi(as[i]); err == nil {
				av = n
			}
		}
		if i < len(bs) {
			if n, err := strconv.Atoi(bs[i]); err == nil {
				bv = n
			}
		}
		if av != bv {
			if av < bv {
				return -1
			}
			return 1
		}
	}
	return 0
}

// pathBinDir returns the directory of postgres on PATH when initdb sits beside it, so
// both come from the same installation.
func pathBinDir() (string, bool) {
	postgres, err := exec.LookPath("postgres")
	if err != nil {
		return "", false
	}
	dir := filepath.Dir(postgres)
	return dir, hasServer(dir)
}

// hasServer reports whether dir holds executable initdb and postgres binaries.
func hasServer(dir string) bool {
	if dir == "" {
		return false
	}
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}
