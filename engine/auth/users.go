package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// userColumns are the columns scanUser reads, in its order.
const userColumns = "id, username, role, token_balance, disabled_at IS NOT NULL, must_change_password, created_at"

// scanUser reads a row of userColumns followed by extra.
func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	dest := append([]any{&u.ID, &u.Username, &u.Role, &u.TokenBalance, &u.Disabled, &u.MustChangePassword, &u.CreatedAt}, extra...)
	err := row.Scan(dest...)
	return u, err
}

// User returns the user with the given id, or ErrNotFound.
func (s *Service) User(ctx context.Context, userID int64) (User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %d: %w", userID, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("user %d: %w", userID, err)
	}
	return u, nil
}

// CreateUser creates an account with a password that meets the policy. Errors:
// ErrInvalidUsername, ErrInvalidRole, *PolicyError, ErrUserExists.
func (s *Service) CreateUser(ctx context.Context, username, password, role string, mustChange bool) (User, error) {
	return s.createUser(ctx, username, password, role, mustChange, nil)
}

// roleHook, when given to createUser, runs first in its transaction and decides the
// role (an invitation's); the function it returns runs after the user row exists.
type roleHook func(tx pgx.Tx) (role string, after func(userID int64) error, err error)

func (s *Service) createUser(ctx context.Context, username, password, role string, mustChange bool, hook roleHook) (User, error) {
	if !usernameFormat.MatchString(username) {
		return User{}, ErrInvalidUsername
	}
	if hook == nil && !validRole(role) {
		return User{}, ErrInvalidRole
	}
	if err := CheckPolicy(username, password); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(password, s.params)
	if err != nil {
		return User{}, err
	}
	var u User
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		now := s.now()
		var after func(int64) error
		if hook != nil {
			var err error
			if role, after, err = hook(tx); err != nil {
				return err
			}
		}
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `INSERT INTO users
			(username, password_hash, role, must_change_password, password_changed_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $5, $5) RETURNING `+userColumns,
			username, hash, role, mustChange, now))
		if err != nil {
			return err
		}
		if after != nil {
			if err := after(u.ID); err != nil {
				return err
			}
		}
		return addHistory(ctx, tx, u.ID, hash, now)
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
		return User{}, ErrUserExists
	case errors.As(err, &pgErr) && pgErr.Code == "23514": // check_violation
		return User{}, ErrInvalidUsername
	case err != nil:
		return User{}, fmt.Errorf("create user %q: %w", username, err)
	}
	s.logger.Info("user created", "user_id", u.ID, "username", u.Username, "role", u.Role)
	return u, nil
}

// addHistory records hash as the user's newest password and forgets those older than
// the policy's history, which are no longer compared with.
func addHistory(ctx context.Context, tx pgx.Tx, userID int64, hash string, now time.Time) error {
	if _, err := tx.Exec(ctx, `INSERT INTO password_history (user_id, password_hash, created_at)
		VALUES ($1, $2, $3)`, userID, hash, now); err != nil {
		return fmt.Errorf("record password history: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM password_history WHERE user_id = $1 AND id NOT IN
		(SELECT id FROM password_history WHERE user_id = $1 ORDER BY id DESC LIMIT $2)`,
		userID, PasswordRequirements().History); err != nil {
		return fmt.Errorf("trim password history: %w", err)
	}
	return nil
}

// ChangePassword replaces the user's password after checking the old one
// (ErrInvalidCredentials). The new one must meet the policy (*PolicyError) and differ
// from the last five (ErrPasswordReused). It clears MustChangePassword. The user's
// sessions stay open; call LogoutOthers to close the other ones.
func (s *Service) ChangePassword(ctx context.Context, userID int64, oldPassword, newPassword string) error {
	// Whatever this changes, cached token checks must not outlive it.
	defer s.verified.invalidate()
	u, err := s.User(ctx, userID)
	if err != nil {
		return err
	}
	if u.Disabled {
		return ErrUserDisabled
	}
	_, current, err := s.userByName(ctx, u.Username)
	if err != nil {
		return err
	}
	if current == "" {
		return ErrInvalidCredentials
	}
	if ok, err := VerifyPassword(current, oldPassword); err != nil {
		return fmt.Errorf("change password of user %d: %w", userID, err)
	} else if !ok {
		return ErrInvalidCredentials
	}
	if err := CheckPolicy(u.Username, newPassword); err != nil {
		return err
	}
	if err := s.checkHistory(ctx, userID, current, newPassword); err != nil {
		return err
	}
	if err := s.setPassword(ctx, userID, newPassword, false, ""); err != nil {
		return err
	}
	s.logger.Info("password changed", "user_id", userID)
	return nil
}

// checkHistory returns ErrPasswordReused when password matches current or one of the
// user's recorded last passwords.
func (s *Service) checkHistory(ctx context.Context, userID int64, current, password string) error {
	rows, err := s.db.Query(ctx, `SELECT password_hash FROM password_history WHERE user_id = $1
		ORDER BY id DESC LIMIT $2`, userID, PasswordRequirements().History)
	if err != nil {
		return fmt.Errorf("read password history: %w", err)
	}
	hashes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read password history: %w", err)
	}
	for _, h := range append(hashes, current) {
		// A malformed old hash cannot match; it must not block a change either.
		if ok, _ := VerifyPassword(h, password); ok {
			return ErrPasswordReused
		}
	}
	return nil
}

// SetPassword sets the user's password without the old one, for an admin's reset: the
// policy applies but not the history, and every session of the user is revoked. With
// mustChange the user has to change it at the next login.
func (s *Service) SetPassword(ctx context.Context, userID int64, password string, mustChange bool) error {
	u, err := s.User(ctx, userID)
	if err != nil {
		return err
	}
	if err := CheckPolicy(u.Username, password); err != nil {
		return err
	}
	if err := s.setPassword(ctx, userID, password, mustChange, "password reset"); err != nil {
		return err
	}
	s.logger.Info("password reset", "user_id", userID, "must_change", mustChange)
	return nil
}

// setPassword stores the hash of password and records it in the history; with a
// revokeReason it also revokes all of the user's sessions.
func (s *Service) setPassword(ctx context.Context, userID int64, password string, mustChange bool, revokeReason string) error {
	// Whatever this changes, cached token checks must not outlive it.
	defer s.verified.invalidate()
	hash, err := HashPassword(password, s.params)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		now := s.now()
		tag, err := tx.Exec(ctx, `UPDATE users SET password_hash = $2, must_change_password = $3,
			password_changed_at = $4, updated_at = $4 WHERE id = $1`, userID, hash, mustChange, now)
		if err != nil {
			return fmt.Errorf("set password of user %d: %w", userID, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("user %d: %w", userID, ErrNotFound)
		}
		if revokeReason != "" {
			if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoked_reason = $3
				WHERE user_id = $1 AND revoked_at IS NULL`, userID, now, revokeReason); err != nil {
				return fmt.Errorf("revoke sessions of user %d: %w", userID, err)
			}
		}
		return addHistory(ctx, tx, userID, hash, now)
	})
}

// Registration modes.
const (
	RegistrationOpen   = "open"
	RegistrationInvite = "invite"
	RegistrationClosed = "closed"
)

// RegistrationMode returns who may register: RegistrationOpen, RegistrationInvite or
// RegistrationClosed (also when the setting is missing).
func (s *Service) RegistrationMode(ctx context.Context) (string, error) {
	var mode string
	err := s.db.QueryRow(ctx, `SELECT value #>> '{}' FROM settings WHERE key = 'registration'`).Scan(&mode)
	if errors.Is(err, pgx.ErrNoRows) {
		return RegistrationClosed, nil
	}
	if err != nil {
		return "", fmt.Errorf("read registration mode: %w", err)
	}
	return mode, nil
}

// SetRegistrationMode sets who may register (ErrInvalidMode for other values).
func (s *Service) SetRegistrationMode(ctx context.Context, mode string) error {
	if mode != RegistrationOpen && mode != RegistrationInvite && mode != RegistrationClosed {
		return ErrInvalidMode
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES ('registration', to_jsonb($1::text), $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		mode, s.now()); err != nil {
		return fmt.Errorf("set registration mode: %w", err)
	}
	s.logger.Info("registration mode set", "mode", mode)
	return nil
}

// Register creates an account. With registration open, anyone may register as a
// developer; with an invitation code (open or invite mode) the account gets the
// invitation's role and the code is used up in the same transaction. Without a code
// in invite mode, and always in closed mode, it returns ErrRegistrationClosed; a bad
// code is ErrInviteInvalid. Other errors are CreateUser's.
func (s *Service) Register(ctx context.Context, username, password, invite string) (User, error) {
	mode, err := s.RegistrationMode(ctx)
	if err != nil {
		return User{}, err
	}
	switch {
	case mode == RegistrationClosed:
		return User{}, ErrRegistrationClosed
	case invite == "" && mode == RegistrationInvite:
		return User{}, fmt.Errorf("%w: it needs an invitation code", ErrRegistrationClosed)
	case invite == "":
		return s.CreateUser(ctx, username, password, RoleDeveloper, false)
	}
	return s.createUser(ctx, username, password, "", false, func(tx pgx.Tx) (string, func(int64) error, error) {
		return s.takeInvite(ctx, tx, invite)
	})
}

// BootstrapUsername is the name of the first admin.
const BootstrapUsername = "admin"

// bootstrapLockID is the advisory lock that serializes Bootstrap across replicas
// ("cdsboot" in ASCII).
const bootstrapLockID int64 = 0x636473_626f6f74

// Bootstrap creates the first admin when no enabled admin has a password (users
// without a password, like the development user, do not count). With envPassword (the
// value of CDS_ADMIN_PASSWORD, which must meet the policy) the account "admin" gets that
// password; otherwise a random one, returned to be shown once, which must be changed at
// the first login. A password-less user named admin is given the password and the admin
// role. When an admin with a password exists, nothing changes and created is false.
// Replicas starting together create one admin.
func (s *Service) Bootstrap(ctx context.Context, envPassword string) (password string, created bool, err error) {
	// Whatever this changes, cached token checks must not outlive it.
	defer s.verified.invalidate()
	password, mustChange := envPassword, false
	if password == "" {
		password, mustChange = GeneratePassword(), true
	} else if err := CheckPolicy(BootstrapUsername, password); err != nil {
		return "", false, fmt.Errorf("CDS_ADMIN_PASSWORD: %w", err)
	}
	hash, err := HashPassword(password, s.params)
	if err != nil {
		return "", false, err
	}
	var id int64
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", bootstrapLockID); err != nil {
			return fmt.Errorf("take bootstrap lock: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin'
			AND password_hash IS NOT NULL AND disabled_at IS NULL)`).Scan(&exists); err != nil {
			return fmt.Errorf("look for an admin: %w", err)
		}
		if exists {
			return nil
		}
		now := s.now()
		var hasPassword, disabled bool
		err := tx.QueryRow(ctx, `SELECT id, password_hash IS NOT NULL, disabled_at IS NOT NULL
			FROM users WHERE lower(username) = $1 FOR UPDATE`, BootstrapUsername).Scan(&id, &hasPassword, &disabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			err = tx.QueryRow(ctx, `INSERT INTO users
				(username, password_hash, role, must_change_password, password_changed_at, created_at, updated_at)
				VALUES ($1, $2, 'admin', $3, $4, $4, $4) RETURNING id`,
				BootstrapUsername, hash, mustChange, now).Scan(&id)
		case err != nil:
		case hasPassword || disabled:
			// Taking over a real account would lock its owner out; an operator decides.
			return fmt.Errorf("no enabled admin has a password, and user %q exists with a password or disabled; "+
				"set an admin's password by hand", BootstrapUsername)
		default:
			_, err = tx.Exec(ctx, `UPDATE users SET password_hash = $2, role = 'admin', must_change_password = $3,
				password_changed_at = $4, updated_at = $4 WHERE id = $1`, id, hash, mustChange, now)
		}
		if err != nil {
			return fmt.Errorf("create admin: %w", err)
		}
		created = true
		return addHistory(ctx, tx, id, hash, now)
	})
	if err != nil {
		return "", false, fmt.Errorf("bootstrap: %w", err)
	}
	if !created {
		return "", false, nil
	}
	s.logger.Info("first admin created", "user_id", id, "username", BootstrapUsername, "must_change_password", mustChange)
	return password, true, nil
}
