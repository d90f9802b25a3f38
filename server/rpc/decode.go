package rpc

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Call is one entry of a decoded message: a valid request, or the error response
// that an invalid entry must get.
type Call struct {
	// Request is set when the entry is a valid request or notification.
	Request *Request
	// Err is set when the entry is invalid; it is answered with ID (null when the
	// entry's id could not be read).
	Err *Error
	ID  json.RawMessage
}

// Message is a decoded JSON-RPC message body.
type Message struct {
	// Batch reports that the body was an array.
	Batch bool
	// Calls holds the entries in order (one for a single request).
	Calls []Call
}

// null is the JSON null id used when an id is unknown.
var null = json.RawMessage("null")

// Decode parses a JSON-RPC 2.0 message body as the specification requires: invalid
// JSON is a parse error (the returned *Error, to be answered with id null); an empty
// batch is an invalid request; every other problem is reported per entry in Calls.
// maxBatch bounds the number of entries of a batch (0 means no limit).
func Decode(body []byte, maxBatch int) (Message, *Error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return Message{}, parseError(body)
	}
	switch body[0] {
	case '[':
		var entries []json.RawMessage
		if err := json.Unmarshal(body, &entries); err != nil {
			return Message{}, parseError(body)
		}
		if len(entries) == 0 {
			return Message{}, NewError(CodeInvalidRequest, "empty batch: send at least one request object")
		}
		if maxBatch > 0 && len(entries) > maxBatch {
			return Message{}, NewError(CodeInvalidRequest, "batch has %d calls; the limit is %d", len(entries), maxBatch)
		}
		msg := Message{Batch: true, Calls: make([]Call, len(entries))}
		for i, e := range entries {
			msg.Calls[i] = decodeCall(e)
		}
		return msg, nil
	case '{':
		// One pass validates and splits the object; a syntax error anywhere in the
		// body surfaces here as a parse error.
		var members map[string]json.RawMessage
		if err := json.Unmarshal(body, &members); err != nil {
			return Message{}, parseError(body)
		}
		return Message{Calls: []Call{checkCall(toWire(members))}}, nil
	}
	if !json.Valid(body) {
		return Message{}, parseError(body)
	}
	return Message{Calls: []Call{decodeCall(body)}}, nil
}

// wireRequest keeps every member raw so that its JSON type can be checked.
type wireRequest struct {
	JSONRPC, ID, Method, Params json.RawMessage
}

func decodeCall(raw json.RawMessage) Call {
	if len(raw) == 0 || raw[0] != '{' {
		return Call{Err: NewError(CodeInvalidRequest, "a request must be a JSON object, got %s", jsonKind(raw)), ID: null}
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return Call{Err: NewError(CodeInvalidRequest, "%v", err), ID: null}
	}
	return checkCall(toWire(members))
}

// toWire picks the members by their exact names: JSON-RPC member names are
// case-sensitive, so "ID" is not an id and "Method" is not a method (encoding/json's
// struct decoding would accept both).
func toWire(m map[string]json.RawMessage) wireRequest {
	return wireRequest{JSONRPC: m["jsonrpc"], ID: m["id"], Method: m["method"], Params: m["params"]}
}

// checkCall validates the members of one request object.
func checkCall(w wireRequest) Call {
	// The id is read first so that every other error can be answered with it.
	id := null
	if w.ID != nil {
		switch w.ID[0] {
		case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			id = w.ID
		default:
			return Call{Err: NewError(CodeInvalidRequest, "id must be a string, a number or null, got %s", jsonKind(w.ID)), ID: null}
		}
	}
	fail := func(format string, args ...any) Call {
		return Call{Err: NewError(CodeInvalidRequest, format, args...), ID: id}
	}
	if w.JSONRPC == nil || jsonString(w.JSONRPC) != Version {
		return fail(`member "jsonrpc" must be exactly "2.0"`)
	}
	if w.Method == nil {
		return fail(`member "method" is missing`)
	}
	if w.Method[0] != '"' {
		return fail(`member "method" must be a string, got %s`, jsonKind(w.Method))
	}
	method := jsonString(w.Method)
	if method == "" {
		return fail(`member "method" is empty`)
	}
	if w.Params != nil && w.Params[0] != '{' && w.Params[0] != '[' {
		return fail(`member "params" must be an object or an array, got %s`, jsonKind(w.Params))
	}
	return Call{Request: &Request{JSONRPC: Version, ID: w.ID, Method: method, Params: w.Params}, ID: id}
}

// jsonString decodes a raw JSON string, taking the fast path when it has no escapes;
// it returns "" for anything that is not a string.
func jsonString(raw json.RawMessage) string {
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// jsonKind names the JSON type of a raw value for error messages.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// parseError describes where body stops being valid JSON.
func parseError(body []byte) *Error {
	if len(body) == 0 {
		return NewError(CodeParseError, "empty body: send a JSON-RPC 2.0 request object or batch array")
	}
	var v any
	err := json.Unmarshal(body, &v)
	var syn *json.SyntaxError
	if e, ok := err.(*json.SyntaxError); ok {
		syn = e
	}
	if syn != nil {
		return NewError(CodeParseError, "invalid JSON at byte %d: %v", syn.Offset, syn)
	}
	if err != nil {
		return NewError(CodeParseError, "invalid JSON: %v", err)
	}
	return NewError(CodeParseError, "invalid JSON")
}

// String renders a call for logs.
func (c Call) String() string {
	if c.Request != nil {
		return fmt.Sprintf("%s id=%s", c.Request.Method, c.ID)
	}
	return fmt.Sprintf("invalid id=%s: %v", c.ID, c.Err)
}
