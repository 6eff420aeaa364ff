package fleet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func report(tb testing.TB, f *Fleet, id string, seq uint64) {
	tb.Helper()
	b, err := events.EncodeReport(events.Report{Version: events.ReportVersion, Instance: id, Service: "svc", Seq: seq, Ready: true, IntervalMS: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	f.Handle(events.ReportSubject(id), b)
}

func TestFleetLiveLagAndLeave(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	f := New(nil, c.now)
	report(t, f, "a", 5)
	report(t, f, "b", 5)
	f.Observe(6)
	c.add(250 * time.Millisecond)
	f.Handle(events.AppliedSubject("a"), events.EncodeApplied(6))
	ins := f.Instances()
	if len(ins) != 2 || ins[0].ID != "a" || ins[0].LagEvents != 0 || ins[1].LagEvents != 1 || ins[1].LagMS != 250 {
		t.Fatalf("Instances = %+v", ins)
	}
	// b stops reporting: gone after 3 intervals, not before.
	c.add(2 * time.Second)
	report(t, f, "a", 6)
	if n := len(f.Instances()); n != 2 {
		t.Fatalf("after 2.25 intervals: %d instances, want 2", n)
	}
	c.add(time.Second)
	if ins := f.Instances(); len(ins) != 1 || ins[0].ID != "a" {
		t.Fatalf("after 3.25 intervals: %+v, want a alone", ins)
	}
}

func TestFleetIgnoresMalformedReports(t *testing.T) {
	f := New(nil, nil)
	f.Handle(events.ReportSubject("a"), []byte(`{"v":1,"instance":"b","interval_ms":1000}`)) // another's subject
	f.Handle(events.ReportSubject("a"), []byte(`garbage`))
	f.Handle(events.AppliedSubject("a"), []byte(`x`))
	f.Handle(events.AppliedSubject("zz"), events.EncodeApplied(3)) // unknown instance: not a member
	if n := len(f.Instances()); n != 0 || f.Invalid() != 3 {
		t.Fatalf("instances %d, invalid %d; want 0, 3", n, f.Invalid())
	}
}

func TestWait(t *testing.T) {
	f := New(nil, nil)
	report(t, f, "a", 1)
	report(t, f, "b", 1)
	done := make(chan Confirmation)
	go func() { done <- f.Wait(context.Background(), 2) }()
	f.Handle(events.AppliedSubject("a"), events.EncodeApplied(2))
	f.Handle(events.AppliedSubject("b"), events.EncodeApplied(2))
	if c := <-done; !c.Complete() || c.Applied != 2 || c.Live != 2 {
		t.Fatalf("Wait = %+v, want 2/2", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	f.Handle(events.AppliedSubject("a"), events.EncodeApplied(3))
	if c := f.Wait(ctx, 3); c.Complete() || c.Applied != 1 || c.Live != 2 || len(c.Pending) != 1 || c.Pending[0] != "b" {
		t.Fatalf("Wait = %+v, want 1/2 pending b", c)
	}
}
