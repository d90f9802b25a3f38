package rpc

import (
	"errors"
	"fmt"
	"net/http"
)

// Standard JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
)

// CyberDevStudio's own error codes. They live in -32001 … -32099, the range the
// JSON-RPC 2.0 specification reserves for implementation-defined server errors.
const (
	CodeUnauthorized        = -32001
	CodeForbidden           = -32002
	CodeNotFound            = -32003
	CodeConflict            = -32004
	CodeRateLimited         = -32005
	CodeInsufficientBalance = -32006
	CodeTooLarge            = -32007
	CodeTimeout             = -32008
	CodeUnavailable         = -32009
)

// Error is a JSON-RPC error object. It implements error, so clients return it as is
// and callers branch on Code with errors.As or IsCode.
type Error struct {
	Code    int        `json:"code"`
	Message string     `json:"message"`
	Data    *ErrorData `json:"data,omitempty"`
}

// ErrorData is the data member of every error cdsd sends: Detail says what was wrong
// and what to do; the other members are set by the errors that carry them.
type ErrorData struct {
	// Detail is a human-readable, specific explanation.
	Detail string `json:"detail"`
	// Current is the file's current state, sent with a revision conflict.
	Current *FileInfo `json:"current,omitempty"`
	// RetryAfterSeconds is set by rate-limit and lockout errors.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
}

// Error formats the error as "message: detail".
func (e *Error) Error() string {
	if e.Data != nil && e.Data.Detail != "" {
		return fmt.Sprintf("%s: %s", e.Message, e.Data.Detail)
	}
	return e.Message
}

// NewError builds an error with the standard message for code and the given detail.
func NewError(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: CodeMessage(code), Data: &ErrorData{Detail: fmt.Sprintf(format, args...)}}
}

// IsCode reports whether err is (or wraps) an *Error with the given code.
func IsCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// CodeMessage is the short message sent with each code.
func CodeMessage(code int) string {
	switch code {
	case CodeParseError:
		return "Parse error"
	case CodeInvalidRequest:
		return "Invalid Request"
	case CodeMethodNotFound:
		return "Method not found"
	case CodeInvalidParams:
		return "Invalid params"
	case CodeInternal:
		return "Internal error"
	case CodeUnauthorized:
		return "Unauthorized"
	case CodeForbidden:
		return "Forbidden"
	case CodeNotFound:
		return "Not found"
	case CodeConflict:
		return "Conflict"
	case CodeRateLimited:
		return "Rate limited"
	case CodeInsufficientBalance:
		return "Insufficient balance"
	case CodeTooLarge:
		return "Payload too large"
	case CodeTimeout:
		return "Timeout"
	case CodeUnavailable:
		return "Service unavailable"
	}
	return "Server error"
}

// HTTPStatus is the HTTP status cdsd answers with when a single (non-batch) call
// fails with code; batches always answer 200.
func HTTPStatus(code int) int {
	switch code {
	case CodeParseError, CodeInvalidRequest, CodeInvalidParams:
		return http.StatusBadRequest
	case CodeMethodNotFound, CodeNotFound:
		return http.StatusNotFound
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeConflict:
		return http.StatusConflict
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeInsufficientBalance:
		return http.StatusPaymentRequired
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
