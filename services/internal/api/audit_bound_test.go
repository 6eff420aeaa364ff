package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/services/internal/api"
	"github.com/revocast/revocast/services/internal/audit"
)

// realReplay is the fixture's replay, for tests that wrap it: the fixture's NATS exists only
// once the fixture does, so the wrapper reads it from here.
type realReplay struct {
	mu sync.Mutex
	js jetstream.JetStream
}

func (r *realReplay) set(f *fixture) {
	js, err := jetstream.New(f.nats.Connect())
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	r.js = js
	r.mu.Unlock()
}

func (r *realReplay) replay(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error) {
	r.mu.Lock()
	js := r.js
	r.mu.Unlock()
	return audit.Replay(ctx, js, q, emit)
}

// TestAuditConcurrencyIsBounded: past AuditConcurrency reads in progress, GET /v1/audit
// answers 429 with Retry-After at once, after the key check (a caller without a valid key
// gets its 401 and never takes a slot), and a finished read frees its slot.
func TestAuditConcurrencyIsBounded(t *testing.T) {
	const slots = 2
	var (
		real    realReplay
		held    atomic.Int32
		entered = make(chan struct{}, slots)
		release = make(chan struct{})
	)
	f := newFixture(t, api.Config{
		AuditConcurrency: slots,
		Replay: func(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error) {
			if held.Add(1) <= slots { // the first reads hold their slots until released
				entered <- struct{}{}
				<-release
			}
			return real.replay(ctx, q, emit)
		},
	})
	real.set(f)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the fixture's own cleanup, which waits for calls in flight
	admin := map[string]string{"X-API-Key": f.adminKey}
	if r := f.do(t, "POST", "/v2/users/reset/1", admin, ""); r.status != 200 {
		t.Fatalf("reset: %d %s", r.status, r.raw)
	}

	results := make(chan int, slots) // status codes; -1 when the call failed
	for range slots {
		go func() {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", f.url+"/v1/audit", nil)
			req.Header.Set("X-API-Key", f.adminKey)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- -1
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			results <- res.StatusCode
		}()
	}
	for range slots {
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the first audit reads did not start within 30s")
		}
	}

	r := f.do(t, "GET", "/v1/audit", admin, "")
	if r.status != 429 || r.body["success"] != false {
		t.Fatalf("audit read past the limit: %d %s, want 429", r.status, r.raw)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
	if msg, _ := r.body["message"].(string); !strings.Contains(msg, "busy") || !strings.Contains(msg, "retry") {
		t.Fatalf("message %q, want one that says the audit log is busy and to retry", msg)
	}
	// The key is checked before a slot is wanted: no key is a 401, not a 429.
	if r := f.do(t, "GET", "/v1/audit", map[string]string{"X-API-Key": "rvca_000000000000_nope"}, ""); r.status != 401 {
		t.Fatalf("wrong key while the audit log is busy: %d %s, want 401", r.status, r.raw)
	}
	// Revocations do not wait for audit slots.
	if r := f.do(t, "POST", "/v2/users/reset/2", admin, ""); r.status != 200 {
		t.Fatalf("reset while the audit log is busy: %d %s", r.status, r.raw)
	}

	free()
	for range slots {
		select {
		case status := <-results:
			if status != 200 {
				t.Fatalf("held audit read: %d, want 200", status)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("held audit reads did not finish within 30s of release")
		}
	}
	if r := f.do(t, "GET", "/v1/audit", admin, ""); r.status != 200 {
		t.Fatalf("audit read after the others finished: %d %s", r.status, r.raw)
	}
}

// TestAuditPageBoundedInBytes: a page stops at AuditPageBytes of events, says more=true and
// where to go on, and following the pages returns every event once, in order, in the
// documented shape.
func TestAuditPageBoundedInBytes(t *testing.T) {
	const pageBytes = 2048
	f := newFixture(t, api.Config{AuditPageBytes: pageBytes})
	admin := map[string]string{"X-API-Key": f.adminKey}
	const n = 20
	for i := 1; i <= n; i++ {
		r := f.do(t, "POST", "/v2/users/reset/"+strconv.Itoa(i), admin, `{"reason":"`+strings.Repeat("x", 200)+`"}`)
		if r.status != 200 {
			t.Fatalf("reset %d: %d %s", i, r.status, r.raw)
		}
	}
	type page struct {
		Success bool `json:"success"`
		Data    struct {
			Events []struct {
				Seq    uint64 `json:"seq"`
				UserID string `json:"user_id"`
			} `json:"events"`
			NextAfterSeq uint64 `json:"next_after_seq"`
			More         bool   `json:"more"`
		} `json:"data"`
	}
	var seen []uint64
	after := uint64(0)
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatalf("more than %d pages for %d events", n, n)
		}
		r := f.do(t, "GET", "/v1/audit?limit=1000&after_seq="+strconv.FormatUint(after, 10), admin, "")
		if r.status != 200 {
			t.Fatalf("page after %d: %d %s", after, r.status, r.raw)
		}
		var p page
		if err := json.Unmarshal([]byte(r.raw), &p); err != nil || !p.Success {
			t.Fatalf("page after %d: %v %s", after, err, r.raw)
		}
		if len(p.Data.Events) == 0 {
			t.Fatalf("page after %d is empty: %s", after, r.raw)
		}
		// One event more than fits is never sent; one event alone always is.
		if events := len(r.raw); len(p.Data.Events) > 1 && events > pageBytes+512 {
			t.Fatalf("page of %d bytes with %d events, bound %d", events, len(p.Data.Events), pageBytes)
		}
		for _, e := range p.Data.Events {
			seen = append(seen, e.Seq)
		}
		if p.Data.NextAfterSeq != p.Data.Events[len(p.Data.Events)-1].Seq {
			t.Fatalf("next_after_seq %d, last event %d", p.Data.NextAfterSeq, p.Data.Events[len(p.Data.Events)-1].Seq)
		}
		after = p.Data.NextAfterSeq
		if !p.Data.More {
			if pages == 0 {
				t.Fatalf("%d events of about 400 bytes came in one page with a %d-byte bound", len(p.Data.Events), pageBytes)
			}
			break
		}
	}
	if len(seen) != n {
		t.Fatalf("pages returned %d events, want %d: %v", len(seen), n, seen)
	}
	for i, seq := range seen {
		if seq != uint64(i+1) {
			t.Fatalf("events out of order or repeated: %v", seen)
		}
	}
}

// TestAuditReadWaitsForASlot: a read past the limit waits for a slot (up to AuditQueueWait)
// instead of being refused at once, so clients that call again at once cannot spin the
// server on refusals; it is served when a slot frees in time.
func TestAuditReadWaitsForASlot(t *testing.T) {
	var (
		real    realReplay
		held    atomic.Int32
		entered = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	f := newFixture(t, api.Config{
		AuditConcurrency: 1,
		AuditQueueWait:   time.Minute, // the test frees the slot; the bound only caps a failure
		Replay: func(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error) {
			if held.Add(1) == 1 {
				entered <- struct{}{}
				<-release
			}
			return real.replay(ctx, q, emit)
		},
	})
	real.set(f)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	admin := map[string]string{"X-API-Key": f.adminKey}
	first := make(chan int, 1)
	go func() { first <- f.do(t, "GET", "/v1/audit", admin, "").status }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first audit read did not start within 30s")
	}
	second := make(chan int, 1)
	go func() { second <- f.do(t, "GET", "/v1/audit", admin, "").status }()
	// Wait until the second read is queued (the metric says so), then free the slot.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if strings.Contains(f.do(t, "GET", "/metrics", nil, "").raw, "revocast_audit_reads_waiting 1") {
			break
		}
		select {
		case code := <-second:
			t.Fatalf("the read past the limit answered %d at once, want it to wait for the slot", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the second audit read never waited for a slot")
		}
		time.Sleep(5 * time.Millisecond) // bounded poll
	}
	free()
	for name, ch := range map[string]chan int{"first": first, "second": second} {
		select {
		case code := <-ch:
			if code != 200 {
				t.Fatalf("%s audit read: %d, want 200", name, code)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s audit read did not finish", name)
		}
	}
}
