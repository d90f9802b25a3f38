// Package auth provides cdsd's accounts and logins: argon2id password hashes and the
// password policy, login with lockout per account and per client IP, sessions with
// rotating refresh tokens, short-lived JWT access tokens that can be revoked, password
// changes, self-registration and the first-admin bootstrap.
//
// The state lives in PostgreSQL (migration 003): nothing is cached in memory, so several
// cdsd replicas sharing a database agree, and a revocation or a role change applies to
// the next request. Every time is read from the injected Clock so tests need no sleeps.
package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Role is a user's role: RoleAdmin, RoleDeveloper or RoleViewer.
type Role = string

// The roles, from most to least privileged. They are the same names server/rpc uses;
// the engine does not import the server, so they are repeated here.
const (
	RoleAdmin     Role = "admin"
	RoleDeveloper Role = "developer"
	RoleViewer    Role = "viewer"
)

// validRole reports whether r is one of the three roles.
func validRole(r string) bool { return r == RoleAdmin || r == RoleDeveloper || r == RoleViewer }

// Clock returns the current time. Tests inject one to move time without sleeping.
type Clock func() time.Time

// Defaults of Config.
const (
	DefaultAccessTTL       = 15 * time.Minute
	DefaultRefreshTTL      = 24 * time.Hour
	DefaultLockoutAttempts = 5
	DefaultLockoutWindow   = 15 * time.Minute
	DefaultLockoutDuration = 15 * time.Minute
)

// minSigningKeyLen is the shortest HS256 key accepted: as long as the hash output.
const minSigningKeyLen = 32

// issuer is the JWT "iss" of cdsd's access tokens; tokens of any other issuer are refused.
const issuer = "cdsd"

// Config configures a Service.
type Config struct {
	// DB is the pool of the migrated database. Required.
	DB *pgxpool.Pool
	// Logger receives security events (logins, lockouts, reuse). Nil discards them.
	Logger *slog.Logger
	// SigningKey is the HS256 key of access tokens, at least 32 bytes. Required.
	SigningKey []byte
	// AccessTTL is how long an access token is valid; 0 means 15 minutes.
	AccessTTL time.Duration
	// RefreshTTL is how long a refresh token is valid after it is issued; 0 means 24
	// hours. Each refresh issues a new one, so a session in use keeps going.
	RefreshTTL time.Duration
	// Argon2 are the parameters of new password hashes; zero means DefaultParams.
	Argon2 Params
	// Clock gives the time; nil means time.Now.
	Clock Clock
	// LockoutAttempts failed logins within LockoutWindow lock an account (or a client
	// IP) for LockoutDuration. Zeros mean 5, 15 minutes and 15 minutes.
	LockoutAttempts int
	LockoutWindow   time.Duration
	LockoutDuration time.Duration
}

// Service is cdsd's authentication service. It is safe for concurrent use.
type Service struct {
	db         *pgxpool.Pool
	logger     *slog.Logger
	key        []byte
	accessTTL  time.Duration
	refreshTTL time.Duration
	params     Params
	now        Clock

	lockAttempts int
	lockWindow   time.Duration
	lockDuration time.Duration

	// dummyHash is verified when a login names no user with a password, so that the
	// answer takes as long as for a wrong password.
	dummyHash string
	// logins counts logins, to prune old rows every pruneEvery of them.
	logins atomic.Uint64
	// verified caches successful token checks while Watch runs.
	verified *verifyCache
}

// New returns a Service for cfg, filling in the defaults.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("auth: no database")
	}
	if len(cfg.SigningKey) < minSigningKeyLen {
		return nil, fmt.Errorf("auth: signing key has %d bytes, need at least %d", len(cfg.SigningKey), minSigningKeyLen)
	}
	s := &Service{
		verified:     newVerifyCache(),
		db:           cfg.DB,
		logger:       cfg.Logger,
		key:          append([]byte(nil), cfg.SigningKey...),
		accessTTL:    orDefault(cfg.AccessTTL, DefaultAccessTTL),
		refreshTTL:   orDefault(cfg.RefreshTTL, DefaultRefreshTTL),
		params:       cfg.Argon2,
		now:          cfg.Clock,
		lockAttempts: cfg.LockoutAttempts,
		lockWindow:   orDefault(cfg.LockoutWindow, DefaultLockoutWindow),
		lockDuration: orDefault(cfg.LockoutDuration, DefaultLockoutDuration),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.params == (Params{}) {
		s.params = DefaultParams()
	}
	if err := s.params.validate(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.lockAttempts <= 0 {
		s.lockAttempts = DefaultLockoutAttempts
	}
	// The dummy password is random so that no password can match it.
	dummy, err := HashPassword(randomToken(), s.params)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s.dummyHash = dummy
	return s, nil
}

// orDefault returns d when v is zero or negative.
func orDefault(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}

// Errors callers branch on. Messages never contain secrets.
var (
	// ErrInvalidCredentials is the answer to a wrong password and to an unknown user
	// alike, so that a login does not reveal which names exist.
	ErrInvalidCredentials = errors.New("invalid username or password")
	// ErrLocked is matched (errors.Is) by every *LockedError.
	ErrLocked = errors.New("too many failed logins")
	// ErrTokenInvalid reports a token that is malformed, forged or unknown.
	ErrTokenInvalid = errors.New("invalid token")
	// ErrTokenExpired reports a token past its expiry.
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenRevoked reports a token (or its session) revoked by a logout.
	ErrTokenRevoked = errors.New("token revoked")
	// ErrRefreshReused reports a refresh token that was already used: every session of
	// its login was revoked, and the user must log in again.
	ErrRefreshReused = errors.New("refresh token reused; all sessions of this login were revoked")
	// ErrUserDisabled reports an account an admin disabled.
	ErrUserDisabled = errors.New("account disabled")
	// ErrWeakPassword is matched (errors.Is) by every *PolicyError.
	ErrWeakPassword = errors.New("password does not meet the policy")
	// ErrPasswordReused reports a new password equal to one of the last few.
	ErrPasswordReused = errors.New("password was used recently; choose another")
	// ErrRegistrationClosed reports that self-registration is not open.
	ErrRegistrationClosed = errors.New("registration is closed")
	// ErrUserExists reports a username taken (regardless of case).
	ErrUserExists = errors.New("username already taken")
	// ErrInvalidUsername reports a username the schema refuses: 1 to 64 of letters,
	// digits, '.', '_' and '-', starting with a letter or digit.
	ErrInvalidUsername = errors.New("invalid username: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	// ErrInvalidRole reports a role other than admin, developer and viewer.
	ErrInvalidRole = errors.New("invalid role: must be admin, developer or viewer")
	// ErrInvalidMode reports a registration mode other than open, invite and closed.
	ErrInvalidMode = errors.New("invalid registration mode: must be open, invite or closed")
	// ErrNotFound reports a user or session that does not exist (or is not the
	// caller's).
	ErrNotFound = errors.New("not found")
)

// LockedError reports an account or client IP locked after too many failed logins. It
// matches ErrLocked.
type LockedError struct {
	// Until is when logins are accepted again.
	Until time.Time
}

// Error says when to retry.
func (e *LockedError) Error() string {
	return "too many failed logins; try again after " + e.Until.UTC().Format(time.RFC3339)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// User is an account as auth sees it.
type User struct {
	ID       int64
	Username string
	// Role is RoleAdmin, RoleDeveloper or RoleViewer.
	Role         string
	TokenBalance int64
	// Disabled is true when an admin disabled the account.
	Disabled bool
	// MustChangePassword is true until the user replaces a generated or reset password.
	MustChangePassword bool
	CreatedAt          time.Time
}
