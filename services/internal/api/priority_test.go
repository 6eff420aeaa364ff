package api_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revocast/revocast/services/internal/api"
	"github.com/revocast/revocast/services/internal/audit"
)

func TestRevocationsWait(t *testing.T) {
	var r api.Revocations
	r.Wait(t.Context(), time.Hour) // none in flight: at once
	end1, end2 := r.Begin(), r.Begin()
	done := make(chan struct{})
	go func() { r.Wait(t.Context(), time.Hour); close(done) }()
	waitUntil(t, "a read waits", func() bool { return r.Waiting() == 1 })
	end1()
	end1() // a second call does nothing
	if got := r.InFlight(); got != 1 {
		t.Fatalf("InFlight = %d, want 1", got)
	}
	select {
	case <-done:
		t.Fatal("Wait returned with a revocation still in flight")
	default:
	}
	end2()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return when the last revocation ended")
	}
	end := r.Begin()
	defer end()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r.Wait(ctx, time.Hour)                // a done context: at once
	r.Wait(t.Context(), time.Millisecond) // past its bound: returns
}

// waitUntil polls cond every millisecond for at most 30s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		<-tick.C
	}
}

// pausingFixture stores n events and returns a fixture whose audit replays report, at each
// pause, how many events they had emitted, and after it, how many revocations were still
// in flight.
func pausingFixture(t *testing.T, n int, cfg api.Config) (f *fixture, at, after <-chan int) {
	t.Helper()
	var real realReplay
	atc, afterc := make(chan int, n), make(chan int, n)
	cfg.Replay = func(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error) {
		var emitted atomic.Int64
		if yield := q.Yield; yield != nil {
			q.Yield = func(ctx context.Context) {
				atc <- int(emitted.Load())
				yield(ctx)
				afterc <- cfg.Revocations.InFlight()
			}
		}
		return real.replay(ctx, q, func(r audit.Record) error { emitted.Add(1); return emit(r) })
	}
	f = newFixture(t, cfg)
	real.set(f)
	admin := map[string]string{"X-API-Key": f.adminKey}
	for i := 1; i <= n; i++ {
		if r := f.do(t, "POST", "/v2/users/reset/"+strconv.Itoa(i), admin, ""); r.status != 200 {
			t.Fatalf("reset %d: %d %s", i, r.status, r.raw)
		}
	}
	return f, atc, afterc
}

func (f *fixture) auditAll(t *testing.T) <-chan int {
	out := make(chan int, 1)
	go func() {
		r := f.do(t, "GET", "/v1/audit?limit=1000", map[string]string{"X-API-Key": f.adminKey}, "")
		var p struct {
			Data struct {
				Events []json.RawMessage `json:"events"`
			} `json:"data"`
		}
		if r.status != 200 || json.Unmarshal([]byte(r.raw), &p) != nil {
			t.Errorf("audit: %d %s", r.status, r.raw)
			out <- -1
			return
		}
		out <- len(p.Data.Events)
	}()
	return out
}

// TestAuditStepsAsideForRevocations: while a revocation is in flight, an audit read stops
// at the end of a batch of events and reads on only once the revocation is done.
func TestAuditStepsAsideForRevocations(t *testing.T) {
	const n = 2*audit.YieldEvery + 10
	revocations := new(api.Revocations)
	f, at, after := pausingFixture(t, n, api.Config{Revocations: revocations, AuditYieldWait: time.Hour})
	end := revocations.Begin() // a revocation in flight
	t.Cleanup(end)
	result := f.auditAll(t)
	waitUntil(t, "the audit read waits", func() bool { return revocations.Waiting() == 1 })
	if got := <-at; got != audit.YieldEvery {
		t.Fatalf("the read paused after %d events, want %d", got, audit.YieldEvery)
	}
	select {
	case got := <-result:
		t.Fatalf("the read returned %d events while a revocation was in flight", got)
	default:
	}
	end()
	if got := <-after; got != 0 {
		t.Fatalf("the read went on with %d revocations in flight", got)
	}
	select {
	case got := <-result:
		if got != n {
			t.Fatalf("the read returned %d events, want %d", got, n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read did not finish within 30s of the revocation's end")
	}
}

// TestAuditProgressesUnderRevocations: revocations in flight all the time only slow an
// audit read by the bounded wait at each pause; it still returns every event.
func TestAuditProgressesUnderRevocations(t *testing.T) {
	const n = 2*audit.YieldEvery + 10
	revocations := new(api.Revocations)
	f, at, after := pausingFixture(t, n, api.Config{Revocations: revocations, AuditYieldWait: time.Millisecond})
	end := revocations.Begin()
	t.Cleanup(end)
	select {
	case got := <-f.auditAll(t):
		if got != n {
			t.Fatalf("the read returned %d events, want %d", got, n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read did not finish within 30s")
	}
	// The read is over: its pauses have all been reported.
	for _, want := range []int{audit.YieldEvery, 2 * audit.YieldEvery} {
		if len(at) == 0 || len(after) == 0 {
			t.Fatalf("no pause after %d events", want)
		}
		if got, inFlight := <-at, <-after; got != want || inFlight != 1 {
			t.Fatalf("paused after %d events with %d revocations in flight, want %d with 1", got, inFlight, want)
		}
	}
}
