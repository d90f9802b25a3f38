// Package clocktest provides a settable clock for tests, so that code which takes a
// time source (a func() time.Time) can be driven through expiry and refill without
// sleeping.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a settable clock for tests; it is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a Clock that reads start until it is advanced or set.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's current time. Its method value c.Now can be passed as a
// time source.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d, which may be negative to step it back.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
