package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cyberdevstudio/cds/server/client"
	"github.com/cyberdevstudio/cds/server/rpc"
)

// next waits for the next notification (bounded, so a missing event fails the test
// instead of hanging it; the bound is not a performance assertion).
func next(t *testing.T, conn *client.Conn) client.Notification {
	t.Helper()
	select {
	case n, ok := <-conn.Notifications():
		if !ok {
			t.Fatalf("connection ended: %v", conn.Err())
		}
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
	}
	return client.Notification{}
}

func TestWebSocketEventsAndResume(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	p, err := env.client.ProjectCreate(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := env.client.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var st rpc.SystemStatus
	if err := conn.Call(ctx, rpc.MethodSystemStatus, nil, &st); err != nil || !st.Database.OK {
		t.Fatalf("call over ws: %+v %v", st, err)
	}
	sub, err := conn.Subscribe(ctx, rpc.ProjectStream(p.ID), 0)
	if err != nil {
		t.Fatal(err)
	}
	save := func(path string) {
		t.Helper()
		if _, err := env.client.FileSave(ctx, rpc.FileSaveParams{ProjectID: p.ID, Path: path, Content: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	save("a.txt")
	n := next(t, conn)
	if n.Event == nil || n.Event.Type != "file.saved" || n.Event.Subscription != sub.Subscription || n.Event.Stream != sub.Stream {
		t.Fatalf("notification %+v", n)
	}
	lastSeen := n.Event.ID
	conn.Close()

	// Events while the client is away are replayed after the last id it saw.
	save("b.txt")
	save("c.txt")
	conn2, err := env.client.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if _, err := conn2.Subscribe(ctx, rpc.ProjectStream(p.ID), lastSeen); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for range 2 {
		n := next(t, conn2)
		if n.Event == nil || n.Event.ID <= lastSeen {
			t.Fatalf("replay %+v", n)
		}
		lastSeen = n.Event.ID
		paths = append(paths, fmt.Sprint(n.Event.Data.(map[string]any)["path"]))
	}
	if strings.Join(paths, ",") != "b.txt,c.txt" {
		t.Fatalf("replayed %v", paths)
	}
	// And live events follow without duplicates.
	save("d.txt")
	if n := next(t, conn2); n.Event == nil || n.Event.ID <= lastSeen {
		t.Fatalf("live %+v", n)
	}

	t.Run("resume point older than the history asks for a resync", func(t *testing.T) {
		conn3, err := env.client.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn3.Close()
		sub, err := conn3.Subscribe(ctx, rpc.ProjectStream(p.ID), 1)
		if err != nil {
			t.Fatal(err)
		}
		if n := next(t, conn3); n.Resync == nil || n.Resync.LastID != sub.LastID {
			t.Fatalf("want a resync to the cursor %d first, got %+v", sub.LastID, n)
		}
		// No stale replay follows: the next notification is a live event.
		save("e.txt")
		if n := next(t, conn3); n.Event == nil || n.Event.ID <= sub.LastID {
			t.Fatalf("after the resync: %+v", n)
		}
	})
	t.Run("unsubscribe", func(t *testing.T) {
		if err := conn2.Unsubscribe(ctx, "sub-1"); err != nil {
			t.Fatal(err)
		}
		if err := conn2.Unsubscribe(ctx, "sub-1"); !rpc.IsCode(err, rpc.CodeNotFound) {
			t.Fatalf("second unsubscribe: %v", err)
		}
	})
	t.Run("stream access", func(t *testing.T) {
		if _, err := conn2.Subscribe(ctx, "nonsense", 0); !rpc.IsCode(err, rpc.CodeInvalidParams) {
			t.Fatalf("unknown stream: %v", err)
		}
		other, err := env.as(t, string(rpc.RoleDeveloper)).Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if _, err := other.Subscribe(ctx, rpc.ProjectStream(p.ID), 0); !rpc.IsCode(err, rpc.CodeNotFound) {
			t.Fatalf("foreign project: %v", err)
		}
	})
}

// TestSlowConsumerIsBounded subscribes with a raw connection that never reads, fills
// the stream, and then checks that the server ended the subscription with a resync
// notice instead of queueing without bound.
func TestSlowConsumerIsBounded(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	p, err := env.client.ProjectCreate(ctx, "flood")
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.Dial(ctx, strings.Replace(env.url, "http", "ws", 1)+"/ws", env.wsOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	req := fmt.Sprintf(`{"jsonrpc":"2.0","method":"events.subscribe","params":{"stream":%q},"id":1}`, rpc.ProjectStream(p.ID))
	if err := ws.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
		t.Fatal(err)
	}
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"subscription"`) {
		t.Fatalf("subscribe answer %s %v", data, err)
	}
	// Publish far more than the per-subscription buffer and the outgoing queue hold,
	// without reading: the bus must drop the subscriber instead of blocking.
	total := wsEventBuffer + wsOutQueue + 2000
	for i := range total {
		env.bus.Publish(rpc.ProjectStream(p.ID), "file.saved", map[string]any{"i": i, "pad": strings.Repeat("x", 512)})
	}
	events, resync := 0, false
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for !resync {
		_, data, err := ws.Read(rctx)
		if err != nil {
			t.Fatalf("after %d events: %v", events, err)
		}
		switch {
		case strings.Contains(string(data), `"method":"events.resync"`):
			resync = true
		case strings.Contains(string(data), `"method":"event"`):
			events++
		}
	}
	if events >= total {
		t.Fatalf("all %d events were queued for a consumer that did not read", events)
	}
}

func TestWebSocketErrors(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	t.Run("unauthenticated handshake", func(t *testing.T) {
		_, err := env.as(t, "anonymous").Dial(ctx)
		var herr *client.HTTPError
		if err == nil || !errors.As(err, &herr) || herr.StatusCode != http.StatusUnauthorized {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("binary frame and bad JSON", func(t *testing.T) {
		ws, _, err := websocket.Dial(ctx, strings.Replace(env.url, "http", "ws", 1)+"/ws", env.wsOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		for _, tc := range []struct {
			typ  websocket.MessageType
			body string
			want string
		}{
			{websocket.MessageBinary, `{}`, `"code":-32600`},
			{websocket.MessageText, `{nope`, `"code":-32700`},
			{websocket.MessageText, `[{"jsonrpc":"2.0","method":"system.status","id":1},{"jsonrpc":"2.0","method":"x","id":2}]`, `"code":-32601`},
		} {
			if err := ws.Write(ctx, tc.typ, []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			_, data, err := ws.Read(ctx)
			if err != nil || !strings.Contains(string(data), tc.want) {
				t.Fatalf("sent %s, got %s %v", tc.body, data, err)
			}
		}
	})
}

// TestSilentPeerIsDropped checks the keepalive: a peer that stops reading (and so
// never answers pings) is disconnected and its session freed.
func TestSilentPeerIsDropped(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.PingInterval = 50 * time.Millisecond })
	ctx := t.Context()
	ws, _, err := websocket.Dial(ctx, strings.Replace(env.url, "http", "ws", 1)+"/ws", env.wsOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	// Not reading means pings go unanswered; wait until the server gave up.
	env.waitSessions(t, 1)
	env.waitSessions(t, 0)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, _, err := ws.Read(rctx); err == nil || rctx.Err() != nil {
		t.Fatalf("connection still open: %v", err)
	}
}

// waitSessions waits until the server holds n WebSocket sessions: a client's Dial
// returns before the server's handler has registered its side.
func (e *testEnv) waitSessions(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.wsTracker.count() != n {
		if time.Now().After(deadline) {
			t.Fatalf("server holds %d WebSocket sessions, want %d", e.srv.wsTracker.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wsOptions authenticate a raw WebSocket dial as the admin.
func (e *testEnv) wsOptions() *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + e.tokens[rpc.RoleAdmin]}}}
}

// TestShutdownDrainsRunningCalls holds a save in the database (a row lock taken by
// the test), starts the shutdown of WebSockets, releases the lock, and checks that
// the client still gets the save's answer, later calls are refused, and the
// connection then ends.
func TestShutdownDrainsRunningCalls(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	p, err := env.client.ProjectCreate(ctx, "drain")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := env.client.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	env.waitSessions(t, 1)

	tx, err := env.store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT 1 FROM projects WHERE id = $1 FOR UPDATE`, p.ID); err != nil {
		t.Fatal(err)
	}
	saved := make(chan error, 1)
	go func() {
		var fi rpc.FileInfo
		saved <- conn.Call(ctx, rpc.MethodFileSave, rpc.FileSaveParams{ProjectID: p.ID, Path: "a.txt", Content: "x"}, &fi)
	}()
	// Wait until the save waits for the lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := env.store.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the save never waited for the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	drained := make(chan struct{})
	go func() {
		env.srv.wsTracker.closeAll()
		close(drained)
	}()
	// While draining, new calls are refused with a clear error.
	deadline = time.Now().Add(10 * time.Second)
	for {
		err := conn.Call(ctx, rpc.MethodSystemStatus, nil, nil)
		if rpc.IsCode(err, rpc.CodeUnavailable) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("call while draining: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-saved:
		if err != nil {
			t.Fatalf("the running save lost its answer: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no answer to the running save")
	}
	<-drained
	select {
	case <-conn.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open after the drain")
	}
}
