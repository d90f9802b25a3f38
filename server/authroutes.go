package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cyberdevstudio/cds/engine/apikey"
	"github.com/cyberdevstudio/cds/engine/audit"
	"github.com/cyberdevstudio/cds/engine/auth"
	"github.com/cyberdevstudio/cds/server/rpc"
)

// registerAuthRoutes adds the /auth REST routes (seed 000 Domain 5, seed 002 §1).
func (s *Server) registerAuthRoutes(mux *http.ServeMux) {
	s.handle(mux, "POST /auth/login", Public, s.login, rateClass(classNone))
	s.handle(mux, "POST /auth/refresh", Public, s.refresh)
	s.handle(mux, "POST /auth/register", Public, s.register, rateClass(ClassLogin))
	s.handle(mux, "GET /auth/password-requirements", Public, s.passwordRequirements)
	s.handle(mux, "POST /auth/logout", rpc.RoleViewer, s.logout, allowMustChange)
	s.handle(mux, "POST /auth/logout-all", rpc.RoleViewer, s.logoutAll, allowMustChange)
	s.handle(mux, "GET /auth/me", rpc.RoleViewer, s.me, allowMustChange)
	s.handle(mux, "POST /auth/change-password", rpc.RoleViewer, s.changePassword, allowMustChange)
	s.handle(mux, "GET /auth/sessions", rpc.RoleViewer, s.sessions)
	s.handle(mux, "DELETE /auth/sessions/{id}", rpc.RoleViewer, s.revokeSession)
	s.handle(mux, "POST /auth/api-key/generate", rpc.RoleViewer, s.apiKeyGenerate)
	s.handle(mux, "GET /auth/api-keys", rpc.RoleViewer, s.apiKeyList)
	s.handle(mux, "DELETE /auth/api-key/revoke", rpc.RoleViewer, s.apiKeyRevoke)
}

func tokenResponse(t auth.Tokens) rpc.TokenResponse {
	return rpc.TokenResponse{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: "Bearer", ExpiresIn: t.ExpiresIn, MustChangePassword: t.MustChangePassword}
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, _ Principal) error {
	var req rpc.LoginRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	// Seed 002: 5 logins per 15 minutes per client IP and account, so that people
	// behind one address do not lock each other out. Failed logins are further
	// counted per account and per IP by the lockout in engine/auth.
	if err := s.allow(ClassLogin, "login:"+clientIP(r)+":"+strings.ToLower(req.Username)); err != nil {
		return err
	}
	t, err := s.cfg.Auth.Login(r.Context(), req.Username, req.Password, clientIP(r), r.UserAgent())
	if err != nil {
		s.auditLoginFailure(r, req.Username, err)
		return err
	}
	writeJSON(w, http.StatusOK, tokenResponse(t))
	return nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request, _ Principal) error {
	var req rpc.RefreshRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	t, err := s.cfg.Auth.Refresh(r.Context(), req.RefreshToken, clientIP(r), r.UserAgent())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenResponse(t))
	return nil
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, _ Principal) error {
	var req rpc.RegisterRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	u, err := s.cfg.Auth.Register(r.Context(), req.Username, req.Password, req.Invite)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, toAdminUserFromAuth(u))
	return nil
}

func (s *Server) passwordRequirements(w http.ResponseWriter, _ *http.Request, _ Principal) error {
	q := auth.PasswordRequirements()
	writeJSON(w, http.StatusOK, rpc.PasswordRequirements{
		MinLength: q.MinLength, MaxLength: q.MaxLength, Upper: q.Upper, Lower: q.Lower, Digit: q.Digit,
		Special: q.Special, History: q.History, NotUsername: q.NotUsername,
	})
	return nil
}

// authPrincipal converts back to the engine's view of a token's caller.
func authPrincipal(p Principal) auth.Principal {
	return auth.Principal{UserID: p.UserID, Username: p.Username, Role: string(p.Role), SessionID: p.SessionID, TokenID: p.TokenID, ExpiresAt: p.ExpiresAt}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p Principal) error {
	if p.SessionID == "" {
		return rpc.NewError(rpc.CodeInvalidRequest, "an API key has no session to log out of; revoke the key instead (DELETE /auth/api-key/revoke)")
	}
	if err := s.cfg.Auth.Logout(r.Context(), authPrincipal(p)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) logoutAll(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.cfg.Auth.LogoutAll(r.Context(), p.UserID); err != nil {
		return err
	}
	if p.SessionID != "" {
		// The presented token's own jti goes on the revocation list too.
		if err := s.cfg.Auth.Logout(r.Context(), authPrincipal(p)); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, p Principal) error {
	u, err := s.cfg.Auth.User(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rpc.Me{
		ID: u.ID, Username: u.Username, Role: string(p.Role), TokenBalance: u.TokenBalance,
		MustChangePassword: u.MustChangePassword, CreatedAt: u.CreatedAt, SessionID: p.SessionID,
	})
	return nil
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rpc.ChangePasswordRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := s.cfg.Auth.ChangePassword(r.Context(), p.UserID, req.OldPassword, req.NewPassword); err != nil {
		return err
	}
	// A changed password ends every other login: whoever knew the old one is out.
	if err := s.cfg.Auth.LogoutOthers(r.Context(), p.UserID, p.SessionID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) sessions(w http.ResponseWriter, r *http.Request, p Principal) error {
	list, err := s.cfg.Auth.Sessions(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	out := rpc.SessionList{Sessions: make([]rpc.SessionInfo, len(list))}
	for i, x := range list {
		out.Sessions[i] = rpc.SessionInfo{ID: x.ID, IP: x.IP, UserAgent: x.UserAgent, CreatedAt: x.CreatedAt,
			LastUsedAt: x.LastUsedAt, ExpiresAt: x.ExpiresAt, Current: x.ID == p.SessionID}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) revokeSession(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.cfg.Auth.RevokeSession(r.Context(), p.UserID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiKeyGenerate(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rpc.APIKeyCreateRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if p.APIKeyID != 0 {
		return rpc.NewError(rpc.CodeForbidden, "API keys cannot create API keys; log in with a password")
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(time.Now()) {
		return rpc.NewError(rpc.CodeInvalidParams, "expires_at %s is in the past", req.ExpiresAt.Format(time.RFC3339))
	}
	k, secret, err := s.cfg.Keys.Create(r.Context(), p.UserID, string(p.Role), req.Name, req.ExpiresAt, req.Scope)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rpc.APIKeyCreated{APIKeyInfo: toKeyInfo(k), Key: secret})
	return nil
}

func (s *Server) apiKeyList(w http.ResponseWriter, r *http.Request, p Principal) error {
	keys, err := s.cfg.Keys.List(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	out := rpc.APIKeyList{Keys: make([]rpc.APIKeyInfo, len(keys))}
	for i, k := range keys {
		out.Keys[i] = toKeyInfo(k)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) apiKeyRevoke(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := strconv.ParseInt(r.URL.Query().Get("id"), 10, 64)
	if err != nil || id <= 0 {
		return rpc.NewError(rpc.CodeInvalidParams, "query parameter id must be the key's number (GET /auth/api-keys lists them)")
	}
	k, err := s.cfg.Keys.Revoke(r.Context(), p.UserID, id, p.Role == rpc.RoleAdmin)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toKeyInfo(k))
	return nil
}

func toKeyInfo(k apikey.Key) rpc.APIKeyInfo {
	return rpc.APIKeyInfo{ID: k.ID, Name: k.Name, Scope: k.Scope, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt}
}

// auditLoginFailure records a failed login (and a lockout) as a security event. The
// attempted name is recorded, never the password.
func (s *Server) auditLoginFailure(r *http.Request, username string, err error) {
	action := audit.ActionLoginFailed
	if errors.Is(err, auth.ErrLocked) {
		action = audit.ActionLockout
	} else if !errors.Is(err, auth.ErrInvalidCredentials) && !errors.Is(err, auth.ErrUserDisabled) {
		return
	}
	e := audit.Entry{ActorName: truncate(username, 64), Action: action, TargetType: audit.TargetUser, TargetID: truncate(username, 64),
		After: map[string]any{"reason": err.Error()}}
	ctx := audit.WithRequest(r.Context(), clientIP(r), RequestID(r.Context()))
	if aerr := audit.Record(ctx, s.cfg.Store.Pool(), e); aerr != nil {
		s.log.Error("record login failure", "request_id", RequestID(r.Context()), "err", aerr)
	}
}
