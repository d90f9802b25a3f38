package rpc

import (
	"encoding/json"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantErr   int // code of a whole-message error
		wantBatch bool
		wantCalls []int // per call: 0 for a valid request, else the error code
		wantIDs   []string
	}{
		{name: "positional params", body: `{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}`, wantCalls: []int{0}, wantIDs: []string{"1"}},
		{name: "named params", body: `{"jsonrpc":"2.0","method":"subtract","params":{"subtrahend":23,"minuend":42},"id":"a"}`, wantCalls: []int{0}, wantIDs: []string{`"a"`}},
		{name: "notification", body: `{"jsonrpc":"2.0","method":"update","params":[1,2,3,4,5]}`, wantCalls: []int{0}, wantIDs: []string{"null"}},
		{name: "null id is a request", body: `{"jsonrpc":"2.0","method":"m","id":null}`, wantCalls: []int{0}, wantIDs: []string{"null"}},
		{name: "invalid JSON", body: `{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]`, wantErr: CodeParseError},
		{name: "empty body", body: ``, wantErr: CodeParseError},
		{name: "method not a string", body: `{"jsonrpc":"2.0","method":1,"params":"bar"}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"null"}},
		{name: "missing jsonrpc keeps id", body: `{"method":"m","id":7}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"7"}},
		{name: "wrong version", body: `{"jsonrpc":"1.0","method":"m","id":7}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"7"}},
		{name: "missing method", body: `{"jsonrpc":"2.0","id":7}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"7"}},
		{name: "empty method", body: `{"jsonrpc":"2.0","method":"","id":7}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"7"}},
		{name: "params scalar", body: `{"jsonrpc":"2.0","method":"m","params":3,"id":7}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"7"}},
		{name: "id object", body: `{"jsonrpc":"2.0","method":"m","id":{}}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"null"}},
		{name: "id boolean", body: `{"jsonrpc":"2.0","method":"m","id":true}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"null"}},
		{name: "not an object", body: `"hello"`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"null"}},
		{name: "batch invalid JSON", body: `[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method"]`, wantErr: CodeParseError},
		{name: "empty batch", body: `[]`, wantErr: CodeInvalidRequest},
		{name: "batch of one invalid", body: `[1]`, wantBatch: true, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"null"}},
		{name: "batch of invalids", body: `[1,2,3]`, wantBatch: true, wantCalls: []int{CodeInvalidRequest, CodeInvalidRequest, CodeInvalidRequest}, wantIDs: []string{"null", "null", "null"}},
		{name: "mixed batch", body: ` [{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method":"notify_hello","params":[7]},{"foo":"boo"}] `,
			wantBatch: true, wantCalls: []int{0, 0, CodeInvalidRequest}, wantIDs: []string{`"1"`, "null", "null"}},
		{name: "batch over limit", body: `[1,2,3,4,5]`, wantErr: CodeInvalidRequest},
		{name: "member names are case-sensitive", body: `{"JSONRPC":"2.0","METHOD":"m","ID":1}`, wantCalls: []int{CodeInvalidRequest}, wantIDs: []string{"null"}},
		{name: "Id is not id: a notification", body: `{"jsonrpc":"2.0","method":"a","Id":7}`, wantCalls: []int{0}, wantIDs: []string{"null"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := Decode([]byte(tc.body), 4)
			if tc.wantErr != 0 {
				if err == nil || err.Code != tc.wantErr || err.Data == nil || err.Data.Detail == "" {
					t.Fatalf("err = %v, want code %d with a detail", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if msg.Batch != tc.wantBatch || len(msg.Calls) != len(tc.wantCalls) {
				t.Fatalf("batch=%v calls=%d, want %v %d", msg.Batch, len(msg.Calls), tc.wantBatch, len(tc.wantCalls))
			}
			for i, c := range msg.Calls {
				if tc.wantCalls[i] == 0 && (c.Request == nil || c.Err != nil) {
					t.Fatalf("call %d: want valid, got %v", i, c.Err)
				}
				if tc.wantCalls[i] != 0 && (c.Err == nil || c.Err.Code != tc.wantCalls[i]) {
					t.Fatalf("call %d: want code %d, got %v", i, tc.wantCalls[i], c)
				}
				if string(c.ID) != tc.wantIDs[i] {
					t.Fatalf("call %d: id %s, want %s", i, c.ID, tc.wantIDs[i])
				}
				_ = c.String()
			}
		})
	}
}

func TestNotificationVsNullID(t *testing.T) {
	msg, _ := Decode([]byte(`[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"a","id":null}]`), 0)
	if !msg.Calls[0].Request.IsNotification() || msg.Calls[1].Request.IsNotification() {
		t.Fatal("a missing id is a notification, a null id is not")
	}
}

func TestErrorHelpers(t *testing.T) {
	codes := []int{CodeParseError, CodeInvalidRequest, CodeMethodNotFound, CodeInvalidParams, CodeInternal,
		CodeUnauthorized, CodeForbidden, CodeNotFound, CodeConflict, CodeRateLimited, CodeInsufficientBalance,
		CodeTooLarge, CodeTimeout, CodeUnavailable, -32099}
	seen := map[string]bool{}
	for _, c := range codes {
		t.Run(CodeMessage(c), func(t *testing.T) {
			if seen[CodeMessage(c)] {
				t.Fatalf("message %q used twice", CodeMessage(c))
			}
			seen[CodeMessage(c)] = true
			e := NewError(c, "x %d", 1)
			if !IsCode(e, c) || e.Error() != CodeMessage(c)+": x 1" || HTTPStatus(c) < 400 {
				t.Fatalf("bad error %v status %d", e, HTTPStatus(c))
			}
		})
	}
	if (&Error{Message: "m"}).Error() != "m" {
		t.Fatal("error without data")
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		r, min Role
		want   bool
	}{
		{RoleAdmin, RoleViewer, true}, {RoleDeveloper, RoleDeveloper, true}, {RoleViewer, RoleDeveloper, false},
		{Role("root"), RoleViewer, false},
	}
	for _, tc := range tests {
		t.Run(string(tc.r)+">="+string(tc.min), func(t *testing.T) {
			if tc.r.AtLeast(tc.min) != tc.want {
				t.Fatal("wrong order")
			}
		})
	}
	if _, err := ParseRole("root"); err == nil {
		t.Fatal("ParseRole accepted root")
	}
	if r, err := ParseRole("viewer"); err != nil || r != RoleViewer {
		t.Fatal("ParseRole viewer")
	}
	if ProjectStream("x") != "project:x" {
		t.Fatal("stream name")
	}
}

// FuzzDecode checks that no input panics the decoder and that every valid request it
// yields has a method, a 2.0 version and params that are an object or an array.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"a","params":[1],"id":1}`, `[{"jsonrpc":"2.0","method":"a"},1]`, `[]`, `{`, `null`,
		`{"jsonrpc":"2.0","method":"a","id":{"x":1}}`, `{"JSONRPC":"2.0","Method":"a","Id":1}`, "\x00", `[[[]]]`, `{"jsonrpc":"2.0","method":"a","params":null,"id":-1e9}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := Decode(body, 100)
		if err != nil {
			if err.Code != CodeParseError && err.Code != CodeInvalidRequest {
				t.Fatalf("whole-message error with code %d", err.Code)
			}
			return
		}
		for _, c := range msg.Calls {
			if (c.Request == nil) == (c.Err == nil) {
				t.Fatalf("call must be exactly one of request or error: %+v", c)
			}
			if !json.Valid(c.ID) {
				t.Fatalf("invalid id %q", c.ID)
			}
			if r := c.Request; r != nil {
				if r.Method == "" || r.JSONRPC != Version {
					t.Fatalf("bad request %+v", r)
				}
				if r.Params != nil && r.Params[0] != '{' && r.Params[0] != '[' {
					t.Fatalf("params %s", r.Params)
				}
			}
		}
	})
}

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		name string
		in   Response
		want string
	}{
		{"result", Response{ID: json.RawMessage(`1`), Result: json.RawMessage(`{"a":1}`)}, `{"jsonrpc":"2.0","id":1,"result":{"a":1}}`},
		{"null result", Response{ID: json.RawMessage(`"x"`)}, `{"jsonrpc":"2.0","id":"x","result":null}`},
		{"error without id", Response{Error: NewError(CodeNotFound, "gone")}, `{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"Not found","data":{"detail":"gone"}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendResponse(nil, tc.in)); got != tc.want {
				t.Fatalf("got %s\nwant %s", got, tc.want)
			}
		})
	}
	batch := AppendResponses(nil, []Response{tests[0].in, tests[2].in})
	var out []Response
	if err := json.Unmarshal(batch, &out); err != nil || len(out) != 2 || out[1].Error.Code != CodeNotFound {
		t.Fatalf("batch %s: %v", batch, err)
	}
}
