package auth

import (
	"context"
	"sync"

	"github.com/cyberdevstudio/cds/engine/store"
)

// authChannel carries migration 006's notifications: something that decides whether
// access tokens are still good has changed.
const authChannel = "cds_auth"

// maxCachedTokens bounds the verification cache; past it the cache starts over.
const maxCachedTokens = 100_000

// verifyCache remembers, per access token (the exact string), the outcome of a
// successful VerifyAccessToken: the user's name, role and forced-change flag, with
// the signature checked, the session and token known not revoked and the user
// enabled. The expiry is still checked on every call.
//
// Any change that could turn an answer (role, disabled state, session end, token
// revocation) fires a NOTIFY (migration 006) on which Watch empties the cache, and
// this process's own changes empty it at once through invalidate. A verification
// stores its result only if no invalidation happened since before its query, so a
// revocation racing with a check is never lost. Without Watch running the cache is
// off.
type verifyCache struct {
	mu      sync.Mutex
	enabled bool
	gen     uint64
	entries map[string]Principal
}

func newVerifyCache() *verifyCache { return &verifyCache{entries: make(map[string]Principal)} }

func (c *verifyCache) get(token string) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enabled {
		return Principal{}, false
	}
	p, ok := c.entries[token]
	return p, ok
}

// token is taken before the query; ok is false while the cache is off.
func (c *verifyCache) token() (gen uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.enabled
}

func (c *verifyCache) put(gen uint64, token string, p Principal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enabled || c.gen != gen {
		return
	}
	if len(c.entries) >= maxCachedTokens {
		c.entries = make(map[string]Principal)
	}
	c.entries[token] = p
}

func (c *verifyCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}

// Reset implements store.Subscriber.
func (c *verifyCache) Reset(listening bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	c.enabled = listening
}

// Notify implements store.Subscriber.
func (c *verifyCache) Notify(string) { c.invalidate() }

var _ store.Subscriber = (*verifyCache)(nil)

// Watch keeps the token verification cache consistent with every process's changes;
// the cache is used only while it runs. It returns when ctx ends.
func (s *Service) Watch(ctx context.Context) error {
	return store.Listen(ctx, s.db, s.logger, authChannel, s.verified)
}

// Invalidate empties the token verification cache. Engines outside this package
// that change users (roles, disabled state) call it after their commit so that the
// change applies to this process's next check at once, without waiting for the
// notification.
func (s *Service) Invalidate() { s.verified.invalidate() }
