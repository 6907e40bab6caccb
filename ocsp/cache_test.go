package ocsp

import (
	"fmt"
	"testing"
	"time"
)

// The cache never holds more than its bound, however many serials are
// asked for (a client walking random serials), and keeps what fits.
func TestCacheBounded(t *testing.T) {
	c := newCache(640)
	e := newEntry([]byte{1}, time.Now(), time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	for i := range 100_000 {
		c.put(cacheKey{0, "sha1", fmt.Sprintf("%x", i)}, e)
	}
	if n := c.len(); n > 640 || n < 600 {
		t.Fatalf("%d entries, want at most 640 (and near it)", n)
	}
	k := cacheKey{1, "sha1", "ab"}
	c.put(k, e)
	if c.get(k) != e {
		t.Fatal("the entry just put is gone")
	}
	c.drop(k)
	if c.get(k) != nil {
		t.Fatal("dropped entry still there")
	}
}
