package snapshot_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/snapshot"
)

type fixture struct {
	srv *eventstest.Server
	js  jetstream.JetStream
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := eventstest.RunJetStream(t)
	srv.CreateStream()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, js: js}
}

func noKeys(*jwt.Token) (any, error) { return nil, errors.New("no keys in this test") }

// table runs a client table until the end of the test.
func (f *fixture) table(t *testing.T, opts ...client.Option) *client.Table {
	t.Helper()
	opts = append([]client.Option{client.WithKeyfunc(noKeys), client.WithLogger(zaptest.NewLogger(t))}, opts...)
	tab, err := client.New(f.srv.Connect(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return tab
}

// atSeq waits until tab is ready and has handled the stream up to seq.
func atSeq(t *testing.T, tab *client.Table, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s := tab.Stats(); !s.Ready || s.LastSequence < seq; s = tab.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("table at seq %d (ready %v), want %d", s.LastSequence, s.Ready, seq)
		}
		time.Sleep(5 * time.Millisecond) // bounded poll
	}
}

func (f *fixture) reset(t *testing.T, users ...int64) uint64 {
	t.Helper()
	var seq uint64
	for _, id := range users {
		ev, err := events.NewUserReset(id, time.Now().Add(-time.Second), "test")
		if err != nil {
			t.Fatal(err)
		}
		seq = eventstest.Publish(t, f.js, ev).Sequence
	}
	return seq
}

func (f *fixture) writer(t *testing.T, tab snapshot.Table) *snapshot.Writer {
	t.Helper()
	return snapshot.New(f.js, 1, tab, zaptest.NewLogger(t))
}

// chunks counts the messages in the bucket's stream: chunks and metadata.
func (f *fixture) bucketMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := f.js.Stream(context.Background(), "OBJ_"+events.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestWriterKeepsSnapshotCurrent: a snapshot is written when the table has moved on, not
// otherwise, and a new client starts from it with the same table as revocastd's.
func TestWriterKeepsSnapshotCurrent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seq := f.reset(t, 1, 2, 3)
	tab := f.table(t)
	atSeq(t, tab, seq)
	w := f.writer(t, tab)

	info, err := w.WriteIfBehind(ctx)
	if err != nil || info == nil {
		t.Fatalf("first WriteIfBehind = %v, %v; want a snapshot", info, err)
	}
	if got := info.Metadata["seq"]; got != strconv.FormatUint(seq, 10) {
		t.Fatalf("metadata seq = %q, want %d", got, seq)
	}
	if info, err := w.WriteIfBehind(ctx); err != nil || info != nil {
		t.Fatalf("WriteIfBehind with nothing new = %v, %v; want nothing written", info, err)
	}
	msgs := f.bucketMsgs(t)

	seq = f.reset(t, 4, 1)
	atSeq(t, tab, seq)
	if info, err := w.WriteIfBehind(ctx); err != nil || info == nil {
		t.Fatalf("WriteIfBehind after new events = %v, %v; want a snapshot", info, err)
	}
	// The new snapshot replaced the old one: its chunks are gone.
	if got := f.bucketMsgs(t); got != msgs {
		t.Fatalf("bucket holds %d messages, want %d (old chunks left behind?)", got, msgs)
	}

	fresh := f.table(t)
	atSeq(t, fresh, seq)
	if s := fresh.Stats(); s.SnapshotSequence != seq || s.Users != 4 {
		t.Fatalf("new client: %+v, want the snapshot at %d with 4 users", s, seq)
	}
	for id := int64(1); id <= 4; id++ {
		if got, want := fresh.NotBefore("", id), tab.NotBefore("", id); !got.Equal(want) {
			t.Fatalf("user %d: %s, revocastd's table has %s", id, got, want)
		}
	}
}

// TestReplicasDoNotRepeatEachOther: a second writer whose table is no further along than
// the stored snapshot writes nothing.
func TestReplicasDoNotRepeatEachOther(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seq := f.reset(t, 1, 2)
	a, b := f.table(t), f.table(t)
	atSeq(t, a, seq)
	atSeq(t, b, seq)
	if info, err := f.writer(t, a).WriteIfBehind(ctx); err != nil || info == nil {
		t.Fatalf("replica a: %v, %v; want a snapshot", info, err)
	}
	if info, err := f.writer(t, b).WriteIfBehind(ctx); err != nil || info != nil {
		t.Fatalf("replica b: %v, %v; want nothing written", info, err)
	}
}

// TestNothingFromAnUnfitTable: a table that is not ready, or that prunes, writes nothing and
// leaves the stored snapshot alone.
func TestNothingFromAnUnfitTable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seq := f.reset(t, 1)
	good := f.table(t)
	atSeq(t, good, seq)
	if _, err := f.writer(t, good).Write(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := f.bucketMsgs(t)

	notReady, err := client.New(f.srv.Connect(), client.WithKeyfunc(noKeys))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.writer(t, notReady).WriteIfBehind(ctx); !errors.Is(err, client.ErrNotReady) {
		t.Fatalf("not ready: err = %v, want ErrNotReady", err)
	}
	pruning := f.table(t, client.WithMaxTokenLifetime(time.Hour))
	atSeq(t, pruning, seq)
	if _, err := f.writer(t, pruning).Write(ctx); err == nil {
		t.Fatal("a pruning table wrote a snapshot")
	}
	if got := f.bucketMsgs(t); got != msgs {
		t.Fatalf("bucket holds %d messages, want %d as before", got, msgs)
	}
	fresh := f.table(t)
	atSeq(t, fresh, seq)
	if s := fresh.Stats(); s.SnapshotSequence != seq {
		t.Fatalf("new client: snapshot %d, want the good one at %d", s.SnapshotSequence, seq)
	}
}

// TestRunWritesWhenEventsCome: the loop writes a snapshot within an interval of new events.
func TestRunWritesWhenEventsCome(t *testing.T) {
	f := newFixture(t)
	tab := f.table(t)
	w := f.writer(t, tab)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, 20*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	seq := f.reset(t, 5, 6, 7)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Run creates the bucket on its first round.
		obs, err := f.js.ObjectStore(ctx, events.SnapshotBucket)
		var info *jetstream.ObjectInfo
		if err == nil {
			info, err = obs.GetInfo(ctx, events.SnapshotObject)
		}
		if err == nil && info.Metadata["seq"] == strconv.FormatUint(seq, 10) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at seq %d: %v, %v", seq, info, err)
		}
		time.Sleep(10 * time.Millisecond) // bounded poll
	}
}

// TestBucketTroubleIsLoggedOnce: when the bucket cannot be created (here: 3 replicas on a
// single server; in production, a NATS user without the permissions), Run keeps going and
// logs the error once, not at every interval.
func TestBucketTroubleIsLoggedOnce(t *testing.T) {
	f := newFixture(t)
	seq := f.reset(t, 1)
	tab := f.table(t)
	atSeq(t, tab, seq)
	core, logs := observer.New(zap.WarnLevel)
	w := snapshot.New(f.js, 3, tab, zap.New(core))
	if _, err := w.WriteIfBehind(context.Background()); err == nil || !strings.Contains(err.Error(), "accounts.conf") {
		t.Fatalf("WriteIfBehind = %v, want the bucket error with a hint", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, 5*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("not written").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no warning logged")
		}
		time.Sleep(5 * time.Millisecond) // bounded poll
	}
	time.Sleep(100 * time.Millisecond) // let Run retry about 20 times
	cancel()
	<-done
	// One, or two if a busy server once answered with a timeout instead: not one per try.
	if n := logs.FilterMessageSnippet("not written").Len(); n > 2 {
		t.Fatalf("%d warnings logged, want 1", n)
	}
}

// TestWriteGivesUpCleanly: a write whose context ends returns an error once the table has
// stopped writing into it, and leaves the stored snapshot as it was.
func TestWriteGivesUpCleanly(t *testing.T) {
	f := newFixture(t)
	seq := f.reset(t, 1, 2)
	tab := f.table(t)
	atSeq(t, tab, seq)
	w := f.writer(t, tab)
	if _, err := w.Write(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := f.bucketMsgs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if info, err := w.Write(ctx); err == nil {
		t.Fatalf("Write with a cancelled context = %+v, want an error", info)
	}
	if got := f.bucketMsgs(t); got != msgs {
		t.Fatalf("bucket holds %d messages, want %d as before", got, msgs)
	}
	fresh := f.table(t)
	atSeq(t, fresh, seq)
	if s := fresh.Stats(); s.SnapshotSequence != seq {
		t.Fatalf("new client: snapshot %d, want the one at %d", s.SnapshotSequence, seq)
	}
}
