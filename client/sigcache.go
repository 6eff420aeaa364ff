package client

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// WithSignatureCache keeps up to maxEntries tokens that passed every check up to the
// table's state (signature, algorithm, exp, iat, issuer, audience, type, claims), so that a
// token seen again skips the signature check, which is most of the cost of a decision. It
// is for processes that see the same tokens many times, such as revocast-agent; the
// middleware of a resource server rarely needs it.
//
// Entries are keyed by the SHA-256 of the token (the token itself is not kept), expire
// with the token's "exp", and are evicted by the CLOCK algorithm when the cache is full;
// tokens that failed are never cached. The revocation check is never cached: the table's
// state and the watermarks are checked on every request. A cached token outlives the
// retirement of its signing key until its "exp"; and the claims of a cached token are
// shared by every request that carries it (see [Decision].Claims).
func WithSignatureCache(maxEntries int) Option {
	return func(c *config) error {
		if maxEntries < 0 {
			return fmt.Errorf("client: WithSignatureCache: %d is negative", maxEntries)
		}
		c.sigCacheSize = maxEntries
		return nil
	}
}

// cacheShards spreads the cache over locks, so concurrent requests rarely meet.
const cacheShards = 16

// sigCache is a bounded map from token hash to verified claims.
type sigCache struct {
	shards       [cacheShards]cacheShard
	hits, misses atomic.Uint64
}

type cacheShard struct {
	mu    sync.RWMutex
	index map[[32]byte]int32 // slot of each key
	slots []cacheSlot        // fixed capacity, filled in order, then reused by the hand
	hand  int
}

type cacheSlot struct {
	key    [32]byte
	claims *Claims
	iat    issuedAt
	exp    time.Time
	used   atomic.Bool // CLOCK's reference bit
}

func newSigCache(maxEntries int) *sigCache {
	per := max(1, (maxEntries+cacheShards-1)/cacheShards)
	c := &sigCache{}
	for i := range c.shards {
		c.shards[i].index = make(map[[32]byte]int32, per)
		c.shards[i].slots = make([]cacheSlot, 0, per)
	}
	return c
}

func cacheKey(raw string) [32]byte { return sha256.Sum256([]byte(raw)) }

// get returns the cached claims of a token whose exp is after cutoff.
func (c *sigCache) get(key [32]byte, cutoff time.Time) (*Claims, issuedAt, bool) {
	s := &c.shards[key[0]%cacheShards]
	s.mu.RLock()
	i, ok := s.index[key]
	if ok {
		e := &s.slots[i]
		if cutoff.Before(e.exp) {
			if !e.used.Load() {
				e.used.Store(true)
			}
			claims, iat := e.claims, e.iat
			s.mu.RUnlock()
			c.hits.Add(1)
			return claims, iat, true
		}
	}
	s.mu.RUnlock()
	c.misses.Add(1)
	return nil, issuedAt{}, false
}

// put caches verified claims; when the shard is full, the CLOCK hand evicts an entry not
// used since it last passed (an expired one goes first in any case, at its turn).
func (c *sigCache) put(key [32]byte, claims *Claims, iat issuedAt) {
	s := &c.shards[key[0]%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[key]; ok {
		// Verified again after it expired from the cache's view, or raced with another
		// request: refresh in place.
		s.slots[i].claims, s.slots[i].iat, s.slots[i].exp = claims, iat, claims.ExpiresAt
		return
	}
	var i int
	if len(s.slots) < cap(s.slots) {
		s.slots = s.slots[:len(s.slots)+1]
		i = len(s.slots) - 1
	} else {
		for {
			e := &s.slots[s.hand]
			if !e.used.Load() {
				break
			}
			e.used.Store(false)
			s.hand = (s.hand + 1) % len(s.slots)
		}
		i = s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		delete(s.index, s.slots[i].key)
	}
	e := &s.slots[i]
	e.key, e.claims, e.iat, e.exp = key, claims, iat, claims.ExpiresAt
	e.used.Store(false)
	s.index[key] = int32(i)
}

// len is the number of cached entries.
func (c *sigCache) len() (n int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.index)
		s.mu.RUnlock()
	}
	return n
}
