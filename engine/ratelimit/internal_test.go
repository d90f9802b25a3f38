package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/clock/clocktest"
)

// When the map is full, a new key shares the class's overflow bucket, and keys that have
// their own bucket keep it.
func TestFullLimiterUsesOverflowBucket(t *testing.T) {
	c := clocktest.New(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	class := Class{Name: "c", Rate: 1, Burst: 2}
	l := New(c.Now, class)
	l.maxBuckets = 3
	for i := range 3 {
		if ok, _ := l.Allow("c", fmt.Sprint("own", i)); !ok {
			t.Fatalf("own%d refused", i)
		}
	}
	// Two new keys share the overflow bucket of two tokens: the third request is refused.
	tests := []struct {
		key string
		ok  bool
	}{
		{"new1", true},
		{"new2", true},
		{"new1", false},
		{"new3", false},
		{"own0", true}, // its own bucket still has a token
	}
	for _, tc := range tests {
		if ok, _ := l.Allow("c", tc.key); ok != tc.ok {
			t.Errorf("Allow(%s) = %v, want %v", tc.key, ok, tc.ok)
		}
	}
	if n := l.Len(); n != 3 {
		t.Errorf("Len = %d, want the cap 3", n)
	}

	// Once the own buckets are idle, a new key prunes them and gets its own bucket.
	c.Advance(2 * time.Second)
	if ok, _ := l.Allow("c", "new4"); !ok {
		t.Error("new4 refused after the map could be pruned")
	}
	if _, own := l.buckets[bucketKey{"c", "new4"}]; !own || l.Len() != 1 {
		t.Errorf("new4 has its own bucket: %v; Len = %d, want 1", own, l.Len())
	}
}

// Run prunes idle buckets periodically.
func TestRunPrunes(t *testing.T) {
	c := clocktest.New(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	l := New(c.Now, Class{Name: "c", Rate: 1, Burst: 1})
	l.Allow("c", "k")
	c.Advance(time.Second) // set before Run starts: no data race on the clock
	l.every = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	for l.Len() != 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
