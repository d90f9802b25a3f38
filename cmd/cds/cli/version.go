package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// buildVersion describes the running cds binary.
type buildVersion struct {
	Version    string `json:"version"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified,omitempty"`
}

// currentVersion combines the stamped Version with the build information the Go
// toolchain embeds: the module version for "go install …@v1.2.3", the VCS revision
// for builds inside a checkout.
func currentVersion() buildVersion {
	v := buildVersion{Version: Version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if ok {
		v = fromBuildInfo(v, info)
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

// fromBuildInfo fills what v lacks from info.
func fromBuildInfo(v buildVersion, info *debug.BuildInfo) buildVersion {
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	if v.Version != "" {
		return v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v.Version = mv
	} else if v.Commit != "" {
		v.Version = shortCommit(v.Commit)
		if v.Modified {
			v.Version += "-dirty"
		}
	}
	return v
}

// shortCommit abbreviates a commit hash the way git describe does.
func shortCommit(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// String formats the version as "cds v1.2.3 (commit abc123, go1.26.8 linux/amd64)".
func (v buildVersion) String() string {
	var details []string
	if v.Commit != "" && !strings.Contains(v.Version, shortCommit(v.Commit)) {
		c := "commit " + shortCommit(v.Commit)
		if v.Modified {
			c += ", modified"
		}
		details = append(details, c)
	}
	details = append(details, fmt.Sprintf("%s %s/%s", v.GoVersion, v.OS, v.Arch))
	return fmt.Sprintf("cds %s (%s)", v.Version, strings.Join(details, ", "))
}

var versionCommand = &command{
	name:    "version",
	summary: "print the version of cds",
	help: `Print the version of this cds binary, its commit and Go version.
With --json, print them as an object. The server's version is in cds status.`,
	run: func(_ context.Context, e *env, _ []string) error {
		v := currentVersion()
		if e.opts.json {
			return e.writeJSON(v)
		}
		_, err := fmt.Fprintln(e.stdout, v)
		return err
	},
}
