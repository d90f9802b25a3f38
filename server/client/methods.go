package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/cyberdevstudio/cds/server/rpc"
)

// Readiness is the body of GET /ready.
type Readiness struct {
	// Status is "ready" or "unavailable".
	Status string `json:"status"`
	// Migration is the newest database migration applied, when ready.
	Migration int `json:"migration,omitempty"`
	// Detail says why cdsd is not ready.
	Detail string `json:"detail,omitempty"`
}

// NotReadyError is returned by Ready when cdsd answers 503; errors.Is matches it
// with ErrNotReady.
type NotReadyError struct {
	// Detail is the server's explanation, e.g. that the database is unreachable.
	Detail string
}

// Error formats the error as "cdsd is not ready: <detail>".
func (e *NotReadyError) Error() string {
	if e.Detail == "" {
		return ErrNotReady.Error()
	}
	return ErrNotReady.Error() + ": " + e.Detail
}

// Is makes errors.Is(err, ErrNotReady) true.
func (e *NotReadyError) Is(target error) bool { return target == ErrNotReady }

// Health probes GET /health: nil means the process is up and serving.
func (c *Client) Health(ctx context.Context) error {
	status, body, err := c.get(ctx, "/health")
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if status != http.StatusOK {
		return httpError(status, body)
	}
	return nil
}

// Ready probes GET /ready. When cdsd is up but cannot serve (its database is
// unreachable, say), it returns the readiness it reported and a *NotReadyError.
func (c *Client) Ready(ctx context.Context) (Readiness, error) {
	var r Readiness
	status, body, err := c.get(ctx, "/ready")
	if err != nil {
		return r, fmt.Errorf("readiness check: %w", err)
	}
	switch status {
	case http.StatusOK:
		if err := json.Unmarshal(body, &r); err != nil {
			return r, fmt.Errorf("readiness check: %v: %w", err, ErrBadResponse)
		}
		return r, nil
	case http.StatusServiceUnavailable:
		if json.Unmarshal(body, &r) != nil {
			// Not cdsd's own answer (a proxy's, for instance): report it as is.
			return r, httpError(status, body)
		}
		return r, &NotReadyError{Detail: r.Detail}
	}
	return r, httpError(status, body)
}

// Discover returns the server's OpenRPC document (rpc.discover).
func (c *Client) Discover(ctx context.Context) (json.RawMessage, error) {
	var doc json.RawMessage
	err := c.Call(ctx, rpc.MethodDiscover, nil, &doc)
	return doc, err
}

// SystemStatus returns the server's version, uptime and database state.
func (c *Client) SystemStatus(ctx context.Context) (rpc.SystemStatus, error) {
	var st rpc.SystemStatus
	err := c.Call(ctx, rpc.MethodSystemStatus, nil, &st)
	return st, err
}

// ProjectCreate creates a project named name, owned by the caller.
func (c *Client) ProjectCreate(ctx context.Context, name string) (rpc.Project, error) {
	var p rpc.Project
	err := c.Call(ctx, rpc.MethodProjectCreate, rpc.ProjectCreateParams{Name: name}, &p)
	return p, err
}

// ProjectList returns the projects the caller can see.
func (c *Client) ProjectList(ctx context.Context) ([]rpc.Project, error) {
	var l rpc.ProjectList
	err := c.Call(ctx, rpc.MethodProjectList, nil, &l)
	return l.Projects, err
}

// ProjectOpen returns a project and its live files.
func (c *Client) ProjectOpen(ctx context.Context, id string) (rpc.ProjectOpenResult, error) {
	var r rpc.ProjectOpenResult
	err := c.Call(ctx, rpc.MethodProjectOpen, rpc.ProjectIDParams{ID: id}, &r)
	return r, err
}

// ProjectDelete deletes a project with all its files and history.
func (c *Client) ProjectDelete(ctx context.Context, id string) error {
	return c.Call(ctx, rpc.MethodProjectDelete, rpc.ProjectIDParams{ID: id}, nil)
}

// FileSave writes a file and returns its new head revision. A stale BaseRevision
// fails with rpc.CodeConflict, whose data carries the current head.
func (c *Client) FileSave(ctx context.Context, p rpc.FileSaveParams) (rpc.FileInfo, error) {
	var fi rpc.FileInfo
	err := c.Call(ctx, rpc.MethodFileSave, p, &fi)
	return fi, err
}

// FileRead reads a file's head, or the revision p names. DecodeContent turns the
// result into bytes.
func (c *Client) FileRead(ctx context.Context, p rpc.FileReadParams) (rpc.FileContent, error) {
	var fc rpc.FileContent
	err := c.Call(ctx, rpc.MethodFileRead, p, &fc)
	return fc, err
}

// FileList returns the live files of a project, optionally under a prefix.
func (c *Client) FileList(ctx context.Context, p rpc.FileListParams) ([]rpc.FileInfo, error) {
	var l rpc.FileList
	err := c.Call(ctx, rpc.MethodFileList, p, &l)
	return l.Files, err
}

// FileDelete deletes a file and returns the revision that records the deletion.
func (c *Client) FileDelete(ctx context.Context, p rpc.FileDeleteParams) (rpc.FileInfo, error) {
	var fi rpc.FileInfo
	err := c.Call(ctx, rpc.MethodFileDelete, p, &fi)
	return fi, err
}

// FileRename moves a file to p.NewPath and returns its head at the new path.
func (c *Client) FileRename(ctx context.Context, p rpc.FileRenameParams) (rpc.FileInfo, error) {
	var fi rpc.FileInfo
	err := c.Call(ctx, rpc.MethodFileRename, p, &fi)
	return fi, err
}

// FileHistory returns a file's revisions, newest first.
func (c *Client) FileHistory(ctx context.Context, p rpc.FileHistoryParams) ([]rpc.Revision, error) {
	var h rpc.FileHistory
	err := c.Call(ctx, rpc.MethodFileHistory, p, &h)
	return h.Revisions, err
}

// DecodeContent returns the bytes of a file read, decoding base64 content. An empty
// encoding means UTF-8.
func DecodeContent(fc rpc.FileContent) ([]byte, error) {
	switch fc.Encoding {
	case "", rpc.EncodingUTF8:
		return []byte(fc.Content), nil
	case rpc.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(fc.Content)
		if err != nil {
			return nil, fmt.Errorf("decode base64 content of %s: %w", fc.Path, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("content of %s has unknown encoding %q (want %q or %q)",
		fc.Path, fc.Encoding, rpc.EncodingUTF8, rpc.EncodingBase64)
}

// EncodeContent prepares bytes for FileSaveParams: text as is with encoding "utf-8",
// anything that is not valid UTF-8 as base64.
func EncodeContent(b []byte) (content, encoding string) {
	if utf8.Valid(b) {
		return string(b), rpc.EncodingUTF8
	}
	return base64.StdEncoding.EncodeToString(b), rpc.EncodingBase64
}
