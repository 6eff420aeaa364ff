package api_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/services/internal/api"
)

// TestLoginsAroundAFlush mints 1,000 tokens in the same second as a flush: every token whose
// login finished before the flush was sent is refused, every token whose login started after
// the flush's 200 is accepted, whatever their whole-second iat.
func TestLoginsAroundAFlush(t *testing.T) {
	f := newFixture(t, api.Config{})
	// A resource server's table, with the revocast keys and no other configuration.
	rs, err := client.New(f.nats.Connect())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := contextWithCancel()
	defer stop()
	go func() { _ = rs.Run(runCtx) }()
	if err := rs.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}

	type login struct {
		start, end time.Time
		token      string
		status     int
	}
	mintAll := func(n int) []login {
		out := make([]login, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range out {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				out[i].start = time.Now()
				status, p := f.mint(t, "shop", f.appCred, `{"user_id":"42"}`)
				out[i].end = time.Now()
				out[i].token, out[i].status = p.Data.AccessToken, status
			}()
		}
		wg.Wait()
		return out
	}

	// Start at the top of a second so that, on a quiet machine, everything below shares it.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	before := mintAll(400)
	var during []login
	var flushStart, flushEnd time.Time
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); during = mintAll(200) }()
	flushStart = time.Now()
	if r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey}, ""); r.status != 200 {
		t.Fatalf("flush = %d", r.status)
	}
	flushEnd = time.Now()
	after := mintAll(400)
	wg.Wait()

	deadline := time.Now().Add(5 * time.Second)
	for rs.NotBefore("shop", 42).IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("resource server did not apply the flush within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	wm := rs.NotBefore("shop", 42)
	check := func(name string, ls []login, wantRevoked bool) (sameSecond int) {
		for _, l := range ls {
			if l.token == "" {
				t.Fatalf("%s: a login failed: status %d (table: %+v)", name, l.status, rs.Stats())
			}
			c, err := rs.Verify(t.Context(), l.token)
			revoked := errors.Is(err, client.ErrRevoked)
			if err != nil && !revoked {
				t.Fatalf("%s: Verify = %v", name, err)
			}
			if revoked != wantRevoked {
				t.Fatalf("%s token (login %s..%s, flush %s..%s, watermark %s): revoked = %v",
					name, l.start.Format(time.StampMicro), l.end.Format(time.StampMicro),
					flushStart.Format(time.StampMicro), flushEnd.Format(time.StampMicro), wm.Format(time.StampMicro), revoked)
			}
			if c != nil && c.IssuedAt.Unix() == wm.Unix() || l.end.Unix() == wm.Unix() {
				sameSecond++
			}
		}
		return sameSecond
	}
	sb := check("before", before, true)
	sa := check("after", after, false)
	var revoked int
	for _, l := range during {
		if _, err := rs.Verify(t.Context(), l.token); errors.Is(err, client.ErrRevoked) {
			revoked++
		}
	}
	t.Logf("1000 logins: %d before the flush (all refused, %d in the watermark's second), %d after (all accepted, %d in its second), %d concurrent (%d refused)",
		len(before), sb, len(after), sa, len(during), revoked)
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
