// Package snapshot keeps the revocation snapshot current: revocastd writes its own
// revocation table to the snapshot bucket (events.SnapshotBucket) whenever events have come
// since the last snapshot, so that a new client reads one object and the few events after it
// instead of the latest event of every subject.
//
// Several revocastd replicas may run at once. Each looks at the stored snapshot first and
// writes only when its table is further along, so they rarely write the same thing twice;
// when they do, the later write simply replaces the earlier one.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
)

// TTL is how long the bucket keeps a message. The writer rewrites the snapshot well within
// it ([refreshAfter]) even when nothing happens; the TTL only clears what a writer killed in
// the middle of a snapshot leaves behind. If no revocastd runs for longer, clients find no
// snapshot and bootstrap from the stream, which is slower but gives the same table.
const TTL = 24 * time.Hour

// refreshAfter is the age at which a snapshot is written again even without new events.
const refreshAfter = TTL / 4

// metaSeq is the object metadata key that holds the snapshot's stream sequence (a lower
// bound: the header inside has the exact one), so that a writer can compare without
// reading the object.
const metaSeq = "seq"

// Table is what a snapshot is written from: revocastd's client.Table.
type Table interface {
	WriteSnapshot(w io.Writer) (events.SnapshotHeader, error)
	Stats() client.Stats
}

// Writer writes snapshots of one table to the snapshot bucket. It is not safe for
// concurrent use: one goroutine runs [Writer.Run].
type Writer struct {
	js       jetstream.JetStream
	replicas int
	table    Table
	log      *zap.Logger
	obs      jetstream.ObjectStore // nil until the bucket is open
	failing  string                // the last error logged, to log each new one once
}

// New returns a writer. It opens (and creates) the bucket when it first writes, so that a
// NATS user without permission on it costs the snapshots, not the service.
func New(js jetstream.JetStream, replicas int, table Table, log *zap.Logger) *Writer {
	return &Writer{js: js, replicas: replicas, table: table, log: log}
}

// bucket creates the snapshot bucket, or updates its configuration, once.
func (w *Writer) bucket(ctx context.Context) (jetstream.ObjectStore, error) {
	if w.obs != nil {
		return w.obs, nil
	}
	obs, err := w.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      events.SnapshotBucket,
		Description: "revocast: the revocation table at a stream sequence, for clients to start from",
		TTL:         TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    w.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot bucket %s (the NATS user needs the permissions in deployments/nats/accounts.conf): %w", events.SnapshotBucket, err)
	}
	w.obs = obs
	return obs, nil
}

// Run writes a snapshot when the table has moved past the stored one, checking at once and
// then every interval, until ctx is done. Failures are logged (each new one once) and tried
// again at the next interval: without a current snapshot clients are only slower to start.
func (w *Writer) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		info, err := w.WriteIfBehind(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, client.ErrNotReady):
			// The table is still bootstrapping; next time.
		case err != nil:
			if err.Error() != w.failing {
				w.failing = err.Error()
				w.log.Warn("revocation snapshot not written; trying again every interval", zap.Duration("interval", interval), zap.Error(err))
			}
		default:
			if w.failing != "" {
				w.failing = ""
				w.log.Info("revocation snapshots work again")
			}
			if info != nil {
				w.log.Debug("revocation snapshot stored", zap.String("seq", info.Metadata[metaSeq]),
					zap.Uint64("bytes", info.Size), zap.Uint32("chunks", info.Chunks))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// WriteIfBehind writes a snapshot when the stored one is older than the table, or older than
// refreshAfter. It returns the new object's info, or nil when nothing was due.
func (w *Writer) WriteIfBehind(ctx context.Context) (*jetstream.ObjectInfo, error) {
	obs, err := w.bucket(ctx)
	if err != nil {
		return nil, err
	}
	st := w.table.Stats()
	if !st.Ready {
		return nil, client.ErrNotReady
	}
	seq := st.LastSequence
	if seq == 0 {
		return nil, nil // an empty stream needs no snapshot
	}
	stored, err := obs.GetInfo(ctx, events.SnapshotObject)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case err != nil:
		return nil, err
	default:
		storedSeq, _ := strconv.ParseUint(stored.Metadata[metaSeq], 10, 64)
		if storedSeq >= seq && time.Since(stored.ModTime) < refreshAfter {
			return nil, nil
		}
	}
	return w.Write(ctx)
}

// Write writes a snapshot of the table now, streaming it into the bucket.
func (w *Writer) Write(ctx context.Context) (*jetstream.ObjectInfo, error) {
	obs, err := w.bucket(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	// The snapshot's own sequence is read when the table is, and is at least this one.
	// Put writes the metadata after the content, but takes it before.
	seq := w.table.Stats().LastSequence
	pr, pw := io.Pipe()
	written := make(chan events.SnapshotHeader, 1)
	go func() {
		h, err := w.table.WriteSnapshot(pw)
		written <- h
		pw.CloseWithError(err) // nil: Put reads to EOF
	}()
	info, err := obs.Put(ctx, jetstream.ObjectMeta{
		Name:        events.SnapshotObject,
		Description: "revocation table snapshot",
		Metadata:    map[string]string{metaSeq: strconv.FormatUint(seq, 10)},
	}, pr)
	// If Put gave up early, this unblocks the table's writer. (Put deletes the chunks it
	// wrote when it fails, except when ctx is already done: the bucket's TTL clears those.)
	pr.CloseWithError(errors.New("snapshot upload ended"))
	h := <-written
	if err != nil {
		return nil, err
	}
	w.log.Info("revocation snapshot written", zap.Uint64("seq", h.Seq), zap.Uint64("users", h.UsersHint),
		zap.Uint64("bytes", info.Size), zap.Duration("took", time.Since(start)))
	return info, nil
}
