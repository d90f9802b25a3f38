// Package apikey issues, lists, revokes and verifies API keys.
//
// A key reads cds_<public id>_<secret>: the public id is 12 characters [a-z0-9]
// that find the key's row, the secret 32 random bytes in unpadded base64url. Only the
// SHA-256 of the secret (of its text) is stored, and it is compared in constant time, so a copy of
// the database does not reveal usable keys. The full key is returned once, by Create.
//
// A key may carry a scope, a role no higher than its owner's role when it was
// created; it acts with the lower of its scope and its owner's current role (see
// Key.EffectiveRole). Creating and revoking keys is recorded in the audit log.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cyberdevstudio/cds/engine/audit"
)

// Prefix starts every key.
const Prefix = "cds_"

// Key format.
const (
	publicIDLen = 12
	secretBytes = 32
	// secretLen is the length of secretBytes in unpadded base64.
	secretLen = (secretBytes*8 + 5) / 6
	// keyLen is the length of a whole key.
	keyLen = len(Prefix) + publicIDLen + 1 + secretLen
	// MaxNameLen is the longest key name, in characters.
	MaxNameLen = 64
	// lastUsedEvery is how often last_used_at is written at most, so that a busy
	// key does not cost a write per request.
	lastUsedEvery = time.Minute
)

// Errors. Callers branch on them with errors.Is.
var (
	// ErrInvalid means a presented key is malformed, unknown or wrong. Verify
	// returns this very value for all three, so that an answer does not tell them
	// apart. Create wraps it for a bad name, role or expiry.
	ErrInvalid = errors.New("invalid API key")
	// ErrRevoked means the key was revoked.
	ErrRevoked = errors.New("API key revoked")
	// ErrExpired means the key's expiry time has passed.
	ErrExpired = errors.New("API key expired")
	// ErrScopeTooHigh means a key's scope was above its owner's role.
	ErrScopeTooHigh = errors.New("API key scope above the owner's role")
	// ErrNotFound means no key with that id is visible to the caller.
	ErrNotFound = errors.New("API key not found")
)

// Key describes an API key; it never holds the secret.
type Key struct {
	// ID is the key's number, used to revoke it.
	ID int64
	// PublicID is the <id> part of the key, safe to show.
	PublicID string
	// UserID is the key's owner.
	UserID int64
	// Name is the owner's label for the key.
	Name string
	// Scope is the highest role the key acts with; "" means the owner's role.
	Scope     string
	CreatedAt time.Time
	// ExpiresAt, LastUsedAt and RevokedAt are nil when the key never expires, was
	// never used or is not revoked.
	ExpiresAt, LastUsedAt, RevokedAt *time.Time
}

// EffectiveRole returns the role a request with this key acts with, given the
// owner's current role: the lower of that and the key's scope. A demoted owner's
// keys are demoted with them.
func (k Key) EffectiveRole(ownerRole string) string {
	if k.Scope != "" && level(k.Scope) < level(ownerRole) {
		return k.Scope
	}
	return ownerRole
}

// level orders roles; unknown roles are 0, below every role.
func level(role string) int {
	switch role {
	case "viewer":
		return 1
	case "developer":
		return 2
	case "admin":
		return 3
	}
	return 0
}

// Config configures a Service.
type Config struct {
	// DB is the pool of the migrated database.
	DB *pgxpool.Pool
	// Clock returns the current time; nil means time.Now. Expiry and last use
	// are judged by it.
	Clock func() time.Time
	// Logger receives failures that do not fail a request (recording last use);
	// nil discards them.
	Logger *slog.Logger
}

// Service manages API keys. It is safe for concurrent use.
type Service struct {
	db    *pgxpool.Pool
	now   func() time.Time
	log   *slog.Logger
	dummy [sha256.Size]byte // compared against when no key matches, for even timing
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("apikey: Config.DB is nil")
	}
	s := &Service{db: cfg.DB, now: cfg.Clock, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	_, _ = rand.Read(s.dummy[:]) // crypto/rand.Read never fails on Linux.
	return s, nil
}

// keyColumns are the columns scanKey reads.
const keyColumns = `id, public_id, user_id, name, coalesce(scope, ''), created_at, expires_at, last_used_at, revoked_at`

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	err := row.Scan(&k.ID, &k.PublicID, &k.UserID, &k.Name, &k.Scope, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt, &k.RevokedAt)
	return k, err
}

// checkName trims and validates a key name: 1 to 64 characters of valid UTF-8
// without control characters.
func checkName(name string) (string, error) {
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	switch {
	case !utf8.ValidString(name):
		return "", fmt.Errorf("key name is not valid UTF-8: %w", ErrInvalid)
	case n == 0:
		return "", fmt.Errorf("key name is empty: %w", ErrInvalid)
	case n > MaxNameLen:
		return "", fmt.Errorf("key name is %d characters long; the limit is %d: %w", n, MaxNameLen, ErrInvalid)
	case strings.ContainsFunc(name, unicode.IsControl):
		return "", fmt.Errorf("key name contains a control character: %w", ErrInvalid)
	}
	return name, nil
}

// Create issues a key for userID, whose role is ownerRole, and returns it with the
// full key, which is not stored and cannot be shown again. expiresAt nil means the
// key does not expire; otherwise it must lie in the future. scope "" lets the key
// act with its owner's role; a role above ownerRole is ErrScopeTooHigh. The
// creation is recorded in the audit log, in the same transaction.
func (s *Service) Create(ctx context.Context, userID int64, ownerRole, name string, expiresAt *time.Time, scope string) (Key, string, error) {
	name, err := checkName(name)
	if err != nil {
		return Key{}, "", err
	}
	if level(ownerRole) == 0 {
		return Key{}, "", fmt.Errorf("owner role %q is not a role: %w", ownerRole, ErrInvalid)
	}
	if scope != "" && level(scope) == 0 {
		return Key{}, "", fmt.Errorf("scope %q is not a role: %w", scope, ErrInvalid)
	}
	if level(scope) > level(ownerRole) {
		return Key{}, "", fmt.Errorf("scope %s, owner role %s: %w", scope, ownerRole, ErrScopeTooHigh)
	}
	if expiresAt != nil && !expiresAt.After(s.now()) {
		return Key{}, "", fmt.Errorf("expiry %s is not in the future: %w", expiresAt.Format(time.RFC3339), ErrInvalid)
	}
	secret := make([]byte, secretBytes)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails on Linux.
	secretText := base64.RawURLEncoding.EncodeToString(secret)
	hash := sha256.Sum256([]byte(secretText))
	var scopeArg *string
	if scope != "" {
		scopeArg = &scope
	}

	// A public id collision is astronomically unlikely (36^12); retry anyway rather
	// than fail a user's request on it.
	for range 3 {
		publicID := randomPublicID()
		var k Key
		err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			var err error
			k, err = scanKey(tx.QueryRow(ctx, `
				INSERT INTO api_keys (public_id, user_id, name, secret_hash, scope, created_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+keyColumns,
				publicID, userID, name, hash[:], scopeArg, s.now(), expiresAt))
			if err != nil {
				return err
			}
			after := map[string]any{"name": k.Name, "public_id": k.PublicID, "scope": k.Scope, "owner_id": userID}
			if expiresAt != nil {
				after["expires_at"] = expiresAt.UTC().Format(time.RFC3339)
			}
			return audit.Record(ctx, tx, audit.Entry{
				ActorID: userID, Action: audit.ActionAPIKeyCreate,
				TargetType: audit.TargetAPIKey, TargetID: strconv.FormatInt(k.ID, 10), After: after,
			})
		})
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return k, Prefix + publicID + "_" + secretText, nil
		case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation: public id taken
			continue
		case errors.As(err, &pgErr) && pgErr.Code == "23503": // foreign_key_violation
			return Key{}, "", fmt.Errorf("create API key: user %d does not exist: %w", userID, ErrInvalid)
		default:
			return Key{}, "", fmt.Errorf("create API key: %w", err)
		}
	}
	return Key{}, "", errors.New("create API key: no free public id after 3 tries")
}

// List returns userID's keys, revoked and expired ones included, newest first.
func (s *Service) List(ctx context.Context, userID int64) ([]Key, error) {
	rows, err := s.db.Query(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE user_id = $1 ORDER BY id DESC`, userID)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Key, error) { return scanKey(row) })
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// Revoke revokes key keyID on behalf of userID and returns it. Only the key's owner
// may revoke it, unless asAdmin; any other key is ErrNotFound. Revoking a revoked
// key returns it unchanged (revocation time kept) and records nothing.
func (s *Service) Revoke(ctx context.Context, userID, keyID int64, asAdmin bool) (Key, error) {
	var k Key
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys
			WHERE id = $1 AND (user_id = $2 OR $3) FOR UPDATE`, keyID, userID, asAdmin))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("key %d: %w", keyID, ErrNotFound)
		}
		if err != nil || k.RevokedAt != nil {
			return err
		}
		now := s.now()
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE id = $1`, keyID, now); err != nil {
			return err
		}
		k.RevokedAt = &now
		return audit.Record(ctx, tx, audit.Entry{
			ActorID: userID, Action: audit.ActionAPIKeyRevoke,
			TargetType: audit.TargetAPIKey, TargetID: strconv.FormatInt(k.ID, 10),
			Before: map[string]any{"name": k.Name, "public_id": k.PublicID, "owner_id": k.UserID, "revoked": false},
			After:  map[string]any{"revoked": true},
		})
	})
	if errors.Is(err, ErrNotFound) {
		return Key{}, err
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke API key %d: %w", keyID, err)
	}
	return k, nil
}

// IsKey reports whether token has the shape of an API key (cds_, a 12-character
// public id, _), as opposed to a JWT, so that a transport knows which check to
// apply. It does not verify anything.
func IsKey(token string) bool {
	return len(token) > len(Prefix)+publicIDLen && strings.HasPrefix(token, Prefix) &&
		isPublicID(token[len(Prefix):len(Prefix)+publicIDLen]) && token[len(Prefix)+publicIDLen] == '_'
}

// parse splits a well-formed key into its public id and secret.
func parse(key string) (publicID, secret string, ok bool) {
	if len(key) != keyLen || !strings.HasPrefix(key, Prefix) {
		return "", "", false
	}
	publicID = key[len(Prefix) : len(Prefix)+publicIDLen]
	if !isPublicID(publicID) || key[len(Prefix)+publicIDLen] != '_' {
		return "", "", false
	}
	secret = key[len(Prefix)+publicIDLen+1:]
	if _, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil {
		return "", "", false
	}
	return publicID, secret, true
}

func isPublicID(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return len(s) == publicIDLen
}

// Verify checks a presented key and returns it. A malformed, unknown or wrong key is
// ErrInvalid (the same value for all three); a right one that was revoked is
// ErrRevoked, one past its expiry ErrExpired. Verify does not look at the owner:
// the caller loads the owner, refuses a disabled one and applies
// Key.EffectiveRole. The key's last use is recorded at most once a minute.
func (s *Service) Verify(ctx context.Context, presented string) (Key, error) {
	publicID, secret, ok := parse(presented)
	if !ok {
		return Key{}, ErrInvalid
	}
	var (
		k    Key
		hash []byte
	)
	err := s.db.QueryRow(ctx, `SELECT `+keyColumns+`, secret_hash FROM api_keys WHERE public_id = $1`, publicID).
		Scan(&k.ID, &k.PublicID, &k.UserID, &k.Name, &k.Scope, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt, &k.RevokedAt, &hash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("verify API key: %w", err)
	}
	got := sha256.Sum256([]byte(secret))
	if err != nil {
		// Spend the same comparison as for a known key.
		hash = s.dummy[:]
	}
	if subtle.ConstantTimeCompare(got[:], hash) != 1 || err != nil {
		return Key{}, ErrInvalid
	}
	now := s.now()
	switch {
	case k.RevokedAt != nil:
		return Key{}, fmt.Errorf("key %s: %w", k.PublicID, ErrRevoked)
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return Key{}, fmt.Errorf("key %s: %w", k.PublicID, ErrExpired)
	}
	tag, err := s.db.Exec(ctx, `UPDATE api_keys SET last_used_at = $2
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)`, k.ID, now, now.Add(-lastUsedEvery))
	switch {
	case err != nil:
		// Last use is informational; a request with a valid key goes on.
		s.log.Warn("record API key use", "key_id", k.ID, "err", err)
	case tag.RowsAffected() == 1:
		k.LastUsedAt = &now
	}
	return k, nil
}

// randomPublicID returns 12 random characters of [a-z0-9], uniformly distributed.
func randomPublicID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	// 252 is the largest multiple of 36 below 256; bytes above it are rejected so
	// that every character is equally likely.
	const limit = 256 - 256%len(alphabet)
	out := make([]byte, 0, publicIDLen)
	buf := make([]byte, 2*publicIDLen)
	for len(out) < publicIDLen {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails on Linux.
		for _, b := range buf {
			if int(b) < limit && len(out) < publicIDLen {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}
