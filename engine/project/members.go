package project

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cyberdevstudio/cds/engine/audit"
)

// Member roles. A viewer member reads a project; a developer member also writes its
// files. Only the owner deletes the project and manages its members.
const (
	MemberViewer    = "viewer"
	MemberDeveloper = "developer"
)

// writable is the SQL condition under which the user $1 may change the files of the
// project row p: its owner and its developer members.
const writable = "(p.owner_id = $1 OR EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = p.id AND m.user_id = $1 AND m.role = 'developer'))"

// owned is the SQL condition under which the user $1 may delete the project row p or
// manage its members: its owner only.
const owned = "p.owner_id = $1"

// ErrForbidden means the user can see the project but may not do this to it: a
// viewer member writing, or a member deleting the project or managing its members.
var ErrForbidden = errors.New("permission denied")

// ErrInvalidMember means a membership was refused: a role other than viewer or
// developer, or the owner as a member of their own project.
var ErrInvalidMember = errors.New("invalid project member")

// Member is a user a project is shared with. The owner is not a member.
type Member struct {
	UserID   int64
	Username string
	// Role is MemberViewer or MemberDeveloper.
	Role    string
	AddedAt time.Time
}

// forbiddenOrNotFound tells why user lacks cond on project id: ErrForbidden when the
// user can see it, ErrNotFound when not, so that nobody learns of projects they
// cannot see.
func (s *Service) forbiddenOrNotFound(ctx context.Context, q querier, userID int64, id, cond string) error {
	var visible bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projects p WHERE p.id = $2 AND `+accessible+`)`,
		userID, id).Scan(&visible)
	switch {
	case err != nil:
		return fmt.Errorf("read project %s: %w", id, err)
	case !visible:
		return projectNotFound(id)
	case cond == writable:
		return fmt.Errorf("project %s: viewers may not change it: %w", id, ErrForbidden)
	default:
		return fmt.Errorf("project %s: only its owner may do this: %w", id, ErrForbidden)
	}
}

// AddMember shares a project with userID in role (MemberViewer or MemberDeveloper),
// or changes the role of an existing member. Only the owner, ownerID, may do so. A
// user that does not exist is ErrNotFound. The change is recorded in the audit log
// with the membership, and every process's head cache forgets the project.
func (s *Service) AddMember(ctx context.Context, ownerID int64, projectID string, userID int64, role string) error {
	if role != MemberViewer && role != MemberDeveloper {
		return fmt.Errorf("role %q: want viewer or developer: %w", role, ErrInvalidMember)
	}
	id, err := parseID(projectID)
	if err != nil {
		return err
	}
	err = s.changeMembers(ctx, ownerID, id, func(tx pgx.Tx, p Project) (*audit.Entry, error) {
		if userID == p.OwnerID {
			return nil, fmt.Errorf("user %d owns project %s: %w", userID, id, ErrInvalidMember)
		}
		var old *string
		err := tx.QueryRow(ctx, `SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2 FOR UPDATE`,
			id, userID).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("read membership: %w", err)
		}
		if old != nil && *old == role {
			return nil, nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)
			ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role`, id, userID, role)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation: no such user
			return nil, fmt.Errorf("user %d: %w", userID, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("add member: %w", err)
		}
		e := &audit.Entry{Action: audit.ActionProjectMemberAdd,
			After: map[string]any{"user_id": userID, "role": role}}
		if old != nil {
			e.Before = map[string]any{"user_id": userID, "role": *old}
		}
		return e, nil
	})
	if err != nil {
		return fmt.Errorf("add member %d to project %s: %w", userID, id, err)
	}
	return nil
}

// RemoveMember stops sharing a project with userID. The owner may remove any member,
// and a member may remove themselves (leave). A user who is not a member is
// ErrNotFound. The change is recorded in the audit log, and every process's head
// cache forgets the project, so the former member's cached reads end at once.
func (s *Service) RemoveMember(ctx context.Context, callerID int64, projectID string, userID int64) error {
	id, err := parseID(projectID)
	if err != nil {
		return err
	}
	cond := owned
	if callerID == userID {
		cond = accessible
	}
	err = s.changeMembersAs(ctx, callerID, id, cond, func(tx pgx.Tx, _ Project) (*audit.Entry, error) {
		var role string
		err := tx.QueryRow(ctx, `DELETE FROM project_members WHERE project_id = $1 AND user_id = $2 RETURNING role`,
			id, userID).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("user %d is not a member: %w", userID, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("remove member: %w", err)
		}
		return &audit.Entry{Action: audit.ActionProjectMemberRemove,
			Before: map[string]any{"user_id": userID, "role": role}}, nil
	})
	if err != nil {
		return fmt.Errorf("remove member %d from project %s: %w", userID, id, err)
	}
	return nil
}

// changeMembers runs fn as the project's owner; see changeMembersAs.
func (s *Service) changeMembers(ctx context.Context, userID int64, id string, fn func(pgx.Tx, Project) (*audit.Entry, error)) error {
	return s.changeMembersAs(ctx, userID, id, owned, fn)
}

// changeMembersAs runs fn in a transaction that holds the project's row lock, which
// the user must have the access cond on, records the audit entry fn returns (none
// when nil: nothing changed), commits, and then invalidates the head cache.
func (s *Service) changeMembersAs(ctx context.Context, userID int64, id, cond string, fn func(pgx.Tx, Project) (*audit.Entry, error)) error {
	changed := false
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		p, err := s.projectFor(ctx, tx, userID, id, cond, "FOR NO KEY UPDATE")
		if err != nil {
			return err
		}
		e, err := fn(tx, p)
		if err != nil || e == nil {
			return err
		}
		changed = true
		e.ActorID, e.TargetType, e.TargetID = userID, audit.TargetProject, id
		return audit.Record(ctx, tx, *e)
	})
	if err != nil {
		return err
	}
	if changed {
		// Cached heads were read under the old membership. Watch also hears the
		// trigger's notification, but this process must not serve them meanwhile.
		s.cache.invalidate(id)
	}
	return nil
}

// Members returns the members of a project the user can see, by username. The owner
// (Project.OwnerID) is not among them.
func (s *Service) Members(ctx context.Context, userID int64, projectID string) ([]Member, error) {
	id, err := parseID(projectID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT u.id, u.username, m.role, m.added_at
		FROM projects p
		LEFT JOIN project_members m ON m.project_id = p.id
		LEFT JOIN users u ON u.id = m.user_id
		WHERE p.id = $2 AND `+accessible+`
		ORDER BY lower(u.username)`, userID, id)
	if err != nil {
		return nil, fmt.Errorf("list members of project %s: %w", id, err)
	}
	var (
		found   bool
		members = []Member{}
		uid     *int64
		name    *string
		role    *string
		added   *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&uid, &name, &role, &added}, func() error {
		found = true
		if uid != nil {
			members = append(members, Member{UserID: *uid, Username: *name, Role: *role, AddedAt: *added})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list members of project %s: %w", id, err)
	}
	if !found {
		return nil, projectNotFound(id)
	}
	return members, nil
}
