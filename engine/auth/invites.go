package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultInviteTTL is how long an invitation code stays valid unless told otherwise.
const DefaultInviteTTL = 7 * 24 * time.Hour

// invitePrefix marks invitation codes, so that they are not mistaken for passwords or
// tokens in logs and forms.
const invitePrefix = "cdsinv_"

// ErrInviteInvalid reports an invitation code that is unknown, used or expired (one
// error for all three, so that codes cannot be probed).
var ErrInviteInvalid = errors.New("invitation code unknown, already used or expired")

// ErrInvalidInvite reports invitation settings that are refused (such as its lifetime).
var ErrInvalidInvite = errors.New("invalid invitation")

// Invite is an invitation to register; it never holds the code.
type Invite struct {
	ID        int64
	Role      string
	CreatedBy int64
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateInvite makes an invitation code for role (developer or viewer; admins are
// made by admins) valid for ttl (DefaultInviteTTL when 0). The code is returned
// once; only its hash is stored.
func (s *Service) CreateInvite(ctx context.Context, creatorID int64, role string, ttl time.Duration) (Invite, string, error) {
	if role != RoleDeveloper && role != RoleViewer {
		return Invite{}, "", fmt.Errorf("%w: invitations are for developer or viewer", ErrInvalidRole)
	}
	if ttl < 0 || ttl > 90*24*time.Hour {
		return Invite{}, "", fmt.Errorf("%w: an invitation lasts at most 90 days", ErrInvalidInvite)
	}
	if ttl == 0 {
		ttl = DefaultInviteTTL
	}
	code := invitePrefix + randomToken()
	sum := sha256.Sum256([]byte(code))
	now := s.now()
	inv := Invite{Role: role, CreatedBy: creatorID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	err := s.db.QueryRow(ctx, `INSERT INTO invites (code_hash, role, created_by, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`, sum[:], role, creatorID, now, inv.ExpiresAt).Scan(&inv.ID)
	if err != nil {
		return Invite{}, "", fmt.Errorf("create invitation: %w", err)
	}
	return inv, code, nil
}

// takeInvite locks an open invitation in tx and returns its role and the step that
// marks it used by the new user.
func (s *Service) takeInvite(ctx context.Context, tx pgx.Tx, code string) (string, func(int64) error, error) {
	if !strings.HasPrefix(code, invitePrefix) {
		return "", nil, ErrInviteInvalid
	}
	sum := sha256.Sum256([]byte(code))
	now := s.now()
	var id int64
	var role string
	err := tx.QueryRow(ctx, `SELECT id, role FROM invites
		WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 FOR UPDATE`, sum[:], now).Scan(&id, &role)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, ErrInviteInvalid
	}
	if err != nil {
		return "", nil, fmt.Errorf("read invitation: %w", err)
	}
	return role, func(userID int64) error {
		if _, err := tx.Exec(ctx, `UPDATE invites SET used_at = $2, used_by = $3 WHERE id = $1`, id, now, userID); err != nil {
			return fmt.Errorf("use invitation: %w", err)
		}
		return nil
	}, nil
}
