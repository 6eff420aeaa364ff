package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

// contents is every watermark a table holds.
type contents struct {
	apps     map[string]int64
	users    map[int64]int64
	sessions map[int64]int64
}

func dump(tab *Table) contents {
	apps, users := tab.watermarks()
	return contents{apps: apps, users: users, sessions: tab.sessionWatermarks()}
}

func sameContents(tb testing.TB, got, want contents) {
	tb.Helper()
	if !maps.Equal(got.apps, want.apps) {
		tb.Fatalf("apps = %v, want %v", got.apps, want.apps)
	}
	if len(got.users) != len(want.users) {
		tb.Fatalf("%d users, want %d", len(got.users), len(want.users))
	}
	for id, nb := range want.users {
		if got.users[id] != nb {
			tb.Fatalf("user %d: watermark %d, want %d", id, got.users[id], nb)
		}
	}
	if !maps.Equal(got.sessions, want.sessions) {
		tb.Fatalf("%d sessions, want %d (or a watermark differs)", len(got.sessions), len(want.sessions))
	}
}

// snapshots returns the snapshot bucket, creating it as revocastd does.
func (f *fixture) snapshots(tb testing.TB) jetstream.ObjectStore {
	tb.Helper()
	obs, err := f.js.CreateOrUpdateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: events.SnapshotBucket})
	if err != nil {
		tb.Fatal(err)
	}
	return obs
}

// putSnapshot stores data as the snapshot.
func (f *fixture) putSnapshot(tb testing.TB, data []byte) {
	tb.Helper()
	if _, err := f.snapshots(tb).PutBytes(context.Background(), events.SnapshotObject, data); err != nil {
		tb.Fatal(err)
	}
}

// writeSnapshot stores tab's snapshot, as revocastd does.
func (f *fixture) writeSnapshot(tb testing.TB, tab *Table) events.SnapshotHeader {
	tb.Helper()
	var buf bytes.Buffer
	h, err := tab.WriteSnapshot(&buf)
	if err != nil {
		tb.Fatalf("WriteSnapshot = %v", err)
	}
	f.putSnapshot(tb, buf.Bytes())
	return h
}

// streamInfo returns the revocation stream's current info.
func (f *fixture) streamInfo(tb testing.TB) *jetstream.StreamInfo {
	tb.Helper()
	s, err := f.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

// header is a snapshot header for the stream as it ends now, as a table there would write.
func (f *fixture) header(tb testing.TB) events.SnapshotHeader {
	tb.Helper()
	info := f.streamInfo(tb)
	s, err := f.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		tb.Fatal(err)
	}
	msg, err := s.GetMsg(context.Background(), info.State.LastSeq)
	if err != nil {
		tb.Fatal(err)
	}
	return events.SnapshotHeader{Seq: info.State.LastSeq, StreamCreated: info.Created, SeqStoredAt: msg.Time, WrittenAt: time.Now()}
}

// caughtUp waits until tab has handled every event in the stream.
func (f *fixture) caughtUp(tb testing.TB, tab *Table) {
	tb.Helper()
	last := f.streamInfo(tb).State.LastSeq
	eventually(tb, "table at the stream's end", func() bool { return tab.lastSeq.Load() >= last })
}

// TestSnapshotBootstrapMatchesStream: a table that starts from a snapshot written while
// events kept coming, then follows the events after it, holds exactly what a table that
// bootstrapped from the stream holds.
func TestSnapshotBootstrapMatchesStream(t *testing.T) {
	f := newFixture(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for id := int64(1); id <= 3000; id++ {
		eventstest.Publish(t, f.js, mustUser(t, id%2000+1, base.Add(time.Duration(id)*time.Millisecond)))
	}
	for _, app := range []string{"shop", "blog", "admin"} {
		eventstest.Publish(t, f.js, mustApp(t, app, base))
	}
	for i := range 500 {
		eventstest.Publish(t, f.js, mustSession(t, fmt.Sprintf("sess-%d", i%300), base.Add(time.Duration(i)*time.Millisecond)))
	}
	writer := f.readyTable(t, WithSnapshot(false))
	f.caughtUp(t, writer)

	// More events while the snapshot is written: new users, later watermarks for known
	// users and apps, a new app.
	var wg sync.WaitGroup
	wg.Go(func() {
		for id := int64(1500); id <= 2500; id++ {
			publishRetry(t, f.js, mustUser(t, id, base.Add(time.Minute+time.Duration(id)*time.Millisecond)))
		}
		publishRetry(t, f.js, mustApp(t, "shop", base.Add(time.Minute)))
		publishRetry(t, f.js, mustApp(t, "new-app", base.Add(time.Minute)))
		for i := 200; i < 400; i++ {
			publishRetry(t, f.js, mustSession(t, fmt.Sprintf("sess-%d", i), base.Add(time.Minute+time.Duration(i)*time.Millisecond)))
		}
	})
	h := f.writeSnapshot(t, writer)
	wg.Wait()
	if h.Seq == 0 || h.Seq > f.streamInfo(t).State.LastSeq {
		t.Fatalf("snapshot seq = %d", h.Seq)
	}

	fromSnapshot := f.readyTable(t)
	fromStream := f.readyTable(t, WithSnapshot(false))
	f.caughtUp(t, fromSnapshot)
	f.caughtUp(t, fromStream)
	if got := fromSnapshot.Stats().SnapshotSequence; got != h.Seq {
		t.Fatalf("SnapshotSequence = %d, want %d", got, h.Seq)
	}
	if got := fromStream.Stats().SnapshotSequence; got != 0 {
		t.Fatalf("without snapshots: SnapshotSequence = %d, want 0", got)
	}
	want := dump(fromStream)
	if len(want.users) != 2500 || len(want.apps) != 4 || len(want.sessions) != 400 {
		t.Fatalf("stream bootstrap: %d users, %d apps, %d sessions, want 2500, 4, 400", len(want.users), len(want.apps), len(want.sessions))
	}
	sameContents(t, dump(fromSnapshot), want)
	sameContents(t, dump(writer), want)

	// It follows live events like any table.
	later := base.Add(2 * time.Minute)
	eventstest.Publish(t, f.js, mustUser(t, 7, later))
	waitWatermark(t, fromSnapshot, "", 7, later)
	if _, err := fromSnapshot.Verify(context.Background(), f.token(t, "shop", 7, millis(later.Add(-time.Millisecond)), nil)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("token before the live watermark: err = %v, want ErrRevoked", err)
	}
}

// TestSnapshotAtTheEnd: with no event after the snapshot, the table is ready anyway.
func TestSnapshotAtTheEnd(t *testing.T) {
	f := newFixture(t)
	nb := time.Now().Add(-time.Minute)
	for id := int64(1); id <= 50; id++ {
		eventstest.Publish(t, f.js, mustUser(t, id, nb))
	}
	writer := f.readyTable(t)
	f.caughtUp(t, writer)
	h := f.writeSnapshot(t, writer)

	tab := f.readyTable(t)
	s := tab.Stats()
	if s.SnapshotSequence != h.Seq || s.LastSequence != h.Seq || s.Users != 50 {
		t.Fatalf("stats = %+v, want snapshot and last sequence %d, 50 users", s, h.Seq)
	}
	if _, err := tab.Verify(context.Background(), f.token(t, "shop", 50, secs(nb), nil)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("err = %v, want ErrRevoked", err)
	}
}

// TestSnapshotNotUsed: the table uses a snapshot only when it belongs to this stream and
// is whole; otherwise it bootstraps from the stream. Each case stores a snapshot with a
// watermark for user 777, which the stream does not have; only the control case may use it.
func TestSnapshotNotUsed(t *testing.T) {
	f := newFixture(t)
	nb := time.Now().Add(-time.Minute)
	eventstest.Publish(t, f.js, mustUser(t, 1, nb))
	eventstest.Publish(t, f.js, mustApp(t, "shop", nb))
	stranger := nb.Add(-time.Hour).UnixNano()

	snapshot := func(h events.SnapshotHeader, userNB int64) []byte {
		var buf bytes.Buffer
		w := events.NewSnapshotWriter(&buf, h)
		_ = w.App("shop", nb.UnixNano())
		_ = w.User(1, nb.UnixNano())
		_ = w.User(777, userNB)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good := f.header(t)
	otherStream, beyond, restored := good, good, good
	otherStream.StreamCreated = good.StreamCreated.Add(-time.Second)
	beyond.Seq = good.Seq + 100
	// A stream restored from a backup that then grew past the snapshot's sequence again:
	// same creation time, another event at that sequence.
	restored.SeqStoredAt = good.SeqStoredAt.Add(-time.Minute)
	whole := snapshot(good, stranger)

	cases := []struct {
		name string
		data []byte
		opts []Option
		used bool
	}{
		{"Used", whole, nil, true},
		{"Disabled", whole, []Option{WithSnapshot(false)}, false},
		{"OtherStream", snapshot(otherStream, stranger), nil, false},
		{"BeyondTheStream", snapshot(beyond, stranger), nil, false},
		{"RestoredStream", snapshot(restored, stranger), nil, false},
		{"Truncated", whole[:len(whole)-5], nil, false},
		{"NotASnapshot", []byte(`{"users":[777]}`), nil, false},
		{"Empty", nil, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.putSnapshot(t, tc.data)
			tab := f.readyTable(t, tc.opts...)
			f.caughtUp(t, tab)
			got := dump(tab)
			if used := got.users[777] != 0; used != tc.used {
				t.Fatalf("snapshot used = %v, want %v", used, tc.used)
			}
			if used := tab.Stats().SnapshotSequence != 0; used != tc.used {
				t.Fatalf("SnapshotSequence = %d, used = %v", tab.Stats().SnapshotSequence, tc.used)
			}
			if got.users[1] != nb.UnixNano() || got.apps["shop"] != nb.UnixNano() {
				t.Fatalf("table = %+v, want the stream's watermarks", got)
			}
		})
	}
}

// withClock runs a table on a clock offset from this machine's.
func withClock(offset time.Duration) Option {
	return func(c *config) error {
		c.now = func() time.Time { return time.Now().Add(offset) }
		return nil
	}
}

// TestSnapshotHoldsFutureWatermarks: as with events, a watermark past the clock skew is held
// back and counted, and the rest of the snapshot applies at once.
func TestSnapshotHoldsFutureWatermarks(t *testing.T) {
	f := newFixture(t)
	nb := time.Now().Add(-time.Minute)
	eventstest.Publish(t, f.js, mustUser(t, 1, nb))
	ahead := time.Now().Add(time.Hour).UnixNano()
	var buf bytes.Buffer
	w := events.NewSnapshotWriter(&buf, f.header(t))
	_ = w.App("shop", ahead)
	_ = w.User(1, nb.UnixNano())
	_ = w.User(2, ahead)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.putSnapshot(t, buf.Bytes())

	tab := f.readyTable(t)
	got := dump(tab)
	if s := tab.Stats(); s.SnapshotSequence == 0 || s.EventsHeld != 2 || s.Held != 2 {
		t.Fatalf("stats = %+v, want the snapshot used and 2 held back", s)
	}
	if len(got.apps) != 0 || len(got.users) != 1 || got.users[1] != nb.UnixNano() {
		t.Fatalf("table = %+v, want user 1 only", got)
	}
	// The held watermarks go into the next snapshot: a table whose clock has reached them
	// applies them at once.
	var again bytes.Buffer
	if _, err := tab.WriteSnapshot(&again); err != nil {
		t.Fatal(err)
	}
	f.putSnapshot(t, again.Bytes())
	later := f.readyTable(t, withClock(2*time.Hour))
	if got := dump(later); got.apps["shop"] != ahead || got.users[2] != ahead {
		t.Fatalf("table two hours later = %+v, want shop and user 2 at %d", got, ahead)
	}
}

// TestSnapshotKeepsHeldEvents: an event held back by the writer is not lost for tables
// that start from its snapshot once the watermark's time has come.
func TestSnapshotKeepsHeldEvents(t *testing.T) {
	f := newFixture(t)
	eventstest.Publish(t, f.js, mustUser(t, 1, time.Now().Add(-time.Minute)))
	eventstest.Publish(t, f.js, mustUser(t, 2, time.Now().Add(time.Hour)))
	writer := f.readyTable(t, WithSnapshot(false))
	f.caughtUp(t, writer)
	if s := writer.Stats(); s.Held != 1 {
		t.Fatalf("writer holds %d watermarks, want 1", s.Held)
	}
	h := f.writeSnapshot(t, writer)

	later := withClock(2 * time.Hour)
	fromStream := f.readyTable(t, WithSnapshot(false), later)
	fromSnapshot := f.readyTable(t, later)
	f.caughtUp(t, fromStream)
	f.caughtUp(t, fromSnapshot)
	if fromSnapshot.Stats().SnapshotSequence != h.Seq {
		t.Fatal("snapshot not used")
	}
	sameContents(t, dump(fromSnapshot), dump(fromStream))
	if fromSnapshot.NotBefore("", 2).IsZero() {
		t.Fatal("user 2's watermark is lost")
	}
}

// TestRunAgainResumes: a table run a second time resumes from its own last event, not from
// the snapshot.
func TestRunAgainResumes(t *testing.T) {
	f := newFixture(t)
	nb := time.Now().Add(-time.Minute)
	eventstest.Publish(t, f.js, mustUser(t, 1, nb))
	writer := f.readyTable(t)
	f.caughtUp(t, writer)
	h := f.writeSnapshot(t, writer)

	tab, err := New(f.srv.Connect(), WithKeyfunc(f.keyfunc))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tab.Run(ctx) }()
		eventstest.Publish(t, f.js, mustUser(t, int64(round+2), nb))
		f.caughtUp(t, tab)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if s := tab.Stats(); s.SnapshotSequence != h.Seq || s.Users != 3 || s.EventsApplied != 2 {
		t.Fatalf("stats = %+v, want the snapshot at %d loaded once, then 2 events applied", s, h.Seq)
	}
}

func TestWriteSnapshotRefuses(t *testing.T) {
	f := newFixture(t)
	t.Run("ErrNotReady", func(t *testing.T) {
		tab, err := New(f.srv.Connect(), WithKeyfunc(f.keyfunc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tab.WriteSnapshot(&bytes.Buffer{}); !errors.Is(err, ErrNotReady) {
			t.Fatalf("err = %v, want ErrNotReady", err)
		}
	})
	t.Run("PruningTable", func(t *testing.T) {
		tab := f.readyTable(t, WithMaxTokenLifetime(time.Hour))
		var buf bytes.Buffer
		if _, err := tab.WriteSnapshot(&buf); !errors.Is(err, errSnapshotPrunes) || buf.Len() != 0 {
			t.Fatalf("err = %v, %d bytes written, want errSnapshotPrunes and nothing", err, buf.Len())
		}
	})
}

// TestSnapshotReplacedWhileRead: replacing the snapshot deletes the chunks a reader is in
// the middle of; the reader gives up after snapshotStallTimeout instead of waiting for
// its whole deadline, so the table can read the new one.
func TestSnapshotReplacedWhileRead(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	obs := f.snapshots(t)
	data := make([]byte, 8<<20)
	c := startReading(t, f, obs, data)
	if _, err := obs.PutBytes(ctx, events.SnapshotObject, data); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c); !errors.Is(err, errSnapshotStalled) {
		t.Fatalf("reading a replaced snapshot: err = %v, want errSnapshotStalled", err)
	}

	// The whole object, read from the start, passes its digest check.
	info, err := obs.GetInfo(ctx, events.SnapshotObject)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := openChunks(ctx, f.js, info)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.close()
	if n, err := io.Copy(io.Discard, c2); err != nil || n != int64(len(data)) {
		t.Fatalf("read %d bytes, %v; want %d, nil", n, err, len(data))
	}
}

// TestLaterEventReplacesHeldWatermark: a held watermark followed by a sane event on the same
// subject (the publisher's clock was fixed) gives a live table what a table bootstrapping
// from the stream sees: the later event.
func TestLaterEventReplacesHeldWatermark(t *testing.T) {
	f := newFixture(t)
	live := f.readyTable(t, WithSnapshot(false))
	sane := time.Now().Add(-time.Minute)
	eventstest.Publish(t, f.js, mustUser(t, 7, time.Now().Add(time.Hour)))
	eventstest.Publish(t, f.js, mustUser(t, 7, sane))
	f.caughtUp(t, live)
	late := f.readyTable(t, WithSnapshot(false))
	f.caughtUp(t, late)
	if s := live.Stats(); s.Held != 0 || !live.NotBefore("", 7).Equal(sane) {
		t.Fatalf("live table: %d held, watermark %s; want 0 held and %s", s.Held, live.NotBefore("", 7), sane)
	}
	sameContents(t, dump(live), dump(late))
	if n := live.releaseHeld(); n != 0 {
		t.Fatalf("released %d watermarks, want none held", n)
	}
}

// TestSnapshotReadEndsWhenTheConsumerCannotComeBack: after a reconnect the ordered consumer
// recreates itself, and keeps trying while the bucket is gone (here: a memory bucket lost
// in a restart). The read still ends at the stall timeout.
func TestSnapshotReadEndsWhenTheConsumerCannotComeBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	obs, err := f.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: events.SnapshotBucket, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	c := startReading(t, f, obs, make([]byte, 8<<20))
	f.srv.Restart()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, c); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, errSnapshotStalled) {
			t.Fatalf("err = %v, want errSnapshotStalled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read never ended")
	}
}

// startReading stores data as the snapshot (8 MiB is 64 chunks, far more than a reader keeps
// in flight) and returns a reader that has read its first 64 KiB.
func startReading(t *testing.T, f *fixture, obs jetstream.ObjectStore, data []byte) *chunks {
	t.Helper()
	info, err := obs.PutBytes(context.Background(), events.SnapshotObject, data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := openChunks(context.Background(), f.js, info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	if _, err := io.ReadFull(c, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	return c
}
