package client

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cyberdevstudio/cds/server/rpc"
)

func TestWithTokenCopies(t *testing.T) {
	c, err := New("127.0.0.1:6813", WithToken("old"), WithUserAgent("cds/test"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.WithToken("new")
	if c.Token() != "old" || d.Token() != "new" {
		t.Errorf("tokens = %q, %q; want old, new", c.Token(), d.Token())
	}
	if d.BaseURL() != c.BaseURL() || d.userAgent != "cds/test" || d.http != c.http {
		t.Error("the copy lost the base URL, user agent or HTTP client")
	}
	h := http.Header{}
	c.WithToken("").header(h)
	if h.Get("Authorization") != "" {
		t.Errorf("an empty token sent Authorization %q", h.Get("Authorization"))
	}
}

func TestRESTError(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		wantCode   int
		wantRetry  int
		wantHTTP   bool
	}{
		{"cdsd error", 401, "", `{"error":{"code":-32001,"message":"Unauthorized","data":{"detail":"token expired"}}}`, rpc.CodeUnauthorized, 0, false},
		{"lockout with data", 429, "60", `{"error":{"code":-32005,"message":"Rate limited","data":{"detail":"locked","retry_after_seconds":42}}}`, rpc.CodeRateLimited, 42, false},
		{"retry from the header", 429, "60", `{"error":{"code":-32005,"message":"Rate limited"}}`, rpc.CodeRateLimited, 60, false},
		{"HTTP date ignored", 429, "Wed, 21 Oct 2025 07:28:00 GMT", `{"error":{"code":-32005,"message":"Rate limited"}}`, rpc.CodeRateLimited, 0, false},
		{"proxy page", 502, "", "<html>bad gateway</html>", 0, 0, true},
		{"JSON without an error", 500, "", `{"message":"oops"}`, 0, 0, true},
		{"empty body", 404, "", "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tt.body))}
			if tt.retryAfter != "" {
				resp.Header.Set("Retry-After", tt.retryAfter)
			}
			err := restError(resp, []byte(tt.body))
			var he *HTTPError
			if tt.wantHTTP {
				if !errors.As(err, &he) || he.StatusCode != tt.status {
					t.Fatalf("err = %#v, want an *HTTPError %d", err, tt.status)
				}
				return
			}
			if !rpc.IsCode(err, tt.wantCode) {
				t.Fatalf("err = %v, want code %d", err, tt.wantCode)
			}
			var re *rpc.Error
			errors.As(err, &re)
			got := 0
			if re.Data != nil {
				got = re.Data.RetryAfterSeconds
			}
			if got != tt.wantRetry {
				t.Errorf("retry after %d, want %d", got, tt.wantRetry)
			}
		})
	}
}

func TestQueryValues(t *testing.T) {
	yes := true
	tests := []struct {
		name, got, want string
	}{
		{"empty user filter", userValues(rpc.AdminUserListParams{}).Encode(), ""},
		{"user filter", userValues(rpc.AdminUserListParams{Query: "a b", Role: "viewer", Disabled: &yes, Limit: 10, Offset: 20}).Encode(),
			"disabled=true&limit=10&offset=20&query=a+b&role=viewer"},
		{"empty audit filter", auditValues(rpc.AuditParams{}).Encode(), ""},
		{"audit filter", auditValues(rpc.AuditParams{ActorID: 1, Action: "user.create", TargetType: "user", TargetID: "7",
			Since: "2025-01-01", Until: "2025-02-01T00:00:00Z", Limit: 5, BeforeID: 99}).Encode(),
			"action=user.create&actor_id=1&before_id=99&limit=5&since=2025-01-01&target_id=7&target_type=user&until=2025-02-01T00%3A00%3A00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestRESTTransportFailure(t *testing.T) {
	// Port 1 on loopback refuses connections; the error names the route.
	c, err := New("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Me(t.Context())
	if err == nil || !strings.Contains(err.Error(), "GET /auth/me") {
		t.Errorf("err = %v", err)
	}
	if err := c.REST(t.Context(), "GET", "/x", nil, func() {}, nil); err == nil || !strings.Contains(err.Error(), "encode body") {
		t.Errorf("unencodable body: %v", err)
	}
}
