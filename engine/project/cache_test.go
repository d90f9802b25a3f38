package project

import (
	"bytes"
	"testing"
)

func TestHeadCacheTokens(t *testing.T) {
	f := File{Path: "a.txt", Revision: 1, Size: 3}
	tests := []struct {
		name    string
		between func(c *headCache) // runs between token and put
		user    int64              // user reading back
		want    bool
	}{
		{name: "stored and served", between: func(*headCache) {}, user: 1, want: true},
		{name: "other user misses", between: func(*headCache) {}, user: 2, want: false},
		{name: "invalidated in between", between: func(c *headCache) { c.invalidate("p") }, user: 1, want: false},
		{name: "other project invalidated", between: func(c *headCache) { c.invalidate("q") }, user: 1, want: true},
		{name: "cleared in between", between: func(c *headCache) { c.reset(true) }, user: 1, want: false},
		{name: "turned off", between: func(c *headCache) { c.reset(false) }, user: 1, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newHeadCache()
			c.reset(true)
			tok := c.token("p")
			tc.between(c)
			c.put(tok, "p", 1, f, []byte("abc"))
			got, content, ok := c.get("p", "a.txt", tc.user)
			if ok != tc.want {
				t.Fatalf("hit = %v, want %v", ok, tc.want)
			}
			if ok && (got != f || !bytes.Equal(content, []byte("abc"))) {
				t.Fatalf("got %+v %q", got, content)
			}
		})
	}
}

func TestHeadCacheIsOffUntilEnabled(t *testing.T) {
	c := newHeadCache()
	c.put(c.token("p"), "p", 1, File{Path: "a"}, []byte("x"))
	if _, _, ok := c.get("p", "a", 1); ok {
		t.Fatal("a cache that was never enabled served an entry")
	}
}

func TestHeadCacheBounds(t *testing.T) {
	c := newHeadCache()
	c.reset(true)
	big := make([]byte, cacheMaxFileBytes+1)
	c.put(c.token("p"), "p", 1, File{Path: "big"}, big)
	if _, _, ok := c.get("p", "big", 1); ok {
		t.Fatal("a file over the per-file limit was cached")
	}
	chunk := make([]byte, cacheMaxFileBytes)
	for i := range 2 * cacheMaxBytes / cacheMaxFileBytes {
		c.put(c.token("p"), "p", 1, File{Path: string(rune('a'+i%26)) + string(rune('a'+i/26))}, chunk)
	}
	if c.bytes > cacheMaxBytes {
		t.Fatalf("cache holds %d bytes, budget %d", c.bytes, cacheMaxBytes)
	}
	// Returned content is a copy: changing it does not change the cache.
	c = newHeadCache()
	c.reset(true)
	c.put(c.token("q"), "q", 1, File{Path: "x"}, []byte("keep"))
	_, got, ok := c.get("q", "x", 1)
	if !ok {
		t.Fatal("entry missing")
	}
	got[0] = 'X'
	if _, again, _ := c.get("q", "x", 1); string(again) != "keep" {
		t.Fatalf("cache content changed to %q", again)
	}
}
