package client

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

// newTestTable returns a table that is never run; tests drive apply directly. A nats.Conn
// that is never connected is enough for New.
func newTestTable(tb testing.TB, opts ...Option) *Table {
	tb.Helper()
	opts = append([]Option{WithKeyfunc(func(*jwt.Token) (any, error) { return nil, errors.New("no key") })}, opts...)
	tab, err := New(&nats.Conn{}, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return tab
}

// watermarks returns every watermark, for comparing tables.
func (t *Table) watermarks() (map[string]int64, map[int64]int64) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	apps := map[string]int64{}
	for k, v := range *t.apps.Load() {
		apps[k] = v.Load()
	}
	users := map[int64]int64{}
	u := t.users.Load()
	for i := range u.slots {
		if id := u.slots[i].key.Load(); id != 0 {
			users[id] = u.slots[i].nb.Load()
		}
	}
	return apps, users
}

func mustUser(tb testing.TB, id int64, nb time.Time) events.Event {
	tb.Helper()
	ev, err := events.NewUserReset(id, nb, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

func mustApp(tb testing.TB, id string, nb time.Time) events.Event {
	tb.Helper()
	ev, err := events.NewAppFlushed(id, nb, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

func TestApplyIsOrderIndependent(t *testing.T) {
	base := time.Now().Add(-time.Hour)
	var evs []events.Event
	for i := range 2000 {
		id := int64(i%500 + 1)
		evs = append(evs, mustUser(t, id, base.Add(time.Duration(rand.IntN(1000))*time.Millisecond)))
		if i%50 == 0 {
			evs = append(evs, mustApp(t, "app-"+string(rune('a'+i%7)), base.Add(time.Duration(i)*time.Second)))
		}
		if i%3 == 0 {
			evs = append(evs, mustSession(t, "s-"+strconv.Itoa(i/3%300), base.Add(time.Duration(rand.IntN(1000))*time.Millisecond)))
		}
	}
	want := newTestTable(t)
	for _, ev := range evs {
		want.apply(ev)
	}
	wantApps, wantUsers := want.watermarks()
	wantSessions := want.sessionWatermarks()
	if len(wantUsers) != 500 || len(wantSessions) != 300 {
		t.Fatalf("users = %d, sessions = %d, want 500, 300", len(wantUsers), len(wantSessions))
	}

	cases := map[string]func([]events.Event) []events.Event{
		"Reversed": func(in []events.Event) []events.Event {
			out := make([]events.Event, len(in))
			for i, ev := range in {
				out[len(in)-1-i] = ev
			}
			return out
		},
		"Shuffled": func(in []events.Event) []events.Event {
			out := append([]events.Event(nil), in...)
			rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
			return out
		},
		"Duplicated": func(in []events.Event) []events.Event {
			var out []events.Event
			for _, ev := range in {
				out = append(out, ev, ev)
			}
			return out
		},
		"ReplayedTwice": func(in []events.Event) []events.Event {
			return append(append([]events.Event(nil), in...), in...)
		},
	}
	for name, reorder := range cases {
		t.Run(name, func(t *testing.T) {
			got := newTestTable(t)
			for _, ev := range reorder(evs) {
				got.apply(ev)
			}
			apps, users := got.watermarks()
			if !maps.Equal(apps, wantApps) || !maps.Equal(users, wantUsers) || !maps.Equal(got.sessionWatermarks(), wantSessions) {
				t.Fatalf("table differs from in-order application")
			}
		})
	}
}

func TestApplyHoldsFutureWatermark(t *testing.T) {
	tab := newTestTable(t, WithClockSkew(time.Second))
	clock := time.Now()
	tab.cfg.now = func() time.Time { return clock }
	ahead := clock.Add(time.Minute)
	if tab.apply(mustUser(t, 7, ahead)) || tab.apply(mustApp(t, "shop", ahead)) {
		t.Fatal("apply of a watermark a minute ahead = true, want held back")
	}
	if !tab.NotBefore("shop", 7).IsZero() {
		t.Fatalf("held watermark applies: %s", tab.NotBefore("shop", 7))
	}
	if !tab.apply(mustUser(t, 8, clock.Add(500*time.Millisecond))) {
		t.Fatal("apply of a watermark within the skew = false, want applied")
	}
	if s := tab.Stats(); s.EventsHeld != 2 || s.Held != 2 || s.EventsApplied != 1 {
		t.Fatalf("held, still held, applied = %d, %d, %d, want 2, 2, 1", s.EventsHeld, s.Held, s.EventsApplied)
	}
	if n := tab.releaseHeld(); n != 0 {
		t.Fatalf("released %d watermarks still ahead", n)
	}
	clock = clock.Add(59 * time.Second) // ahead is now within the skew
	if n := tab.releaseHeld(); n != 2 {
		t.Fatalf("released %d, want 2", n)
	}
	if got := tab.NotBefore("shop", 7); !got.Equal(ahead) {
		t.Fatalf("watermark after release = %s, want %s", got, ahead)
	}
	if got := tab.NotBefore("other", 7); !got.Equal(ahead) {
		t.Fatalf("user watermark after release = %s, want %s", got, ahead)
	}
	if s := tab.Stats(); s.Held != 0 {
		t.Fatalf("still held = %d, want 0", s.Held)
	}
}

func TestGrowthKeepsEveryEntry(t *testing.T) {
	tab := newTestTable(t)
	nb := time.Now().Add(-time.Minute)
	const n = 100_000
	for id := int64(1); id <= n; id++ {
		tab.apply(mustUserFast(id, nb))
	}
	for id := int64(1); id <= n; id++ {
		if got := tab.notBefore("", id); got != nb.UnixNano() {
			t.Fatalf("user %d: watermark %d, want %d", id, got, nb.UnixNano())
		}
	}
	if got := tab.notBefore("", n+1); got != 0 {
		t.Fatalf("unknown user: watermark %d, want 0", got)
	}
}

// mustUserFast builds an event without validation, for bulk tests.
func mustUserFast(id int64, nb time.Time) events.Event {
	return events.Event{Version: events.Version, Type: events.TypeUserReset, UserID: id, NotBefore: nb}
}

func TestReserveAvoidsRegrowth(t *testing.T) {
	tab := newTestTable(t)
	tab.reserve(10_000)
	before := tab.users.Load()
	for id := int64(1); id <= 10_000; id++ {
		tab.apply(mustUserFast(id, time.Now()))
	}
	if tab.users.Load() != before {
		t.Fatal("table regrew after reserve")
	}
}

func TestPrune(t *testing.T) {
	now := time.Now()
	tab := newTestTable(t, WithMaxTokenLifetime(time.Hour))
	tab.apply(mustUser(t, 1, now.Add(-2*time.Hour)))
	tab.apply(mustUser(t, 2, now.Add(-30*time.Minute)))
	tab.apply(mustApp(t, "old", now.Add(-2*time.Hour)))
	tab.apply(mustApp(t, "new", now.Add(-time.Minute)))
	if dropped := tab.prune(now.Add(-time.Hour)); dropped != 2 {
		t.Fatalf("dropped = %d, want 2", dropped)
	}
	apps, users := tab.watermarks()
	if _, ok := users[1]; ok || len(users) != 1 {
		t.Fatalf("users after prune = %v, want only user 2", users)
	}
	if _, ok := apps["old"]; ok || len(apps) != 1 {
		t.Fatalf("apps after prune = %v, want only app new", apps)
	}
}

func TestParseIssuedAt(t *testing.T) {
	tests := []struct {
		in        string
		sec, nsec int64
		whole     bool
		err       bool
	}{
		{in: "1763890215", sec: 1763890215, whole: true},
		{in: "1763890215.123456", sec: 1763890215, nsec: 123456000},
		{in: "1763890215.1234567891", sec: 1763890215, nsec: 123456789},
		{in: "1763890215.0", sec: 1763890215},
		{in: "-1", err: true},
		{in: "+1", err: true},
		{in: "1.7e9", err: true},
		{in: "1763890215.", err: true},
		{in: ".5", err: true},
		{in: "99999999999999", err: true},
	}
	for _, tt := range tests {
		got, err := parseIssuedAt(json.Number(tt.in))
		if tt.err {
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("parseIssuedAt(%q) error = %v, want ErrInvalidToken", tt.in, err)
			}
			continue
		}
		if err != nil || got.sec != tt.sec || got.nsec != tt.nsec || got.whole != tt.whole {
			t.Errorf("parseIssuedAt(%q) = %+v, %v; want {%d %d %v}", tt.in, got, err, tt.sec, tt.nsec, tt.whole)
		}
	}
}

func TestRevokedBy(t *testing.T) {
	wm := time.Unix(1763890215, 500_000_000).UnixNano() // 1763890215.5
	tests := []struct {
		name string
		iat  string
		want bool
	}{
		{"WholeSecondBefore", "1763890214", true},
		{"WholeSecondSameSecond", "1763890215", true},
		{"WholeSecondAfter", "1763890216", false},
		{"MilliBefore", "1763890215.499", true},
		{"Exact", "1763890215.500", false},
		{"MilliAfter", "1763890215.501", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iat, err := parseIssuedAt(json.Number(tt.iat))
			if err != nil {
				t.Fatal(err)
			}
			if got := iat.revokedBy(wm); got != tt.want {
				t.Fatalf("revokedBy = %v, want %v", got, tt.want)
			}
			if iat.revokedBy(0) {
				t.Fatal("revoked without a watermark")
			}
		})
	}
}

// fillUsers applies n user watermarks with random ids and returns the ids.
func fillUsers(tb testing.TB, tab *Table, n int) []int64 {
	tb.Helper()
	tab.reserve(n)
	ids := make([]int64, n)
	nb := time.Now().Add(-time.Minute)
	for i := range ids {
		ids[i] = rand.Int64N(1<<62) + 1
		tab.apply(mustUserFast(ids[i], nb))
	}
	return ids
}

// BenchmarkLookup measures the revocation lookup of the request path, for a random user
// among 1M and an app, from every core at once.
func BenchmarkLookup(b *testing.B) {
	tab := newTestTable(b)
	ids := fillUsers(b, tab, 1_000_000)
	tab.apply(mustApp(b, "shop", time.Now().Add(-time.Minute)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(ids))
		var sink, n int64
		for pb.Next() {
			n++
			sink += tab.notBefore("shop", ids[i])
			i++
			if i == len(ids) {
				i = 0
			}
		}
		if n > 0 && sink == 0 {
			b.Error("no watermark found")
		}
	})
}

// BenchmarkTableMemory reports the heap bytes per user entry of a table of 1M users.
func BenchmarkTableMemory(b *testing.B) {
	const n = 1_000_000
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = rand.Int64N(1<<62) + 1
	}
	nb := time.Now().Add(-time.Minute)
	var perEntry float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tab := newTestTable(b)
		tab.reserve(n)
		for _, id := range ids {
			tab.apply(mustUserFast(id, nb))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(tab)
	}
	b.ReportMetric(perEntry, "B/entry")
}

// TestPruneKeepsWhatLeewayStillAccepts: a token may be accepted until exp + leeway, so a
// watermark must outlive the longest token lifetime by the leeway (and by the second that
// whole-second iat rounds off), or a revoked token comes back.
func TestPruneKeepsWhatLeewayStillAccepts(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithMaxTokenLifetime(time.Hour), WithLeeway(time.Minute))
	now := time.Now()
	wm := now.Add(-time.Hour - 30*time.Second)
	eventstest.Publish(t, f.js, mustUser(t, 9, wm))
	waitWatermark(t, tab, "", 9, wm)
	iat := wm.Add(-time.Second)
	token := f.token(t, "shop", 9, millis(iat), jwt.MapClaims{"exp": iat.Add(time.Hour).Unix()}) // expired 31s ago, within the leeway
	tab.prune(tab.pruneCutoff())
	if _, err := tab.Verify(context.Background(), token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked token after pruning: err = %v, want ErrRevoked", err)
	}
}

// TestGrowthDoubles: growing a full table doubles its slots, so a table grown one insert
// at a time stays at least 3/8 full (at most 43 bytes per entry), as the file comment says.
func TestGrowthDoubles(t *testing.T) {
	tab := newTestTable(t)
	for id := int64(1); id <= 10_000; id++ {
		before := len(tab.users.Load().slots)
		tab.apply(mustUserFast(id, time.Now()))
		if after := len(tab.users.Load().slots); after != before && after != 2*before {
			t.Fatalf("insert %d: %d slots grew to %d, want %d", id, before, after, 2*before)
		}
	}
	if u := tab.users.Load(); u.count*8 < len(u.slots)*3 {
		t.Fatalf("%d entries in %d slots: less than 3/8 full", u.count, len(u.slots))
	}
}

// TestHomeSlotInBounds: the lookup reads home slots without a bounds check, so every table
// a Table can hold (new, reserved, grown, rebuilt) must keep home below its length, for the
// ids at both ends of the range.
func TestHomeSlotInBounds(t *testing.T) {
	tables := []*userTable{newUserTable(0), newUserTable(1), newUserTable(1000), newUserTable(1 << 20)}
	grown := newUserTable(0)
	for i := range int64(200) {
		grown = grown.grown()
		grown.put(i+1, 1)
	}
	tables = append(tables, grown, grown.rebuilt(grown.count, 0))
	ids := []int64{1, 2, 42, -1, 1<<63 - 1, -1 << 63, 0x9E3779B97F4A7C15 >> 1}
	for i := range 10000 {
		ids = append(ids, rand.Int64())
		ids = append(ids, int64(i))
	}
	for _, u := range tables {
		if uint64(len(u.slots)) != u.mask+1 || 64-int(u.shift) != bits.TrailingZeros64(uint64(len(u.slots))) {
			t.Fatalf("table of %d slots: mask %d, shift %d", len(u.slots), u.mask, u.shift)
		}
		for _, id := range ids {
			if h := u.home(id); h >= uint64(len(u.slots)) {
				t.Fatalf("home(%d) = %d in a table of %d slots", id, h, len(u.slots))
			}
			if u.homeSlot(id) != &u.slots[u.home(id)] {
				t.Fatalf("homeSlot(%d) is not slot %d", id, u.home(id))
			}
		}
	}
}
