package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/cyberdevstudio/cds/engine/apikey"
	"github.com/cyberdevstudio/cds/engine/auth"
	"github.com/cyberdevstudio/cds/engine/billing"
	"github.com/cyberdevstudio/cds/engine/users"
	"github.com/cyberdevstudio/cds/server/rpc"
)

// errNoCredentials is the answer to a request that presents no token at all.
var errNoCredentials = rpc.NewError(rpc.CodeUnauthorized, "no credentials: send Authorization: Bearer <access token or API key> (log in with POST /auth/login or cds login)")

// credentials returns the token a request presents: a Bearer token (access token or
// API key) or, as the seeds name it, an X-Cyber-Token header.
func credentials(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return strings.TrimSpace(r.Header.Get("X-Cyber-Token"))
}

// TokenAuthenticator authenticates requests with cdsd's own access tokens and API
// keys.
type TokenAuthenticator struct {
	Auth *auth.Service
	Keys *apikey.Service
}

// Authenticate resolves the caller of r, or returns an *rpc.Error saying why not.
func (a *TokenAuthenticator) Authenticate(r *http.Request) (Principal, error) {
	tok := credentials(r)
	if tok == "" {
		return Principal{}, errNoCredentials
	}
	ctx := r.Context()
	if apikey.IsKey(tok) {
		return a.apiKey(ctx, tok)
	}
	p, err := a.Auth.VerifyAccessToken(ctx, tok)
	if err != nil {
		return Principal{}, authError(err)
	}
	return Principal{
		UserID: p.UserID, Username: p.Username, Role: rpc.Role(p.Role),
		SessionID: p.SessionID, TokenID: p.TokenID, ExpiresAt: p.ExpiresAt,
		MustChangePassword: p.MustChangePassword,
	}, nil
}

func (a *TokenAuthenticator) apiKey(ctx context.Context, tok string) (Principal, error) {
	k, err := a.Keys.Verify(ctx, tok)
	if err != nil {
		return Principal{}, authError(err)
	}
	u, err := a.Auth.User(ctx, k.UserID)
	if err != nil {
		return Principal{}, authError(err)
	}
	if u.Disabled {
		return Principal{}, authError(auth.ErrUserDisabled)
	}
	return Principal{UserID: u.ID, Username: u.Username, Role: rpc.Role(k.EffectiveRole(u.Role)), APIKeyID: k.ID}, nil
}

// authError maps a credential failure to an Unauthorized error with a next step.
func authError(err error) *rpc.Error {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return rpc.NewError(rpc.CodeUnauthorized, "access token expired: refresh it with POST /auth/refresh (cds does this itself)")
	case errors.Is(err, auth.ErrTokenRevoked):
		return rpc.NewError(rpc.CodeUnauthorized, "access token revoked (logged out): log in again")
	case errors.Is(err, auth.ErrUserDisabled):
		return rpc.NewError(rpc.CodeUnauthorized, "account disabled: ask an admin")
	case errors.Is(err, apikey.ErrRevoked):
		return rpc.NewError(rpc.CodeUnauthorized, "API key revoked: create a new one")
	case errors.Is(err, apikey.ErrExpired):
		return rpc.NewError(rpc.CodeUnauthorized, "API key expired: create a new one")
	case errors.Is(err, auth.ErrTokenInvalid), errors.Is(err, apikey.ErrInvalid), errors.Is(err, auth.ErrNotFound):
		return rpc.NewError(rpc.CodeUnauthorized, "invalid credentials: log in again (POST /auth/login or cds login)")
	}
	var re *rpc.Error
	if errors.As(err, &re) {
		return re
	}
	return rpc.NewError(rpc.CodeUnavailable, "cannot check credentials now; retry shortly")
}

// mapAccountError maps errors of the account engines (auth, API keys, users,
// billing); nil for anything else.
func mapAccountError(err error) *rpc.Error {
	var (
		locked *auth.LockedError
		policy *auth.PolicyError
		poor   *billing.InsufficientBalanceError
	)
	switch {
	case errors.As(err, &locked):
		e := rpc.NewError(rpc.CodeRateLimited, "%v", err)
		e.Data.RetryAfterSeconds = max(1, int(time.Until(locked.Until).Seconds()+0.999))
		return e
	case errors.As(err, &policy):
		return rpc.NewError(rpc.CodeInvalidParams, "%v; GET /auth/password-requirements lists the rules", err)
	case errors.As(err, &poor):
		return rpc.NewError(rpc.CodeInsufficientBalance, "%v; ask an admin to top up your balance", err)
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrRefreshReused):
		return rpc.NewError(rpc.CodeUnauthorized, "%v", err)
	case errors.Is(err, auth.ErrTokenInvalid), errors.Is(err, auth.ErrTokenExpired), errors.Is(err, auth.ErrTokenRevoked),
		errors.Is(err, auth.ErrUserDisabled):
		return authError(err)
	case errors.Is(err, auth.ErrInviteInvalid):
		return rpc.NewError(rpc.CodeForbidden, "%v; ask an admin for a new invitation", err)
	case errors.Is(err, auth.ErrRegistrationClosed):
		return rpc.NewError(rpc.CodeForbidden, "%v; ask an admin for an account", err)
	case errors.Is(err, auth.ErrUserExists), errors.Is(err, users.ErrLastAdmin):
		return rpc.NewError(rpc.CodeConflict, "%v", err)
	case errors.Is(err, auth.ErrPasswordReused), errors.Is(err, auth.ErrWeakPassword), errors.Is(err, auth.ErrInvalidUsername),
		errors.Is(err, auth.ErrInvalidRole), errors.Is(err, auth.ErrInvalidMode), errors.Is(err, users.ErrInvalid),
		errors.Is(err, apikey.ErrScopeTooHigh), errors.Is(err, billing.ErrInvalid), errors.Is(err, auth.ErrInvalidInvite):
		return rpc.NewError(rpc.CodeInvalidParams, "%v", err)
	case errors.Is(err, auth.ErrNotFound), errors.Is(err, users.ErrNotFound), errors.Is(err, apikey.ErrNotFound),
		errors.Is(err, billing.ErrNotFound):
		return rpc.NewError(rpc.CodeNotFound, "%v", err)
	}
	return nil
}
