package client

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// snapshotReadTimeout bounds reading the snapshot itself (16 bytes per user).
const snapshotReadTimeout = time.Minute

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
// Events refused for a watermark too far in the future are not in the snapshot, as they
// are not in the table.
func (t *Table) WriteSnapshot(w io.Writer) (events.SnapshotHeader, error) {
	if !t.Ready() {
		return events.SnapshotHeader{}, ErrNotReady
	}
	if t.cfg.maxLifetime > 0 {
		return events.SnapshotHeader{}, errSnapshotPrunes
	}
	// The sequence is read before the table: every event up to it has been applied to the
	// generation loaded below (or to an older one it was copied from).
	h := events.SnapshotHeader{
		Seq:           t.lastSeq.Load(),
		StreamCreated: time.Unix(0, t.streamCreated.Load()),
		WrittenAt:     t.cfg.now(),
	}
	t.writeMu.Lock()
	users, apps := t.users.Load(), *t.apps.Load()
	h.UsersHint = uint64(users.count)
	t.writeMu.Unlock()

	sw := events.NewSnapshotWriter(w, h)
	for id, v := range apps {
		if err := sw.App(id, v.Load()); err != nil {
			return h, err
		}
	}
	for i := range users.slots {
		s := &users.slots[i]
		if id := s.key.Load(); id != 0 {
			if err := sw.User(id, s.nb.Load()); err != nil {
				return h, err
			}
		}
	}
	return h, sw.Close()
}

// loadSnapshot installs the latest snapshot of the stream described by info, if there is
// one, and reports whether it did. The follow loop then starts after the snapshot's
// sequence. Anything wrong (no bucket, no permission, a snapshot of another stream, a
// damaged object) is logged and leaves the table as it was: the follow loop bootstraps from
// the stream instead, which gives the same table, only slower.
func (t *Table) loadSnapshot(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo) bool {
	start := time.Now()
	h, users, apps, err := t.readSnapshot(ctx, js, info)
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
	t.writeMu.Lock()
	t.users.Store(users)
	t.apps.Store(&apps)
	t.writeMu.Unlock()
	t.lastSeq.Store(h.Seq)
	t.snapshotSeq.Store(h.Seq)
	t.log.Info("revocation snapshot loaded", zap.Uint64("seq", h.Seq), zap.Int("users", users.count),
		zap.Int("apps", len(apps)), zap.Time("written_at", h.WrittenAt), zap.Duration("took", time.Since(start)))
	return true
}

// readSnapshot fetches and decodes the snapshot into a new user table and app map, sized
// for every subject of the stream.
func (t *Table) readSnapshot(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo) (events.SnapshotHeader, *userTable, appTable, error) {
	var h events.SnapshotHeader
	lctx, cancel := context.WithTimeout(ctx, snapshotLookupTimeout)
	obs, err := js.ObjectStore(lctx, events.SnapshotBucket)
	cancel()
	if err != nil {
		return h, nil, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, snapshotReadTimeout)
	defer cancel()
	obj, err := obs.Get(rctx, events.SnapshotObject)
	if err != nil {
		return h, nil, nil, err
	}
	defer obj.Close()
	r, err := events.NewSnapshotReader(obj)
	if err != nil {
		return h, nil, nil, err
	}
	h = r.Header()
	switch {
	case !h.StreamCreated.Equal(info.Created):
		return h, nil, nil, fmt.Errorf("snapshot of a stream created at %s, this one was created at %s",
			h.StreamCreated.UTC().Format(time.RFC3339Nano), info.Created.UTC().Format(time.RFC3339Nano))
	case h.Seq > info.State.LastSeq:
		return h, nil, nil, fmt.Errorf("snapshot at sequence %d, beyond the stream's last %d", h.Seq, info.State.LastSeq)
	}

	users := newUserTable(int(info.State.NumSubjects))
	apps := appTable{}
	limit := t.cfg.now().Add(t.cfg.clockSkew).UnixNano()
	var refused uint64
	err = r.Read(func(id string, nb int64) {
		if nb > limit {
			refused++
			return
		}
		v, ok := apps[id]
		if !ok {
			v = new(atomic.Int64)
			apps[id] = v
		}
		if nb > v.Load() {
			v.Store(nb)
		}
	}, func(id, nb int64) {
		if nb > limit {
			refused++
			return
		}
		if users.full() {
			users = users.rebuilt(2*users.count+1, 0)
		}
		users.put(id, nb)
	})
	if err != nil {
		return h, nil, nil, err
	}
	if refused > 0 {
		// As for events: a watermark too far in the future would lock users out.
		t.refused.Add(refused)
		t.log.Warn("revocation snapshot holds watermarks too far in the future; refused them",
			zap.Uint64("refused", refused), zap.Duration("clock_skew", t.cfg.clockSkew))
	}
	return h, users, apps, nil
}
