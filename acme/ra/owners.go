package ra

import "sync"

// ownerCacheSize bounds the certificates whose ordering account is kept
// in memory: the recent ones, which clients download.
const ownerCacheSize = 100_000

// ownerCache maps certificate serials to accounts in two generations:
// when the young one is full it becomes the old one, and the old one is
// dropped. Lookups promote old entries.
type ownerCache struct {
	mu         sync.Mutex
	max        int
	young, old map[string]string
}

func newOwnerCache(size int) *ownerCache {
	return &ownerCache{max: max(size/2, 1), young: map[string]string{}, old: map[string]string{}}
}

func (c *ownerCache) get(serial string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.young[serial]; ok {
		return a, true
	}
	a, ok := c.old[serial]
	if ok {
		c.addLocked(serial, a)
	}
	return a, ok
}

func (c *ownerCache) add(serial, account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(serial, account)
}

func (c *ownerCache) addLocked(serial, account string) {
	if len(c.young) >= c.max {
		c.old, c.young = c.young, map[string]string{}
	}
	c.young[serial] = account
}
