package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// User is an account of cdsd.
type User struct {
	// ID is the user's permanent number.
	ID int64
	// Username is unique regardless of case and keeps the case it was created with.
	Username string
	// Role is "admin", "developer" or "viewer".
	Role string
	// TokenBalance is how many LLM tokens the user may still spend.
	TokenBalance int64
	// CreatedAt is when the account was created.
	CreatedAt time.Time
}

// userColumns are the columns scanUser reads, in its order.
const userColumns = "id, username, role, token_balance, created_at"

// roles are the roles the users table accepts; server/rpc defines their meaning.
var roles = map[string]bool{"admin": true, "developer": true, "viewer": true}

// EnsureUser returns the user named username (compared without regard to case), creating
// it with role and no password when it does not exist. An existing user keeps its role.
// Concurrent calls for the same name all return the same user. A role other than admin,
// developer or viewer, or a malformed username, is ErrInvalid.
func (s *Store) EnsureUser(ctx context.Context, username, role string) (User, error) {
	if !roles[role] {
		return User{}, fmt.Errorf("ensure user %q: role %q: %w", username, role, ErrInvalid)
	}
	// The insert finds no row when the name exists; the select then reads it. A user
	// deleted between the two is simply created again, hence the loop.
	for range 3 {
		u, err := scanUser(s.pool.QueryRow(ctx, `INSERT INTO users (username, role) VALUES ($1, $2)
			ON CONFLICT ((lower(username))) DO NOTHING
			RETURNING `+userColumns, username, role))
		if err == nil {
			s.logger.Info("created user", "user_id", u.ID, "username", u.Username, "role", u.Role)
			return u, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23514" { // check_violation
				return User{}, fmt.Errorf("ensure user %q: violates %s: %w", username, pgErr.ConstraintName, ErrInvalid)
			}
			return User{}, fmt.Errorf("ensure user %q: %w", username, err)
		}
		u, err = scanUser(s.pool.QueryRow(ctx,
			"SELECT "+userColumns+" FROM users WHERE lower(username) = lower($1)", username))
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return User{}, fmt.Errorf("ensure user %q: %w", username, err)
		}
	}
	return User{}, fmt.Errorf("ensure user %q: it was deleted as often as it was created", username)
}

// UserByID returns the user with the given id, or an error wrapping ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("user %d: %w", id, err)
	}
	return u, nil
}

// scanUser reads a row of userColumns.
func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.Role, &u.TokenBalance, &u.CreatedAt)
	return u, err
}
