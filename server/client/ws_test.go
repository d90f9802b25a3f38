package client

import (
	"testing"

	"github.com/cyberdevstudio/cds/server/rpc"
)

func event(sub string, id int64) Notification {
	return Notification{Method: rpc.NotifyEvent, Event: &rpc.EventParams{Subscription: sub, Stream: "project:" + sub, ID: id, Type: "file.saved"}}
}

func resync(sub string, last int64) Notification {
	return Notification{Method: rpc.NotifyResync, Resync: &rpc.ResyncParams{Subscription: sub, Stream: "project:" + sub, LastID: last, Reason: "server"}}
}

// drain pops every queued notification.
func drain(q *noteQueue) []Notification {
	var out []Notification
	for {
		n, ok := q.peek()
		if !ok {
			return out
		}
		out = append(out, n)
		q.pop()
	}
}

func TestNoteQueueKeepsOrderWithinLimit(t *testing.T) {
	q := newNoteQueue(4)
	q.push(event("a", 1))
	q.push(event("b", 1))
	q.push(Notification{Method: "future.thing"})
	q.push(event("a", 2))
	got := drain(q)
	if len(got) != 4 {
		t.Fatalf("got %d notifications, want 4", len(got))
	}
	if got[0].Event.ID != 1 || got[2].Method != "future.thing" || got[3].Event.ID != 2 {
		t.Errorf("order changed: %+v", got)
	}
}

func TestNoteQueueOverflowBecomesOneResync(t *testing.T) {
	q := newNoteQueue(3)
	q.push(event("a", 1))
	q.push(event("b", 7))
	q.push(event("a", 2))
	// Full: a's further events collapse into one resync after id 2, b's after id 7.
	q.push(event("a", 3))
	q.push(event("a", 4))
	q.push(event("b", 8))
	q.push(Notification{Method: "future.thing"}) // dropped: no room
	got := drain(q)

	want := []struct {
		method string
		sub    string
		id     int64
	}{
		{rpc.NotifyEvent, "a", 1},
		{rpc.NotifyEvent, "b", 7},
		{rpc.NotifyEvent, "a", 2},
		{rpc.NotifyResync, "a", 2},
		{rpc.NotifyResync, "b", 7},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d notifications, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		n := got[i]
		if n.Method != w.method {
			t.Fatalf("#%d method = %q, want %q", i, n.Method, w.method)
		}
		var sub string
		var id int64
		if n.Event != nil {
			sub, id = n.Event.Subscription, n.Event.ID
		} else {
			sub, id = n.Resync.Subscription, n.Resync.LastID
		}
		if sub != w.sub || id != w.id {
			t.Errorf("#%d = %s %s/%d, want %s/%d", i, n.Method, sub, id, w.sub, w.id)
		}
	}

	// A lost subscription stays lost even when there is room again: its client
	// resubscribes after the resync's LastID and gets a new subscription.
	q.push(event("a", 5))
	q.push(event("c", 1))
	got = drain(q)
	if len(got) != 1 || got[0].Event.Subscription != "c" {
		t.Errorf("after the overflow got %+v, want only c's event", got)
	}
}

func TestNoteQueueServerResync(t *testing.T) {
	q := newNoteQueue(1)
	q.push(resync("a", 3)) // passed on
	q.push(event("a", 9))  // no room: lost, one notice
	q.push(resync("b", 1)) // no room, but a resync is always delivered once
	q.push(resync("b", 2)) // b is lost already
	got := drain(q)
	if len(got) != 3 {
		t.Fatalf("got %d notifications, want 3: %+v", len(got), got)
	}
	if got[0].Resync.LastID != 3 || got[0].Resync.Reason != "server" {
		t.Errorf("server resync changed: %+v", got[0].Resync)
	}
	if got[1].Resync == nil || got[1].Resync.Subscription != "a" || got[1].Resync.LastID != 0 {
		t.Errorf("overflow notice = %+v, want a resync of a after 0", got[1])
	}
	if got[2].Resync == nil || got[2].Resync.Subscription != "b" || got[2].Resync.LastID != 1 {
		t.Errorf("got %+v, want b's first resync", got[2])
	}
}
