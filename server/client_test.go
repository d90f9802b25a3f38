package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/server/client"
	"github.com/cyberdevstudio/cds/server/rpc"
)

// TestClientBatchAndNotify drives the typed client's batch and notification paths
// against the real server.
func TestClientBatchAndNotify(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MaxBatch = 4 })
	ctx := t.Context()
	if err := env.client.Notify(ctx, rpc.MethodProjectCreate, rpc.ProjectCreateParams{Name: "by-notification"}); err != nil {
		t.Fatal(err)
	}
	var (
		list   rpc.ProjectList
		status rpc.SystemStatus
	)
	calls := []client.BatchCall{
		{Method: rpc.MethodProjectList, Result: &list},
		{Method: rpc.MethodSystemStatus, Result: &status},
		{Method: "no.such", Params: []int{1}},
		{Method: rpc.MethodProjectCreate, Params: rpc.ProjectCreateParams{Name: "quiet"}, Notify: true},
	}
	if err := env.client.Batch(ctx, calls); err != nil {
		t.Fatal(err)
	}
	if calls[0].Err != nil || len(list.Projects) != 1 || list.Projects[0].Name != "by-notification" {
		t.Fatalf("list: %+v %v", list, calls[0].Err)
	}
	if calls[1].Err != nil || status.Version != "test" {
		t.Fatalf("status: %+v %v", status, calls[1].Err)
	}
	if !rpc.IsCode(calls[2].Err, rpc.CodeMethodNotFound) {
		t.Fatalf("unknown method: %v", calls[2].Err)
	}
	ps, err := env.client.ProjectList(ctx)
	if err != nil || len(ps) != 2 {
		t.Fatalf("the notified create did not run: %+v %v", ps, err)
	}
	t.Run("batch over the limit is rejected whole", func(t *testing.T) {
		many := make([]client.BatchCall, 5)
		for i := range many {
			many[i] = client.BatchCall{Method: rpc.MethodSystemStatus}
		}
		if err := env.client.Batch(ctx, many); !rpc.IsCode(err, rpc.CodeInvalidRequest) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("notification-only batch", func(t *testing.T) {
		if err := env.client.Batch(ctx, []client.BatchCall{{Method: rpc.MethodSystemStatus, Notify: true}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("params the server refuses", func(t *testing.T) {
		err := env.client.Call(ctx, rpc.MethodProjectCreate, map[string]any{"name": 7}, nil)
		var rerr *rpc.Error
		if !errors.As(err, &rerr) || rerr.Code != rpc.CodeInvalidParams || rerr.Data.Detail == "" {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestWebSocketEndsWithServer checks that a client sees its connection end, with a
// reason, when cdsd shuts down.
func TestWebSocketEndsWithServer(t *testing.T) {
	env := newEnv(t)
	conn, err := env.client.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	env.waitSessions(t, 1)
	// Shut the server down the way cdsd does on SIGTERM.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env.srv.wsTracker.closeAll()
	select {
	case <-conn.Done():
	case <-ctx.Done():
		t.Fatal("connection still open after the server closed it")
	}
	if conn.Err() == nil {
		t.Fatal("no reason for the end of the connection")
	}
	if err := conn.Call(t.Context(), rpc.MethodSystemStatus, nil, nil); err == nil {
		t.Fatal("call on a closed connection succeeded")
	}
}
