package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/cyberdevstudio/cds/server/rpc"
)

// userValues encodes a user filter as the query of GET /admin/users, leaving out
// zero fields.
func userValues(f rpc.AdminUserListParams) url.Values {
	q := url.Values{}
	setString(q, "query", f.Query)
	setString(q, "role", f.Role)
	if f.Disabled != nil {
		q.Set("disabled", strconv.FormatBool(*f.Disabled))
	}
	setInt(q, "limit", int64(f.Limit))
	setInt(q, "offset", int64(f.Offset))
	return q
}

// auditValues encodes an audit filter as the query of GET /admin/audit, leaving
// out zero fields.
func auditValues(f rpc.AuditParams) url.Values {
	q := url.Values{}
	setInt(q, "actor_id", f.ActorID)
	setString(q, "action", f.Action)
	setString(q, "target_type", f.TargetType)
	setString(q, "target_id", f.TargetID)
	setString(q, "since", f.Since)
	setString(q, "until", f.Until)
	setInt(q, "limit", int64(f.Limit))
	setInt(q, "before_id", f.BeforeID)
	return q
}

func setString(q url.Values, key, v string) {
	if v != "" {
		q.Set(key, v)
	}
}

func setInt(q url.Values, key string, v int64) {
	if v != 0 {
		q.Set(key, strconv.FormatInt(v, 10))
	}
}

// userPath is the path of the user with the given id under /admin/users.
func userPath(id int64) string { return "/admin/users/" + strconv.FormatInt(id, 10) }

// AdminUsers returns one page of the users that match f (zero fields do not
// filter; Query matches usernames that contain it, regardless of case), ordered by
// id, and how many match in all.
func (c *Client) AdminUsers(ctx context.Context, f rpc.AdminUserListParams) (rpc.AdminUserList, error) {
	var l rpc.AdminUserList
	err := c.REST(ctx, http.MethodGet, "/admin/users", userValues(f), nil, &l)
	return l, err
}

// AdminUserCreate creates an account. A taken name fails with rpc.CodeConflict,
// a password that breaks the policy with rpc.CodeInvalidParams.
func (c *Client) AdminUserCreate(ctx context.Context, u rpc.AdminUserCreate) (rpc.AdminUser, error) {
	var out rpc.AdminUser
	err := c.REST(ctx, http.MethodPost, "/admin/users", nil, u, &out)
	return out, err
}

// AdminUser returns the user with the given id (rpc.CodeNotFound if none).
func (c *Client) AdminUser(ctx context.Context, id int64) (rpc.AdminUser, error) {
	var out rpc.AdminUser
	err := c.REST(ctx, http.MethodGet, userPath(id), nil, nil, &out)
	return out, err
}

// AdminUserUpdate changes the fields p sets and returns the user as it is now.
// Demoting, disabling or deleting the last enabled admin is refused.
func (c *Client) AdminUserUpdate(ctx context.Context, id int64, p rpc.AdminUserPatch) (rpc.AdminUser, error) {
	var out rpc.AdminUser
	err := c.REST(ctx, http.MethodPatch, userPath(id), nil, p, &out)
	return out, err
}

// AdminUserDelete deletes a user. With keepData the account stays as a disabled
// tombstone that keeps its projects and usage records; without it they are
// deleted with the account.
func (c *Client) AdminUserDelete(ctx context.Context, id int64, keepData bool) error {
	q := url.Values{"keep_data": {strconv.FormatBool(keepData)}}
	return c.REST(ctx, http.MethodDelete, userPath(id), q, nil, nil)
}

// AdminUsage returns a user's token usage in [since, until): each an RFC 3339
// time or a YYYY-MM-DD date, "" for an open end.
func (c *Client) AdminUsage(ctx context.Context, id int64, since, until string) (rpc.UsageReport, error) {
	q := url.Values{}
	setString(q, "since", since)
	setString(q, "until", until)
	var r rpc.UsageReport
	err := c.REST(ctx, http.MethodGet, userPath(id)+"/usage", q, nil, &r)
	return r, err
}

// AdminAudit returns the audit log entries that match f, newest first. Zero fields
// do not filter; Since and Until are RFC 3339 times or YYYY-MM-DD dates (UTC days),
// passed as they are; BeforeID pages back from the last id of the previous page.
func (c *Client) AdminAudit(ctx context.Context, f rpc.AuditParams) ([]rpc.AuditEntry, error) {
	var l rpc.AuditList
	err := c.REST(ctx, http.MethodGet, "/admin/audit", auditValues(f), nil, &l)
	return l.Entries, err
}

// RegistrationMode returns who may register: rpc.RegistrationOpen,
// rpc.RegistrationInvite or rpc.RegistrationClosed.
func (c *Client) RegistrationMode(ctx context.Context) (string, error) {
	var s rpc.RegistrationSetting
	err := c.REST(ctx, http.MethodGet, "/admin/settings/registration", nil, nil, &s)
	return s.Mode, err
}

// SetRegistrationMode sets who may register and returns the mode now in force.
func (c *Client) SetRegistrationMode(ctx context.Context, mode string) (string, error) {
	var s rpc.RegistrationSetting
	err := c.REST(ctx, http.MethodPut, "/admin/settings/registration", nil, rpc.RegistrationSetting{Mode: mode}, &s)
	if err == nil && s.Mode == "" {
		// A 204 answer carries no body: the mode asked for is the mode in force.
		s.Mode = mode
	}
	return s.Mode, err
}
