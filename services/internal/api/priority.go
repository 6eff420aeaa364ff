package api

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Revocations counts the revocation calls in progress, so that audit reads step aside for
// them: a replay waits at each of its pauses ([audit.Query.Yield]) until none is in flight,
// or a bounded time, whichever comes first, so audit reads always progress. The zero value
// is ready to use; [Config.Revocations] shares one with a test.
type Revocations struct {
	n       atomic.Int64
	waiting atomic.Int64
	mu      sync.Mutex
	idle    chan struct{} // closed when n drops to 0; nil while none is in flight
}

// Begin counts a revocation in flight until the returned end is called (once).
func (r *Revocations) Begin() (end func()) {
	if r.n.Add(1) == 1 {
		r.mu.Lock()
		if r.idle == nil {
			r.idle = make(chan struct{})
		}
		r.mu.Unlock()
	}
	var once sync.Once
	return func() { once.Do(r.end) }
}

func (r *Revocations) end() {
	if r.n.Add(-1) == 0 {
		r.mu.Lock()
		// Another Begin may have come in between; only the last one out closes.
		if r.n.Load() == 0 && r.idle != nil {
			close(r.idle)
			r.idle = nil
		}
		r.mu.Unlock()
	}
}

// InFlight is the number of revocation calls in progress.
func (r *Revocations) InFlight() int { return int(r.n.Load()) }

// Waiting is the number of audit reads that wait for revocations to end.
func (r *Revocations) Waiting() int { return int(r.waiting.Load()) }

// Wait returns once no revocation is in flight, after at most most, or when ctx is done.
// With none in flight it returns at once, without a lock.
func (r *Revocations) Wait(ctx context.Context, most time.Duration) {
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	idle := r.idle
	r.mu.Unlock()
	if idle == nil {
		return
	}
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	t := time.NewTimer(most)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-ctx.Done():
	}
}
