package rpc

import "encoding/json"

// Version is the value of the jsonrpc member of every message.
const Version = "2.0"

// Request is a JSON-RPC request or, when ID is nil, a notification.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// IsNotification reports whether the request has no id member.
func (r *Request) IsNotification() bool { return r.ID == nil }

// Response is a JSON-RPC response: exactly one of Result and Error is set.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Notification is a server-pushed message on the WebSocket (a request without id).
type Notification struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// AppendResponse appends r's JSON encoding to buf. Unlike encoding/json it copies the
// already-encoded Result as is instead of re-scanning it, which matters for large
// results such as file contents.
func AppendResponse(buf []byte, r Response) []byte {
	id := r.ID
	if id == nil {
		id = null
	}
	buf = append(buf, `{"jsonrpc":"2.0","id":`...)
	buf = append(buf, id...)
	if r.Error != nil {
		e, err := json.Marshal(r.Error)
		if err != nil {
			// An *Error holds only strings and numbers; this cannot fail.
			e = []byte(`{"code":-32603,"message":"Internal error"}`)
		}
		buf = append(buf, `,"error":`...)
		buf = append(buf, e...)
	} else {
		buf = append(buf, `,"result":`...)
		if r.Result == nil {
			buf = append(buf, "null"...)
		} else {
			buf = append(buf, r.Result...)
		}
	}
	return append(buf, '}')
}

// AppendResponses appends a batch answer (a JSON array) to buf.
func AppendResponses(buf []byte, rs []Response) []byte {
	buf = append(buf, '[')
	for i, r := range rs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = AppendResponse(buf, r)
	}
	return append(buf, ']')
}
