package project

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Path limits. They match common file system limits (PATH_MAX-ish and NAME_MAX), so
// that every stored path can also exist in the working copy.
const (
	MaxPathLen    = 1024
	MaxSegmentLen = 255
)

// CleanPath checks that p is a valid project file path and returns it. It rejects
// rather than repairs: a path that needs cleaning is an error, so that one file has
// exactly one spelling. A valid path is relative, non-empty, valid UTF-8, uses '/' as
// its only separator, has no empty, "." or ".." segments, no leading or trailing '/',
// no backslash and no control characters, and is at most MaxPathLen bytes long with
// segments of at most MaxSegmentLen bytes.
func CleanPath(p string) (string, error) {
	bad := func(reason string, args ...any) (string, error) {
		return "", &PathError{Path: p, Reason: fmt.Sprintf(reason, args...)}
	}
	switch {
	case p == "":
		return bad("path is empty")
	case len(p) > MaxPathLen:
		return bad("path is %d bytes long; the limit is %d", len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return bad("path is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return bad("path must be relative, not start with '/'")
	case strings.HasSuffix(p, "/"):
		return bad("path must not end with '/'")
	}
	for _, r := range p {
		switch {
		case r == 0:
			return bad("path contains a NUL byte")
		case r == '\\':
			return bad("path contains a backslash; use '/' to separate directories")
		case unicode.IsControl(r):
			return bad("path contains the control character %U", r)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch {
		case seg == "":
			return bad("path contains an empty segment (\"//\")")
		case seg == ".":
			return bad("path contains a \".\" segment")
		case seg == "..":
			return bad("path contains a \"..\" segment")
		case len(seg) > MaxSegmentLen:
			return bad("path segment is %d bytes long; the limit is %d", len(seg), MaxSegmentLen)
		}
	}
	return p, nil
}

// cleanDirPrefix checks a directory prefix for ListFiles: "" (everything), or a
// valid path with an optional trailing '/'. It returns the prefix that paths under
// the directory start with ("" or "dir/").
func cleanDirPrefix(prefix string) (string, error) {
	if prefix == "" {
		return "", nil
	}
	dir, err := CleanPath(strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return "", &PathError{Path: prefix, Reason: err.(*PathError).Reason}
	}
	return dir + "/", nil
}

// parentDirs returns the proper ancestors of a clean path, nearest last:
// "a/b/c" → ["a", "a/b"].
func parentDirs(p string) []string {
	var dirs []string
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			dirs = append(dirs, p[:i])
		}
	}
	return dirs
}

// parentDir returns the directory of a clean path, "." for a top-level file.
func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}
