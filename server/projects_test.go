package server

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cyberdevstudio/cds/migrations"
	"github.com/cyberdevstudio/cds/server/client"
	"github.com/cyberdevstudio/cds/server/rpc"
)

func TestProjectLifecycle(t *testing.T) {
	env := newEnv(t)
	ctx, c := t.Context(), env.client
	p, err := c.ProjectCreate(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProjectCreate(ctx, "DEMO"); !rpc.IsCode(err, rpc.CodeConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := c.ProjectCreate(ctx, "a/b"); !rpc.IsCode(err, rpc.CodeInvalidParams) {
		t.Fatalf("bad name: %v", err)
	}
	save := func(path, content string, base int64) (rpc.FileInfo, error) {
		return c.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: path, Content: content, BaseRevision: base})
	}
	f1, err := save("src/main.go", "package main\n", 0)
	if err != nil || f1.Revision != 1 || f1.Size != 13 || len(f1.SHA256) != 64 {
		t.Fatalf("save: %+v %v", f1, err)
	}
	f2, err := save("src/main.go", "package main\n\nfunc main() {}\n", 1)
	if err != nil || f2.Revision != 2 {
		t.Fatalf("update: %+v %v", f2, err)
	}
	t.Run("stale base is a conflict carrying the head", func(t *testing.T) {
		_, err := save("src/main.go", "package other\n", 1)
		var rerr *rpc.Error
		if !rpc.IsCode(err, rpc.CodeConflict) || !errors.As(err, &rerr) || rerr.Data.Current == nil || rerr.Data.Current.Revision != 2 {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("binary content round-trips as base64", func(t *testing.T) {
		bin := []byte{0, 1, 2, 0xff, 0xfe}
		content, enc := client.EncodeContent(bin)
		if _, err := c.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: "bin/blob", Content: content, Encoding: enc}); err != nil {
			t.Fatal(err)
		}
		fc, err := c.FileRead(ctx, rpc.FileReadParams{ProjectID: p.ID, Path: "bin/blob"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := client.DecodeContent(fc)
		if err != nil || !bytes.Equal(got, bin) || fc.Encoding != rpc.EncodingBase64 {
			t.Fatalf("read back %v (%s) %v", got, fc.Encoding, err)
		}
	})
	t.Run("read head and old revision", func(t *testing.T) {
		head, err := c.FileRead(ctx, rpc.FileReadParams{ProjectID: p.ID, Path: "src/main.go"})
		if err != nil || head.Revision != 2 || !strings.Contains(head.Content, "func main") {
			t.Fatalf("head %+v %v", head, err)
		}
		old, err := c.FileRead(ctx, rpc.FileReadParams{ProjectID: p.ID, Path: "src/main.go", Revision: 1})
		if err != nil || old.Content != "package main\n" {
			t.Fatalf("rev 1 %+v %v", old, err)
		}
	})
	t.Run("rename, list, history, delete", func(t *testing.T) {
		r, err := c.FileRename(ctx, rpc.FileRenameParams{ProjectID: p.ID, Path: "src/main.go", NewPath: "cmd/app/main.go", BaseRevision: 2})
		if err != nil || r.Path != "cmd/app/main.go" || r.Revision != 3 {
			t.Fatalf("rename %+v %v", r, err)
		}
		files, err := c.FileList(ctx, rpc.FileListParams{ProjectID: p.ID, Prefix: "cmd/"})
		if err != nil || len(files) != 1 || files[0].Path != "cmd/app/main.go" {
			t.Fatalf("list %+v %v", files, err)
		}
		hist, err := c.FileHistory(ctx, rpc.FileHistoryParams{ProjectID: p.ID, Path: "cmd/app/main.go"})
		if err != nil || len(hist) != 3 || hist[0].Op != "rename" || hist[2].Op != "create" {
			t.Fatalf("history %+v %v", hist, err)
		}
		d, err := c.FileDelete(ctx, rpc.FileDeleteParams{ProjectID: p.ID, Path: "cmd/app/main.go"})
		if err != nil || !d.Deleted {
			t.Fatalf("delete %+v %v", d, err)
		}
		if _, err := c.FileRead(ctx, rpc.FileReadParams{ProjectID: p.ID, Path: "cmd/app/main.go"}); !rpc.IsCode(err, rpc.CodeNotFound) {
			t.Fatalf("read deleted: %v", err)
		}
		opened, err := c.ProjectOpen(ctx, p.ID)
		if err != nil || len(opened.Files) != 1 || opened.Files[0].Path != "bin/blob" {
			t.Fatalf("open %+v %v", opened, err)
		}
	})
	t.Run("other users see nothing", func(t *testing.T) {
		_, err := env.as(t, string(rpc.RoleDeveloper)).ProjectOpen(ctx, p.ID)
		if !rpc.IsCode(err, rpc.CodeNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	if err := c.ProjectDelete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProjectOpen(ctx, p.ID); !rpc.IsCode(err, rpc.CodeNotFound) {
		t.Fatalf("open deleted: %v", err)
	}
}

func TestFileInputErrors(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MaxBodyBytes = 16 << 20 })
	ctx := t.Context()
	p, err := env.client.ProjectCreate(ctx, "attacks")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		content  string
		encoding string
		want     int
	}{
		{"dot-dot", "../etc/passwd", "x", "", rpc.CodeInvalidParams},
		{"nested dot-dot", "a/../../b", "x", "", rpc.CodeInvalidParams},
		{"absolute", "/etc/passwd", "x", "", rpc.CodeInvalidParams},
		{"NUL", "a\x00b", "x", "", rpc.CodeInvalidParams},
		{"backslash", `a\..\b`, "x", "", rpc.CodeInvalidParams},
		{"empty", "", "x", "", rpc.CodeInvalidParams},
		{"too long", strings.Repeat("a/", 600) + "b", "x", "", rpc.CodeInvalidParams},
		{"control char", "a\x1bb", "x", "", rpc.CodeInvalidParams},
		{"bad base64", "ok.txt", "!!!", rpc.EncodingBase64, rpc.CodeInvalidParams},
		{"bad encoding", "ok.txt", "x", "utf-16", rpc.CodeInvalidParams},
		{"over 10 MiB", "big.bin", strings.Repeat("x", 10<<20+1), "", rpc.CodeTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.client.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: tc.path, Content: tc.content, Encoding: tc.encoding})
			var rerr *rpc.Error
			if !errors.As(err, &rerr) || rerr.Code != tc.want || rerr.Data == nil || rerr.Data.Detail == "" {
				t.Fatalf("err = %v, want code %d with a detail", err, tc.want)
			}
		})
	}
	t.Run("exactly 10 MiB is accepted", func(t *testing.T) {
		f, err := env.client.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: "max.bin", Content: strings.Repeat("y", 10<<20)})
		if err != nil || f.Size != 10<<20 {
			t.Fatalf("%+v %v", f, err)
		}
	})
	files, err := env.client.FileList(ctx, rpc.FileListParams{ProjectID: p.ID})
	if err != nil || len(files) != 1 {
		t.Fatalf("only max.bin may exist, got %+v %v", files, err)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	if err := env.client.Health(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := env.client.Ready(ctx)
	if err != nil || r.Status != "ready" || r.Migration != migrations.Count() {
		t.Fatalf("ready %+v %v", r, err)
	}
	st, err := env.client.SystemStatus(ctx)
	if err != nil || !st.Database.OK || st.Version != "test" {
		t.Fatalf("status %+v %v", st, err)
	}
	_, _ = env.client.ProjectList(ctx)
	_ = env.client.Call(ctx, "no.such.method", nil, nil)
	resp, err := http.Get(env.url + "/no/such/path/12345")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(env.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	text := buf.String()
	for _, want := range []string{
		`api_requests_total{method="project.list",status="200"} 1`,
		`api_requests_total{method="(unknown)",status="404"} 1`,
		`api_requests_total{method="(unmatched)",status="404"} 1`,
		`api_requests_total{method="GET /ready",status="200"} 1`,
		`api_request_duration_seconds_bucket{method="system.status",le=`,
		`active_sessions 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, bad := range []string{"no.such.method", "/no/such/path"} {
		if strings.Contains(text, bad) {
			t.Errorf("metrics carry raw client input %q", bad)
		}
	}
}
