// Package fleet keeps the live fleet of client tables in memory, from the reports they
// publish on core NATS (see events.Report), and tells when every live table has applied a
// given stream sequence: what confirms a revocation sent with "Prefer: wait".
package fleet

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// Missed is how many report intervals an instance may stay silent before it leaves the
// fleet.
const Missed = 3

// MaxInstances bounds the fleet's memory whatever the reports say: past it, new instances
// are ignored (and counted as invalid) until others leave.
const MaxInstances = 100_000

// headHistory is how many recent stream sequences the fleet remembers the arrival time of,
// to tell how long ago an instance fell behind.
const headHistory = 4096

// Instance is one live table, as GET /v1/fleet shows it.
type Instance struct {
	ID          string    `json:"instance"`
	Service     string    `json:"service"`
	Host        string    `json:"host"`
	Version     string    `json:"version"`
	Seq         uint64    `json:"seq"`
	LagEvents   uint64    `json:"lag_events"`
	LagMS       int64     `json:"lag_ms"`
	StalenessMS int64     `json:"staleness_ms"`
	Ready       bool      `json:"ready"`
	IntervalMS  int64     `json:"interval_ms"`
	LastSeen    time.Time `json:"last_seen"`
}

// Confirmation says which live instances had applied a sequence when [Fleet.Wait] returned.
type Confirmation struct {
	Seq     uint64
	Applied int
	Live    int
	Pending []string // ids of the live instances that had not applied it, sorted
	Took    time.Duration
}

// Complete reports whether every live instance applied the sequence.
func (c Confirmation) Complete() bool { return len(c.Pending) == 0 }

type member struct {
	report   events.Report
	seq      uint64
	lastSeen time.Time
}

type head struct {
	seq uint64
	at  time.Time
}

// Fleet is the live fleet. The zero value is not usable; call [New].
type Fleet struct {
	log *zap.Logger
	now func() time.Time

	mu      sync.Mutex
	members map[string]*member
	changed chan struct{} // closed (and replaced) whenever an instance's sequence moves
	heads   []head        // recent stream sequences and when they were first known, ascending
	invalid atomic.Uint64
}

// New returns an empty fleet. now may be nil (time.Now).
func New(log *zap.Logger, now func() time.Time) *Fleet {
	if log == nil {
		log = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	return &Fleet{log: log, now: now, members: map[string]*member{}, changed: make(chan struct{})}
}

// Subscribe receives the fleet's reports on nc until the subscription is closed.
func (f *Fleet) Subscribe(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(events.FleetSubjects, func(m *nats.Msg) { f.Handle(m.Subject, m.Data) })
	if err != nil {
		return nil, err
	}
	// Thousands of instances report every few seconds: never drop them for a slow moment.
	_ = sub.SetPendingLimits(1<<20, 64<<20)
	return sub, nil
}

// Handle takes one message received on a fleet subject. Malformed messages are counted
// and dropped; the first is logged.
func (f *Fleet) Handle(subject string, data []byte) {
	if len(subject) > len(events.AppliedPrefix) && subject[:len(events.AppliedPrefix)] == events.AppliedPrefix {
		id, seq, err := events.DecodeApplied(subject, data)
		if err != nil {
			f.bad(subject, err)
			return
		}
		f.mu.Lock()
		if m, ok := f.members[id]; ok {
			m.seq, m.lastSeen = seq, f.now()
			f.observeLocked(seq)
			f.signalLocked()
		}
		f.mu.Unlock()
		return
	}
	r, err := events.DecodeReport(subject, data)
	if err != nil {
		f.bad(subject, err)
		return
	}
	f.mu.Lock()
	m, ok := f.members[r.Instance]
	if !ok {
		if len(f.members) >= MaxInstances {
			f.sweepLocked()
		}
		if len(f.members) >= MaxInstances {
			f.mu.Unlock()
			f.bad(subject, errors.New("fleet: too many instances"))
			return
		}
		m = &member{}
		f.members[r.Instance] = m
		f.log.Info("instance joined the fleet", zap.String("instance", r.Instance), zap.String("service", r.Service), zap.String("host", r.Host))
	}
	m.report, m.lastSeen = r, f.now()
	if m.seq != r.Seq || !ok {
		m.seq = r.Seq
		f.signalLocked()
	}
	f.observeLocked(r.Seq)
	f.mu.Unlock()
}

// sweepLocked drops the instances that are gone.
func (f *Fleet) sweepLocked() {
	now := f.now()
	for id, m := range f.members {
		if !live(m, now) {
			delete(f.members, id)
		}
	}
}

func (f *Fleet) bad(subject string, err error) {
	if f.invalid.Add(1) == 1 {
		f.log.Warn("malformed fleet report ignored (later ones are only counted)", zap.String("subject", subject), zap.Error(err))
	}
}

// Invalid is the number of malformed reports ignored.
func (f *Fleet) Invalid() uint64 { return f.invalid.Load() }

func (f *Fleet) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Observe records that the stream holds seq now; the broadcaster calls it for each event
// it stores or applies, so that lag can be told in time.
func (f *Fleet) Observe(seq uint64) {
	f.mu.Lock()
	f.observeLocked(seq)
	f.mu.Unlock()
}

func (f *Fleet) observeLocked(seq uint64) {
	if n := len(f.heads); n > 0 && f.heads[n-1].seq >= seq {
		return
	}
	if len(f.heads) == headHistory {
		f.heads = append(f.heads[:0], f.heads[headHistory/2:]...)
	}
	f.heads = append(f.heads, head{seq: seq, at: f.now()})
}

// live reports whether m reported within Missed of its intervals.
func live(m *member, now time.Time) bool {
	return now.Sub(m.lastSeen) < Missed*time.Duration(m.report.IntervalMS)*time.Millisecond
}

// expiry is when m leaves the fleet without another report.
func expiry(m *member) time.Time {
	return m.lastSeen.Add(Missed * time.Duration(m.report.IntervalMS) * time.Millisecond)
}

// Instances returns the live fleet, sorted by service and instance, and drops the
// instances that are gone.
func (f *Fleet) Instances() []Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	var headSeq uint64
	if n := len(f.heads); n > 0 {
		headSeq = f.heads[n-1].seq
	}
	out := make([]Instance, 0, len(f.members))
	for id, m := range f.members {
		if !live(m, now) {
			delete(f.members, id)
			f.log.Info("instance left the fleet", zap.String("instance", id), zap.String("service", m.report.Service), zap.Time("last_seen", m.lastSeen))
			continue
		}
		in := Instance{ID: id, Service: m.report.Service, Host: m.report.Host, Version: m.report.ClientVersion,
			Seq: m.seq, StalenessMS: m.report.StalenessMS, Ready: m.report.Ready, IntervalMS: m.report.IntervalMS, LastSeen: m.lastSeen.UTC()}
		if headSeq > m.seq {
			in.LagEvents = headSeq - m.seq
			in.LagMS = now.Sub(f.behindSinceLocked(m.seq)).Milliseconds()
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int {
		if a.Service != b.Service {
			if a.Service < b.Service {
				return -1
			}
			return 1
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// behindSinceLocked is when the stream first held an event after seq.
func (f *Fleet) behindSinceLocked(seq uint64) time.Time {
	i, _ := slices.BinarySearchFunc(f.heads, seq+1, func(h head, s uint64) int {
		if h.seq < s {
			return -1
		}
		if h.seq > s {
			return 1
		}
		return 0
	})
	if i == len(f.heads) {
		i = len(f.heads) - 1
	}
	return f.heads[i].at
}

// Wait returns once every live instance has applied seq, or when ctx is done, with who
// had. An instance that leaves the fleet while Wait waits (it stopped reporting) no longer
// counts; one that joins does.
func (f *Fleet) Wait(ctx context.Context, seq uint64) Confirmation {
	start := time.Now()
	f.Observe(seq)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		f.mu.Lock()
		now := f.now()
		c := Confirmation{Seq: seq}
		var next time.Time
		for id, m := range f.members {
			if !live(m, now) {
				continue
			}
			c.Live++
			if m.seq >= seq {
				c.Applied++
				continue
			}
			c.Pending = append(c.Pending, id)
			if e := expiry(m); next.IsZero() || e.Before(next) {
				next = e
			}
		}
		changed := f.changed
		f.mu.Unlock()
		c.Took = time.Since(start)
		if c.Complete() {
			return c
		}
		// Wake up when one of the pending instances would leave, too.
		wake := time.Until(next) + time.Millisecond
		if timer == nil {
			timer = time.NewTimer(wake)
		} else {
			timer.Reset(wake)
		}
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			slices.Sort(c.Pending)
			c.Took = time.Since(start)
			return c
		}
	}
}

// Collector returns the fleet's metrics: instances, instances behind, the largest lag (in
// events and seconds) and the malformed reports ignored.
func (f *Fleet) Collector() prometheus.Collector { return collector{f} }

var (
	descInstances = prometheus.NewDesc("revocast_fleet_instances", "Live client tables (instances that reported within 3 intervals).", nil, nil)
	descBehind    = prometheus.NewDesc("revocast_fleet_instances_behind", "Live instances that have not applied the latest event.", nil, nil)
	descLag       = prometheus.NewDesc("revocast_fleet_max_lag_events", "The largest lag of a live instance, in events.", nil, nil)
	descLagSec    = prometheus.NewDesc("revocast_fleet_max_lag_seconds", "The largest lag of a live instance: how long ago the first event it has not applied was stored.", nil, nil)
	descInvalid   = prometheus.NewDesc("revocast_fleet_reports_invalid_total", "Malformed fleet reports ignored.", nil, nil)
)

type collector struct{ f *Fleet }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInstances, descBehind, descLag, descLagSec, descInvalid} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	var behind int
	var lag uint64
	var lagMS int64
	ins := c.f.Instances()
	for _, in := range ins {
		if in.LagEvents > 0 {
			behind++
		}
		lag, lagMS = max(lag, in.LagEvents), max(lagMS, in.LagMS)
	}
	ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(len(ins)))
	ch <- prometheus.MustNewConstMetric(descBehind, prometheus.GaugeValue, float64(behind))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(lag))
	ch <- prometheus.MustNewConstMetric(descLagSec, prometheus.GaugeValue, float64(lagMS)/1000)
	ch <- prometheus.MustNewConstMetric(descInvalid, prometheus.CounterValue, float64(c.f.invalid.Load()))
}
