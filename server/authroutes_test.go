package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/cyberdevstudio/cds/engine/billing"
	"github.com/cyberdevstudio/cds/server/client"
	"github.com/cyberdevstudio/cds/server/rpc"
)

// TestRESTRoleMatrix calls every REST route with every role (and without
// credentials) and checks that the answer is 403 exactly when the role is below
// the route's minimum, and 401 without credentials on every non-public route.
func TestRESTRoleMatrix(t *testing.T) {
	env := newEnv(t)
	for _, rt := range env.srv.routes {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		// Path values name nothing that exists, so allowed calls change nothing.
		path = strings.ReplaceAll(path, "{id}", "999999")
		for _, role := range []string{"anonymous", "viewer", "developer", "admin"} {
			t.Run(rt.Pattern+"/"+role, func(t *testing.T) {
				req, err := http.NewRequestWithContext(t.Context(), method, env.url+path, strings.NewReader("{}"))
				if err != nil {
					t.Fatal(err)
				}
				if role != "anonymous" {
					// A fresh login per call: logout routes revoke the token they use.
					tok, err := env.anon.Login(t.Context(), env.users[rpc.Role(role)].Username, testPassword)
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case rt.MinRole == Public:
					// No role to check; the route answers its own errors (a wrong
					// password is a 401, closed registration a 403).
				case role == "anonymous":
					if resp.StatusCode != http.StatusUnauthorized {
						t.Fatalf("no credentials: %d, want 401: %s", resp.StatusCode, body)
					}
				case !rpc.Role(role).AtLeast(rt.MinRole):
					if resp.StatusCode != http.StatusForbidden {
						t.Fatalf("role %s below %s: %d, want 403: %s", role, rt.MinRole, resp.StatusCode, body)
					}
				default:
					// Allowed: the answer may be any error of the route itself (a
					// wrong old password is a 401), but not a refusal of the caller.
					refused := resp.StatusCode == http.StatusForbidden ||
						(resp.StatusCode == http.StatusUnauthorized && strings.Contains(string(body), "log in again"))
					if refused {
						t.Fatalf("role %s may call it (min %s) but got %d: %s", role, rt.MinRole, resp.StatusCode, body)
					}
				}
			})
		}
	}
}

// TestAcceptanceRoles is the acceptance run: the admin creates a developer
// and a viewer, sets a balance, and each role gets exactly what it should.
func TestAcceptanceRoles(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	admin := env.client
	balance := int64(500)
	dev, err := admin.AdminUserCreate(ctx, rpc.AdminUserCreate{Username: "dora", Password: testPassword, Role: "developer", TokenBalance: &balance})
	if err != nil || dev.TokenBalance != 500 {
		t.Fatalf("create developer: %+v %v", dev, err)
	}
	if _, err := admin.AdminUserCreate(ctx, rpc.AdminUserCreate{Username: "vic", Password: testPassword, Role: "viewer"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AdminUserCreate(ctx, rpc.AdminUserCreate{Username: "weak", Password: "short", Role: "viewer"}); !rpc.IsCode(err, rpc.CodeInvalidParams) {
		t.Fatalf("weak password: %v", err)
	}
	login := func(name string) *client.Client {
		t.Helper()
		tok, err := env.anon.Login(ctx, name, testPassword)
		if err != nil {
			t.Fatal(err)
		}
		return admin.WithToken(tok.AccessToken)
	}
	dora, vic := login("dora"), login("vic")

	me, err := dora.Me(ctx)
	if err != nil || me.Role != "developer" || me.TokenBalance != 500 {
		t.Fatalf("me: %+v %v", me, err)
	}
	p, err := dora.ProjectCreate(ctx, "dora-app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vic.ProjectCreate(ctx, "nope"); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("viewer creates a project: %v", err)
	}
	if _, err := vic.ProjectOpen(ctx, p.ID); !rpc.IsCode(err, rpc.CodeNotFound) {
		t.Fatalf("viewer opens another user's project: %v", err)
	}
	if _, err := dora.AdminUsers(ctx, rpc.AdminUserListParams{}); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("developer lists users: %v", err)
	}
	list, err := admin.AdminUsers(ctx, rpc.AdminUserListParams{Query: "dora"})
	if err != nil || list.Total != 1 {
		t.Fatalf("admin lists users: %+v %v", list, err)
	}
	// Demoting takes effect on the next call, without a new login.
	viewer := "viewer"
	if _, err := admin.AdminUserUpdate(ctx, dev.ID, rpc.AdminUserPatch{Role: &viewer}); err != nil {
		t.Fatal(err)
	}
	if _, err := dora.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: "a.txt", Content: "x"}); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("demoted user writes: %v", err)
	}
	// Disabling ends the session at once.
	yes := true
	if _, err := admin.AdminUserUpdate(ctx, dev.ID, rpc.AdminUserPatch{Disabled: &yes}); err != nil {
		t.Fatal(err)
	}
	if _, err := dora.Me(ctx); !rpc.IsCode(err, rpc.CodeUnauthorized) {
		t.Fatalf("disabled user: %v", err)
	}
	entries, err := admin.AdminAudit(ctx, rpc.AuditParams{TargetID: strconv.FormatInt(dev.ID, 10), Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(entries)
	for _, want := range []string{"user.role", "user.disable"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("audit lacks %s: %s", want, raw)
		}
	}
}

// TestMembersAndUsage shares a project with another user and reads usage reports.
func TestMembersAndUsage(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	dev, viewer := env.as(t, "developer"), env.as(t, "viewer")
	p, err := dev.ProjectCreate(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	add := rpc.MemberParams{ProjectID: p.ID, UserID: env.users[rpc.RoleViewer].ID, Role: "viewer"}
	if err := viewer.Call(ctx, rpc.MethodMemberAdd, add, nil); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("viewer adds members: %v", err)
	}
	if err := dev.Call(ctx, rpc.MethodMemberAdd, add, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.ProjectOpen(ctx, p.ID); err != nil {
		t.Fatalf("member reads: %v", err)
	}
	if _, err := viewer.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: "x", Content: "x"}); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("viewer member writes: %v", err)
	}
	var members rpc.MemberList
	if err := viewer.Call(ctx, rpc.MethodMemberList, rpc.MemberListParams{ProjectID: p.ID}, &members); err != nil || len(members.Members) != 1 {
		t.Fatalf("members %+v %v", members, err)
	}
	if err := dev.Call(ctx, rpc.MethodMemberRemove, rpc.MemberRemoveParams{ProjectID: p.ID, UserID: add.UserID}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.ProjectOpen(ctx, p.ID); !rpc.IsCode(err, rpc.CodeNotFound) {
		t.Fatalf("removed member reads: %v", err)
	}

	// Usage: one settled call of the developer, visible to them and to the admin.
	devID := env.users[rpc.RoleDeveloper].ID
	if _, err := env.store.Pool().Exec(ctx, `UPDATE users SET token_balance = 100 WHERE id = $1`, devID); err != nil {
		t.Fatal(err)
	}
	res, err := env.ledger.Reserve(ctx, devID, nil, 40, "test", "req-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.ledger.Settle(ctx, res.ID, billing.Usage{PromptTokens: 10, CompletionTokens: 20, Cost: 30}); err != nil {
		t.Fatal(err)
	}
	var own rpc.UsageRows
	if err := dev.Call(ctx, rpc.MethodUsageReport, rpc.UsageReportParams{GroupBy: "day"}, &own); err != nil || len(own.Rows) != 1 || own.Rows[0].Tokens != 30 || own.Rows[0].Cost != 30 {
		t.Fatalf("own usage %+v %v", own, err)
	}
	if err := dev.Call(ctx, rpc.MethodUsageReport, rpc.UsageReportParams{GroupBy: "user"}, nil); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("developer reads everyone's usage: %v", err)
	}
	var all rpc.UsageRows
	if err := env.client.Call(ctx, rpc.MethodUsageReport, rpc.UsageReportParams{GroupBy: "user"}, &all); err != nil || len(all.Rows) != 1 {
		t.Fatalf("admin usage %+v %v", all, err)
	}
	me, err := dev.Me(ctx)
	if err != nil || me.TokenBalance != 70 {
		t.Fatalf("balance after the call: %+v %v", me, err)
	}
}

// rest sends a raw REST request as the admin and returns the status and body.
func (e *testEnv) rest(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[rpc.RoleAdmin])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminREST(t *testing.T) {
	env := newEnv(t)
	dev := strconv.FormatInt(env.users[rpc.RoleDeveloper].ID, 10)
	tests := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"list filtered", "GET", "/admin/users?role=developer&disabled=false&limit=5&offset=0", "", 200, `"total":1`},
		{"list bad disabled", "GET", "/admin/users?disabled=maybe", "", 400, "want true or false"},
		{"list bad limit", "GET", "/admin/users?limit=-1", "", 400, "non-negative"},
		{"get", "GET", "/admin/users/" + dev, "", 200, `"username":"developer-user"`},
		{"get bad id", "GET", "/admin/users/abc", "", 400, "positive number"},
		{"get missing", "GET", "/admin/users/999999", "", 404, "not found"},
		{"patch balance", "PATCH", "/admin/users/" + dev, `{"token_balance":42}`, 200, `"token_balance":42`},
		{"patch negative balance", "PATCH", "/admin/users/" + dev, `{"token_balance":-1}`, 400, ""},
		{"patch unknown field", "PATCH", "/admin/users/" + dev, `{"color":"red"}`, 400, "unknown field"},
		{"patch not JSON", "PATCH", "/admin/users/" + dev, `{`, 400, "invalid JSON"},
		{"create duplicate", "POST", "/admin/users", `{"username":"developer-user","password":"` + testPassword + `","role":"viewer"}`, 409, ""},
		{"usage", "GET", "/admin/users/" + dev + "/usage?since=2020-01-01&until=2100-01-01T00:00:00Z", "", 200, `"total":0`},
		{"usage bad date", "GET", "/admin/users/" + dev + "/usage?since=yesterday", "", 400, "RFC 3339"},
		{"audit", "GET", "/admin/audit?action=user.balance&limit=10&actor_id=0&before_id=0", "", 200, `"user.balance"`},
		{"audit bad limit", "GET", "/admin/audit?limit=x", "", 400, ""},
		{"registration get", "GET", "/admin/settings/registration", "", 200, `"closed"`},
		{"registration set", "PUT", "/admin/settings/registration", `{"mode":"open"}`, 200, `"open"`},
		{"registration bad", "PUT", "/admin/settings/registration", `{"mode":"sometimes"}`, 400, ""},
		{"register when open", "POST", "/auth/register", `{"username":"newbie","password":"` + testPassword + `"}`, 201, `"role":"developer"`},
		{"invite mode", "PUT", "/admin/settings/registration", `{"mode":"invite"}`, 200, `"invite"`},
		{"register without invitation", "POST", "/auth/register", `{"username":"newbie2","password":"` + testPassword + `"}`, 403, "invitation code"},
		{"register with a bad invitation", "POST", "/auth/register", `{"username":"newbie2","password":"` + testPassword + `","invite":"cdsinv_x"}`, 403, "new invitation"},
		{"invite an admin", "POST", "/admin/invites", `{"role":"admin"}`, 400, "developer or viewer"},
		{"invite bad duration", "POST", "/admin/invites", `{"role":"viewer","expires_in":"soon"}`, 400, "duration"},
		{"delete keeping data", "DELETE", "/admin/users/" + dev + "?keep_data=true", "", 204, ""},
		{"delete bad flag", "DELETE", "/admin/users/" + dev + "?keep_data=perhaps", "", 400, ""},
		{"requirements", "GET", "/auth/password-requirements", "", 200, `"min_length":12`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := env.rest(t, tc.method, tc.path, tc.body)
			if status != tc.status || !strings.Contains(body, tc.contains) {
				t.Fatalf("%s %s: %d %s; want %d containing %q", tc.method, tc.path, status, body, tc.status, tc.contains)
			}
		})
	}
}

func TestSessionsAndKeys(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	c := env.as(t, "developer")
	sessions, err := c.Sessions(ctx)
	if err != nil || len(sessions) == 0 {
		t.Fatalf("sessions %+v %v", sessions, err)
	}
	key, err := c.APIKeyCreate(ctx, rpc.APIKeyCreateRequest{Name: "ci", Scope: "viewer"})
	if err != nil || !strings.HasPrefix(key.Key, "cds_") {
		t.Fatalf("key %+v %v", key, err)
	}
	withKey := env.anon.WithToken(key.Key)
	if _, err := withKey.ProjectList(ctx); err != nil {
		t.Fatalf("key reads: %v", err)
	}
	if _, err := withKey.ProjectCreate(ctx, "x"); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("viewer-scoped key writes: %v", err)
	}
	if _, err := withKey.APIKeyCreate(ctx, rpc.APIKeyCreateRequest{Name: "again"}); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("key creates keys: %v", err)
	}
	keys, err := c.APIKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %+v %v", keys, err)
	}
	if _, err := c.APIKeyRevoke(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := withKey.ProjectList(ctx); !rpc.IsCode(err, rpc.CodeUnauthorized) {
		t.Fatalf("revoked key: %v", err)
	}
	other := sessions[0].ID
	if err := c.RevokeSession(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := c.LogoutAll(ctx); err != nil && !rpc.IsCode(err, rpc.CodeUnauthorized) {
		t.Fatal(err)
	}
	if _, err := c.Me(ctx); !rpc.IsCode(err, rpc.CodeUnauthorized) {
		t.Fatalf("after logout-all: %v", err)
	}
}

func TestInviteRegistration(t *testing.T) {
	env := newEnv(t)
	if status, body := env.rest(t, "PUT", "/admin/settings/registration", `{"mode":"invite"}`); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	status, body := env.rest(t, "POST", "/admin/invites", `{"role":"viewer","expires_in":"1h"}`)
	var inv rpc.InviteCreated
	if status != 201 || json.Unmarshal([]byte(body), &inv) != nil || inv.Code == "" {
		t.Fatalf("invite: %d %s", status, body)
	}
	u, err := env.anon.Register(t.Context(), rpc.RegisterRequest{Username: "guest", Password: testPassword, Invite: inv.Code})
	if err != nil || u.Role != "viewer" {
		t.Fatalf("register with invitation: %+v %v", u, err)
	}
	if _, err := env.anon.Register(t.Context(), rpc.RegisterRequest{Username: "guest2", Password: testPassword, Invite: inv.Code}); !rpc.IsCode(err, rpc.CodeForbidden) {
		t.Fatalf("second use: %v", err)
	}
}
