package client

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

func mustSession(tb testing.TB, sid string, nb time.Time) events.Event {
	tb.Helper()
	ev, err := events.NewSessionRevoked(sid, nb, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// sessionWatermarks returns every session watermark by digest, for comparing tables.
func (t *Table) sessionWatermarks() map[int64]int64 {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	out := map[int64]int64{}
	s := t.sessions.Load()
	for i := range s.slots {
		if d := s.slots[i].key.Load(); d != 0 {
			out[d] = s.slots[i].nb.Load()
		}
	}
	return out
}

// TestSessionRevocation: a session.revoked event refuses the tokens of that session issued
// before it, and nothing else: not the user's other session, not a token without a session,
// not a token issued after it.
func TestSessionRevocation(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithSessionClaim("sid"))
	ctx := context.Background()
	iat := millis(time.Now().Add(-time.Second))
	laptop := f.token(t, "shop", 42, iat, jwt.MapClaims{"sid": "laptop-1"})
	phone := f.token(t, "shop", 42, iat, jwt.MapClaims{"sid": "phone-1"})
	none := f.token(t, "shop", 42, iat, nil)

	wm := time.Now()
	eventstest.Publish(t, f.js, mustSession(t, "laptop-1", wm))
	eventually(t, "session watermark", func() bool { return tab.SessionNotBefore("laptop-1").Equal(wm) })

	if _, err := tab.Verify(ctx, laptop); !errors.Is(err, ErrRevoked) {
		t.Fatalf("token of the revoked session: err = %v, want ErrRevoked", err)
	}
	for name, tok := range map[string]string{"other session": phone, "no session": none,
		"revoked session, issued after": f.token(t, "shop", 42, millis(wm.Add(time.Millisecond)), jwt.MapClaims{"sid": "laptop-1"})} {
		c, err := tab.Verify(ctx, tok)
		if err != nil {
			t.Fatalf("%s: err = %v, want nil", name, err)
		}
		if name == "other session" && c.SessionID != "phone-1" {
			t.Fatalf("SessionID = %q, want phone-1", c.SessionID)
		}
	}
	if err := tab.CheckSessionIssuedAt("shop", 42, "laptop-1", "1"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("CheckSessionIssuedAt: err = %v, want ErrRevoked", err)
	}
	if s := tab.Stats(); s.Sessions != 1 {
		t.Fatalf("Stats().Sessions = %d, want 1", s.Sessions)
	}

	// A foreign issuer without WithSessionClaim: session revocation does not apply.
	foreign := f.readyTable(t)
	f.caughtUp(t, foreign)
	if _, err := foreign.Verify(ctx, laptop); err != nil {
		t.Fatalf("without a session claim: err = %v, want nil", err)
	}
}

// TestSessionClaimRefusesBadValues: a session claim that no session.revoked event could
// name is refused rather than silently never revocable.
func TestSessionClaimRefusesBadValues(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithSessionClaim("sid"))
	iat := millis(time.Now())
	for name, sid := range map[string]any{"Empty": "", "Dot": "a.b", "Star": "*", "Gt": ">", "Space": "a b",
		"Unicode": "séance", "TooLong": strings.Repeat("s", events.MaxSessionIDLen+1), "SixKB": strings.Repeat("s", 6000),
		"Number": 42} {
		t.Run(name, func(t *testing.T) {
			_, err := tab.Verify(context.Background(), f.token(t, "shop", 1, iat, jwt.MapClaims{"sid": sid}))
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestSessionPruneAndHold(t *testing.T) {
	now := time.Now()
	tab := newTestTable(t, WithMaxTokenLifetime(time.Hour))
	tab.apply(mustSession(t, "old", now.Add(-2*time.Hour)))
	tab.apply(mustSession(t, "new", now.Add(-time.Minute)))
	if tab.apply(mustSession(t, "future", now.Add(time.Hour))) {
		t.Fatal("a watermark an hour ahead was applied at once")
	}
	if dropped := tab.prune(now.Add(-time.Hour)); dropped != 1 {
		t.Fatalf("dropped = %d, want 1", dropped)
	}
	if !tab.SessionNotBefore("old").IsZero() || tab.SessionNotBefore("new").IsZero() || !tab.SessionNotBefore("future").IsZero() {
		t.Fatalf("sessions after prune: %v", tab.sessionWatermarks())
	}
	if s := tab.Stats(); s.Held != 1 || s.Sessions != 1 {
		t.Fatalf("Stats = %+v, want 1 held, 1 session", s)
	}
}

func fillSessions(tb testing.TB, tab *Table, n int) []int64 {
	tb.Helper()
	digests := make([]int64, n)
	nb := time.Now().Add(-time.Minute)
	for i := range digests {
		sid := "s" + strconv.FormatUint(rand.Uint64(), 36)
		ev := events.Event{Version: events.Version, Type: events.TypeSessionRevoked, SessionID: sid, NotBefore: nb}
		tab.apply(ev)
		digests[i] = events.SessionDigest(sid)
	}
	return digests
}

// BenchmarkLookupSessions is the request path's lookup with app, user and session
// watermarks, for a random user among 1M and a random session among 1M, from every core.
// MemoryFloor is what the memory underneath does in the same run: one random read from
// each of two plain arrays of the tables' size (the lookup's two cache misses, and nothing
// else).
func BenchmarkLookupSessions(b *testing.B) {
	tab := newTestTable(b)
	ids := fillUsers(b, tab, 1_000_000)
	digests := fillSessions(b, tab, 1_000_000)
	tab.apply(mustApp(b, "shop", time.Now().Add(-time.Minute)))
	parallel := func(b *testing.B, f func(i, j int) int64) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i, j := rand.IntN(len(ids)), rand.IntN(len(digests))
			var sink, n int64
			for pb.Next() {
				n++
				sink += f(i, j)
				if i++; i == len(ids) {
					i = 0
				}
				if j++; j == len(digests) {
					j = 0
				}
			}
			if n > 0 && sink == 0 {
				b.Error("no watermark found")
			}
		})
	}
	b.Run("Lookup", func(b *testing.B) {
		parallel(b, func(i, j int) int64 { return tab.lookup("shop", ids[i], digests[j]) })
	})
	b.Run("MemoryFloor", func(b *testing.B) {
		u, s := tab.users.Load(), tab.sessions.Load()
		a1, a2 := make([]int64, 2*len(u.slots)), make([]int64, 2*len(s.slots))
		adviseHugePages(unsafe.Slice((*userSlot)(unsafe.Pointer(unsafe.SliceData(a1))), len(u.slots)))
		adviseHugePages(unsafe.Slice((*userSlot)(unsafe.Pointer(unsafe.SliceData(a2))), len(s.slots)))
		for i := range a1 {
			a1[i], a2[i] = 1, 1
		}
		// The same positions the lookup reads first.
		pu, ps := make([]uint64, len(ids)), make([]uint64, len(digests))
		for i, id := range ids {
			pu[i] = 2 * u.home(id)
		}
		for j, d := range digests {
			ps[j] = 2 * s.home(d)
		}
		b.ResetTimer()
		parallel(b, func(i, j int) int64 { return a1[pu[i]] + a2[ps[j]] })
	})
}

// BenchmarkTableMemorySessions reports the heap bytes per session entry of a table of 1M
// sessions.
func BenchmarkTableMemorySessions(b *testing.B) {
	const n = 1_000_000
	sids := make([]string, n)
	for i := range sids {
		sids[i] = "s" + strconv.FormatUint(rand.Uint64(), 36)
	}
	nb := time.Now().Add(-time.Minute)
	var perEntry float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tab := newTestTable(b)
		for _, sid := range sids {
			tab.apply(events.Event{Version: events.Version, Type: events.TypeSessionRevoked, SessionID: sid, NotBefore: nb})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(tab)
	}
	b.ReportMetric(perEntry, "B/entry")
}

// TestAppIndex: the request path's app index finds every app of its map, and no other,
// whatever the ids' lengths and however many share a hash slot.
func TestAppIndex(t *testing.T) {
	a := appTable{}
	var ids []string
	for i := range 3000 {
		id := strconv.Itoa(i)
		switch i % 3 {
		case 1:
			id = "app-" + id + "-prod"
		case 2:
			id = strings.Repeat("x", 64-len(id)) + id
		}
		v := new(atomic.Int64)
		v.Store(int64(i + 1))
		a[id] = v
		ids = append(ids, id)
	}
	for _, n := range []int{0, 1, 7, len(ids)} {
		sub := appTable{}
		for _, id := range ids[:n] {
			sub[id] = a[id]
		}
		x := newAppIndex(sub)
		for i, id := range ids {
			want := int64(0)
			if i < n {
				want = int64(i + 1)
			}
			if got := x.get(id); got != want {
				t.Fatalf("%d apps: get(%q) = %d, want %d", n, id, got, want)
			}
		}
		if got := x.get("missing"); got != 0 {
			t.Fatalf("get(missing) = %d", got)
		}
	}
}

// BenchmarkReadySessions1M measures how long a new table takes to be ready from the
// snapshot with 1M revoked users and 1M revoked sessions in the stream. It runs only when
// selected by name: -bench ReadySessions1M.
func BenchmarkReadySessions1M(b *testing.B) {
	if !benchSelected("ReadySessions1M") {
		b.Skip("run with -bench ReadySessions1M")
	}
	const n = 1_000_000
	f := newFixture(b)
	// A loaded machine acknowledges slowly: a window that does not stall.
	js, err := jetstream.New(f.srv.Connect(), jetstream.WithPublishAsyncMaxPending(1<<16))
	if err != nil {
		b.Fatal(err)
	}
	publishUsers(b, js, 1, n)
	publishSessions(b, js, n)
	writer := f.table(b, WithLogger(zap.NewNop()))
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer wcancel()
	if err := writer.WaitReady(wctx); err != nil {
		b.Fatal(err)
	}
	f.caughtUp(b, writer)
	var buf bytes.Buffer
	h, err := writer.WriteSnapshot(&buf)
	if err != nil {
		b.Fatal(err)
	}
	f.putSnapshot(b, buf.Bytes())
	b.Logf("snapshot of %d users and %d sessions at seq %d: %d bytes", h.UsersHint, h.SessionsHint, h.Seq, buf.Len())
	for b.Loop() {
		tab, err := New(f.srv.Connect(), WithKeyfunc(f.keyfunc))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tab.Run(ctx) }()
		if err := tab.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if s := tab.Stats(); s.Users != n || s.Sessions != n || s.SnapshotSequence != h.Seq {
			b.Fatalf("users = %d, sessions = %d, snapshot seq %d, want %d, %d, %d", s.Users, s.Sessions, s.SnapshotSequence, n, n, h.Seq)
		}
		cancel()
		<-done
		b.StartTimer()
	}
}

// publishSessions stores session.revoked events for n sessions, many in flight at once.
func publishSessions(b *testing.B, js jetstream.JetStream, n int) {
	b.Helper()
	start := time.Now()
	nb := time.Now().Add(-time.Minute)
	const batch = 20_000
	for from := 0; from < n; from += batch {
		for i := from; i < from+batch && i < n; i++ {
			ev := events.Event{Version: events.Version, ID: events.NewID(), Type: events.TypeSessionRevoked,
				SessionID: "s_" + strconv.Itoa(i), NotBefore: nb, Actor: "bench"}
			data, err := events.Encode(ev)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.PublishAsync(ev.Subject(), data); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publish batch not acknowledged in a minute")
		}
	}
	b.Logf("published %d session events in %s", n, time.Since(start))
}

// TestLookupAgreesWithEachTable: the request path's lookup (first slots read up front, the
// app's home slot checked inline) gives, for every app, user and session, present or not,
// the largest of the watermarks that each table holds for them, with tables crowded enough
// that many keys sit away from their home slot, and app ids that share a home.
func TestLookupAgreesWithEachTable(t *testing.T) {
	tab := newTestTable(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(k int) time.Time { return base.Add(time.Duration(k) * time.Second) }
	var apps []string
	for i := range 40 {
		// Same length and first and last 8 bytes: one home for all of them.
		id := "tenant-0" + strconv.Itoa(1000+i) + "-prod-eu"
		if i%2 == 0 {
			id = "a" + strings.Repeat("b", i%7) + "c" // short ids
		}
		apps = append(apps, id)
		if i%3 != 0 {
			tab.apply(mustApp(t, id, at(i)))
		}
	}
	displaced := 0
	x := tab.appIndex.Load()
	for i, s := range x.slots {
		if s.id != "" && x.home(s.id) != uint64(i) {
			displaced++
		}
	}
	if displaced < 10 {
		t.Fatalf("%d apps away from their home slot: the test needs ids that share one", displaced)
	}
	users := make([]int64, 3000)
	for i := range users {
		users[i] = rand.Int64N(1<<40) + 1
		if i%4 != 0 {
			tab.apply(mustUserFast(users[i], at(i%50)))
		}
	}
	sids := make([]string, 3000)
	for i := range sids {
		sids[i] = "s" + strconv.FormatUint(rand.Uint64(), 36)
		if i%5 != 0 {
			tab.apply(mustSession(t, sids[i], at(i%70)))
		}
	}
	apps = append(apps, "", "unknown-app")
	users = append(users, 0, -1, 1<<62)
	sids = append(sids, "")
	appNB := func(id string) int64 {
		if id == "" {
			return 0
		}
		return tab.apps.Load().get(id)
	}
	for n := range 20000 {
		app, user, sid := apps[n%len(apps)], users[rand.IntN(len(users))], sids[rand.IntN(len(sids))]
		var digest int64
		if sid != "" {
			digest = events.SessionDigest(sid)
		}
		want := max(appNB(app), tab.users.Load().get(user), tab.sessionNotBefore(digest))
		if got := tab.lookup(app, user, digest); got != want {
			t.Fatalf("lookup(%q, %d, %q) = %d, want %d", app, user, sid, got, want)
		}
		if digest == 0 {
			if got := tab.notBefore(app, user); got != want {
				t.Fatalf("notBefore(%q, %d) = %d, want %d", app, user, got, want)
			}
		}
	}
}
