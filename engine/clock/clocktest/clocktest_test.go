package clocktest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/cyberdevstudio/cds/engine/clock/clocktest"
)

func TestClock(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		move func(c *clocktest.Clock)
		want time.Time
	}{
		{"start", func(*clocktest.Clock) {}, start},
		{"advance", func(c *clocktest.Clock) { c.Advance(90 * time.Second) }, start.Add(90 * time.Second)},
		{"advance back", func(c *clocktest.Clock) { c.Advance(-time.Hour) }, start.Add(-time.Hour)},
		{"advance twice", func(c *clocktest.Clock) { c.Advance(time.Minute); c.Advance(time.Second) }, start.Add(time.Minute + time.Second)},
		{"set", func(c *clocktest.Clock) { c.Set(start.Add(24 * time.Hour)) }, start.Add(24 * time.Hour)},
		{"set then advance", func(c *clocktest.Clock) { c.Set(start.Add(-time.Minute)); c.Advance(time.Minute) }, start},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := clocktest.New(start)
			tc.move(c)
			if got := c.Now(); !got.Equal(tc.want) {
				t.Errorf("Now = %v, want %v", got, tc.want)
			}
		})
	}
}

// Concurrent readers and writers see every advance (run with -race).
func TestClockConcurrent(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c := clocktest.New(start)
	now := c.Now // a method value is a time source
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(800*time.Second); !got.Equal(want) {
		t.Errorf("Now = %v, want %v", got, want)
	}
}
