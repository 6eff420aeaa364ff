package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// Snapshots make a new table ready quickly when the stream holds many subjects. Reading
// the latest event of each of a million subjects through a consumer takes seconds; reading
// one object of 16 bytes per user and then the few events after it takes a fraction of
// that. The broadcaster writes the snapshot from its own table with [Table.WriteSnapshot];
// a table reads it once, when Run starts, unless [WithSnapshot](false) was given.

// snapshotLookupTimeout bounds finding the snapshot bucket. A NATS user without permission
// on it gets no error from the server, only silence; the table then bootstraps from the
// stream after this long.
const snapshotLookupTimeout = 5 * time.Second

// errSnapshotPrunes is returned by WriteSnapshot on a table that drops old watermarks.
var errSnapshotPrunes = errors.New("client: a table that prunes (WithMaxTokenLifetime) cannot write a complete snapshot")

// WriteSnapshot writes the table to w in the layout of [events.SnapshotWriter], for the
// broadcaster to store as [events.SnapshotObject] in [events.SnapshotBucket]. It returns the
// header it wrote. The table keeps following the stream meanwhile: the snapshot holds every
// event up to the header's sequence, and perhaps some later ones, which a reader applies
// again without effect.
//
// Only a ready table that does not prune ([WithMaxTokenLifetime]) can write a snapshot, so
// that a snapshot is never less than the stream: it returns [ErrNotReady] or an error.
// Watermarks held back for lying too far in the future are in the snapshot too; a reader
// holds them back in the same way.
func (t *Table) WriteSnapshot(w io.Writer) (events.SnapshotHeader, error) {
	if !t.Ready() || t.rewound.Load() {
		return events.SnapshotHeader{}, ErrNotReady
	}
	if t.cfg.maxLifetime > 0 {
		return events.SnapshotHeader{}, errSnapshotPrunes
	}
	// The sequence, the time its event was stored and the table are read together, under
	// the lock the follow loop takes to apply an event and to record its sequence. The
	// entries themselves are read after the lock: later events may raise some of them,
	// which a reader applies again without effect.
	h := events.SnapshotHeader{WrittenAt: t.cfg.now(), StreamCreated: time.Unix(0, t.streamCreated.Load())}
	t.writeMu.Lock()
	h.Seq, h.SeqStoredAt = t.lastSeq.Load(), time.Unix(0, t.lastStored)
	users, sessions, apps := t.users.Load(), t.sessions.Load(), *t.apps.Load()
	heldApps, heldUsers, heldSessions := maps.Clone(t.heldApps), maps.Clone(t.heldUsers), maps.Clone(t.heldSessions)
	h.UsersHint, h.SessionsHint = uint64(users.count), uint64(sessions.count)
	t.writeMu.Unlock()

	// An id may appear twice (held and applied); readers keep the higher watermark.
	sw := events.NewSnapshotWriter(w, h)
	for id, v := range apps {
		if err := sw.App(id, v.Load()); err != nil {
			return h, err
		}
	}
	for id, nb := range heldApps {
		if err := sw.App(id, nb); err != nil {
			return h, err
		}
	}
	if err := users.each(sw.User); err != nil {
		return h, err
	}
	for id, nb := range heldUsers {
		if err := sw.User(id, nb); err != nil {
			return h, err
		}
	}
	if err := sessions.each(sw.Session); err != nil {
		return h, err
	}
	for d, nb := range heldSessions {
		if err := sw.Session(d, nb); err != nil {
			return h, err
		}
	}
	return h, sw.Close()
}

// A snapshot download that receives nothing for snapshotStallTimeout is abandoned: when the
// broadcaster replaces the snapshot, the chunks being read are deleted, and a permission
// missing on the bucket gets no answer at all. The table then tries once more, and after
// that bootstraps from the stream. The first chunk may take longer: the consumer that
// reads the chunks is created first, which on a busy cluster takes a few seconds; without
// it (most likely no permission to read the bucket) the table does not try again.
const (
	snapshotStallTimeout = 3 * time.Second
	snapshotStartTimeout = 10 * time.Second
)

// Errors that end a download: no first chunk, or no next chunk.
var (
	errSnapshotNotStarted = errors.New("no data from the snapshot bucket (may this NATS user read it? see deployments/nats/accounts.conf)")
	errSnapshotStalled    = errors.New("the snapshot stopped arriving")
)

// loaded is a decoded snapshot, not yet installed.
type loaded struct {
	header       events.SnapshotHeader
	users        *userTable
	sessions     *userTable
	apps         appTable
	heldApps     map[string]int64
	heldUsers    map[int64]int64
	heldSessions map[int64]int64
}

// loadSnapshot installs the latest snapshot of stream, if there is one, and reports whether
// it did. The follow loop then starts after the snapshot's sequence. Anything wrong (no
// bucket, no permission, a snapshot of another stream, a damaged object) is logged and
// leaves the table as it was: the follow loop bootstraps from the stream instead, which
// gives the same table, only slower.
func (t *Table) loadSnapshot(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream) bool {
	start := time.Now()
	snap, err := t.readSnapshot(ctx, js, stream)
	if errors.Is(err, errSnapshotStalled) {
		// Most likely replaced while we read it: the new one is complete.
		snap, err = t.readSnapshot(ctx, js, stream)
	}
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrObjectNotFound):
		t.log.Info("no revocation snapshot yet; bootstrapping from the stream")
		return false
	case err != nil:
		if ctx.Err() == nil {
			t.log.Warn("revocation snapshot not used; bootstrapping from the stream",
				zap.String("bucket", events.SnapshotBucket), zap.Error(err))
		}
		return false
	}
	h := snap.header
	t.writeMu.Lock()
	t.users.Store(snap.users)
	t.sessions.Store(snap.sessions)
	t.setApps(snap.apps)
	t.heldApps, t.heldUsers, t.heldSessions = snap.heldApps, snap.heldUsers, snap.heldSessions
	t.lastStored = h.SeqStoredAt.UnixNano()
	t.lastSeq.Store(h.Seq)
	t.writeMu.Unlock()
	t.snapshotSeq.Store(h.Seq)
	t.log.Info("revocation snapshot loaded", zap.Uint64("seq", h.Seq), zap.Int("users", snap.users.count),
		zap.Int("sessions", snap.sessions.count),
		zap.Int("apps", len(snap.apps)), zap.Time("written_at", h.WrittenAt), zap.Duration("took", time.Since(start)))
	if held := len(snap.heldApps) + len(snap.heldUsers) + len(snap.heldSessions); held > 0 {
		t.log.Warn("revocation snapshot holds watermarks too far in the future; holding them back until they are within the clock skew",
			zap.Int("held", held), zap.Duration("clock_skew", t.cfg.clockSkew))
	}
	return true
}

// readSnapshot fetches the snapshot, checks that it belongs to stream, and decodes it into
// a new user table, sized for every subject of the stream, and app map.
func (t *Table) readSnapshot(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream) (*loaded, error) {
	lctx, cancel := context.WithTimeout(ctx, snapshotLookupTimeout)
	defer cancel()
	obs, err := js.ObjectStore(lctx, events.SnapshotBucket)
	if err != nil {
		return nil, err
	}
	obj, err := obs.GetInfo(lctx, events.SnapshotObject)
	if err != nil {
		return nil, err
	}
	body, err := openChunks(ctx, js, obj)
	if err != nil {
		return nil, err
	}
	defer body.close()
	r, err := events.NewSnapshotReader(body)
	if err != nil {
		return nil, err
	}
	h := r.Header()
	// The first chunk may have taken a while: a new bound for the checks.
	cancel()
	lctx, cancel = context.WithTimeout(ctx, snapshotLookupTimeout)
	defer cancel()
	info := stream.CachedInfo()
	if h.Seq > info.State.LastSeq {
		// Perhaps written after this table looked the stream up.
		if info, err = stream.Info(lctx); err != nil {
			return nil, err
		}
	}
	switch {
	case !h.StreamCreated.Equal(info.Created):
		return nil, fmt.Errorf("snapshot of a stream created at %s, this one was created at %s",
			h.StreamCreated.UTC().Format(time.RFC3339Nano), info.Created.UTC().Format(time.RFC3339Nano))
	case h.Seq > info.State.LastSeq:
		return nil, fmt.Errorf("snapshot at sequence %d, beyond the stream's last %d", h.Seq, info.State.LastSeq)
	case h.Seq > 0:
		// A stream restored from a backup keeps its creation time; once it has grown past
		// the snapshot's sequence, the event stored there is another one.
		msg, err := stream.GetMsg(lctx, h.Seq)
		if err != nil {
			return nil, fmt.Errorf("event %d of the snapshot: %w", h.Seq, err)
		}
		if !msg.Time.Equal(h.SeqStoredAt) {
			return nil, fmt.Errorf("event %d was stored at %s, the snapshot's at %s: the stream was restored or rewritten",
				h.Seq, msg.Time.UTC().Format(time.RFC3339Nano), h.SeqStoredAt.UTC().Format(time.RFC3339Nano))
		}
	}

	// Room for every subject of the stream but the snapshot's sessions in the user table
	// (events after the snapshot may be anything), and for the sessions in the other.
	users := max(int(info.State.NumSubjects)-int(min(h.SessionsHint, info.State.NumSubjects)), int(min(h.UsersHint, 1<<30)))
	snap := &loaded{header: h, users: newUserTable(users), sessions: newUserTable(int(min(h.SessionsHint, 1<<30))),
		apps: appTable{}, heldApps: map[string]int64{}, heldUsers: map[int64]int64{}, heldSessions: map[int64]int64{}}
	limit := t.heldLimit()
	err = r.Read(func(id string, nb int64) {
		if nb > limit {
			snap.heldApps[id] = max(snap.heldApps[id], nb)
			return
		}
		v, ok := snap.apps[id]
		if !ok {
			v = new(atomic.Int64)
			snap.apps[id] = v
		}
		if nb > v.Load() {
			v.Store(nb)
		}
	}, func(id, nb int64) {
		if nb > limit {
			snap.heldUsers[id] = max(snap.heldUsers[id], nb)
			return
		}
		snap.users = snap.users.grown()
		snap.users.put(id, nb)
	}, func(d, nb int64) {
		if nb > limit {
			snap.heldSessions[d] = max(snap.heldSessions[d], nb)
			return
		}
		snap.sessions = snap.sessions.grown()
		snap.sessions.put(d, nb)
	})
	if err != nil {
		return nil, err
	}
	t.held.Add(uint64(len(snap.heldApps) + len(snap.heldUsers) + len(snap.heldSessions)))
	return snap, nil
}

// chunks reads an object's chunks in order from an ordered consumer and checks their
// digest at the end. Unlike ObjectStore.Get, it gives up when no chunk comes for a while.
type chunks struct {
	ctx     context.Context
	it      jetstream.MessagesContext
	left    uint32 // chunks still to read
	started bool   // a chunk has arrived
	buf     []byte
	digest  hash.Hash
	want    []byte
}

func openChunks(ctx context.Context, js jetstream.JetStream, obj *jetstream.ObjectInfo) (*chunks, error) {
	want, err := jetstream.DecodeObjectDigest(obj.Digest)
	if err != nil {
		return nil, fmt.Errorf("snapshot digest %q: %w", obj.Digest, err)
	}
	c := &chunks{ctx: ctx, left: obj.Chunks, digest: sha256.New(), want: want}
	if c.left == 0 {
		return c, nil
	}
	cons, err := js.OrderedConsumer(ctx, "OBJ_"+events.SnapshotBucket, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$O." + events.SnapshotBucket + ".C." + obj.NUID},
		// A resource server may not delete consumers: the server drops this one soon.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	// A few chunks in flight (128 KiB each by default) keep the transfer going without
	// buffering the whole object.
	if c.it, err = cons.Messages(jetstream.PullMaxMessages(16)); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *chunks) close() {
	if c.it != nil {
		c.it.Stop()
	}
}

func (c *chunks) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.left == 0 {
			if !bytes.Equal(c.digest.Sum(nil), c.want) {
				return 0, jetstream.ErrDigestMismatch
			}
			return 0, io.EOF
		}
		wait := snapshotStartTimeout
		if c.started {
			wait = snapshotStallTimeout
		}
		ctx, cancel := context.WithTimeoutCause(c.ctx, wait, errSnapshotStalled)
		// Next may ignore its context while the ordered consumer recreates itself (after a
		// reconnect); stopping the iterator ends it.
		stop := context.AfterFunc(ctx, c.it.Stop)
		msg, err := c.it.Next(jetstream.NextContext(ctx))
		stop()
		cause := context.Cause(ctx)
		cancel()
		if err != nil {
			if errors.Is(cause, errSnapshotStalled) {
				// Stalled after the first chunk: most likely replaced under us, worth a
				// retry. No first chunk at all: most likely no permission, not worth one.
				err = errSnapshotNotStarted
				if c.started {
					err = errSnapshotStalled
				}
			}
			return 0, fmt.Errorf("snapshot: %w", err)
		}
		c.buf = msg.Data()
		c.digest.Write(c.buf)
		c.left--
		c.started = true
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}
