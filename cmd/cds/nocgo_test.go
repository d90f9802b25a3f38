package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// engineModule is the import path prefix of the domain packages cds must not link:
// they pull in cgo (llama.cpp) and the daemon's dependencies.
const engineModule = "github.com/cyberdevstudio/cds/engine"

// goCommand runs the go tool in this package's directory without cgo.
func goCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	// go test puts its own toolchain first on PATH, so "go" is the one testing us.
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// TestLinksNoEngineAndNoCgo keeps cds a pure-Go client that builds anywhere: no
// engine package and no runtime/cgo among its dependencies.
func TestLinksNoEngineAndNoCgo(t *testing.T) {
	var stderr bytes.Buffer
	cmd := goCommand(t, "list", "-deps", ".")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.String())
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages: %q", len(deps), deps)
	}
	var ownClient bool
	for _, dep := range deps {
		if dep == engineModule || strings.HasPrefix(dep, engineModule+"/") {
			t.Errorf("cds depends on %s; it must reach the engine only through cdsd's API", dep)
		}
		if dep == "runtime/cgo" {
			t.Error("cds depends on runtime/cgo; it must build with CGO_ENABLED=0")
		}
		ownClient = ownClient || dep == "github.com/cyberdevstudio/cds/server/client"
	}
	if !ownClient {
		t.Error("server/client is not among the dependencies: is this the cds package?")
	}
}

// TestBuildsWithoutCgo builds the binary as a release would, with cgo off.
func TestBuildsWithoutCgo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cds")
	out, err := goCommand(t, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/cds: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("cds version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "cds ") {
		t.Errorf("cds version printed %q", out)
	}
}
