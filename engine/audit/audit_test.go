package audit_test

import (
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cyberdevstudio/cds/engine/audit"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

// newDB returns a fresh database and the id of a user "root".
func newDB(t *testing.T) (*pgxpool.Pool, int64) {
	t.Helper()
	st := storetest.New(t)
	u, err := st.EnsureUser(t.Context(), "root", "admin")
	if err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	return st.Pool(), u.ID
}

func TestRecordAndList(t *testing.T) {
	db, root := newDB(t)
	ctx := audit.WithRequest(t.Context(), "10.0.0.1", "req-1")
	entries := []audit.Entry{
		{ActorID: root, Action: audit.ActionUserRole, TargetType: audit.TargetUser, TargetID: "7",
			Before: map[string]any{"role": "viewer"}, After: map[string]any{"role": "developer"}},
		{ActorName: "mallory", Action: audit.ActionLoginFailed, IP: "10.9.9.9", RequestID: "req-2"},
		{ActorID: root, ActorName: "root-as-named", Action: audit.ActionUserBalance, TargetType: audit.TargetUser, TargetID: "8",
			After: map[string]any{"token_balance": float64(500)}},
	}
	for _, e := range entries {
		if err := audit.Record(ctx, db, e); err != nil {
			t.Fatalf("Record(%s): %v", e.Action, err)
		}
	}

	all, err := audit.List(t.Context(), db, audit.Filter{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(all) != 3 {
		t.Fatalf("List returned %d entries, want 3", len(all))
	}
	// Newest first.
	if all[0].Action != audit.ActionUserBalance || all[2].Action != audit.ActionUserRole {
		t.Errorf("order = %s, %s, %s; want newest first", all[0].Action, all[1].Action, all[2].Action)
	}
	first := all[2]
	if first.ActorID != root || first.ActorName != "root" {
		t.Errorf("actor = %d %q, want %d root (filled in from the users table)", first.ActorID, first.ActorName, root)
	}
	if first.IP != "10.0.0.1" || first.RequestID != "req-1" {
		t.Errorf("ip, request id = %q, %q; want them from the context", first.IP, first.RequestID)
	}
	if first.Before["role"] != "viewer" || first.After["role"] != "developer" {
		t.Errorf("before/after = %v / %v", first.Before, first.After)
	}
	if first.At.IsZero() || time.Since(first.At) > time.Hour {
		t.Errorf("At = %v, want about now", first.At)
	}
	failed := all[1]
	if failed.ActorID != 0 || failed.ActorName != "mallory" || failed.IP != "10.9.9.9" || failed.RequestID != "req-2" {
		t.Errorf("anonymous entry = %+v; explicit IP and request id must win over the context", failed)
	}
	if failed.Before != nil || failed.After != nil {
		t.Errorf("nil before/after came back as %v / %v", failed.Before, failed.After)
	}
	if all[0].ActorName != "root-as-named" {
		t.Errorf("explicit actor name = %q", all[0].ActorName)
	}
}

func TestRecordDropsSecrets(t *testing.T) {
	db, root := newDB(t)
	before := map[string]any{
		"username":      "bob",
		"password":      "hunter2",
		"Password_Hash": "$argon2id$...",
		"new_password":  "x",
		"refresh_token": "r",
		"token":         "t",
		"key":           "cds_abc",
		"api_key":       "cds_def",
		"client_secret": "s",
		"nested":        map[string]any{"secret": "s", "ok": 1.0},
		"list":          []any{map[string]any{"access_token": "a", "name": "n"}, "plain"},
		"token_balance": 5.0,
	}
	if err := audit.Record(t.Context(), db, audit.Entry{ActorID: root, Action: audit.ActionUserPasswordReset, Before: before, After: before}); err != nil {
		t.Fatalf("Record: %v", err)
	}
	if before["password"] != "hunter2" {
		t.Error("Record modified the caller's map")
	}
	got, err := audit.List(t.Context(), db, audit.Filter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("List = %d entries, %v", len(got), err)
	}
	for name, m := range map[string]map[string]any{"before": got[0].Before, "after": got[0].After} {
		for _, k := range []string{"password", "Password_Hash", "new_password", "refresh_token", "token", "key", "api_key", "client_secret"} {
			if _, ok := m[k]; ok {
				t.Errorf("%s kept secret field %q", name, k)
			}
		}
		if m["username"] != "bob" || m["token_balance"] != 5.0 {
			t.Errorf("%s lost ordinary fields: %v", name, m)
		}
		nested, _ := m["nested"].(map[string]any)
		if _, ok := nested["secret"]; ok || nested["ok"] != 1.0 {
			t.Errorf("%s nested = %v", name, nested)
		}
		list, _ := m["list"].([]any)
		if len(list) != 2 || list[1] != "plain" {
			t.Fatalf("%s list = %v", name, list)
		}
		if inner, _ := list[0].(map[string]any); inner["name"] != "n" || inner["access_token"] != nil {
			t.Errorf("%s list[0] = %v", name, inner)
		}
	}
}

func TestRecordInTransaction(t *testing.T) {
	db, root := newDB(t)
	// A rolled-back transaction leaves no entry: the entry lives and dies with the change.
	tx, err := db.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.Record(t.Context(), tx, audit.Entry{ActorID: root, Action: audit.ActionUserDelete}); err != nil {
		t.Fatalf("Record: %v", err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(t.Context(), db, func(tx pgx.Tx) error {
		return audit.Record(t.Context(), tx, audit.Entry{ActorID: root, Action: audit.ActionUserEnable})
	})
	if err != nil {
		t.Fatalf("Record in committed transaction: %v", err)
	}
	got, err := audit.List(t.Context(), db, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Action != audit.ActionUserEnable {
		t.Errorf("entries = %+v, want only the committed one", got)
	}
}

func TestRecordErrors(t *testing.T) {
	db, root := newDB(t)
	if err := audit.Record(t.Context(), db, audit.Entry{ActorID: root}); !errors.Is(err, audit.ErrInvalid) {
		t.Errorf("Record without action = %v, want ErrInvalid", err)
	}
	if err := audit.Record(t.Context(), db, audit.Entry{ActorID: root + 1000, Action: audit.ActionLogin}); err == nil {
		t.Error("Record with an unknown actor id succeeded")
	}
}

func TestListFilters(t *testing.T) {
	db, root := newDB(t)
	ctx := t.Context()
	var other int64
	if err := db.QueryRow(ctx, "INSERT INTO users (username) VALUES ('other') RETURNING id").Scan(&other); err != nil {
		t.Fatal(err)
	}
	// 10 entries: even ones by root on user 1, odd ones by other on user 2.
	for i := range 10 {
		e := audit.Entry{ActorID: root, Action: audit.ActionUserRole, TargetType: audit.TargetUser, TargetID: "1"}
		if i%2 == 1 {
			e = audit.Entry{ActorID: other, Action: audit.ActionAPIKeyCreate, TargetType: audit.TargetAPIKey, TargetID: "2"}
		}
		if err := audit.Record(ctx, db, e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := audit.List(ctx, db, audit.Filter{})
	if err != nil || len(all) != 10 {
		t.Fatalf("List all = %d, %v", len(all), err)
	}
	// Move the five oldest entries a day back, to test the time bounds.
	dayAgo := time.Now().Add(-24 * time.Hour)
	if _, err := db.Exec(ctx, "UPDATE audit_log SET at = $1 WHERE id <= $2", dayAgo, all[5].ID); err != nil {
		t.Fatal(err)
	}
	cut := time.Now().Add(-time.Hour)

	tests := []struct {
		name string
		f    audit.Filter
		want int
	}{
		{"actor", audit.Filter{ActorID: other}, 5},
		{"action", audit.Filter{Action: audit.ActionUserRole}, 5},
		{"target type", audit.Filter{TargetType: audit.TargetAPIKey}, 5},
		{"target", audit.Filter{TargetType: audit.TargetUser, TargetID: "1"}, 5},
		{"target id only", audit.Filter{TargetID: "2"}, 5},
		{"since", audit.Filter{Since: cut}, 5},
		{"until", audit.Filter{Until: cut}, 5},
		{"since and actor", audit.Filter{Since: cut, ActorID: root}, 2},
		{"limit", audit.Filter{Limit: 3}, 3},
		{"negative limit means default", audit.Filter{Limit: -1}, 10},
		{"limit above max", audit.Filter{Limit: audit.MaxLimit + 1}, 10},
		{"before id", audit.Filter{BeforeID: all[2].ID}, 7},
		{"no match", audit.Filter{Action: "nothing"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := audit.List(ctx, db, tt.f)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if len(got) != tt.want {
				t.Errorf("got %d entries, want %d", len(got), tt.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].ID >= got[i-1].ID {
					t.Errorf("entries not newest first: %d after %d", got[i].ID, got[i-1].ID)
				}
			}
		})
	}

	// Paging with BeforeID walks every entry exactly once.
	seen := map[int64]bool{}
	var before int64
	for {
		page, err := audit.List(ctx, db, audit.Filter{Limit: 4, BeforeID: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			if seen[e.ID] {
				t.Fatalf("entry %d on two pages", e.ID)
			}
			seen[e.ID] = true
		}
		before = page[len(page)-1].ID
	}
	if len(seen) != 10 {
		t.Errorf("paging saw %d entries, want 10", len(seen))
	}
}

func TestActorDeletedKeepsName(t *testing.T) {
	db, _ := newDB(t)
	ctx := t.Context()
	var id int64
	if err := db.QueryRow(ctx, "INSERT INTO users (username) VALUES ('gone') RETURNING id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := audit.Record(ctx, db, audit.Entry{ActorID: id, Action: audit.ActionLogin, TargetType: audit.TargetUser, TargetID: strconv.FormatInt(id, 10)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "DELETE FROM users WHERE id = $1", id); err != nil {
		t.Fatalf("deleting an audited user: %v", err)
	}
	got, err := audit.List(ctx, db, audit.Filter{TargetID: strconv.FormatInt(id, 10)})
	if err != nil || len(got) != 1 {
		t.Fatalf("List = %v, %v", got, err)
	}
	if got[0].ActorID != 0 || got[0].ActorName != "gone" {
		t.Errorf("actor after delete = %d %q, want 0 \"gone\"", got[0].ActorID, got[0].ActorName)
	}
}

func TestFromContextEmpty(t *testing.T) {
	if ip, id := audit.FromContext(t.Context()); ip != "" || id != "" {
		t.Errorf("FromContext of a bare context = %q, %q", ip, id)
	}
}
