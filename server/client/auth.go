package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cyberdevstudio/cds/server/rpc"
)

// WithToken returns a copy of c that authenticates with token instead (an empty
// token sends no credentials). The copy shares c's HTTP client, so connections are
// reused; c itself is unchanged. It serves a caller that logs in or refreshes.
func (c *Client) WithToken(token string) *Client {
	return &Client{base: c.base, http: c.http, token: token, userAgent: c.userAgent}
}

// Token returns the token the client sends, "" when it sends none.
func (c *Client) Token() string { return c.token }

// REST sends a REST request to the server path p (which starts with a slash) with
// the query q (nil for none) and the JSON encoding of body (nil for no body), and
// decodes a successful answer into result (a pointer, or nil to discard it; a 204
// has nothing to decode). A failed answer that carries cdsd's {"error": {...}}
// is returned as *rpc.Error (test it with rpc.IsCode); its RetryAfterSeconds is
// taken from the Retry-After header when the body lacks it. Any other failed
// answer is an *HTTPError.
func (c *Client) REST(ctx context.Context, method, p string, q url.Values, body, result any) error {
	var rd io.Reader
	if body != nil {
		payload, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode body of %s %s: %w", method, p, err)
		}
		rd = bytes.NewReader(payload)
	}
	target := c.endpoint(p)
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, p, err)
	}
	c.header(req.Header)
	req.Header.Set("Accept", "application/json")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, p, err)
	}
	defer resp.Body.Close()
	data, err := readLimited(resp.Body)
	if err != nil {
		return fmt.Errorf("read response of %s %s: %w", method, p, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return restError(resp, data)
	}
	if result == nil || resp.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, result); err != nil {
		return fmt.Errorf("decode response of %s %s: %v: %w", method, p, err, ErrBadResponse)
	}
	return nil
}

// restError turns a failed REST answer into *rpc.Error when it is cdsd's error body,
// and into *HTTPError otherwise (a proxy's page, say).
func restError(resp *http.Response, data []byte) error {
	var eb rpc.ErrorBody
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &eb) == nil && eb.Error != nil && eb.Error.Code != 0 {
		e := eb.Error
		if secs := retryAfter(resp.Header.Get("Retry-After")); secs > 0 {
			if e.Data == nil {
				e.Data = &rpc.ErrorData{}
			}
			if e.Data.RetryAfterSeconds == 0 {
				e.Data.RetryAfterSeconds = secs
			}
		}
		return e
	}
	return httpError(resp.StatusCode, data)
}

// retryAfter parses a Retry-After header given in seconds; 0 when absent or an
// HTTP date, which cdsd does not send.
func retryAfter(h string) int {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Login logs in with a username and password and returns the tokens. Wrong
// credentials fail with rpc.CodeUnauthorized; a locked account with
// rpc.CodeRateLimited, whose data says when to retry.
func (c *Client) Login(ctx context.Context, username, password string) (rpc.TokenResponse, error) {
	var t rpc.TokenResponse
	err := c.REST(ctx, http.MethodPost, "/auth/login", nil, rpc.LoginRequest{Username: username, Password: password}, &t)
	return t, err
}

// Refresh exchanges a refresh token for a new pair. The token presented becomes
// invalid; presenting it again revokes the whole login.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (rpc.TokenResponse, error) {
	var t rpc.TokenResponse
	err := c.REST(ctx, http.MethodPost, "/auth/refresh", nil, rpc.RefreshRequest{RefreshToken: refreshToken}, &t)
	return t, err
}

// Logout ends the session of the client's access token, refresh token included.
func (c *Client) Logout(ctx context.Context) error {
	return c.REST(ctx, http.MethodPost, "/auth/logout", nil, nil, nil)
}

// LogoutAll ends every session of the caller.
func (c *Client) LogoutAll(ctx context.Context) error {
	return c.REST(ctx, http.MethodPost, "/auth/logout-all", nil, nil, nil)
}

// Me returns the caller's own account.
func (c *Client) Me(ctx context.Context) (rpc.Me, error) {
	var m rpc.Me
	err := c.REST(ctx, http.MethodGet, "/auth/me", nil, nil, &m)
	return m, err
}

// Sessions lists the caller's open sessions, most recently used first.
func (c *Client) Sessions(ctx context.Context) ([]rpc.SessionInfo, error) {
	var l rpc.SessionList
	err := c.REST(ctx, http.MethodGet, "/auth/sessions", nil, nil, &l)
	return l.Sessions, err
}

// RevokeSession ends one of the caller's sessions.
func (c *Client) RevokeSession(ctx context.Context, id string) error {
	return c.REST(ctx, http.MethodDelete, "/auth/sessions/"+url.PathEscape(id), nil, nil, nil)
}

// ChangePassword replaces the caller's password. A new password that breaks the
// policy fails with rpc.CodeInvalidParams, whose detail lists the unmet rules.
func (c *Client) ChangePassword(ctx context.Context, oldPassword, newPassword string) error {
	return c.REST(ctx, http.MethodPost, "/auth/change-password", nil,
		rpc.ChangePasswordRequest{OldPassword: oldPassword, NewPassword: newPassword}, nil)
}

// PasswordRequirements returns the password policy. It needs no credentials.
func (c *Client) PasswordRequirements(ctx context.Context) (rpc.PasswordRequirements, error) {
	var r rpc.PasswordRequirements
	err := c.REST(ctx, http.MethodGet, "/auth/password-requirements", nil, nil, &r)
	return r, err
}

// Register creates an account for oneself (with an invitation code while
// registration is invite-only); it fails with rpc.CodeForbidden when registration is
// closed or the code is not good.
func (c *Client) Register(ctx context.Context, req rpc.RegisterRequest) (rpc.AdminUser, error) {
	var u rpc.AdminUser
	err := c.REST(ctx, http.MethodPost, "/auth/register", nil, req, &u)
	return u, err
}

// InviteCreate makes an invitation code (admin). The answer's Code is the only copy.
func (c *Client) InviteCreate(ctx context.Context, req rpc.InviteRequest) (rpc.InviteCreated, error) {
	var inv rpc.InviteCreated
	err := c.REST(ctx, http.MethodPost, "/admin/invites", nil, req, &inv)
	return inv, err
}

// APIKeyCreate creates an API key of the caller. The answer's Key is the only copy
// of the secret.
func (c *Client) APIKeyCreate(ctx context.Context, req rpc.APIKeyCreateRequest) (rpc.APIKeyCreated, error) {
	var k rpc.APIKeyCreated
	err := c.REST(ctx, http.MethodPost, "/auth/api-key/generate", nil, req, &k)
	return k, err
}

// APIKeys lists the caller's API keys, revoked and expired ones included.
func (c *Client) APIKeys(ctx context.Context) ([]rpc.APIKeyInfo, error) {
	var l rpc.APIKeyList
	err := c.REST(ctx, http.MethodGet, "/auth/api-keys", nil, nil, &l)
	return l.Keys, err
}

// APIKeyRevoke revokes the API key with the given id and returns it.
func (c *Client) APIKeyRevoke(ctx context.Context, id int64) (rpc.APIKeyInfo, error) {
	var k rpc.APIKeyInfo
	err := c.REST(ctx, http.MethodDelete, "/auth/api-key/revoke", url.Values{"id": {strconv.FormatInt(id, 10)}}, nil, &k)
	return k, err
}
