package client

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cyberdevstudio/cds/server/rpc"
)

func TestNewNormalisesBaseURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"full URL", "http://127.0.0.1:6813", "http://127.0.0.1:6813"},
		{"bare host and port", "127.0.0.1:6813", "http://127.0.0.1:6813"},
		{"hostname", "localhost:6813", "http://localhost:6813"},
		{"https", "https://cds.example.com", "https://cds.example.com"},
		{"trailing slash", "http://127.0.0.1:6813/", "http://127.0.0.1:6813"},
		{"path prefix kept", "https://example.com/cds//", "https://example.com/cds"},
		{"IPv6", "[::1]:6813", "http://[::1]:6813"},
		{"surrounding space", "  http://127.0.0.1:6813 ", "http://127.0.0.1:6813"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.in)
			if err != nil {
				t.Fatalf("New(%q): %v", tt.in, err)
			}
			if got := c.BaseURL(); got != tt.want {
				t.Errorf("BaseURL() = %q, want %q", got, tt.want)
			}
			if got, want := c.endpoint("/rpc"), tt.want+"/rpc"; got != want {
				t.Errorf("endpoint(/rpc) = %q, want %q", got, want)
			}
		})
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "empty"},
		{"blank", "   ", "empty"},
		{"ftp scheme", "ftp://127.0.0.1:6813", "scheme must be http or https"},
		{"websocket scheme", "ws://127.0.0.1:6813", "scheme must be http or https"},
		{"no host", "http://", "no host"},
		{"port only", "http://:6813", "no host"},
		{"port out of range", "127.0.0.1:70000", "not in 1-65535"},
		{"port zero", "127.0.0.1:0", "not in 1-65535"},
		{"user info", "http://bob:secret@127.0.0.1:6813", "user info"},
		{"query", "http://127.0.0.1:6813/?x=1", "query or fragment"},
		{"fragment", "http://127.0.0.1:6813/#top", "query or fragment"},
		{"unparsable", "http://127.0.0.1:6813/%zz", "invalid server URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.in)
			if err == nil {
				t.Fatalf("New(%q) succeeded, want an error containing %q", tt.in, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	c, err := New("127.0.0.1:6813", WithToken("s3cret"), WithUserAgent("cds/test"), WithHTTPClient(nil), WithUserAgent(""))
	if err != nil {
		t.Fatal(err)
	}
	h := make(map[string][]string)
	c.header(h)
	if got := h["Authorization"]; len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want Bearer s3cret", got)
	}
	if got := h["User-Agent"]; len(got) != 1 || got[0] != "cds/test" {
		t.Errorf("User-Agent = %q, want cds/test (an empty one must not override)", got)
	}
	if c.http == nil {
		t.Error("WithHTTPClient(nil) removed the HTTP client")
	}

	anon, err := New("127.0.0.1:6813")
	if err != nil {
		t.Fatal(err)
	}
	h = make(map[string][]string)
	anon.header(h)
	if _, ok := h["Authorization"]; ok {
		t.Error("a client without a token sent an Authorization header")
	}
	if got := h["User-Agent"]; len(got) != 1 || got[0] != DefaultUserAgent {
		t.Errorf("User-Agent = %q, want %q", got, DefaultUserAgent)
	}
}

func TestRequestIDsAreUnique(t *testing.T) {
	c, err := New("127.0.0.1:6813")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for range 100 {
		id := string(c.newID())
		if seen[id] {
			t.Fatalf("id %s was handed out twice", id)
		}
		seen[id] = true
	}
}

func TestNewRequest(t *testing.T) {
	tests := []struct {
		name       string
		id         string
		params     any
		wantParams string
	}{
		{"no params", "1", nil, ""},
		{"struct params", "2", rpc.ProjectIDParams{ID: "p"}, `{"id":"p"}`},
		{"nil pointer params are omitted", "3", (*rpc.ProjectIDParams)(nil), ""},
		{"notification", "", rpc.Empty{}, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var id []byte
			if tt.id != "" {
				id = []byte(tt.id)
			}
			req, err := newRequest(id, "m", tt.params)
			if err != nil {
				t.Fatal(err)
			}
			if req.JSONRPC != rpc.Version || req.Method != "m" || string(req.ID) != tt.id {
				t.Errorf("request = %+v", req)
			}
			if string(req.Params) != tt.wantParams {
				t.Errorf("params = %s, want %s", req.Params, tt.wantParams)
			}
			if got := req.IsNotification(); got != (tt.id == "") {
				t.Errorf("IsNotification() = %v", got)
			}
		})
	}
	if _, err := newRequest(nil, "m", make(chan int)); err == nil || !strings.Contains(err.Error(), "encode params of m") {
		t.Errorf("unencodable params: err = %v", err)
	}
}

func TestDecodeResponse(t *testing.T) {
	tests := []struct {
		name string
		body string
		ok   bool
	}{
		{"result", `{"jsonrpc":"2.0","id":1,"result":{"a":1}}`, true},
		{"null result", `{"jsonrpc":"2.0","id":1,"result":null}`, true},
		{"error", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`, true},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"result":1}`, false},
		{"neither result nor error", `{"jsonrpc":"2.0","id":1}`, false},
		{"html error page", `<html>Bad Gateway</html>`, false},
		{"array", `[{"jsonrpc":"2.0","id":1,"result":1}]`, false},
		{"empty", ``, false},
		{"truncated", `{"jsonrpc":"2.0","id":1,"res`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp rpc.Response
			if got := decodeResponse([]byte(tt.body), &resp); got != tt.ok {
				t.Errorf("decodeResponse(%s) = %v, want %v", tt.body, got, tt.ok)
			}
		})
	}
}

func TestDecodeResult(t *testing.T) {
	var p rpc.Project
	if err := decodeResult("project.create", []byte(`{"id":"x","name":"demo"}`), &p); err != nil || p.Name != "demo" {
		t.Errorf("decodeResult = %v, project %+v", err, p)
	}
	if err := decodeResult("m", []byte(`garbage`), nil); err != nil {
		t.Errorf("a nil result must discard anything, got %v", err)
	}
	err := decodeResult("project.list", []byte(`"text"`), &p)
	if err == nil || !strings.Contains(err.Error(), "decode result of project.list") {
		t.Errorf("mismatched result: err = %v", err)
	}
}

func TestHTTPError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"no body", 502, "", "HTTP 502 Bad Gateway"},
		{"one line", 401, "missing token\n", "HTTP 401 Unauthorized: missing token"},
		{"first line only", 500, "boom\nstack trace\nmore", "HTTP 500 Internal Server Error: boom …"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := error(httpError(tt.status, []byte(tt.body)))
			if got := err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			var he *HTTPError
			if !errors.As(fmt.Errorf("wrapped: %w", err), &he) || he.StatusCode != tt.status {
				t.Errorf("errors.As did not find the HTTPError with status %d", tt.status)
			}
		})
	}

	t.Run("body is capped and valid UTF-8", func(t *testing.T) {
		big := bytes.Repeat([]byte("é"), maxErrorBody) // 2 bytes each: the cap splits one
		he := httpError(500, big)
		if len(he.Body) > maxErrorBody+3 {
			t.Errorf("body has %d bytes, want at most about %d", len(he.Body), maxErrorBody)
		}
		if !strings.HasPrefix(he.Body, "éé") || strings.ContainsRune(strings.TrimSuffix(he.Body, "\uFFFD"), '\uFFFD') {
			t.Errorf("body was not cut cleanly: ends with %q", he.Body[len(he.Body)-8:])
		}
	})
}

func TestNotReadyError(t *testing.T) {
	err := error(&NotReadyError{Detail: "database unreachable"})
	if got, want := err.Error(), "cdsd is not ready: database unreachable"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(fmt.Errorf("status: %w", err), ErrNotReady) {
		t.Error("errors.Is(err, ErrNotReady) = false")
	}
	if got := (&NotReadyError{}).Error(); got != ErrNotReady.Error() {
		t.Errorf("Error() without detail = %q", got)
	}
}

func TestReadLimited(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		wantErr error
	}{
		{"small", 10, nil},
		{"exactly the limit", MaxResponseBytes, nil},
		{"one byte over", MaxResponseBytes + 1, ErrResponseTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := readLimited(bytes.NewReader(make([]byte, tt.size)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && len(b) != tt.size {
				t.Errorf("read %d bytes, want %d", len(b), tt.size)
			}
		})
	}
}

func TestContentEncoding(t *testing.T) {
	tests := []struct {
		name         string
		data         []byte
		wantEncoding string
	}{
		{"text", []byte("package main\n"), rpc.EncodingUTF8},
		{"empty", []byte{}, rpc.EncodingUTF8},
		{"unicode text", []byte("Grüße, 世界"), rpc.EncodingUTF8},
		{"binary", []byte{0xff, 0x00, 0xfe, 'P', 'N', 'G'}, rpc.EncodingBase64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content, enc := EncodeContent(tt.data)
			if enc != tt.wantEncoding {
				t.Errorf("encoding = %q, want %q", enc, tt.wantEncoding)
			}
			got, err := DecodeContent(rpc.FileContent{Content: content, Encoding: enc})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("round trip = %q, want %q", got, tt.data)
			}
		})
	}
}

func TestDecodeContent(t *testing.T) {
	tests := []struct {
		name    string
		fc      rpc.FileContent
		want    string
		wantErr string
	}{
		{"no encoding means UTF-8", rpc.FileContent{Content: "hi"}, "hi", ""},
		{"utf-8", rpc.FileContent{Content: "hi", Encoding: rpc.EncodingUTF8}, "hi", ""},
		{"base64", rpc.FileContent{Content: "aGk=", Encoding: rpc.EncodingBase64}, "hi", ""},
		{"bad base64", rpc.FileContent{FileInfo: rpc.FileInfo{Path: "a.bin"}, Content: "!!", Encoding: rpc.EncodingBase64}, "", "decode base64 content of a.bin"},
		{"unknown encoding", rpc.FileContent{FileInfo: rpc.FileInfo{Path: "a.txt"}, Content: "x", Encoding: "gzip"}, "", `unknown encoding "gzip"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeContent(tt.fc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("DecodeContent = %q, want %q", got, tt.want)
			}
		})
	}
}
