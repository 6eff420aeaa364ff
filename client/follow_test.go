package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

func TestEventsAreApplied(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	before := now.Add(-10 * time.Second)

	orders := map[string][]string{"AppThenUser": {"app", "user"}, "UserThenApp": {"user", "app"}}
	user := int64(100)
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			user++
			app := fmt.Sprintf("app-%d", user)
			// The second watermark is later, so it decides, whichever kind it is.
			for i, kind := range order {
				nb := now.Add(time.Duration(i-2) * time.Second)
				ev := mustUser(t, user, nb)
				if kind == "app" {
					ev = mustApp(t, app, nb)
				}
				eventstest.Publish(t, f.js, ev)
				waitWatermark(t, tab, app, user, nb)
			}
			if _, err := tab.Verify(ctx, f.token(t, app, user, secs(before), nil)); !errors.Is(err, ErrRevoked) {
				t.Fatalf("token issued before: err = %v, want ErrRevoked", err)
			}
			c, err := tab.Verify(ctx, f.token(t, app, user, millis(now.Add(-time.Second)), nil))
			if err != nil {
				t.Fatalf("token issued after: err = %v, want nil", err)
			}
			if c.AppID != app || c.UserID != user {
				t.Fatalf("claims = %q/%d, want %q/%d", c.AppID, c.UserID, app, user)
			}
			// Another user of the app is revoked by the app watermark only.
			if _, err := tab.Verify(ctx, f.token(t, app, 999, secs(before), nil)); !errors.Is(err, ErrRevoked) {
				t.Fatalf("other user of the app: err = %v, want ErrRevoked", err)
			}
			if _, err := tab.Verify(ctx, f.token(t, "other", 999, secs(before), nil)); err != nil {
				t.Fatalf("other app, other user: err = %v, want nil", err)
			}
		})
	}
}

func TestSameSecondAndMilliseconds(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t)
	wm := time.Now().Truncate(time.Second).Add(-10*time.Second + 500*time.Millisecond)
	eventstest.Publish(t, f.js, mustUser(t, 42, wm))
	waitWatermark(t, tab, "shop", 42, wm)

	tests := []struct {
		name string
		iat  string
		want error
	}{
		{"ErrRevokedWholeSecondSameSecond", secs(wm), ErrRevoked},
		{"ErrRevokedWholeSecondBefore", secs(wm.Add(-time.Second)), ErrRevoked},
		{"AcceptedWholeSecondAfter", secs(wm.Add(time.Second)), nil},
		{"ErrRevokedMillisecondBefore", millis(wm.Add(-time.Millisecond)), ErrRevoked},
		{"AcceptedExactly", millis(wm), nil},
		{"AcceptedMillisecondAfter", millis(wm.Add(time.Millisecond)), nil},
		{"AcceptedMicrosecondAfter", fmt.Sprintf("%d.%06d", wm.Unix(), wm.Nanosecond()/1000+1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tab.Verify(context.Background(), f.token(t, "shop", 42, tt.iat, nil))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("iat %s: err = %v, want %v", tt.iat, err, tt.want)
			}
		})
	}
}

func TestBootstrapReadsLatestPerSubject(t *testing.T) {
	f := newFixture(t)
	base := time.Now().Add(-time.Hour)
	const users, rounds = 50, 20
	for r := range rounds {
		for u := int64(1); u <= users; u++ {
			eventstest.Publish(t, f.js, mustUser(t, u, base.Add(time.Duration(r)*time.Second)))
		}
	}
	eventstest.Publish(t, f.js, mustApp(t, "shop", base))
	tab := f.readyTable(t)
	s := tab.Stats()
	if s.EventsApplied != users+1 {
		t.Fatalf("events applied = %d, want %d (latest per subject only)", s.EventsApplied, users+1)
	}
	if s.Users != users || s.Apps != 1 || s.LastSequence != users*rounds+1 {
		t.Fatalf("stats = %+v, want %d users, 1 app, last seq %d", s, users, users*rounds+1)
	}
	for u := int64(1); u <= users; u++ {
		if got, want := tab.NotBefore("", u), base.Add((rounds-1)*time.Second); !got.Equal(want) {
			t.Fatalf("user %d: watermark %s, want %s", u, got, want)
		}
	}
}

func TestNotReadyUntilStreamExists(t *testing.T) {
	f := newFixtureWithoutStream(t)
	srv := f.srv
	tab := f.table(t, WithMaxStaleness(300*time.Millisecond))
	if _, err := tab.Verify(context.Background(), f.token(t, "shop", 1, secs(time.Now()), nil)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Verify before the stream exists = %v, want ErrNotReady", err)
	}
	if err := tab.CheckIssuedAt("shop", 1, "1"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("CheckIssuedAt before the stream exists = %v, want ErrNotReady", err)
	}
	srv.CreateStream()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tab.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady after the stream was created = %v", err)
	}
}

func TestServerRestartMissesNothing(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	const n = 300
	want := map[int64]int64{}
	for i := int64(1); i <= n; i++ {
		if i == n/3 || i == 2*n/3 {
			f.srv.Restart()
		}
		nb := base.Add(time.Duration(i) * time.Millisecond)
		publishRetry(t, f.js, mustUser(t, i, nb))
		want[i] = nb.UnixNano()
	}
	var logged time.Time
	eventually(t, "every event applied after two restarts", func() bool {
		_, users := tab.watermarks()
		if maps.Equal(users, want) {
			return true
		}
		if time.Since(logged) > time.Second { // shown only if the test fails
			logged = time.Now()
			t.Logf("applied %d of %d, last seq %d", len(users), n, tab.Stats().LastSequence)
		}
		return false
	})
	if s := tab.Stats(); s.EventsInvalid != 0 || s.LastSequence != n {
		t.Fatalf("stats = %+v, want no invalid event and last seq %d", s, n)
	}
}

// The broadcaster never lowers a watermark on a subject (bootstrap reads only the latest
// event per subject), so a replay republishes the same events in the same order. A table
// that followed everything, duplicates included, and one that bootstrapped afterwards agree.
func TestDuplicatesAndReplayGiveTheSameTable(t *testing.T) {
	f := newFixture(t)
	first := f.readyTable(t)
	base := time.Now().Add(-time.Minute)
	var evs []events.Event
	for i := range 40 {
		evs = append(evs, mustUser(t, int64(i%10+1), base.Add(time.Duration(i)*time.Second)))
	}
	for range 2 {
		for _, ev := range evs {
			eventstest.Publish(t, f.js, ev)
			ev.ID = events.NewID() // the same event again, as a new message
			eventstest.Publish(t, f.js, ev)
		}
	}
	second := f.readyTable(t)
	eventually(t, "first table caught up", func() bool {
		return first.Stats().LastSequence == second.Stats().LastSequence
	})
	a1, u1 := first.watermarks()
	a2, u2 := second.watermarks()
	if !maps.Equal(a1, a2) || !maps.Equal(u1, u2) || len(u1) != 10 {
		t.Fatalf("tables differ: %v vs %v", u1, u2)
	}
	// Republishing an event with its own id is stored once: 40 + 40 + 40 messages.
	if s := first.Stats(); s.EventsApplied != 120 {
		t.Fatalf("first table applied %d events, want 120", s.EventsApplied)
	}
}

func TestInvalidEventsAreSkipped(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t)
	ctx := context.Background()
	garbage := []struct{ subject, data string }{
		{events.UserResetPrefix + "5", "not json"},
		{events.UserResetPrefix + "5", `{"v":2}`},
		{events.AppFlushedPrefix + "shop", ""},
	}
	for _, g := range garbage {
		if _, err := f.js.Publish(ctx, g.subject, []byte(g.data)); err != nil {
			t.Fatal(err)
		}
	}
	// A valid event on the wrong subject: user 6's event stored on user 5's subject.
	wrong, _ := events.Encode(mustUser(t, 6, time.Now()))
	if _, err := f.js.Publish(ctx, events.UserResetPrefix+"5", wrong); err != nil {
		t.Fatal(err)
	}
	// A watermark an hour ahead would lock the user out for an hour.
	eventstest.Publish(t, f.js, mustUser(t, 7, time.Now().Add(time.Hour)))
	nb := time.Now().Add(-time.Second)
	eventstest.Publish(t, f.js, mustUser(t, 8, nb))
	waitWatermark(t, tab, "", 8, nb)
	s := tab.Stats()
	if s.EventsInvalid != 4 || s.EventsHeld != 1 || s.Held != 1 || s.EventsApplied != 1 || s.Users != 1 {
		t.Fatalf("stats = %+v, want 4 invalid, 1 held back, 1 applied, 1 user", s)
	}
}

func TestStaleWhenNATSIsDown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailOpen=%v", failOpen), func(t *testing.T) {
			f := newFixture(t)
			opts := []Option{WithMaxStaleness(300 * time.Millisecond)}
			if failOpen {
				opts = append(opts, WithFailOpen())
			}
			tab := f.readyTable(t, opts...)
			tok := f.token(t, "shop", 1, secs(time.Now()), nil)
			ctx := context.Background()
			// An idle stream with a healthy server stays fresh.
			idleUntil := time.Now().Add(time.Second)
			for time.Now().Before(idleUntil) {
				if _, err := tab.Verify(ctx, tok); err != nil {
					t.Fatalf("idle but healthy: err = %v", err)
				}
				time.Sleep(20 * time.Millisecond) // sampling over a second of idleness
			}
			f.srv.Shutdown()
			eventually(t, "stale after the server stopped", func() bool {
				return tab.Staleness() > 300*time.Millisecond
			})
			_, err := tab.Verify(ctx, tok)
			rec := serve(tab.Middleware(whoami), "Bearer "+tok)
			if failOpen {
				if err != nil || rec.Code != http.StatusOK || tab.Stats().FailOpenAccepts != 2 {
					t.Fatalf("fail-open: err = %v, status %d, accepts = %d; want nil, 200, 2", err, rec.Code, tab.Stats().FailOpenAccepts)
				}
				return
			}
			if !errors.Is(err, ErrStale) || rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
				t.Fatalf("fail-closed: err = %v, status %d; want ErrStale, 503 with Retry-After", err, rec.Code)
			}
			f.srv.Restart()
			eventually(t, "fresh after the server came back", func() bool {
				_, err := tab.Verify(ctx, tok)
				return err == nil
			})
		})
	}
}

// A consumer that JetStream deletes under the table is recreated from the last sequence.
func TestConsumerDeletedIsRecreated(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t)
	nb := time.Now().Add(-time.Minute)
	eventstest.Publish(t, f.js, mustUser(t, 1, nb))
	waitWatermark(t, tab, "", 1, nb)
	st, err := f.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for name := range st.ConsumerNames(context.Background()).Name() {
		if err := st.DeleteConsumer(context.Background(), name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
	}
	eventstest.Publish(t, f.js, mustUser(t, 2, nb))
	waitWatermark(t, tab, "", 2, nb)
}

func TestOnApplyHook(t *testing.T) {
	f := newFixture(t)
	got := make(chan uint64, 10)
	tab := f.readyTable(t, WithOnApply(func(ev events.Event, seq uint64) {
		if ev.UserID == 77 {
			got <- seq
		}
	}))
	ack := eventstest.Publish(t, f.js, mustUser(t, 77, time.Now()))
	eventstest.Publish(t, f.js, mustUser(t, 78, time.Now().Add(time.Hour))) // refused: not applied, no call
	select {
	case seq := <-got:
		if seq != ack.Sequence {
			t.Fatalf("hook seq = %d, want %d", seq, ack.Sequence)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hook not called within 10s")
	}
	if tab.NotBefore("", 77).IsZero() {
		t.Fatal("hook ran before the watermark was applied")
	}
	if _, err := New(f.srv.Connect(), WithOnApply(nil)); err == nil {
		t.Fatal("WithOnApply(nil) accepted")
	}
}

// TestStreamCreatedAgain: a stream deleted and created again (or restored from a backup)
// numbers its new events from where it now ends, below the table's last sequence. The table
// notices, reads the stream again from the latest event per subject, and misses nothing,
// keeping the watermarks it had.
func TestStreamCreatedAgain(t *testing.T) {
	f := newFixture(t)
	nb := time.Now().Add(-time.Minute)
	for id := int64(1); id <= 5; id++ {
		eventstest.Publish(t, f.js, mustUser(t, id, nb))
	}
	tab := f.readyTable(t, WithMaxStaleness(200*time.Millisecond))
	waitWatermark(t, tab, "", 5, nb)

	if err := f.js.DeleteStream(context.Background(), events.StreamName); err != nil {
		t.Fatal(err)
	}
	f.srv.CreateStream()
	later := time.Now().Add(-time.Second)
	eventstest.Publish(t, f.js, mustUser(t, 42, later))
	eventstest.Publish(t, f.js, mustApp(t, "shop", later))
	waitWatermark(t, tab, "shop", 42, later)
	if !tab.NotBefore("", 5).Equal(nb) {
		t.Fatalf("user 5 lost its watermark: %s", tab.NotBefore("", 5))
	}
	eventually(t, "a fresh table", func() bool { return tab.Staleness() < 200*time.Millisecond })
}

// TestEventsDuringTheStreamInfoAreNoRewind: events the table handles while a stream info
// request is on its way make the answer end before the table's last sequence. That is not
// a rewound stream (a false alarm made the table read the stream again from the top).
func TestEventsDuringTheStreamInfoAreNoRewind(t *testing.T) {
	tab := newTestTable(t)
	created := time.Now()
	tab.streamCreated.Store(created.UnixNano())
	before := uint64(50) // the table's last sequence when the request was sent
	tab.lastSeq.Store(60)
	info := &jetstream.StreamInfo{Created: created, State: jetstream.StreamState{LastSeq: 50}}
	if tab.streamRewound(info, before) {
		t.Fatal("stream counted as rewound because events arrived during the request")
	}
	if !tab.streamRewound(&jetstream.StreamInfo{Created: created, State: jetstream.StreamState{LastSeq: 49}}, before) {
		t.Fatal("a stream that ends before the table's last event is not counted as rewound")
	}
}
