package ocsp

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// entry is a response ready to serve: its bytes and the caching headers
// that do not change until it is re-signed.
type entry struct {
	der          []byte
	etag         string
	lastModified string
	expires      string
	// The same as header values, set without an allocation per request.
	hdrETag, hdrLastModified, hdrExpires, hdrLength []string
	nextUpdate                                      time.Time
	// staleAt is when the responder looks for a re-signed successor.
	staleAt time.Time
}

func newEntry(der []byte, thisUpdate, nextUpdate, staleAt time.Time) *entry {
	sum := sha256.Sum256(der)
	e := &entry{der: der, etag: `"` + hex.EncodeToString(sum[:16]) + `"`,
		lastModified: thisUpdate.UTC().Format(http.TimeFormat), expires: nextUpdate.UTC().Format(http.TimeFormat),
		nextUpdate: nextUpdate, staleAt: staleAt}
	e.hdrETag, e.hdrLastModified, e.hdrExpires = []string{e.etag}, []string{e.lastModified}, []string{e.expires}
	e.hdrLength = []string{strconv.Itoa(len(der))}
	return e
}

// until returns a copy of e to serve until t (a response due for
// re-signing, served meanwhile).
func (e *entry) until(t time.Time) *entry {
	c := *e
	c.staleAt = t
	return &c
}

// cacheKey names a response: CA, CertID hash and serial.
type cacheKey struct {
	ca     int
	hash   string
	serial string
}

// cache is a bounded map of responses, sharded so that the cores serving
// requests rarely meet on a lock. A full shard drops an arbitrary entry:
// the store behind it has every response anyway.
type cache struct {
	seed   maphash.Seed
	shards [64]shard
	max    int // per shard
}

type shard struct {
	mu sync.RWMutex
	m  map[cacheKey]*entry
}

func newCache(entries int) *cache {
	c := &cache{seed: maphash.MakeSeed(), max: max(entries/64, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*entry)
	}
	return c
}

func (c *cache) shard(k cacheKey) *shard {
	return &c.shards[maphash.String(c.seed, k.serial)%uint64(len(c.shards))]
}

func (c *cache) get(k cacheKey) *entry {
	s := c.shard(k)
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	return e
}

func (c *cache) put(k cacheKey, e *entry) {
	s := c.shard(k)
	s.mu.Lock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.max {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[k] = e
	s.mu.Unlock()
}

func (c *cache) drop(k cacheKey) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
