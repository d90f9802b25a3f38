package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/clock/clocktest"
	"github.com/cyberdevstudio/cds/engine/ratelimit"
)

// newClock returns a settable clock at the tests' start time.
func newClock() *clocktest.Clock { return clocktest.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)) }

// step is one request (or a pause) in a scenario: advance the clock by wait, then ask.
type step struct {
	wait      time.Duration
	key       string
	ok        bool
	retry     time.Duration // expected retryAfter when refused
	times     int           // repeat the request this many times (default 1)
	skipRetry bool          // do not check retryAfter
}

func TestAllow(t *testing.T) {
	tests := []struct {
		name  string
		class ratelimit.Class
		steps []step
	}{
		{
			name:  "login: five attempts, then one per three minutes",
			class: ratelimit.Login,
			steps: []step{
				{key: "203.0.113.7|alice", ok: true, times: 5},
				{key: "203.0.113.7|alice", ok: false, retry: 3 * time.Minute},
				{wait: time.Minute, key: "203.0.113.7|alice", ok: false, retry: 2 * time.Minute},
				{wait: 2 * time.Minute, key: "203.0.113.7|alice", ok: true},
				{key: "203.0.113.7|alice", ok: false, retry: 3 * time.Minute},
				// Another IP or another account has its own bucket.
				{key: "198.51.100.1|alice", ok: true},
				{key: "203.0.113.7|bob", ok: true},
				// A quiet quarter of an hour refills the bucket completely, never beyond.
				{wait: time.Hour, key: "203.0.113.7|alice", ok: true, times: 5},
				{key: "203.0.113.7|alice", ok: false, retry: 3 * time.Minute},
			},
		},
		{
			name:  "llm: ten per second",
			class: ratelimit.LLM,
			steps: []step{
				{key: "7", ok: true, times: 10},
				{key: "7", ok: false, retry: 100 * time.Millisecond},
				{wait: 50 * time.Millisecond, key: "7", ok: false, retry: 50 * time.Millisecond},
				{wait: 50 * time.Millisecond, key: "7", ok: true},
				{wait: time.Second, key: "7", ok: true, times: 10},
				{key: "7", ok: false, skipRetry: true},
			},
		},
		{
			name:  "metrics: twenty per second",
			class: ratelimit.Metrics,
			steps: []step{
				{key: "10.0.0.1", ok: true, times: 20},
				{key: "10.0.0.1", ok: false, retry: 50 * time.Millisecond},
			},
		},
		{
			name:  "api: a hundred per minute",
			class: ratelimit.API,
			steps: []step{
				{key: "7", ok: true, times: 100},
				{key: "7", ok: false, retry: 600 * time.Millisecond},
				{wait: 600 * time.Millisecond, key: "7", ok: true},
				{key: "8", ok: true, times: 100},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := ratelimit.New(c.Now, ratelimit.Defaults()...)
			for i, s := range tc.steps {
				c.Advance(s.wait)
				for n := range max(1, s.times) {
					ok, retry := l.Allow(tc.class.Name, s.key)
					if ok != s.ok {
						t.Fatalf("step %d (%s), request %d: ok = %v, want %v", i, s.key, n+1, ok, s.ok)
					}
					if ok && retry != 0 {
						t.Errorf("step %d: allowed with retryAfter %v", i, retry)
					}
					if !ok && !s.skipRetry && !near(retry, s.retry) {
						t.Errorf("step %d: retryAfter = %v, want %v", i, retry, s.retry)
					}
				}
			}
		})
	}
}

// near reports whether got is want up to the rounding of float rates.
func near(got, want time.Duration) bool {
	d := got - want
	return d >= -time.Microsecond && d <= time.Microsecond
}

func TestClassesAreIndependent(t *testing.T) {
	c := newClock()
	l := ratelimit.New(c.Now, ratelimit.Defaults()...)
	for range ratelimit.LLM.Burst {
		l.Allow(ratelimit.LLM.Name, "7")
	}
	if ok, _ := l.Allow(ratelimit.LLM.Name, "7"); ok {
		t.Fatal("LLM bucket not exhausted")
	}
	if ok, _ := l.Allow(ratelimit.API.Name, "7"); !ok {
		t.Error("an exhausted LLM bucket also limits the API class")
	}
}

func TestUnknownClassIsRefused(t *testing.T) {
	l := ratelimit.New(nil, ratelimit.API)
	if ok, retry := l.Allow("apii", "7"); ok || retry != 0 {
		t.Errorf("Allow(unknown class) = %v, %v; want false, 0", ok, retry)
	}
	if ok, _ := l.Allow("api", "7"); !ok {
		t.Error("Allow(api) refused with the real clock")
	}
}

func TestClockSteppingBackRefillsNothing(t *testing.T) {
	c := newClock()
	l := ratelimit.New(c.Now, ratelimit.Class{Name: "c", Rate: 1, Burst: 1})
	if ok, _ := l.Allow("c", "k"); !ok {
		t.Fatal("first request refused")
	}
	c.Advance(-time.Hour)
	if ok, _ := l.Allow("c", "k"); ok {
		t.Error("clock stepping back refilled the bucket")
	}
	c.Advance(time.Hour + time.Second)
	if ok, _ := l.Allow("c", "k"); !ok {
		t.Error("bucket did not refill once the clock caught up")
	}
}

func TestNewRejectsBadClasses(t *testing.T) {
	tests := []struct {
		name    string
		classes []ratelimit.Class
	}{
		{"no name", []ratelimit.Class{{Rate: 1, Burst: 1}}},
		{"zero rate", []ratelimit.Class{{Name: "c", Rate: 0, Burst: 1}}},
		{"negative rate", []ratelimit.Class{{Name: "c", Rate: -1, Burst: 1}}},
		{"zero burst", []ratelimit.Class{{Name: "c", Rate: 1, Burst: 0}}},
		{"duplicate", []ratelimit.Class{ratelimit.API, ratelimit.API}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			ratelimit.New(nil, tc.classes...)
		})
	}
}

func TestPruneDropsOnlyIdleBuckets(t *testing.T) {
	c := newClock()
	l := ratelimit.New(c.Now, ratelimit.LLM, ratelimit.Login)
	l.Allow(ratelimit.LLM.Name, "a")
	l.Allow(ratelimit.Login.Name, "a")
	c.Advance(time.Second) // the LLM bucket refills in one second; login's takes 15 minutes
	if n := l.Prune(); n != 1 || l.Len() != 1 {
		t.Fatalf("Prune = %d leaving %d buckets, want 1 leaving 1", n, l.Len())
	}
	// The login bucket kept its state: four attempts left, not five.
	for i := range 4 {
		if ok, _ := l.Allow(ratelimit.Login.Name, "a"); !ok {
			t.Fatalf("login attempt %d refused", i+2)
		}
	}
	if ok, _ := l.Allow(ratelimit.Login.Name, "a"); ok {
		t.Error("pruning reset a bucket that was not idle")
	}
	c.Advance(15 * time.Minute)
	if n := l.Prune(); n != 1 || l.Len() != 0 {
		t.Errorf("Prune = %d leaving %d buckets, want 1 leaving 0", n, l.Len())
	}
}

// Many goroutines on one key with a stopped clock: exactly Burst requests pass.
func TestAllowConcurrently(t *testing.T) {
	c := newClock()
	l := ratelimit.New(c.Now, ratelimit.API)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				if ok, _ := l.Allow(ratelimit.API.Name, "shared"); ok {
					allowed.Add(1)
				}
				l.Allow(ratelimit.API.Name, fmt.Sprintf("own-%d-%d", g, i))
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			l.Prune()
			l.Len()
		}
	})
	wg.Wait()
	if got := allowed.Load(); got != int64(ratelimit.API.Burst) {
		t.Errorf("%d requests allowed on the shared key, want %d", got, ratelimit.API.Burst)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	l := ratelimit.New(nil, ratelimit.API)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
