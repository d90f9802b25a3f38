package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/event"
	"github.com/cyberdevstudio/cds/engine/project"
	"github.com/cyberdevstudio/cds/engine/store"
	"github.com/cyberdevstudio/cds/engine/store/storetest"
	"github.com/cyberdevstudio/cds/server/client"
	"github.com/cyberdevstudio/cds/server/rpc"
)

func TestMain(m *testing.M) { os.Exit(storetest.Run(m)) }

// testUserHeader picks the caller in tests: the Authenticator is the injection
// point that the auth release fills with real authentication.
const testUserHeader = "X-Test-User"

type testEnv struct {
	url      string
	client   *client.Client
	srv      *Server
	store    *store.Store
	bus      *event.Bus
	projects *project.Service
	users    map[rpc.Role]store.User
	dataDir  string
}

// newEnv starts a real server on a loopback port against a fresh database. Requests
// act as the admin user unless they carry testUserHeader with a role name.
func newEnv(t testing.TB, tweak ...func(*Config)) *testEnv {
	t.Helper()
	st := storetest.New(t)
	env := &testEnv{store: st, bus: event.NewBus(64), users: map[rpc.Role]store.User{}, dataDir: t.TempDir()}
	for _, r := range []rpc.Role{rpc.RoleAdmin, rpc.RoleDeveloper, rpc.RoleViewer} {
		u, err := st.EnsureUser(context.Background(), string(r)+"-user", string(r))
		if err != nil {
			t.Fatal(err)
		}
		env.users[r] = u
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var err error
	env.projects, err = project.New(project.Config{
		DB: st.Pool(), Dir: filepath.Join(env.dataDir, "projects"), Logger: log,
		Publish: func(stream, typ string, data any) { env.bus.Publish(stream, typ, data) },
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = env.projects.Watch(wctx)
	}()
	t.Cleanup(func() {
		stopWatch()
		<-watchDone
	})
	cfg := Config{
		Logger: log, Store: st, Projects: env.projects, Bus: env.bus, Version: "test",
		Authenticate: func(r *http.Request) (Principal, error) {
			role := rpc.RoleAdmin
			if h := r.Header.Get(testUserHeader); h != "" {
				if h == "anonymous" {
					return Principal{}, rpc.NewError(rpc.CodeUnauthorized, "no credentials")
				}
				role = rpc.Role(h)
			}
			u := env.users[role]
			return Principal{UserID: u.ID, Username: u.Username, Role: role}, nil
		},
	}
	for _, f := range tweak {
		f(&cfg)
	}
	env.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.srv.Serve(ctx, ln, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
		env.bus.Close()
	})
	env.url = "http://" + ln.Addr().String()
	env.client, err = client.New(env.url)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// as returns a client acting with role.
func (e *testEnv) as(t testing.TB, role string) *client.Client {
	t.Helper()
	hc := &http.Client{Transport: headerTransport{name: testUserHeader, value: role}}
	c, err := client.New(e.url, client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type headerTransport struct{ name, value string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return http.DefaultTransport.RoundTrip(r)
}
