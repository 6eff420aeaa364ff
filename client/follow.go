package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// Run follows the revocation stream until ctx is done, then returns nil. It bootstraps from
// the latest snapshot and the events after it, or from the latest event per subject when there
// is no usable snapshot (see [WithSnapshot]), then applies every new event. It keeps retrying,
// with a bounded backoff, while NATS or the stream is unavailable (the stream may not exist
// yet when the resource server starts before the broadcaster), and it resumes after a
// disconnect or a server restart from the last event it handled, so it neither misses an event
// nor replays the history. It returns an error only when it cannot start at all, e.g. when
// called twice at once ([ErrRunning]).
//
// Run also asks JetStream, several times per maximum staleness, where the stream ends, to
// keep [Table.Staleness] current, and prunes old watermarks when [WithMaxTokenLifetime] is
// set.
func (t *Table) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer t.running.Store(false)
	js, err := jetstream.New(t.nc)
	if err != nil {
		return fmt.Errorf("client: JetStream: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stream, ok := t.waitForStream(ctx, js)
	if !ok {
		return nil
	}
	// A table starts once from a snapshot, when one exists; after that (and on a later
	// Run) it resumes from its own last sequence.
	if t.lastSeq.Load() > 0 || !t.cfg.snapshot || !t.loadSnapshot(ctx, js, stream) {
		// Size the user table for every subject, so the bootstrap does not regrow it.
		t.reserve(int(stream.CachedInfo().State.NumSubjects))
	}
	var wg sync.WaitGroup
	wg.Go(func() { t.pollFreshness(ctx, stream) })
	wg.Go(func() { t.releaseLoop(ctx) })
	if t.cfg.maxLifetime > 0 {
		wg.Go(func() { t.pruneLoop(ctx) })
	}
	if t.issuer != nil {
		wg.Go(func() { t.followKeys(ctx, js) })
	}
	t.follow(ctx, js)
	cancel()
	wg.Wait()
	return nil
}

// backoff returns the wait before retry number n (from 0): 50ms doubling up to 2s.
func backoff(n int) time.Duration {
	return min(50*time.Millisecond<<min(n, 6), 2*time.Second)
}

// sleep waits for d or until ctx is done, and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitForStream looks the stream up until it exists.
func (t *Table) waitForStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, bool) {
	for try := 0; ; try++ {
		stream, err := js.Stream(ctx, events.StreamName)
		if err == nil {
			// The first stream followed names what the table holds (a later Run resumes
			// from the table's last sequence in it).
			t.streamCreated.CompareAndSwap(0, stream.CachedInfo().Created.UnixNano())
			return stream, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		if try == 0 || errors.Is(err, jetstream.ErrStreamNotFound) && try%20 == 0 {
			t.log.Warn("revocation stream unavailable; retrying", zap.String("stream", events.StreamName), zap.Error(err))
		}
		if !sleep(ctx, backoff(try)) {
			return nil, false
		}
	}
}

// follow consumes the stream with an ordered consumer. The ordered consumer recreates
// itself after a disconnect, a missed heartbeat or a server restart, starting after the
// last sequence it delivered. If it gives up, follow makes a new one that starts after the
// last event the table handled.
func (t *Table) follow(ctx context.Context, js jetstream.JetStream) {
	for try := 0; ctx.Err() == nil; try++ {
		if t.rewound.Swap(false) {
			t.restartFromTheTop()
		}
		cfg := jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.StreamSubjects},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		}
		if seq := t.lastSeq.Load(); seq > 0 {
			cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cfg.OptStartSeq = seq + 1
		}
		cons, err := js.OrderedConsumer(ctx, events.StreamName, cfg)
		if err == nil {
			var it jetstream.MessagesContext
			// Shorter pulls and heartbeats than the defaults (30s, 15s): if a server restart
			// slips past the reconnect notice, a missing heartbeat resets the consumer
			// within about 4s instead of 30s.
			it, err = cons.Messages(jetstream.PullMaxMessages(t.cfg.pullBatchSize),
				jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second))
			if err == nil {
				try = 0
				cctx, stop := context.WithCancel(ctx)
				t.stopConsumer.Store(&stop)
				t.following.Store(true)
				t.askConfirmation()
				err = t.consume(cctx, it)
				t.following.Store(false)
				stop()
			}
		}
		if ctx.Err() != nil {
			return
		}
		t.log.Warn("revocation consumer failed; recreating it", zap.Error(err), zap.Uint64("last_seq", t.lastSeq.Load()))
		if !sleep(ctx, backoff(try)) {
			return
		}
	}
}

// consume handles messages until the iterator fails or ctx is done.
func (t *Table) consume(ctx context.Context, it jetstream.MessagesContext) error {
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		// Next also watches ctx itself: a Stop that races with the ordered consumer
		// replacing its inner iterator (after a missed heartbeat) could leave Next
		// waiting on an iterator nobody stops.
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return err
		}
		t.handle(msg)
	}
}

// handle applies one stream message. A bad event is counted and logged, never applied,
// and never stops the loop: one bad write must not blind every resource server.
func (t *Table) handle(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		t.invalid.Add(1)
		t.log.Warn("revocation message without metadata; skipped", zap.String("subject", msg.Subject()), zap.Error(err))
		return
	}
	seq := md.Sequence.Stream
	// go-json decodes about four times faster than encoding/json, which is what keeps a
	// bootstrap of a million events within a second or so.
	ev, err := events.DecodeWith(msg.Data(), gojson.Unmarshal)
	if err == nil && ev.Subject() != msg.Subject() {
		_, _, perr := events.ParseSubject(msg.Subject())
		err = fmt.Errorf("%w: event for %s stored on %s (%v)", events.ErrInvalidEvent, ev.Subject(), msg.Subject(), perr)
	}
	// The event and its sequence are recorded in one critical section, so that
	// WriteSnapshot reads a sequence, when its event was stored and the table that holds it
	// all at once.
	applied := false
	t.writeMu.Lock()
	if err == nil {
		applied = t.applyLocked(ev)
	}
	t.lastStored = md.Timestamp.UnixNano()
	t.lastSeq.Store(seq)
	t.writeMu.Unlock()
	switch {
	case err != nil:
		t.invalid.Add(1)
		t.log.Warn("invalid revocation event; skipped", zap.Uint64("seq", seq), zap.String("subject", msg.Subject()), zap.Error(err))
	case !applied:
		t.log.Warn("revocation watermark too far in the future; held back until it is within the clock skew",
			zap.Uint64("seq", seq), zap.String("event_id", ev.ID), zap.String("subject", msg.Subject()),
			zap.Time("not_before", ev.NotBefore), zap.Duration("clock_skew", t.cfg.clockSkew))
	case t.cfg.onApply != nil:
		t.cfg.onApply(ev, seq)
	}
	if p := t.pending.Load(); p != nil && seq >= p.lastSeq {
		t.markFresh(p.sentAt)
		t.pending.CompareAndSwap(p, nil)
	}
	if md.NumPending == 0 && !t.ready.Load() {
		// Caught up with the bootstrap: ask for the confirmation that makes the table ready
		// now rather than at the next tick.
		t.askConfirmation()
	}
}

// askConfirmation wakes the freshness poller up.
func (t *Table) askConfirmation() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// markFresh records that JetStream confirmed the table as complete at sentAt, and makes the
// table ready the first time.
func (t *Table) markFresh(sentAt int64) {
	for {
		cur := t.freshAt.Load()
		if sentAt <= cur || t.freshAt.CompareAndSwap(cur, sentAt) {
			break
		}
	}
	if t.issuer != nil && !t.issuer.loaded.Load() {
		return // not ready before the keys to verify tokens with are known
	}
	if !t.ready.Load() {
		t.readyOnce.Do(func() {
			t.ready.Store(true)
			close(t.readyCh)
			s := t.Stats()
			t.log.Info("revocation table ready", zap.Int("users", s.Users), zap.Int("apps", s.Apps),
				zap.Uint64("last_seq", s.LastSequence), zap.Duration("since_start", time.Since(t.epoch)))
		})
	}
}

// pollInterval is how often the freshness poller asks where the stream ends: five times
// per maximum staleness, at most every 2s.
func (t *Table) pollInterval() time.Duration {
	return max(min(t.cfg.maxStaleness/5, 2*time.Second), 10*time.Millisecond)
}

// pollFreshness asks JetStream where the stream ends. If the table has handled that
// sequence, the table was complete when the question was sent. This needs only NATS: an
// idle stream with a healthy server keeps the table fresh.
func (t *Table) pollFreshness(ctx context.Context, stream jetstream.Stream) {
	tick := time.NewTicker(t.pollInterval())
	defer tick.Stop()
	stale := false
	for {
		sentAt, seqAtSend := t.mono(), t.lastSeq.Load()
		rctx, cancel := context.WithTimeout(ctx, max(t.cfg.maxStaleness, time.Second))
		info, err := stream.Info(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil && t.streamRewound(info, seqAtSend) {
			err = errors.New("stream rewound")
		}
		if err == nil {
			last := info.State.LastSeq
			// Without a consumer, a later event would not reach the table: not fresh.
			if t.following.Load() && t.lastSeq.Load() >= last {
				t.markFresh(sentAt)
			} else {
				// The loop has not reached the end yet; it confirms when it does.
				t.pending.Store(&confirm{sentAt: sentAt, lastSeq: last})
			}
		}
		if now := t.Staleness() > t.cfg.maxStaleness && t.ready.Load(); now != stale {
			stale = now
			if stale {
				t.log.Warn("revocation table is stale", zap.Duration("staleness", t.Staleness()),
					zap.Duration("max_staleness", t.cfg.maxStaleness), zap.Bool("fail_open", t.cfg.failOpen), zap.Error(err))
			} else {
				t.log.Info("revocation table is fresh again")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.kick:
		}
	}
}

// pruneCutoff is the oldest watermark that can still revoke a token this table would
// accept: one issued at most maxLifetime before it expires, accepted until exp + leeway, with
// one more second for whole-second iat (a token in the watermark's second counts as revoked).
func (t *Table) pruneCutoff() time.Time {
	return t.cfg.now().Add(-(t.cfg.maxLifetime + t.cfg.leeway + time.Second))
}

// pruneLoop drops watermarks older than the maximum token lifetime, every tenth of it (at
// most every minute).
func (t *Table) pruneLoop(ctx context.Context) {
	every(ctx, max(min(t.cfg.maxLifetime/10, time.Minute), 10*time.Millisecond), func() {
		if n := t.prune(t.pruneCutoff()); n > 0 {
			t.log.Debug("pruned old watermarks", zap.Int("dropped", n))
		}
	})
}

// releaseLoop applies held watermarks as they come within the clock skew, every second.
func (t *Table) releaseLoop(ctx context.Context) {
	every(ctx, time.Second, func() {
		if n := t.releaseHeld(); n > 0 {
			t.log.Info("held revocation watermarks are now within the clock skew; applied", zap.Int("applied", n))
		}
	})
}

// every calls f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f()
		}
	}
}

// streamRewound reports whether the stream is no longer the one the table follows: created
// again, or restored from a backup that ends before the table's last event. Its new events
// would get sequences the table believes it has handled, and be skipped. The follow loop
// is then told to start over from the latest event per subject, keeping every watermark it
// holds (one from the lost events still revokes what it revoked). seq is the table's last
// sequence when info was asked for: events handled since may lie beyond info's end.
func (t *Table) streamRewound(info *jetstream.StreamInfo, seq uint64) bool {
	created := info.Created.UnixNano()
	if seq == 0 || (created == t.streamCreated.Load() && info.State.LastSeq >= seq) {
		return false
	}
	if !t.rewound.Swap(true) {
		t.log.Error("the revocation stream was created again or restored: reading it again from the latest event per subject",
			zap.Uint64("table_last_seq", seq), zap.Uint64("stream_last_seq", info.State.LastSeq),
			zap.Time("stream_created", info.Created))
		t.streamCreated.Store(created)
		if stop := t.stopConsumer.Load(); stop != nil {
			(*stop)()
		}
	}
	return true
}

// restartFromTheTop makes the next consumer start from the latest event per subject. Runs
// on the follow goroutine, between consumers.
func (t *Table) restartFromTheTop() {
	t.writeMu.Lock()
	t.lastSeq.Store(0)
	t.lastStored = 0
	t.writeMu.Unlock()
}
