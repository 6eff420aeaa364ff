package api

import (
	"strconv"
	"testing"
	"time"
)

func TestFailureLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newFailureLimiter(2, time.Second, func() time.Time { return now })
	l.fail("203.0.113.1")
	l.fail("203.0.113.1")
	if w := l.wait("203.0.113.1"); w != time.Second {
		t.Fatalf("wait after the burst = %v, want 1s", w)
	}
	if w := l.wait("203.0.113.2"); w != 0 {
		t.Fatalf("another address waits %v", w)
	}
	now = now.Add(time.Second)
	if w := l.wait("203.0.113.1"); w != 0 {
		t.Fatalf("wait after a refill = %v, want 0", w)
	}

	// One IPv6 /64 is one client: rotating addresses inside it does not reset the budget.
	l.fail("2001:db8:1:2::1")
	l.fail("2001:db8:1:2::ffff")
	if w := l.wait("2001:db8:1:2:abcd::9"); w == 0 {
		t.Fatal("a new address in the same /64 starts with a fresh budget")
	}
	if w := l.wait("2001:db8:1:3::1"); w != 0 {
		t.Fatal("another /64 is limited")
	}

	// The map stays bounded whatever the number of failing addresses.
	for i := 0; i < maxTrackedAddrs+500; i++ {
		l.fail("10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255))
	}
	if n := len(l.byAddr); n > maxTrackedAddrs {
		t.Fatalf("limiter tracks %d addresses, bound %d", n, maxTrackedAddrs)
	}
}
