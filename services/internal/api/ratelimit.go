package api

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// maxTrackedAddrs bounds the limiter's memory. Past it, arbitrary entries are dropped: the
// limit is a brake on guessing, not the security boundary (keys carry 256 random bits).
const maxTrackedAddrs = 100_000

// limitKey groups IPv6 clients by /64, the block a single host or site usually gets, so
// rotating through one's own addresses does not reset the budget (or grow the map).
func limitKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Is4() || ip.Is4In6() {
		return addr
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// failureLimiter counts failed key attempts per client address with a token bucket. Only
// failures spend tokens, and the bucket is per client, not per key: an attacker hammering a
// key from one address is slowed down without locking the key's owner out from theirs.
type failureLimiter struct {
	mu     sync.Mutex
	burst  float64
	every  time.Duration
	now    func() time.Time
	byAddr map[string]*bucket
	swept  time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailureLimiter(burst int, every time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{burst: float64(burst), every: every, now: now, byAddr: map[string]*bucket{}}
}

// refill brings b up to date; call with mu held.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	b.tokens = math.Min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.every))
	b.at = now
}

// wait returns how long addr must wait before its next attempt (0 if it may try now).
func (l *failureLimiter) wait(addr string) time.Duration {
	addr = limitKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.byAddr[addr]
	if !ok {
		return 0
	}
	now := l.now()
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.every))
}

// fail spends one token of addr's bucket.
func (l *failureLimiter) fail(addr string) {
	addr = limitKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.byAddr[addr]
	if !ok {
		l.sweep(now)
		if len(l.byAddr) >= maxTrackedAddrs {
			// Drop a sixteenth at once (map order is random), so a flood of new addresses
			// costs one pass per many inserts.
			drop := maxTrackedAddrs / 16
			for a := range l.byAddr {
				if drop--; drop < 0 {
					break
				}
				delete(l.byAddr, a)
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.byAddr[addr] = b
	}
	l.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}

// sweep forgets addresses whose bucket is full again, at most once a minute, so the map
// stays as small as the set of recently failing clients.
func (l *failureLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for addr, b := range l.byAddr {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.byAddr, addr)
		}
	}
}
