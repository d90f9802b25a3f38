package project_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/audit"
	"github.com/cyberdevstudio/cds/engine/project"
)

// addUser inserts a user and returns its id.
func (e *env) addUser(t testing.TB, name string) int64 {
	t.Helper()
	var id int64
	if err := e.db.QueryRow(t.Context(), "INSERT INTO users (username) VALUES ($1) RETURNING id", name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// share makes user a member of alice's project p.
func (e *env) share(t testing.TB, pid string, user int64, role string) {
	t.Helper()
	if err := e.svc.AddMember(t.Context(), e.alice, pid, user, role); err != nil {
		t.Fatalf("AddMember(%d, %s): %v", user, role, err)
	}
}

func wantForbidden(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, project.ErrForbidden) {
		t.Fatalf("error = %v, want ErrForbidden", err)
	}
}

// TestMemberAccess checks what each kind of user may do to alice's project.
func TestMemberAccess(t *testing.T) {
	e := newEnv(t)
	viewer, dev := e.addUser(t, "vera"), e.addUser(t, "dave")
	p := e.create(t, "shared")
	e.save(t, p.ID, "a.txt", "A", 0)
	e.share(t, p.ID, viewer, project.MemberViewer)
	e.share(t, p.ID, dev, project.MemberDeveloper)

	type result struct{ read, write, del error }
	check := func(t *testing.T, user int64) result {
		t.Helper()
		ctx := t.Context()
		var r result
		if _, content, err := e.svc.ReadFile(ctx, user, p.ID, "a.txt", 0); err != nil {
			r.read = err
		} else if string(content) != "A" && string(content) != "B" {
			t.Fatalf("read %q", content)
		}
		// Every read path must agree.
		_, _, errOpen := e.svc.Open(ctx, user, p.ID)
		_, errList := e.svc.ListFiles(ctx, user, p.ID, "")
		_, errHist := e.svc.History(ctx, user, p.ID, "a.txt", 0)
		_, _, errRev := e.svc.ReadFile(ctx, user, p.ID, "a.txt", 1)
		_, errMembers := e.svc.Members(ctx, user, p.ID)
		for _, err := range []error{errOpen, errList, errHist, errRev, errMembers} {
			if (err == nil) != (r.read == nil) {
				t.Fatalf("read paths disagree: ReadFile %v, other %v", r.read, err)
			}
		}
		_, r.write = e.svc.SaveFile(ctx, user, p.ID, "w.txt", []byte("w"), 0)
		if r.write == nil {
			if _, err := e.svc.RenameFile(ctx, user, p.ID, "w.txt", "w2.txt", 0); err != nil {
				t.Fatalf("rename after save: %v", err)
			}
			if _, err := e.svc.DeleteFile(ctx, user, p.ID, "w2.txt", 0); err != nil {
				t.Fatalf("delete after save: %v", err)
			}
		} else {
			_, errRen := e.svc.RenameFile(ctx, user, p.ID, "a.txt", "b.txt", 0)
			_, errDel := e.svc.DeleteFile(ctx, user, p.ID, "a.txt", 0)
			for _, err := range []error{errRen, errDel} {
				if !errors.Is(err, r.write) && errors.Is(r.write, project.ErrForbidden) != errors.Is(err, project.ErrForbidden) {
					t.Fatalf("write paths disagree: SaveFile %v, other %v", r.write, err)
				}
			}
		}
		// Delete is tried last; only the owner's succeeds, and it ends the test.
		if user != e.alice {
			r.del = e.svc.Delete(ctx, user, p.ID)
		}
		return r
	}

	t.Run("viewer reads, cannot write or delete", func(t *testing.T) {
		r := check(t, viewer)
		if r.read != nil {
			t.Fatalf("read: %v", r.read)
		}
		wantForbidden(t, r.write)
		wantForbidden(t, r.del)
	})
	t.Run("developer reads and writes, cannot delete", func(t *testing.T) {
		r := check(t, dev)
		if r.read != nil || r.write != nil {
			t.Fatalf("read %v, write %v", r.read, r.write)
		}
		wantForbidden(t, r.del)
	})
	t.Run("non-member sees nothing", func(t *testing.T) {
		r := check(t, e.bob)
		wantNotFound(t, r.read)
		wantNotFound(t, r.write)
		wantNotFound(t, r.del)
	})
	t.Run("members may not manage members", func(t *testing.T) {
		wantForbidden(t, e.svc.AddMember(t.Context(), dev, p.ID, e.bob, project.MemberViewer))
		wantForbidden(t, e.svc.RemoveMember(t.Context(), dev, p.ID, viewer))
		wantNotFound(t, e.svc.AddMember(t.Context(), e.bob, p.ID, e.bob, project.MemberViewer))
	})
	t.Run("List includes shared projects", func(t *testing.T) {
		for _, u := range []int64{viewer, dev} {
			ps, err := e.svc.List(t.Context(), u)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != 1 || ps[0].ID != p.ID || ps[0].OwnerID != e.alice {
				t.Errorf("List(%d) = %+v, want alice's shared project", u, ps)
			}
		}
		if ps, err := e.svc.List(t.Context(), e.bob); err != nil || len(ps) != 0 {
			t.Errorf("List(bob) = %+v, %v", ps, err)
		}
	})
	t.Run("owner deletes", func(t *testing.T) {
		if err := e.svc.Delete(t.Context(), e.alice, p.ID); err != nil {
			t.Fatalf("owner Delete: %v", err)
		}
		if n := e.count(t, "SELECT count(*) FROM project_members"); n != 0 {
			t.Errorf("%d memberships outlived the project", n)
		}
	})
}

func TestMembersManagement(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	carol := e.addUser(t, "carol")
	p := e.create(t, "p")

	members, err := e.svc.Members(ctx, e.alice, p.ID)
	if err != nil || len(members) != 0 || members == nil {
		t.Fatalf("Members of an unshared project = %v, %v; want empty", members, err)
	}
	e.share(t, p.ID, e.bob, project.MemberViewer)
	e.share(t, p.ID, carol, project.MemberViewer)
	e.share(t, p.ID, carol, project.MemberDeveloper) // changes the role
	e.share(t, p.ID, carol, project.MemberDeveloper) // no change, no audit entry
	members, err = e.svc.Members(ctx, e.bob, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[0].Username != "bob" || members[0].Role != "viewer" ||
		members[1].UserID != carol || members[1].Role != "developer" || members[1].AddedAt.IsZero() {
		t.Fatalf("Members = %+v", members)
	}

	tests := []struct {
		name string
		err  error
		want error
	}{
		{"bad role", e.svc.AddMember(ctx, e.alice, p.ID, carol, "admin"), project.ErrInvalidMember},
		{"owner as member", e.svc.AddMember(ctx, e.alice, p.ID, e.alice, "viewer"), project.ErrInvalidMember},
		{"missing user", e.svc.AddMember(ctx, e.alice, p.ID, carol+1000, "viewer"), project.ErrNotFound},
		{"malformed project", e.svc.AddMember(ctx, e.alice, "nope", carol, "viewer"), project.ErrNotFound},
		{"remove non-member", e.svc.RemoveMember(ctx, e.alice, p.ID, carol+1000), project.ErrNotFound},
		{"remove from malformed project", e.svc.RemoveMember(ctx, e.alice, "nope", carol), project.ErrNotFound},
		{"members of malformed project", func() error { _, err := e.svc.Members(ctx, e.alice, "nope"); return err }(), project.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("error = %v, want %v", tt.err, tt.want)
			}
		})
	}

	// A member may leave; the owner may remove anyone.
	if err := e.svc.RemoveMember(ctx, e.bob, p.ID, e.bob); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if err := e.svc.RemoveMember(ctx, e.alice, p.ID, carol); err != nil {
		t.Fatalf("owner removes: %v", err)
	}
	if err := e.svc.RemoveMember(ctx, e.bob, p.ID, e.bob); !errors.Is(err, project.ErrNotFound) {
		t.Errorf("leaving twice = %v, want ErrNotFound", err)
	}

	entries, err := audit.List(ctx, e.db, audit.Filter{TargetType: audit.TargetProject, TargetID: p.ID})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.Action)
	}
	want := []string{"project.member_remove", "project.member_remove", "project.member_add", "project.member_add", "project.member_add"}
	if len(got) != len(want) {
		t.Fatalf("audit actions = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("audit actions = %v, want %v", got, want)
		}
	}
	roleChange := entries[2]
	if roleChange.ActorID != e.alice || roleChange.Before["role"] != "viewer" || roleChange.After["role"] != "developer" {
		t.Errorf("role change entry = %+v", roleChange)
	}
	if entries[1].ActorID != e.bob || entries[1].Before["user_id"] != float64(e.bob) {
		t.Errorf("leave entry = %+v", entries[1])
	}
}

// TestRemovedMemberLosesCachedReads checks that the head cache, which keeps reads per
// user, stops serving a member as soon as the membership ends, in this process
// (RemoveMember) and in another (the trigger's notification).
func TestRemovedMemberLosesCachedReads(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	other, err := project.New(project.Config{DB: e.db, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, other)
	p := e.create(t, "p")
	e.save(t, p.ID, "f.txt", "secret plans", 0)

	readUntil := func(svc *project.Service, wantErr bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, _, err := svc.ReadFile(ctx, e.bob, p.ID, "f.txt", 0)
			if (err != nil) == wantErr {
				if wantErr {
					wantNotFound(t, err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ReadFile error = %v, want error: %v", err, wantErr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Through RemoveMember: this process must refuse at once.
	e.share(t, p.ID, e.bob, project.MemberViewer)
	for range 3 { // warm the cache
		readUntil(e.svc, false)
	}
	if err := e.svc.RemoveMember(ctx, e.alice, p.ID, e.bob); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.ReadFile(ctx, e.bob, p.ID, "f.txt", 0); !errors.Is(err, project.ErrNotFound) {
		t.Fatalf("read right after RemoveMember = %v, want ErrNotFound", err)
	}

	// Through plain SQL, as another replica or an admin would: every process hears
	// of it through the notification.
	e.share(t, p.ID, e.bob, project.MemberViewer)
	for range 3 {
		readUntil(e.svc, false)
		readUntil(other, false)
	}
	if _, err := e.db.Exec(ctx, "DELETE FROM project_members WHERE user_id = $1", e.bob); err != nil {
		t.Fatal(err)
	}
	readUntil(e.svc, true)
	readUntil(other, true)
}
