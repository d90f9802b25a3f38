package project

import (
	"context"
	"sync"

	"github.com/cyberdevstudio/cds/engine/store"
)

// Head cache limits.
const (
	cacheMaxBytes     = 64 << 20  // content bytes held in all
	cacheMaxFileBytes = 256 << 10 // larger files are always read from the database
	changeChannel     = "cds_project_files"
)

// headCache keeps recently read file heads in memory. It is what makes
// project.file.read of a hot file cost no database round trip.
//
// Correctness rests on two things. First, every change to project_files fires a
// NOTIFY (migration 002) that Watch turns into invalidate, for writes from any
// process; writes from this process also invalidate right after their commit, so a
// client reads its own writes at once. Second, a reader takes a token before its
// query and may store the result only if no invalidation of that project (and no
// loss of the notification connection) happened in between; a result that might
// predate a concurrent commit is therefore never stored. While Watch is not
// listening, the cache is off.
type headCache struct {
	mu       sync.Mutex
	enabled  bool
	epoch    uint64 // bumped whenever the cache is cleared wholesale
	projects map[string]*projectCache
	bytes    int64
}

type projectCache struct {
	gen   uint64
	files map[string]*cacheEntry
}

type cacheEntry struct {
	// user is the user the entry was read for: access is checked by the query, so
	// an entry serves only the same user again.
	user    int64
	file    File
	content []byte
}

// cacheToken identifies the state a reader started from.
type cacheToken struct {
	ok    bool
	epoch uint64
	gen   uint64
}

func newHeadCache() *headCache {
	return &headCache{projects: make(map[string]*projectCache)}
}

// get returns a copy of the cached head of path for user.
func (c *headCache) get(id, path string, user int64) (File, []byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enabled {
		return File{}, nil, false
	}
	pc := c.projects[id]
	if pc == nil {
		return File{}, nil, false
	}
	e := pc.files[path]
	if e == nil || e.user != user {
		return File{}, nil, false
	}
	return e.file, append([]byte(nil), e.content...), true
}

// token is taken before reading from the database.
func (c *headCache) token(id string) cacheToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enabled {
		return cacheToken{}
	}
	t := cacheToken{ok: true, epoch: c.epoch}
	if pc := c.projects[id]; pc != nil {
		t.gen = pc.gen
	}
	return t
}

// put stores a head read under token t, unless the project changed since.
func (c *headCache) put(t cacheToken, id string, user int64, f File, content []byte) {
	if !t.ok || int64(len(content)) > cacheMaxFileBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enabled || c.epoch != t.epoch {
		return
	}
	pc := c.projects[id]
	if pc == nil {
		if t.gen != 0 {
			return
		}
		pc = &projectCache{files: make(map[string]*cacheEntry)}
		c.projects[id] = pc
	}
	if pc.gen != t.gen {
		return
	}
	if old := pc.files[f.Path]; old != nil {
		c.bytes -= int64(len(old.content))
	}
	pc.files[f.Path] = &cacheEntry{user: user, file: f, content: append([]byte(nil), content...)}
	c.bytes += int64(len(content))
	c.evict()
}

// evict drops entries (in map order, i.e. at random) until the budget holds.
func (c *headCache) evict() {
	for _, pc := range c.projects {
		for p, e := range pc.files {
			if c.bytes <= cacheMaxBytes {
				return
			}
			delete(pc.files, p)
			c.bytes -= int64(len(e.content))
		}
	}
}

// invalidate forgets a project's entries and fails the tokens taken before.
func (c *headCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.projects[id]
	if pc == nil {
		// Remember the bump: a reader may hold a token with gen 0 for it.
		c.projects[id] = &projectCache{gen: 1, files: make(map[string]*cacheEntry)}
		return
	}
	for _, e := range pc.files {
		c.bytes -= int64(len(e.content))
	}
	pc.files = make(map[string]*cacheEntry)
	pc.gen++
}

// reset clears everything and turns the cache on or off.
func (c *headCache) reset(enabled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.projects = make(map[string]*projectCache)
	c.bytes = 0
	c.epoch++
	c.enabled = enabled
}

// Watch listens for changes to project files made by any process and keeps the
// in-memory head cache consistent with them; the cache is used only while Watch
// runs. It reconnects after a lost connection (the cache is off meanwhile) and
// returns when ctx ends.
func (s *Service) Watch(ctx context.Context) error {
	return store.Listen(ctx, s.db, s.log, changeChannel, cacheSubscriber{s.cache})
}

// cacheSubscriber feeds the head cache from the change channel.
type cacheSubscriber struct{ c *headCache }

func (cs cacheSubscriber) Reset(listening bool)    { cs.c.reset(listening) }
func (cs cacheSubscriber) Notify(projectID string) { cs.c.invalidate(projectID) }
