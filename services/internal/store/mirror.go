package store

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// mirror is a copy in memory of a KV bucket of credentials, kept current by a watcher, so
// that checking a valid credential needs no round trip to JetStream. It is trusted only
// once the watcher has delivered every value stored when it started; before that, and after
// the watcher stops, lookups miss and the caller reads the bucket.
type mirror[T any] struct {
	mu      sync.RWMutex
	ready   bool
	stopped bool
	m       map[string]T
}

// get returns the mirrored value of key; ok is false when the mirror is not ready or holds
// no such key.
func (c *mirror[T]) get(key string) (v T, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.ready {
		return v, false
	}
	v, ok = c.m[key]
	return v, ok
}

// find returns a mirrored value for which match is true; ok is false when the mirror is
// not ready or holds none.
func (c *mirror[T]) find(match func(T) bool) (v T, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.ready {
		return v, false
	}
	for _, v := range c.m {
		if match(v) {
			return v, true
		}
	}
	return v, false
}

// stop makes the mirror miss from now on.
func (c *mirror[T]) stop() {
	c.mu.Lock()
	c.ready, c.stopped, c.m = false, true, nil
	c.mu.Unlock()
}

// follow applies the watcher's updates until it stops, then leaves the mirror stopped.
func (c *mirror[T]) follow(w jetstream.KeyWatcher) {
	defer c.stop()
	for e := range w.Updates() {
		c.mu.Lock()
		switch {
		case c.stopped:
		case e == nil: // every value stored at the start has been delivered
			c.ready = true
		case e.Operation() == jetstream.KeyValuePut:
			var v T
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				delete(c.m, e.Key()) // unreadable: the bucket read decides
				break
			}
			if c.m == nil {
				c.m = make(map[string]T)
			}
			c.m[e.Key()] = v
		default: // deleted or purged
			delete(c.m, e.Key())
		}
		c.mu.Unlock()
	}
}

// WatchCredentials keeps a copy of the admin keys and apps in memory, so that checking a
// valid key, root key or app credential is a hash compare with no round trip to JetStream
// (audit reads refused with 429 still check their key first, and a flood of them would
// otherwise be a flood of reads on the connection that publishes revocations). A rotated
// or deleted credential stops working as soon as the watcher delivers the change. A
// credential the copy does not hold or does not match is checked against the bucket, so a
// key created or rotated a moment ago works at once, and unknown and wrong keys still cost
// the same. Call stop to end the watch: the store reads the buckets again from then on.
func (s *Store) WatchCredentials(ctx context.Context) (stop func(), err error) {
	keys, err := s.keys.WatchAll(ctx)
	if err != nil {
		return nil, kvErr("watch keys", err)
	}
	apps, err := s.apps.WatchAll(ctx)
	if err != nil {
		_ = keys.Stop()
		return nil, kvErr("watch apps", err)
	}
	go s.keyMirror.follow(keys)
	go s.appMirror.follow(apps)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.keyMirror.stop()
			s.appMirror.stop()
			// Unsubscribing asks the server to delete the watchers' consumers, which waits
			// out a timeout when the server is gone; the followers end when it is done.
			go func() { _ = keys.Stop() }()
			go func() { _ = apps.Stop() }()
		})
	}, nil
}
