package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/server/rpc"
)

type rawAnswer struct {
	status int
	body   []byte
}

// post sends body to /rpc, with the bearer token if one is given.
func post(t testing.TB, url, body string, token ...string) rawAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/rpc", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(token) > 0 {
		req.Header.Set("Authorization", "Bearer "+token[0])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawAnswer{resp.StatusCode, b}
}

// TestJSONRPCSpecExamples walks the examples of the JSON-RPC 2.0 specification
// (section 7), with cdsd's methods standing in for subtract, sum and friends.
func TestJSONRPCSpecExamples(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		// want lists, per response in order, the id and either "result" or an error code.
		want []struct {
			id   string
			code int
		}
		wantEmpty bool
	}{
		{name: "positional params", body: `{"jsonrpc":"2.0","method":"project.create","params":["p1"],"id":1}`, wantStatus: 200,
			want: []struct {
				id   string
				code int
			}{{"1", 0}}},
		{name: "named params", body: `{"jsonrpc":"2.0","method":"project.create","params":{"name":"p2"},"id":"x"}`, wantStatus: 200,
			want: []struct {
				id   string
				code int
			}{{`"x"`, 0}}},
		{name: "notification", body: `{"jsonrpc":"2.0","method":"project.create","params":["p3"]}`, wantStatus: 204, wantEmpty: true},
		{name: "notification of unknown method", body: `{"jsonrpc":"2.0","method":"foobar"}`, wantStatus: 204, wantEmpty: true},
		{name: "non-existent method", body: `{"jsonrpc":"2.0","method":"foobar","id":"1"}`, wantStatus: 404,
			want: []struct {
				id   string
				code int
			}{{`"1"`, rpc.CodeMethodNotFound}}},
		{name: "invalid JSON", body: `{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"null", rpc.CodeParseError}}},
		{name: "invalid request object", body: `{"jsonrpc":"2.0","method":1,"params":"bar"}`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"null", rpc.CodeInvalidRequest}}},
		{name: "batch invalid JSON", body: `[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method"]`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"null", rpc.CodeParseError}}},
		{name: "empty array", body: `[]`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"null", rpc.CodeInvalidRequest}}},
		{name: "invalid batch of one", body: `[1]`, wantStatus: 200,
			want: []struct {
				id   string
				code int
			}{{"null", rpc.CodeInvalidRequest}}},
		{name: "invalid batch", body: `[1,2,3]`, wantStatus: 200,
			want: []struct {
				id   string
				code int
			}{{"null", rpc.CodeInvalidRequest}, {"null", rpc.CodeInvalidRequest}, {"null", rpc.CodeInvalidRequest}}},
		{name: "mixed batch", wantStatus: 200, body: `[
			{"jsonrpc":"2.0","method":"project.list","id":"1"},
			{"jsonrpc":"2.0","method":"system.status"},
			{"jsonrpc":"2.0","method":"project.create","params":[42],"id":"2"},
			{"foo":"boo"},
			{"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},
			{"jsonrpc":"2.0","method":"system.status","id":"9"}]`,
			want: []struct {
				id   string
				code int
			}{{`"1"`, 0}, {`"2"`, rpc.CodeInvalidParams}, {"null", rpc.CodeInvalidRequest}, {`"5"`, rpc.CodeMethodNotFound}, {`"9"`, 0}}},
		{name: "batch of notifications", body: `[{"jsonrpc":"2.0","method":"system.status","params":[]},{"jsonrpc":"2.0","method":"rpc.discover"}]`, wantStatus: 204, wantEmpty: true},
		{name: "too many positional params", body: `{"jsonrpc":"2.0","method":"project.create","params":["a","b"],"id":3}`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"3", rpc.CodeInvalidParams}}},
		{name: "unknown named param", body: `{"jsonrpc":"2.0","method":"project.create","params":{"name":"a","color":"red"},"id":3}`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"3", rpc.CodeInvalidParams}}},
		{name: "missing required param", body: `{"jsonrpc":"2.0","method":"project.open","params":{},"id":3}`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"3", rpc.CodeInvalidParams}}},
		{name: "ws-only method over HTTP", body: `{"jsonrpc":"2.0","method":"events.subscribe","params":{"stream":"project:x"},"id":3}`, wantStatus: 400,
			want: []struct {
				id   string
				code int
			}{{"3", rpc.CodeInvalidRequest}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := post(t, env.url, tc.body, env.tokens[rpc.RoleAdmin])
			if got.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", got.status, tc.wantStatus, got.body)
			}
			if tc.wantEmpty {
				if len(got.body) != 0 {
					t.Fatalf("want no body, got %s", got.body)
				}
				return
			}
			var responses []rpc.Response
			if bytes.HasPrefix(bytes.TrimSpace(got.body), []byte("[")) {
				if err := json.Unmarshal(got.body, &responses); err != nil {
					t.Fatal(err)
				}
			} else {
				var r rpc.Response
				if err := json.Unmarshal(got.body, &r); err != nil {
					t.Fatal(err)
				}
				responses = []rpc.Response{r}
			}
			if len(responses) != len(tc.want) {
				t.Fatalf("%d responses, want %d: %s", len(responses), len(tc.want), got.body)
			}
			for i, w := range tc.want {
				r := responses[i]
				if r.JSONRPC != "2.0" || string(r.ID) != w.id {
					t.Fatalf("response %d: jsonrpc %q id %s, want id %s", i, r.JSONRPC, r.ID, w.id)
				}
				if w.code == 0 {
					if r.Error != nil || r.Result == nil {
						t.Fatalf("response %d: want a result, got %+v", i, r.Error)
					}
					continue
				}
				if r.Error == nil || r.Error.Code != w.code || r.Result != nil {
					t.Fatalf("response %d: want error %d, got %s", i, w.code, got.body)
				}
				if r.Error.Data == nil || r.Error.Data.Detail == "" || r.Error.Message != rpc.CodeMessage(w.code) {
					t.Fatalf("response %d: error without a detail: %s", i, got.body)
				}
			}
		})
	}
}

func TestLimits(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.MaxBodyBytes = 1 << 20
		c.MaxBatch = 3
	})
	t.Run("body too large", func(t *testing.T) {
		big := `{"jsonrpc":"2.0","method":"project.create","params":["` + strings.Repeat("a", 1<<20) + `"],"id":1}`
		got := post(t, env.url, big, env.tokens[rpc.RoleAdmin])
		if got.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(got.body), "1 MiB limit") {
			t.Fatalf("status %d body %s", got.status, got.body)
		}
	})
	t.Run("batch too large", func(t *testing.T) {
		call := `{"jsonrpc":"2.0","method":"system.status","id":1}`
		got := post(t, env.url, "["+strings.Repeat(call+",", 3)+call+"]", env.tokens[rpc.RoleAdmin])
		if got.status != http.StatusBadRequest || !strings.Contains(string(got.body), "the limit is 3") {
			t.Fatalf("status %d body %s", got.status, got.body)
		}
	})
	t.Run("projects untouched", func(t *testing.T) {
		ps, err := env.client.ProjectList(t.Context())
		if err != nil || len(ps) != 0 {
			t.Fatalf("projects %v err %v", ps, err)
		}
	})
}

func TestCallTimeout(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.CallTimeout = time.Nanosecond })
	_, err := env.client.ProjectList(t.Context())
	if !rpc.IsCode(err, rpc.CodeTimeout) {
		t.Fatalf("err = %v, want a timeout error", err)
	}
}

func TestAuthenticationFailure(t *testing.T) {
	env := newEnv(t)
	_, err := env.as(t, "anonymous").ProjectList(t.Context())
	if !rpc.IsCode(err, rpc.CodeUnauthorized) {
		t.Fatalf("err = %v", err)
	}
}

// TestRoleMatrix calls every registered method with every role and checks that the
// answer is forbidden exactly when the role is below the method's minimum.
func TestRoleMatrix(t *testing.T) {
	env := newEnv(t)
	roles := []rpc.Role{rpc.RoleViewer, rpc.RoleDeveloper, rpc.RoleAdmin}
	for _, name := range env.srv.reg.names() {
		m := env.srv.reg.methods[name]
		for _, role := range roles {
			t.Run(name+"/"+string(role), func(t *testing.T) {
				err := env.as(t, string(role)).Call(t.Context(), name, map[string]any{}, nil)
				forbidden := rpc.IsCode(err, rpc.CodeForbidden)
				if want := !role.AtLeast(m.minRole); forbidden != want {
					t.Fatalf("role %s on %s (min %s): err %v", role, name, m.minRole, err)
				}
			})
		}
	}
}

func TestDiscover(t *testing.T) {
	env := newEnv(t)
	raw, err := env.client.Discover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenRPC string `json:"openrpc"`
		Methods []struct {
			Name    string          `json:"name"`
			MinRole string          `json:"x-min-role"`
			Params  []paramDoc      `json:"params"`
			Result  json.RawMessage `json:"result"`
		} `json:"methods"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenRPC == "" || len(doc.Methods) != len(env.srv.reg.docs) {
		t.Fatalf("discover lists %d methods, %d schema files exist", len(doc.Methods), len(env.srv.reg.docs))
	}
	for _, m := range doc.Methods {
		if _, err := rpc.ParseRole(m.MinRole); err != nil || len(m.Result) == 0 {
			t.Errorf("method %s: role %q result %s", m.Name, m.MinRole, m.Result)
		}
	}
}

func TestOriginAndHostChecks(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.LoopbackOnly = true
		c.AllowedOrigins = []string{"http://127.0.0.1:6711"}
	})
	body := `{"jsonrpc":"2.0","method":"project.list","id":1}`
	tests := []struct {
		name   string
		header map[string]string
		host   string
		want   int
	}{
		{name: "curl", want: http.StatusOK},
		{name: "same origin", header: map[string]string{"Origin": env.url}, want: http.StatusOK},
		{name: "allowed origin", header: map[string]string{"Origin": "http://127.0.0.1:6711"}, want: http.StatusOK},
		{name: "other site", header: map[string]string{"Origin": "https://evil.example"}, want: http.StatusForbidden},
		{name: "cross-site fetch without origin", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: http.StatusForbidden},
		{name: "rebound host name", host: "evil.example:6813", want: http.StatusForbidden},
		{name: "localhost name", host: "localhost:6813", want: http.StatusOK},
		{name: "ipv6 loopback", host: "[::1]:6813", want: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, env.url+"/rpc", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+env.tokens[rpc.RoleAdmin])
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, got)
			}
			if tc.want == http.StatusForbidden && !bytes.Contains(got, []byte(`"code":-32002`)) {
				t.Fatalf("refusal is not a JSON-RPC error: %s", got)
			}
		})
	}
	ps, err := env.client.ProjectList(t.Context())
	if err != nil || len(ps) != 0 {
		t.Fatalf("refused requests changed state: %v %v", ps, err)
	}
}
