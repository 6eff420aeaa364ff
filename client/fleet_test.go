package client

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revocast/revocast/events"
)

func TestFleetReports(t *testing.T) {
	f := newFixture(t)
	sub, err := f.srv.Connect().SubscribeSync(events.FleetSubjects)
	if err != nil {
		t.Fatal(err)
	}
	tab := f.readyTable(t, WithService("shop-api"), WithInstanceID("shop-1"), WithVersion("v9"), WithReportInterval(50*time.Millisecond))
	next := func(subject string) *nats.Msg {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			m, err := sub.NextMsg(time.Until(deadline))
			if err != nil {
				t.Fatalf("no message on %s: %v", subject, err)
			}
			if m.Subject == subject {
				return m
			}
		}
	}
	// A ready report, then an applied message right after an event.
	for {
		m := next(events.ReportSubject("shop-1"))
		r, err := events.DecodeReport(m.Subject, m.Data)
		if err != nil {
			t.Fatalf("report: %v", err)
		}
		if r.Service != "shop-api" || r.ClientVersion != "v9" || r.IntervalMS != 50 {
			t.Fatalf("report = %+v", r)
		}
		if r.Ready {
			break
		}
	}
	ev, _ := events.NewAppFlushed("shop", time.Now(), "test")
	publishRetry(t, f.js, ev)
	m := next(events.AppliedSubject("shop-1"))
	id, seq, err := events.DecodeApplied(m.Subject, m.Data)
	if err != nil || id != "shop-1" || seq != tab.Stats().LastSequence || seq == 0 {
		t.Fatalf("applied = %q %d %v; table at %d", id, seq, err, tab.Stats().LastSequence)
	}
	if !tab.NotBefore("shop", 1).Equal(ev.NotBefore) {
		t.Fatal("applied sent before the watermark was in the table")
	}
}

func TestFleetReportsOff(t *testing.T) {
	f := newFixture(t)
	nc := f.srv.Connect()
	sub, err := nc.SubscribeSync(events.FleetSubjects)
	if err != nil {
		t.Fatal(err)
	}
	on := f.readyTable(t, WithReportInterval(20*time.Millisecond))
	off := f.readyTable(t, WithReports(false), WithReportInterval(20*time.Millisecond))
	// Ten reports of the reporting table; none of the other in between.
	for n := 0; n < 10; {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(m.Subject, "."+off.Instance()) {
			t.Fatalf("a table with WithReports(false) reported on %s", m.Subject)
		}
		if m.Subject == events.ReportSubject(on.Instance()) {
			n++
		}
	}
}

func TestFleetOptionsRefuseBadValues(t *testing.T) {
	for name, o := range map[string]Option{
		"ErrInstanceDot": WithInstanceID("a.b"),
		"ErrInstanceLen": WithInstanceID(strings.Repeat("a", 65)),
		"ErrInterval":    WithReportInterval(time.Millisecond),
		"ErrService":     WithService("a\nb"),
	} {
		t.Run(name, func(t *testing.T) {
			var c config
			if err := o(&c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
