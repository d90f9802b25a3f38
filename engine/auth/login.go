package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// usernameFormat is the users table's username check; names outside it cannot exist.
var usernameFormat = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Limits on client-supplied strings stored with a session or an attempt.
const (
	maxIPLen        = 64
	maxUserAgentLen = 512
)

// pruneEvery is how many logins pass between two prunes of old rows.
const pruneEvery = 100

// Login checks username and password and opens a session for the client at ip (used
// for the lockout counter and shown in the session list) with userAgent. It answers
// ErrInvalidCredentials for an unknown user, a user without a password and a wrong
// password alike, after the same argon2id work; *LockedError while the account or the
// IP is locked, even for the right password; ErrUserDisabled for a disabled account
// with the right password. Tokens.MustChangePassword tells the caller to restrict the
// tokens to changing the password.
func (s *Service) Login(ctx context.Context, username, password, ip, userAgent string) (Tokens, error) {
	if s.logins.Add(1)%pruneEvery == 0 {
		if err := s.Prune(ctx); err != nil {
			s.logger.Warn("prune auth tables", "err", err)
		}
	}
	ip, userAgent = clean(ip, maxIPLen), clean(userAgent, maxUserAgentLen)
	if !usernameFormat.MatchString(username) {
		// No such user can exist; do the same work as for one that does not.
		_, _ = VerifyPassword(s.dummyHash, password)
		return Tokens{}, ErrInvalidCredentials
	}
	now := s.now()
	attempt, err := s.beginAttempt(ctx, username, ip, now)
	if err != nil {
		return Tokens{}, err
	}
	// The attempt counts as failed until it is known to be a success; an error on the
	// way removes it.
	outcome := "drop"
	defer func() { s.endAttempt(ctx, attempt, outcome) }()

	if until, err := s.lockedUntil(ctx, username, ip, attempt, now); err != nil {
		return Tokens{}, err
	} else if until.After(now) {
		s.logger.Warn("login refused: locked", "username", username, "ip", ip, "until", until)
		return Tokens{}, &LockedError{Until: until}
	}

	u, hash, err := s.userByName(ctx, username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Tokens{}, err
	}
	ok := false
	if hash == "" {
		_, _ = VerifyPassword(s.dummyHash, password)
	} else if ok, err = VerifyPassword(hash, password); err != nil {
		return Tokens{}, fmt.Errorf("login %q: %w", username, err)
	}
	if !ok {
		outcome = "failure"
		s.logger.Warn("login failed", "username", username, "ip", ip)
		return Tokens{}, ErrInvalidCredentials
	}
	outcome = "success"
	if u.Disabled {
		s.logger.Warn("login refused: account disabled", "user_id", u.ID, "ip", ip)
		return Tokens{}, ErrUserDisabled
	}
	sid, refresh, err := s.createSession(ctx, u.ID, ip, userAgent, now)
	if err != nil {
		return Tokens{}, err
	}
	s.logger.Info("login", "user_id", u.ID, "username", u.Username, "ip", ip, "session_id", sid)
	return s.issue(u, sid, refresh, now)
}

// beginAttempt records a login attempt whose outcome is not known yet.
func (s *Service) beginAttempt(ctx context.Context, username, ip string, now time.Time) (int64, error) {
	var id int64
	err := s.db.QueryRow(ctx, `INSERT INTO login_attempts (username, ip, success, at)
		VALUES (lower($1), $2, NULL, $3) RETURNING id`, username, ip, now).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("record login attempt: %w", err)
	}
	return id, nil
}

// endAttempt records the outcome of attempt: "success", "failure", or "drop" to remove
// it (refused while locked, or not decided because of an error), so that it does not
// count.
func (s *Service) endAttempt(ctx context.Context, attempt int64, outcome string) {
	// The outcome must be recorded even when the client has gone away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var err error
	if outcome == "drop" {
		_, err = s.db.Exec(ctx, "DELETE FROM login_attempts WHERE id = $1", attempt)
	} else {
		_, err = s.db.Exec(ctx, "UPDATE login_attempts SET success = $2 WHERE id = $1", attempt, outcome == "success")
	}
	if err != nil {
		s.logger.Error("record login outcome", "attempt", attempt, "err", err)
	}
}

// lockedUntil returns when the lock of username or ip ends, a time not after now when
// neither is locked. Only attempts older than attempt count. An account's count starts
// after its last successful login and includes attempts still being checked; an IP's
// count is never reset and includes only failures, so that concurrent logins of
// different people behind one address do not lock each other out.
//
// A key is locked for lockDuration after a failure that is at least the
// lockAttempts-th within lockWindow.
func (s *Service) lockedUntil(ctx context.Context, username, ip string, attempt int64, now time.Time) (time.Time, error) {
	const q = `
WITH acct AS (
	SELECT at FROM login_attempts
	WHERE username = lower($1) AND id < $3 AND success IS NOT TRUE AND at > $4 AND at <= $5
	  AND id > coalesce((SELECT max(id) FROM login_attempts
	                     WHERE username = lower($1) AND id < $3 AND success), 0)
), ipf AS (
	SELECT at FROM login_attempts
	WHERE $2 <> '' AND ip = $2 AND id < $3 AND success = false AND at > $4 AND at <= $5
)
SELECT (SELECT max(at) FROM (SELECT at, count(*) OVER (ORDER BY at
            RANGE BETWEEN make_interval(secs => $6) PRECEDING AND CURRENT ROW) AS n FROM acct) a
        WHERE n >= $7 AND at > $8),
       (SELECT max(at) FROM (SELECT at, count(*) OVER (ORDER BY at
            RANGE BETWEEN make_interval(secs => $6) PRECEDING AND CURRENT ROW) AS n FROM ipf) i
        WHERE n >= $7 AND at > $8)`
	var acct, byIP *time.Time
	err := s.db.QueryRow(ctx, q, username, ip, attempt,
		now.Add(-s.lockWindow-s.lockDuration), now, s.lockWindow.Seconds(), s.lockAttempts,
		now.Add(-s.lockDuration)).Scan(&acct, &byIP)
	if err != nil {
		return time.Time{}, fmt.Errorf("check login lockout: %w", err)
	}
	var until time.Time
	for _, t := range []*time.Time{acct, byIP} {
		if t != nil && t.Add(s.lockDuration).After(until) {
			until = t.Add(s.lockDuration)
		}
	}
	return until, nil
}

// userByName returns the user named username (regardless of case) and its password
// hash, "" when it has none; ErrNotFound when there is no such user.
func (s *Service) userByName(ctx context.Context, username string) (User, string, error) {
	var hash *string
	u, err := scanUser(s.db.QueryRow(ctx, "SELECT "+userColumns+", password_hash FROM users WHERE lower(username) = lower($1)",
		username), &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, "", ErrNotFound
	}
	if err != nil {
		return User{}, "", fmt.Errorf("look up user %q: %w", username, err)
	}
	if hash == nil {
		return u, "", nil
	}
	return u, *hash, nil
}

// Prune deletes rows no longer needed: login attempts older than the lockout can look
// back (or a day, whichever is longer), revoked access tokens past their expiry, and
// sessions a week past their expiry (kept that long so that a late reuse of their
// refresh tokens is still recognised). Login calls it now and then; cdsd may also call
// it on a timer.
func (s *Service) Prune(ctx context.Context) error {
	now := s.now()
	keep := max(s.lockWindow+s.lockDuration, 24*time.Hour)
	stmts := []struct {
		sql string
		arg time.Time
	}{
		{"DELETE FROM login_attempts WHERE at < $1", now.Add(-keep)},
		{"DELETE FROM revoked_tokens WHERE expires_at < $1", now},
		{"DELETE FROM sessions WHERE expires_at < $1", now.Add(-7 * 24 * time.Hour)},
	}
	for _, st := range stmts {
		if _, err := s.db.Exec(ctx, st.sql, st.arg); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
	}
	return nil
}

// clean makes a client-supplied string storable: valid UTF-8 without NULs, at most max
// bytes.
func clean(v string, max int) string {
	v = strings.ReplaceAll(strings.ToValidUTF8(v, "\uFFFD"), "\x00", "")
	for len(v) > max {
		_, size := utf8.DecodeLastRuneInString(v)
		v = v[:len(v)-size]
	}
	return v
}
