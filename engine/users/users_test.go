package users_test

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cyberdevstudio/cds/engine/audit"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
	"github.com/cyberdevstudio/cds/engine/users"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

type env struct {
	svc *users.Service
	db  *pgxpool.Pool
	// ids by username
	ids   map[string]int64
	actor users.Actor
}

// newEnv creates users root (admin), dev (developer) and view (viewer).
func newEnv(t *testing.T) *env {
	t.Helper()
	st := storetest.New(t)
	e := &env{svc: users.New(st.Pool(), nil), db: st.Pool(), ids: map[string]int64{}}
	for _, nr := range [][2]string{{"root", "admin"}, {"dev", "developer"}, {"view", "viewer"}} {
		name, role := nr[0], nr[1]
		u, err := st.EnsureUser(t.Context(), name, role)
		if err != nil {
			t.Fatal(err)
		}
		e.ids[name] = u.ID
	}
	e.actor = users.Actor{ID: e.ids["root"], Name: "root", IP: "192.0.2.1", RequestID: "r1"}
	return e
}

func (e *env) addUser(t *testing.T, name, role string) int64 {
	t.Helper()
	var id int64
	if err := e.db.QueryRow(t.Context(), "INSERT INTO users (username, role) VALUES ($1, $2) RETURNING id", name, role).Scan(&id); err != nil {
		t.Fatal(err)
	}
	e.ids[name] = id
	return id
}

// auditFor returns the audit entries about user id, newest first.
func (e *env) auditFor(t *testing.T, id int64) []audit.Entry {
	t.Helper()
	entries, err := audit.List(t.Context(), e.db, audit.Filter{TargetType: audit.TargetUser, TargetID: strconv.FormatInt(id, 10)})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestGet(t *testing.T) {
	e := newEnv(t)
	u, err := e.svc.Get(t.Context(), e.ids["dev"])
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "dev" || u.Role != "developer" || u.Disabled || u.TokenBalance != 0 || u.CreatedAt.IsZero() || u.UpdatedAt.IsZero() {
		t.Errorf("Get = %+v", u)
	}
	if _, err := e.svc.Get(t.Context(), 999999); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t)
	for i := range 7 {
		e.addUser(t, fmt.Sprintf("Team.Member%d", i), "viewer")
	}
	if _, err := e.db.Exec(t.Context(), "UPDATE users SET disabled_at = now() WHERE username IN ('Team.Member0', 'dev')"); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	tests := []struct {
		name      string
		f         users.ListFilter
		wantTotal int
		wantLen   int
		wantFirst string
	}{
		{"all", users.ListFilter{}, 10, 10, "root"},
		{"query ignores case", users.ListFilter{Query: "team.MEMBER"}, 7, 7, "Team.Member0"},
		{"query is no pattern", users.ListFilter{Query: "%"}, 0, 0, ""},
		{"query dot is literal", users.ListFilter{Query: "m.m"}, 7, 7, "Team.Member0"},
		{"role", users.ListFilter{Role: "viewer"}, 8, 8, "view"},
		{"disabled", users.ListFilter{Disabled: &yes}, 2, 2, "dev"},
		{"enabled", users.ListFilter{Disabled: &no}, 8, 8, "root"},
		{"role and enabled", users.ListFilter{Role: "viewer", Disabled: &no}, 7, 7, "view"},
		{"page", users.ListFilter{Limit: 3, Offset: 3}, 10, 3, "Team.Member0"},
		{"offset past end", users.ListFilter{Offset: 100}, 10, 0, ""},
		{"limit above max", users.ListFilter{Limit: users.MaxLimit + 1}, 10, 10, "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := e.svc.List(t.Context(), tt.f)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if p.Total != tt.wantTotal || len(p.Users) != tt.wantLen {
				t.Fatalf("List = %d users of %d, want %d of %d", len(p.Users), p.Total, tt.wantLen, tt.wantTotal)
			}
			if tt.wantLen > 0 && p.Users[0].Username != tt.wantFirst {
				t.Errorf("first = %s, want %s", p.Users[0].Username, tt.wantFirst)
			}
			for i := 1; i < len(p.Users); i++ {
				if p.Users[i].ID <= p.Users[i-1].ID {
					t.Error("users not ordered by id")
				}
			}
		})
	}
	for name, f := range map[string]users.ListFilter{"bad role": {Role: "root"}, "negative offset": {Offset: -1}} {
		t.Run(name, func(t *testing.T) {
			if _, err := e.svc.List(t.Context(), f); !errors.Is(err, users.ErrInvalid) {
				t.Errorf("List = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSetRole(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	u, err := e.svc.SetRole(ctx, e.actor, e.ids["view"], "developer")
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != "developer" {
		t.Errorf("role = %s", u.Role)
	}
	entries := e.auditFor(t, e.ids["view"])
	if len(entries) != 1 {
		t.Fatalf("audit entries = %d, want 1", len(entries))
	}
	en := entries[0]
	if en.Action != audit.ActionUserRole || en.ActorID != e.ids["root"] || en.ActorName != "root" ||
		en.IP != "192.0.2.1" || en.RequestID != "r1" ||
		en.Before["role"] != "viewer" || en.After["role"] != "developer" {
		t.Errorf("audit entry = %+v", en)
	}
	// The same role again changes nothing and records nothing.
	if _, err := e.svc.SetRole(ctx, e.actor, e.ids["view"], "developer"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.auditFor(t, e.ids["view"])); n != 1 {
		t.Errorf("no-op SetRole recorded an entry: %d entries", n)
	}

	tests := []struct {
		name string
		id   int64
		role string
		want error
	}{
		{"bad role", e.ids["dev"], "root", users.ErrInvalid},
		{"missing user", 999999, "viewer", users.ErrNotFound},
		{"demote last admin", e.ids["root"], "developer", users.ErrLastAdmin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.svc.SetRole(ctx, e.actor, tt.id, tt.role); !errors.Is(err, tt.want) {
				t.Errorf("SetRole = %v, want %v", err, tt.want)
			}
		})
	}
	if n := len(e.auditFor(t, e.ids["root"])); n != 0 {
		t.Errorf("a refused change recorded %d entries", n)
	}

	// With a second admin the first may be demoted, but then not the second.
	if _, err := e.svc.SetRole(ctx, e.actor, e.ids["dev"], "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetRole(ctx, e.actor, e.ids["root"], "viewer"); err != nil {
		t.Fatalf("demoting one of two admins: %v", err)
	}
	if _, err := e.svc.SetRole(ctx, e.actor, e.ids["dev"], "viewer"); !errors.Is(err, users.ErrLastAdmin) {
		t.Errorf("demoting the remaining admin = %v, want ErrLastAdmin", err)
	}
}

func TestLastAdminConcurrent(t *testing.T) {
	// Two admins demote each other at the same time: exactly one may succeed.
	for round := range 5 {
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			e := newEnv(t)
			second := e.addUser(t, "root2", "admin")
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, id := range []int64{e.ids["root"], second} {
				wg.Go(func() {
					_, errs[i] = e.svc.SetDisabled(t.Context(), e.actor, id, true)
				})
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, users.ErrLastAdmin):
					t.Fatalf("SetDisabled: %v", err)
				}
			}
			if ok != 1 {
				t.Errorf("%d of 2 concurrent disables of the last two admins succeeded, want 1", ok)
			}
		})
	}
}

func TestSetBalance(t *testing.T) {
	e := newEnv(t)
	u, err := e.svc.SetBalance(t.Context(), e.actor, e.ids["dev"], 1500)
	if err != nil || u.TokenBalance != 1500 {
		t.Fatalf("SetBalance = %+v, %v", u, err)
	}
	if _, err := e.svc.SetBalance(t.Context(), e.actor, e.ids["dev"], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetBalance(t.Context(), e.actor, e.ids["dev"], -1); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("negative balance = %v, want ErrInvalid", err)
	}
	if _, err := e.svc.SetBalance(t.Context(), e.actor, 999999, 5); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("missing user = %v, want ErrNotFound", err)
	}
	entries := e.auditFor(t, e.ids["dev"])
	if len(entries) != 2 || entries[1].Before["token_balance"] != 0.0 || entries[1].After["token_balance"] != 1500.0 ||
		entries[0].After["token_balance"] != 0.0 || entries[0].Action != audit.ActionUserBalance {
		t.Errorf("audit = %+v", entries)
	}
}

func TestSetDisabled(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	u, err := e.svc.SetDisabled(ctx, e.actor, e.ids["dev"], true)
	if err != nil || !u.Disabled {
		t.Fatalf("disable = %+v, %v", u, err)
	}
	if _, err := e.svc.SetDisabled(ctx, e.actor, e.ids["dev"], true); err != nil {
		t.Fatalf("disable again: %v", err)
	}
	u, err = e.svc.SetDisabled(ctx, e.actor, e.ids["dev"], false)
	if err != nil || u.Disabled {
		t.Fatalf("enable = %+v, %v", u, err)
	}
	entries := e.auditFor(t, e.ids["dev"])
	if len(entries) != 2 || entries[0].Action != audit.ActionUserEnable || entries[1].Action != audit.ActionUserDisable {
		t.Errorf("audit = %+v, want disable then enable, once each", entries)
	}
	if _, err := e.svc.SetDisabled(ctx, e.actor, e.ids["root"], true); !errors.Is(err, users.ErrLastAdmin) {
		t.Errorf("disable last admin = %v, want ErrLastAdmin", err)
	}
	// A disabled admin does not count as the admin that remains.
	other := e.addUser(t, "root2", "admin")
	if _, err := e.svc.SetDisabled(ctx, e.actor, other, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetDisabled(ctx, e.actor, e.ids["root"], true); !errors.Is(err, users.ErrLastAdmin) {
		t.Errorf("disable the last enabled admin = %v, want ErrLastAdmin", err)
	}
	// Enabling is always allowed; an admin may then be disabled.
	if _, err := e.svc.SetDisabled(ctx, e.actor, other, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetDisabled(ctx, e.actor, e.ids["root"], true); err != nil {
		t.Errorf("disable one of two enabled admins: %v", err)
	}
}

// seedUsage gives user id projects, a key and usage on two models over two days.
func seedUsage(t *testing.T, e *env, id int64) {
	t.Helper()
	ctx := t.Context()
	var m1, m2 int64
	if err := e.db.QueryRow(ctx, "INSERT INTO models (name) VALUES ('llama') RETURNING id").Scan(&m1); err != nil {
		t.Fatal(err)
	}
	if err := e.db.QueryRow(ctx, "INSERT INTO models (name) VALUES ('qwen') RETURNING id").Scan(&m2); err != nil {
		t.Fatal(err)
	}
	day1 := time.Date(2030, 5, 1, 23, 30, 0, 0, time.UTC)
	day2 := time.Date(2030, 5, 2, 0, 30, 0, 0, time.UTC)
	for _, r := range []struct {
		model  any
		tokens int
		at     time.Time
	}{{m1, 100, day1}, {m1, 50, day2}, {m2, 10, day2}, {nil, 7, day2}} {
		if _, err := e.db.Exec(ctx, "INSERT INTO tokens_used (user_id, model_id, tokens, created_at) VALUES ($1, $2, $3, $4)",
			id, r.model, r.tokens, r.at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.db.Exec(ctx, "INSERT INTO projects (owner_id, name) VALUES ($1, 'p')", id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `INSERT INTO api_keys (public_id, user_id, name, secret_hash)
		VALUES ('abcdefghijkl', $1, 'k', decode(repeat('00', 32), 'hex'))`, id); err != nil {
		t.Fatal(err)
	}
}

func TestUsage(t *testing.T) {
	e := newEnv(t)
	seedUsage(t, e, e.ids["dev"])
	u, err := e.svc.Usage(t.Context(), e.ids["dev"], time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if u.Total != 167 {
		t.Errorf("Total = %d, want 167", u.Total)
	}
	if len(u.ByModel) != 3 || u.ByModel[0].Model != "llama" || u.ByModel[0].Tokens != 150 ||
		u.ByModel[1].Model != "qwen" || u.ByModel[1].Tokens != 10 ||
		u.ByModel[2].ModelID != 0 || u.ByModel[2].Model != "" || u.ByModel[2].Tokens != 7 {
		t.Errorf("ByModel = %+v", u.ByModel)
	}
	if len(u.ByDay) != 2 || u.ByDay[0] != (users.DayUsage{Day: "2030-05-01", Tokens: 100}) ||
		u.ByDay[1] != (users.DayUsage{Day: "2030-05-02", Tokens: 67}) {
		t.Errorf("ByDay = %+v", u.ByDay)
	}

	// since is inclusive, until exclusive.
	u, err = e.svc.Usage(t.Context(), e.ids["dev"], time.Date(2030, 5, 2, 0, 0, 0, 0, time.UTC), time.Date(2030, 5, 2, 0, 30, 0, 0, time.UTC))
	if err != nil || u.Total != 0 || len(u.ByDay) != 0 || len(u.ByModel) != 0 {
		t.Errorf("empty range = %+v, %v", u, err)
	}
	u, err = e.svc.Usage(t.Context(), e.ids["dev"], time.Date(2030, 5, 2, 0, 30, 0, 0, time.UTC), time.Time{})
	if err != nil || u.Total != 67 {
		t.Errorf("since day 2 = %+v, %v", u, err)
	}
	u, err = e.svc.Usage(t.Context(), e.ids["dev"], time.Time{}, time.Date(2030, 5, 2, 0, 0, 0, 0, time.UTC))
	if err != nil || u.Total != 100 {
		t.Errorf("until day 2 = %+v, %v", u, err)
	}
	u, err = e.svc.Usage(t.Context(), e.ids["view"], time.Time{}, time.Time{})
	if err != nil || u.Total != 0 || u.ByModel == nil || u.ByDay == nil {
		t.Errorf("no usage = %+v, %v; want zero with empty, non-nil lists", u, err)
	}
	if _, err := e.svc.Usage(t.Context(), 999999, time.Time{}, time.Time{}); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("Usage(missing) = %v", err)
	}
}

func TestDeleteKeepData(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	id := e.ids["dev"]
	seedUsage(t, e, id)
	if _, err := e.db.Exec(ctx, "UPDATE users SET password_hash = 'x' WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx, e.actor, id, true); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	u, err := e.svc.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get after keep-data delete: %v", err)
	}
	if u.Username != "deleted-"+strconv.FormatInt(id, 10) || !u.Disabled {
		t.Errorf("tombstone = %+v", u)
	}
	var projects, keysLive int
	var hash *string
	if err := e.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM projects WHERE owner_id = $1),
		(SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL),
		(SELECT password_hash FROM users WHERE id = $1)`, id).Scan(&projects, &keysLive, &hash); err != nil {
		t.Fatal(err)
	}
	if projects != 1 || keysLive != 0 || hash != nil {
		t.Errorf("after keep-data delete: %d projects (want 1), %d live keys (want 0), password %v (want none)", projects, keysLive, hash)
	}
	usage, err := e.svc.Usage(ctx, id, time.Time{}, time.Time{})
	if err != nil || usage.Total != 167 {
		t.Errorf("usage kept = %d, %v; want 167", usage.Total, err)
	}
	// The name is free again.
	e.addUser(t, "dev", "viewer")
	entries := e.auditFor(t, id)
	if len(entries) != 1 || entries[0].Action != audit.ActionUserDelete || entries[0].Before["username"] != "dev" ||
		entries[0].After["kept_data"] != true {
		t.Errorf("audit = %+v", entries)
	}
}

func TestDeleteRemoveData(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	id := e.ids["dev"]
	seedUsage(t, e, id)
	// An entry the deleted user made survives, without the actor id.
	if err := audit.Record(ctx, e.db, audit.Entry{ActorID: id, Action: audit.ActionLogin}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx, e.actor, id, false); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := e.svc.Get(ctx, id); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("Get after delete = %v, want ErrNotFound", err)
	}
	var projects, tokens, keys int
	if err := e.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM projects WHERE owner_id = $1),
		(SELECT count(*) FROM tokens_used WHERE user_id = $1), (SELECT count(*) FROM api_keys WHERE user_id = $1)`, id).
		Scan(&projects, &tokens, &keys); err != nil {
		t.Fatal(err)
	}
	if projects+tokens+keys != 0 {
		t.Errorf("left behind: %d projects, %d usage rows, %d keys", projects, tokens, keys)
	}
	logins, err := audit.List(ctx, e.db, audit.Filter{Action: audit.ActionLogin})
	if err != nil || len(logins) != 1 || logins[0].ActorID != 0 || logins[0].ActorName != "dev" {
		t.Errorf("deleted actor's entry = %+v, %v", logins, err)
	}
	entries := e.auditFor(t, id)
	if len(entries) != 1 || entries[0].Action != audit.ActionUserDelete || entries[0].After["kept_data"] != false {
		t.Errorf("audit = %+v", entries)
	}
	if err := e.svc.Delete(ctx, e.actor, id, false); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
}

func TestDeleteAdmins(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, keep := range []bool{true, false} {
		if err := e.svc.Delete(ctx, e.actor, e.ids["root"], keep); !errors.Is(err, users.ErrLastAdmin) {
			t.Errorf("Delete(last admin, keep=%v) = %v, want ErrLastAdmin", keep, err)
		}
	}
	// An admin deletes their own account while another admin remains.
	other := e.addUser(t, "root2", "admin")
	if err := e.svc.Delete(ctx, e.actor, e.ids["root"], false); err != nil {
		t.Fatalf("self-delete with another admin: %v", err)
	}
	entries := e.auditFor(t, e.ids["root"])
	if len(entries) != 1 || entries[0].ActorID != 0 || entries[0].ActorName != "root" {
		t.Errorf("self-delete entry = %+v", entries)
	}
	if err := e.svc.Delete(ctx, users.Actor{ID: other}, other, true); !errors.Is(err, users.ErrLastAdmin) {
		t.Errorf("Delete(remaining admin) = %v, want ErrLastAdmin", err)
	}
}
