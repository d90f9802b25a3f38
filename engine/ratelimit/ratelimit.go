// Package ratelimit limits how often a key (a user id or a client IP, as the caller
// decides) may do something, with one token bucket per class and key, in memory.
//
// The limits are per process: with several cdsd replicas behind a load balancer, each
// replica allows the full rate. docs/ratelimits.md describes the classes and the design
// for shared counters across replicas.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// Class is a kind of request with its own limit. Each key gets a bucket that holds up to
// Burst tokens and refills at Rate tokens per second; a request takes one token.
type Class struct {
	// Name identifies the class in Allow.
	Name string
	// Rate is the sustained rate, in tokens per second.
	Rate float64
	// Burst is how many requests may come at once after a quiet period.
	Burst int
}

// The classes of seed 002. Callers pick the key: Login is keyed by client IP and account
// together ("203.0.113.7|alice"), the others by user id, or by client IP for anonymous
// requests.
var (
	// Login allows 5 attempts per 15 minutes.
	Login = Class{Name: "login", Rate: 5.0 / (15 * 60), Burst: 5}
	// LLM allows 10 inference calls per second.
	LLM = Class{Name: "llm", Rate: 10, Burst: 10}
	// Metrics allows 20 scrapes per second.
	Metrics = Class{Name: "metrics", Rate: 20, Burst: 20}
	// API allows 100 general API calls per minute, all of them at once if need be.
	API = Class{Name: "api", Rate: 100.0 / 60, Burst: 100}
)

// Defaults returns the seed's classes: Login, LLM, Metrics and API. A configuration may
// change them and pass the result to New.
func Defaults() []Class { return []Class{Login, LLM, Metrics, API} }

// MaxBuckets bounds how many buckets a Limiter keeps, about 100 bytes each. Beyond it,
// keys without a bucket share one overflow bucket per class (see Allow).
const MaxBuckets = 100_000

// pruneInterval is how often Run drops idle buckets.
const pruneInterval = time.Minute

// fullPruneInterval bounds how often a full map is scanned for idle buckets on insert,
// so that a flood of new keys does not make every request scan the whole map.
const fullPruneInterval = time.Second

// bucketKey names a bucket.
type bucketKey struct{ class, key string }

// bucket is a token bucket: tokens it held at last.
type bucket struct {
	tokens float64
	last   time.Time
}

// classState is a class with its overflow bucket.
type classState struct {
	Class
	full     time.Duration // time an empty bucket takes to refill, after which it is idle
	overflow bucket
}

// Limiter holds the buckets of a set of classes. It is safe for concurrent use.
type Limiter struct {
	clock func() time.Time

	mu         sync.Mutex
	classes    map[string]*classState
	buckets    map[bucketKey]*bucket
	maxBuckets int
	lastFull   time.Time // last prune caused by a full map
	every      time.Duration
}

// New returns a Limiter for the given classes, reading time from clock (nil means
// time.Now). It panics on a class with an empty or repeated name, a rate that is not
// positive and finite, or a burst below 1: classes are configuration checked at startup,
// and a limiter that silently allowed or refused everything would be worse.
func New(clock func() time.Time, classes ...Class) *Limiter {
	if clock == nil {
		clock = time.Now
	}
	l := &Limiter{
		clock:      clock,
		classes:    make(map[string]*classState, len(classes)),
		buckets:    make(map[bucketKey]*bucket),
		maxBuckets: MaxBuckets,
		every:      pruneInterval,
	}
	for _, c := range classes {
		if err := validate(c); err != nil {
			panic("ratelimit: " + err.Error())
		}
		if _, dup := l.classes[c.Name]; dup {
			panic(fmt.Sprintf("ratelimit: class %q given twice", c.Name))
		}
		l.classes[c.Name] = &classState{
			Class:    c,
			full:     time.Duration(float64(c.Burst) / c.Rate * float64(time.Second)),
			overflow: bucket{tokens: float64(c.Burst), last: clock()},
		}
	}
	return l
}

// validate checks one class.
func validate(c Class) error {
	switch {
	case c.Name == "":
		return fmt.Errorf("class without a name")
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("class %q: rate %v must be positive and finite", c.Name, c.Rate)
	case c.Burst < 1:
		return fmt.Errorf("class %q: burst %d must be at least 1", c.Name, c.Burst)
	}
	return nil
}

// Allow takes a token from the bucket of class and key. It reports whether the request
// may go ahead; when not, retryAfter is how long until a token is back (the Retry-After
// to send, rounded up to whole seconds by the caller).
//
// A class that New was not given is refused (with retryAfter 0), so that a misspelt
// class fails the first test of its route instead of leaving it unlimited.
//
// When the Limiter already holds MaxBuckets buckets and none is idle, a new key shares
// its class's overflow bucket with every other such key: under a flood of distinct keys
// memory stays bounded, the flood is limited as one, and keys that already have a
// bucket are not affected.
func (l *Limiter) Allow(class, key string) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, known := l.classes[class]
	if !known {
		return false, 0
	}
	now := l.clock()
	k := bucketKey{class, key}
	b, found := l.buckets[k]
	if !found {
		b = l.newBucket(k, c, now)
	}
	return take(b, c.Class, now)
}

// newBucket returns a full bucket stored under k, or the class's overflow bucket when
// the map is full. Called with l.mu held.
func (l *Limiter) newBucket(k bucketKey, c *classState, now time.Time) *bucket {
	if len(l.buckets) >= l.maxBuckets && now.Sub(l.lastFull) >= fullPruneInterval {
		l.lastFull = now
		l.prune(now)
	}
	if len(l.buckets) >= l.maxBuckets {
		return &c.overflow
	}
	b := &bucket{tokens: float64(c.Burst), last: now}
	l.buckets[k] = b
	return b
}

// take refills b up to now and takes a token if there is one.
func take(b *bucket, c Class, now time.Time) (bool, time.Duration) {
	// A clock that steps back refills nothing; last stays put so that no time is counted
	// twice.
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(float64(c.Burst), b.tokens+elapsed.Seconds()*c.Rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / c.Rate * float64(time.Second)))
	return false, wait
}

// Prune drops the buckets that have refilled completely, and returns how many it
// dropped. Dropping them changes nothing: a key without a bucket gets a full one.
func (l *Limiter) Prune() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.prune(l.clock())
}

// prune is Prune with l.mu held.
func (l *Limiter) prune(now time.Time) int {
	n := 0
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.classes[k.class].full {
			delete(l.buckets, k)
			n++
		}
	}
	return n
}

// Len returns how many buckets the Limiter holds, for a metrics gauge.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// Run drops idle buckets every minute until ctx ends, then returns nil. The daemon runs
// it in a goroutine it owns.
func (l *Limiter) Run(ctx context.Context) error {
	ticker := time.NewTicker(l.every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			l.Prune()
		}
	}
}
