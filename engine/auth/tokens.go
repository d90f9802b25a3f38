package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Tokens are what a login or a refresh hands to the client.
type Tokens struct {
	// AccessToken is a JWT for the Authorization header, valid ExpiresIn seconds.
	AccessToken string
	// RefreshToken is exchanged once, by Refresh, for new tokens.
	RefreshToken string
	// TokenType is "Bearer".
	TokenType string
	ExpiresIn int
	SessionID string
	// MustChangePassword means the access token should only be accepted for changing
	// the password, logging out and reading the own account.
	MustChangePassword bool
}

// Principal is the verified identity behind an access token.
type Principal struct {
	UserID   int64
	Username string
	// Role is read from the database at verification, so a role change applies at once.
	Role      string
	SessionID string
	// TokenID is the token's jti.
	TokenID string
	// ExpiresAt is when the access token expires.
	ExpiresAt time.Time
	// MustChangePassword is read from the database, like Role.
	MustChangePassword bool
}

// Session is an open login of a user.
type Session struct {
	ID         string
	IP         string
	UserAgent  string
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time
}

// claims are an access token's JWT claims: sub is the user id in decimal.
type claims struct {
	Username  string `json:"username"`
	Role      string `json:"role"`
	SessionID string `json:"sid"`
	jwt.RegisteredClaims
}

// maxTokenLen bounds the tokens parsed, well above any token cdsd issues.
const maxTokenLen = 4096

// issue signs an access token for u in session sid and bundles it with refresh.
func (s *Service) issue(u User, sid, refresh string, now time.Time) (Tokens, error) {
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // crypto/rand.Read never fails on Linux.
	c := claims{
		Username:  u.Username,
		Role:      u.Role,
		SessionID: sid,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   strconv.FormatInt(u.ID, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.accessTTL)),
			ID:        hex.EncodeToString(jti),
		},
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
	if err != nil {
		return Tokens{}, fmt.Errorf("sign access token: %w", err)
	}
	return Tokens{
		AccessToken:        signed,
		RefreshToken:       refresh,
		TokenType:          "Bearer",
		ExpiresIn:          int(s.accessTTL / time.Second),
		SessionID:          sid,
		MustChangePassword: u.MustChangePassword,
	}, nil
}

// refreshHash is what the database keeps of a refresh token.
func refreshHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// createSession opens a session (its own family) and returns its id and refresh token.
func (s *Service) createSession(ctx context.Context, userID int64, ip, userAgent string, now time.Time) (string, string, error) {
	id := uuid.New()
	refresh := randomToken()
	_, err := s.db.Exec(ctx, `INSERT INTO sessions
		(id, family_id, user_id, refresh_hash, ip, user_agent, created_at, last_used_at, expires_at)
		VALUES ($1, $1, $2, $3, $4, $5, $6, $6, $7)`,
		id, userID, refreshHash(refresh), ip, userAgent, now, now.Add(s.refreshTTL))
	if err != nil {
		return "", "", fmt.Errorf("create session: %w", err)
	}
	return id.String(), refresh, nil
}

// VerifyAccessToken checks an access token and returns its principal. It accepts only
// HS256 tokens of cdsd signed with the service's key, not expired, whose jti and
// session are not revoked, of a user that exists and is not disabled; the role and
// username come from the database. Errors: ErrTokenInvalid, ErrTokenExpired,
// ErrTokenRevoked, ErrUserDisabled.
func (s *Service) VerifyAccessToken(ctx context.Context, token string) (Principal, error) {
	if len(token) > maxTokenLen {
		return Principal{}, ErrTokenInvalid
	}
	// A token seen before (the exact string, so its signature was checked) skips
	// the parse, the HMAC and the query until it expires or the cache is emptied.
	if cached, ok := s.verified.get(token); ok && s.now().Before(cached.ExpiresAt) {
		return cached, nil
	}
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(issuer),
		jwt.WithTimeFunc(s.now))
	if errors.Is(err, jwt.ErrTokenExpired) {
		return Principal{}, ErrTokenExpired
	}
	if err != nil {
		return Principal{}, ErrTokenInvalid
	}
	userID, err := strconv.ParseInt(c.Subject, 10, 64)
	sid, serr := uuid.Parse(c.SessionID)
	if err != nil || serr != nil || c.ID == "" {
		return Principal{}, ErrTokenInvalid
	}
	p := Principal{UserID: userID, SessionID: sid.String(), TokenID: c.ID, ExpiresAt: c.ExpiresAt.Time}
	gen, cacheable := s.verified.token()
	var disabled, sessionOK, jtiRevoked bool
	err = s.db.QueryRow(ctx, `SELECT u.username, u.role, u.disabled_at IS NOT NULL, u.must_change_password,
			s.id IS NOT NULL AND s.revoked_at IS NULL,
			EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $3)
		FROM users u LEFT JOIN sessions s ON s.id = $2 AND s.user_id = u.id
		WHERE u.id = $1`, userID, sid, c.ID).
		Scan(&p.Username, &p.Role, &disabled, &p.MustChangePassword, &sessionOK, &jtiRevoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Principal{}, ErrTokenInvalid // the user was deleted
	case err != nil:
		return Principal{}, fmt.Errorf("verify access token: %w", err)
	case disabled:
		return Principal{}, ErrUserDisabled
	case !sessionOK || jtiRevoked:
		return Principal{}, ErrTokenRevoked
	}
	if cacheable {
		s.verified.put(gen, token, p)
	}
	return p, nil
}

// Refresh exchanges a refresh token for new tokens of the same session. The token is
// rotated: the one presented becomes invalid. Presenting a rotated token again is reuse,
// which revokes every session of its family and returns ErrRefreshReused; of several
// concurrent refreshes with one token exactly one succeeds. Other errors:
// ErrTokenInvalid, ErrTokenExpired, ErrTokenRevoked, ErrUserDisabled.
func (s *Service) Refresh(ctx context.Context, refreshToken, ip, userAgent string) (Tokens, error) {
	// Whatever this changes, cached token checks must not outlive it.
	defer s.verified.invalidate()
	if raw, err := base64.RawURLEncoding.DecodeString(refreshToken); err != nil || len(raw) != 32 {
		return Tokens{}, ErrTokenInvalid
	}
	ip, userAgent = clean(ip, maxIPLen), clean(userAgent, maxUserAgentLen)
	hash := refreshHash(refreshToken)
	now := s.now()
	var out Tokens
	var reusedFamily *uuid.UUID
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var sid uuid.UUID
		var userID int64
		var expires time.Time
		var revoked bool
		// The row lock makes concurrent refreshes wait; after the winner commits, the
		// row no longer matches the old hash and the losers find it in the history.
		err := tx.QueryRow(ctx, `SELECT id, user_id, expires_at, revoked_at IS NOT NULL
			FROM sessions WHERE refresh_hash = $1 FOR UPDATE`, hash).Scan(&sid, &userID, &expires, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			var family uuid.UUID
			err := tx.QueryRow(ctx, `SELECT s.family_id FROM refresh_token_history r
				JOIN sessions s ON s.id = r.session_id WHERE r.refresh_hash = $1`, hash).Scan(&family)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrTokenInvalid
			}
			if err != nil {
				return fmt.Errorf("look up rotated refresh token: %w", err)
			}
			if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoked_reason = 'refresh token reused'
				WHERE family_id = $1 AND revoked_at IS NULL`, family, now); err != nil {
				return fmt.Errorf("revoke reused session family: %w", err)
			}
			reusedFamily = &family
			return nil // commit the revocation
		}
		if err != nil {
			return fmt.Errorf("look up refresh token: %w", err)
		}
		if revoked {
			return ErrTokenRevoked
		}
		if !expires.After(now) {
			return ErrTokenExpired
		}
		u, err := scanUser(tx.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", userID))
		if err != nil {
			return fmt.Errorf("load user of session: %w", err) // the session would have cascaded
		}
		if u.Disabled {
			return ErrUserDisabled
		}
		next := randomToken()
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_token_history (refresh_hash, session_id, rotated_at)
			VALUES ($1, $2, $3)`, hash, sid, now); err != nil {
			return fmt.Errorf("record rotated refresh token: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE sessions SET refresh_hash = $2, last_used_at = $3, expires_at = $4,
			ip = $5, user_agent = $6 WHERE id = $1`,
			sid, refreshHash(next), now, now.Add(s.refreshTTL), ip, userAgent); err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		out, err = s.issue(u, sid.String(), next, now)
		return err
	})
	if err != nil {
		return Tokens{}, err
	}
	if reusedFamily != nil {
		s.logger.Warn("refresh token reused; session family revoked", "family_id", reusedFamily.String(), "ip", ip)
		return Tokens{}, ErrRefreshReused
	}
	return out, nil
}

// Logout revokes p's session and its access token, so that neither the refresh token
// nor the access token is accepted again.
func (s *Service) Logout(ctx context.Context, p Principal) error {
	// Whatever this changes, cached token checks must not outlive it.
	defer s.verified.invalidate()
	now := s.now()
	exp := p.ExpiresAt
	if exp.IsZero() {
		exp = now.Add(s.accessTTL)
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if sid, err := uuid.Parse(p.SessionID); err == nil {
			if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $3, revoked_reason = 'logout'
				WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`, sid, p.UserID, now); err != nil {
				return fmt.Errorf("revoke session: %w", err)
			}
		}
		if p.TokenID != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
				ON CONFLICT (jti) DO NOTHING`, p.TokenID, exp); err != nil {
				return fmt.Errorf("revoke access token: %w", err)
			}
		}
		return nil
	})
}

// LogoutAll revokes every session of the user, with their access and refresh tokens.
func (s *Service) LogoutAll(ctx context.Context, userID int64) error {
	return s.revokeSessions(ctx, userID, uuid.Nil, "logout-all")
}

// LogoutOthers revokes every session of the user but keepSessionID, for example after
// a password change made in that session.
func (s *Service) LogoutOthers(ctx context.Context, userID int64, keepSessionID string) error {
	keep, err := uuid.Parse(keepSessionID)
	if err != nil {
		return fmt.Errorf("session %q: %w", keepSessionID, ErrNotFound)
	}
	return s.revokeSessions(ctx, userID, keep, "logout-others")
}

// revokeSessions revokes the user's active sessions except keep.
func (s *Service) revokeSessions(ctx context.Context, userID int64, keep uuid.UUID, reason string) error {
	// Whatever this changes, cached token checks must not outlive it.
	defer s.verified.invalidate()
	if _, err := s.db.Exec(ctx, `UPDATE sessions SET revoked_at = $3, revoked_reason = $4
		WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL`, userID, keep, s.now(), reason); err != nil {
		return fmt.Errorf("revoke sessions of user %d: %w", userID, err)
	}
	s.logger.Info("sessions revoked", "user_id", userID, "reason", reason)
	return nil
}

// Sessions lists the user's sessions that are neither revoked nor expired, most
// recently used first.
func (s *Service) Sessions(ctx context.Context, userID int64) ([]Session, error) {
	rows, err := s.db.Query(ctx, `SELECT id::text, ip, user_agent, created_at, last_used_at, expires_at
		FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
		ORDER BY last_used_at DESC, created_at DESC`, userID, s.now())
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) {
		var x Session
		err := r.Scan(&x.ID, &x.IP, &x.UserAgent, &x.CreatedAt, &x.LastUsedAt, &x.ExpiresAt)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// RevokeSession revokes one active session of the user. A session of another user, an
// unknown or already revoked one is ErrNotFound.
func (s *Service) RevokeSession(ctx context.Context, userID int64, sessionID string) error {
	// Whatever this changes, cached token checks must not outlive it.
	defer s.verified.invalidate()
	sid, err := uuid.Parse(sessionID)
	if err != nil {
		return fmt.Errorf("session %q: %w", sessionID, ErrNotFound)
	}
	tag, err := s.db.Exec(ctx, `UPDATE sessions SET revoked_at = $3, revoked_reason = 'revoked by user'
		WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`, sid, userID, s.now())
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("session %s: %w", sid, ErrNotFound)
	}
	return nil
}
