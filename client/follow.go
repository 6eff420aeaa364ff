package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
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
	wg.Go(func() { t.renewOnReconnect(ctx) })
	if !t.cfg.fleet.off {
		wg.Go(func() { t.reportLoop(ctx) })
	}
	t.follow(ctx, js)
	cancel()
	wg.Wait()
	return nil
}

// renewOnReconnect ends the current consumer as soon as the connection is back, so follow
// creates a new one at once. A NATS restart loses the table's in-memory consumer; without
// this the table noticed only after two missed heartbeats (2 s), and a revocation sent
// right after the restart waited that long to be enforced.
func (t *Table) renewOnReconnect(ctx context.Context) {
	ch := t.nc.StatusChanged(nats.CONNECTED)
	defer t.nc.RemoveStatusListener(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			if stop := t.stopConsumer.Load(); stop != nil {
				(*stop)()
			}
		}
	}
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

// Consumer settings. The table runs its own ordered consumer rather than nats.go's: that
// one retries the creation of a lost consumer under the same name without end, and after
// a node crashes that name can stay assigned to the dead node (a crashed peer counts as
// online until orphan detection, minutes later), so the table would never follow again.
const (
	// consumerCreateTimeout bounds one attempt at creating a consumer. An attempt placed
	// on a node that just died gets no answer; the next one, under a new name, is placed
	// on a live node (the meta leader prefers peers that answered it in the last seconds).
	consumerCreateTimeout = 2 * time.Second
	// consumerHeartbeat is how often an idle consumer says it is alive; two missed
	// heartbeats (its node died, or the connection moved to a node that cannot reach it)
	// and the table makes a new consumer.
	consumerHeartbeat = time.Second
	// consumerInactiveThreshold is how long JetStream keeps a consumer nobody pulls from:
	// the ones a table left behind (the resource role may not delete consumers) go away
	// by themselves.
	consumerInactiveThreshold = time.Minute
)

// errDeliveryGap means the consumer skipped a message: the table starts a new one after
// the last event it handled.
var errDeliveryGap = errors.New("client: gap in the consumer's deliveries")

// follow consumes the stream, one ephemeral consumer at a time: each starts after the last
// event the table handled (or, the first time, at the latest event per subject), and
// whenever one fails (a missed heartbeat, a gap, a deleted consumer, a lost node) follow
// creates another under a new name, on whichever node JetStream places it.
func (t *Table) follow(ctx context.Context, js jetstream.JetStream) {
	prefix := rand.Text()[:16]
	for serial, try := 1, 0; ctx.Err() == nil; serial++ {
		if t.rewound.Swap(false) {
			t.restartFromTheTop()
		}
		started, err := t.followConsumer(ctx, js, prefix+"_"+strconv.Itoa(serial), try)
		if ctx.Err() != nil {
			return
		}
		if started {
			try = 0
		}
		if try == 0 || try%10 == 0 {
			t.log.Warn("revocation consumer failed; creating a new one", zap.Error(err), zap.Uint64("last_seq", t.lastSeq.Load()), zap.Int("attempt", try+1))
		}
		if !sleep(ctx, backoff(try)) {
			return
		}
		try++
	}
}

// followConsumer creates one consumer and applies what it delivers until it fails or ctx
// is done. It reports whether the consumer delivered (or was ready to deliver) at all.
//
// failures is how many attempts in a row failed before this one: after a failure the
// create may take twice as long, so a machine too slow for the first bound still gets its
// consumer. No more than twice: a create sent during a leader election is lost, not late,
// and a longer bound would only delay the next try (the SIGKILL failover test saw tables go
// stale with 8 times).
func (t *Table) followConsumer(ctx context.Context, js jetstream.JetStream, name string, failures int) (bool, error) {
	cfg := jetstream.ConsumerConfig{
		Name:              name,
		FilterSubject:     events.StreamSubjects,
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: consumerInactiveThreshold,
	}
	if seq := t.lastSeq.Load(); seq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = seq + 1
	}
	cctx, cancel := context.WithTimeout(ctx, consumerCreateTimeout<<min(failures, 1))
	cons, err := js.CreateConsumer(cctx, events.StreamName, cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("create consumer %s: %w", name, err)
	}
	// Pulls expire after 10s rather than the default 30s; missed heartbeats are errors.
	it, err := cons.Messages(jetstream.PullMaxMessages(t.cfg.pullBatchSize), jetstream.PullExpiry(10*time.Second),
		jetstream.PullHeartbeat(consumerHeartbeat), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return false, fmt.Errorf("consumer %s: %w", name, err)
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	t.stopConsumer.Store(&stop)
	// A replaced stream noticed while this consumer was being created stopped the one
	// before it, not this one (streamRewound sets the flag before it reads stopConsumer):
	// stop this one too, or it would wait for sequences the new stream will not reach soon.
	if t.rewound.Load() {
		stop()
	}
	t.following.Store(true)
	t.askConfirmation()
	err = t.consume(cctx, it)
	t.following.Store(false)
	return true, fmt.Errorf("consumer %s: %w", name, err)
}

// consume handles messages until the iterator fails, the consumer skips a message, or ctx
// is done.
func (t *Table) consume(ctx context.Context, it jetstream.MessagesContext) error {
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for want := uint64(1); ; want++ {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return err
		}
		md, err := msg.Metadata()
		if err != nil {
			t.invalid.Add(1)
			t.log.Warn("revocation message without metadata; skipped", zap.String("subject", msg.Subject()), zap.Error(err))
			continue
		}
		if md.Sequence.Consumer != want {
			return fmt.Errorf("%w: delivery %d, want %d", errDeliveryGap, md.Sequence.Consumer, want)
		}
		t.handle(msg, md)
	}
}

// handle applies one stream message. A bad event is counted and logged, never applied,
// and never stops the loop: one bad write must not blind every resource server.
func (t *Table) handle(msg jetstream.Msg, md *jetstream.MsgMetadata) {
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
	if md.NumPending == 0 {
		t.appliedNow() // fleet report: caught up with what was delivered
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

// pollTimeout bounds one question to JetStream: an eighth of the maximum staleness, between
// 1s and 2s. A question lost in a leader election (which takes up to about 10s after a
// crash) must not use up the staleness budget waiting: it is asked again instead. After a
// failed question the next gets twice the bound (at most a third of the maximum staleness),
// so a machine too busy to answer within the first bound is still heard; no more than
// twice, since a question sent during an election is lost, not late.
func (t *Table) pollTimeout(failures int) time.Duration {
	base := min(max(t.cfg.maxStaleness/8, time.Second), 2*time.Second)
	return max(min(base<<min(failures, 1), t.cfg.maxStaleness/3), base)
}

// pollRetry is the pause before asking again after a question failed.
const pollRetry = 200 * time.Millisecond

// pollFreshness asks JetStream where the stream ends. If the table has handled that
// sequence, the table was complete when the question was sent. This needs only NATS: an
// idle stream with a healthy server keeps the table fresh.
func (t *Table) pollFreshness(ctx context.Context, stream jetstream.Stream) {
	tick := time.NewTicker(t.pollInterval())
	defer tick.Stop()
	stale := false
	for failures := 0; ; {
		sentAt, seqAtSend := t.mono(), t.lastSeq.Load()
		rctx, cancel := context.WithTimeout(ctx, t.pollTimeout(failures))
		info, err := stream.Info(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
		} else {
			failures = 0
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
		var retry <-chan time.Time
		if err != nil {
			retry = time.After(pollRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.kick:
		case <-retry:
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
