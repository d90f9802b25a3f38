package store_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/cyberdevstudio/cds/engine/store"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
)

func TestEnsureUser(t *testing.T) {
	s := storetest.New(t)
	first, err := s.EnsureUser(t.Context(), "Alice", "admin")
	if err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	if first.ID == 0 || first.Username != "Alice" || first.Role != "admin" || first.TokenBalance != 0 || first.CreatedAt.IsZero() {
		t.Errorf("created user = %+v", first)
	}

	tests := []struct {
		name     string
		username string
		role     string
		wantSame bool // the existing Alice, unchanged
		wantErr  error
	}{
		{name: "same name", username: "Alice", role: "admin", wantSame: true},
		{name: "other case", username: "aLICE", role: "admin", wantSame: true},
		{name: "other role keeps the role", username: "alice", role: "viewer", wantSame: true},
		{name: "new user", username: "bob.smith-2", role: "developer"},
		{name: "unknown role", username: "carol", role: "root", wantErr: store.ErrInvalid},
		{name: "empty role", username: "carol", role: "", wantErr: store.ErrInvalid},
		{name: "malformed username", username: "carol smith", role: "viewer", wantErr: store.ErrInvalid},
		{name: "empty username", username: "", role: "viewer", wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := s.EnsureUser(t.Context(), tt.username, tt.role)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("EnsureUser(%q, %q) = %+v, %v; want %v", tt.username, tt.role, u, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureUser: %v", err)
			}
			if tt.wantSame {
				if u != first {
					t.Errorf("EnsureUser = %+v, want the existing %+v", u, first)
				}
				return
			}
			if u.ID == first.ID || u.Username != tt.username || u.Role != tt.role {
				t.Errorf("EnsureUser = %+v, want a new %s %s", u, tt.role, tt.username)
			}
		})
	}
}

func TestEnsureUserConcurrently(t *testing.T) {
	s := storetest.New(t)
	const n = 8
	users := make([]store.User, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { users[i], errs[i] = s.EnsureUser(t.Context(), "dev", "developer") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	for _, u := range users[1:] {
		if u != users[0] {
			t.Errorf("concurrent EnsureUser returned %+v and %+v, want one user", users[0], u)
		}
	}
	var count int
	if err := s.Pool().QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&count); err != nil || count != 1 {
		t.Errorf("users rows = %d, %v; want 1", count, err)
	}
}

func TestUserByID(t *testing.T) {
	s := storetest.New(t)
	alice, err := s.EnsureUser(t.Context(), "alice", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      int64
		want    store.User
		wantErr error
	}{
		{name: "existing", id: alice.ID, want: alice},
		{name: "missing", id: alice.ID + 1000, wantErr: store.ErrNotFound},
		{name: "zero", id: 0, wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := s.UserByID(t.Context(), tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("UserByID(%d) error = %v, want %v", tt.id, err, tt.wantErr)
			}
			if u != tt.want {
				t.Errorf("UserByID(%d) = %+v, want %+v", tt.id, u, tt.want)
			}
		})
	}
}
