package auth_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/auth"
)

func TestInvites(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	admin := e.user(t, "boss", auth.RoleAdmin)
	if err := e.svc.SetRegistrationMode(ctx, auth.RegistrationInvite); err != nil {
		t.Fatal(err)
	}
	_, code, err := e.svc.CreateInvite(ctx, admin.ID, auth.RoleViewer, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, expiring, err := e.svc.CreateInvite(ctx, admin.ID, auth.RoleDeveloper, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, code string
		want             error
		role             string
	}{
		{"no code in invite mode", "anna", "", auth.ErrRegistrationClosed, ""},
		{"unknown code", "anna", "cdsinv_nope", auth.ErrInviteInvalid, ""},
		{"not a code", "anna", "hello", auth.ErrInviteInvalid, ""},
		{"valid code gives its role", "anna", code, nil, auth.RoleViewer},
		{"code used twice", "berta", code, auth.ErrInviteInvalid, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := e.svc.Register(ctx, tc.user, strongPassword, tc.code)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Register = %v, want %v", err, tc.want)
			}
			if err == nil && u.Role != tc.role {
				t.Fatalf("role %s, want %s", u.Role, tc.role)
			}
		})
	}
	t.Run("expired code", func(t *testing.T) {
		e.clock.Advance(2 * time.Minute)
		if _, err := e.svc.Register(ctx, "carl", strongPassword, expiring); !errors.Is(err, auth.ErrInviteInvalid) {
			t.Fatalf("Register = %v", err)
		}
	})
	t.Run("a failed registration keeps the code", func(t *testing.T) {
		_, fresh, err := e.svc.CreateInvite(ctx, admin.ID, auth.RoleDeveloper, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Register(ctx, "dora", "weak", fresh); !errors.Is(err, auth.ErrWeakPassword) {
			t.Fatalf("weak password: %v", err)
		}
		if _, err := e.svc.Register(ctx, "anna", strongPassword, fresh); !errors.Is(err, auth.ErrUserExists) {
			t.Fatalf("taken name: %v", err)
		}
		if u, err := e.svc.Register(ctx, "dora", strongPassword, fresh); err != nil || u.Role != auth.RoleDeveloper {
			t.Fatalf("retry with the same code: %+v %v", u, err)
		}
	})
	t.Run("bad invitations", func(t *testing.T) {
		if _, _, err := e.svc.CreateInvite(ctx, admin.ID, auth.RoleAdmin, 0); !errors.Is(err, auth.ErrInvalidRole) {
			t.Fatalf("admin invitation: %v", err)
		}
		if _, _, err := e.svc.CreateInvite(ctx, admin.ID, auth.RoleViewer, 365*24*time.Hour); !errors.Is(err, auth.ErrInvalidInvite) {
			t.Fatalf("year-long invitation: %v", err)
		}
	})
	t.Run("closed mode refuses codes", func(t *testing.T) {
		_, c, _ := e.svc.CreateInvite(ctx, admin.ID, auth.RoleViewer, 0)
		if err := e.svc.SetRegistrationMode(ctx, auth.RegistrationClosed); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Register(ctx, "erik", strongPassword, c); !errors.Is(err, auth.ErrRegistrationClosed) {
			t.Fatalf("Register = %v", err)
		}
	})
}
