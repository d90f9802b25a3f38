package rpc

import "fmt"

// Role is a user's role. Roles are ordered: viewer < developer < admin.
type Role string

// The roles, lowest first.
const (
	RoleViewer    Role = "viewer"
	RoleDeveloper Role = "developer"
	RoleAdmin     Role = "admin"
)

// Level orders roles; an unknown role has level 0 and is below every real role.
func (r Role) Level() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleDeveloper:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// AtLeast reports whether r is min or above it.
func (r Role) AtLeast(min Role) bool { return r.Level() > 0 && r.Level() >= min.Level() }

// ParseRole parses one of the three role names.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if r.Level() == 0 {
		return "", fmt.Errorf("unknown role %q: want viewer, developer or admin", s)
	}
	return r, nil
}
