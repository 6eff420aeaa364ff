package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/fleet"
)

// fleetListen is how long 'revocast fleet' listens to the reports: one report interval
// of the default, and a margin.
const fleetListen = client.DefaultReportInterval + 500*time.Millisecond

// runFleet prints the live fleet as the reports show it after fleetListen, with the lag
// against the stream's last sequence: a table, or JSON with --format json.
func runFleet(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, format string, stdout io.Writer) error {
	if format != "" && format != "table" && format != "json" {
		return usagef("--format %q: want table or json", format)
	}
	fl := fleet.New(nil, nil)
	sub, err := fl.Subscribe(nc)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if s, err := js.Stream(ctx, events.StreamName); err == nil {
		fl.Observe(s.CachedInfo().State.LastSeq)
	}
	select {
	case <-time.After(fleetListen):
	case <-ctx.Done():
		return ctx.Err()
	}
	ins := fl.Instances()
	if format == "json" {
		if ins == nil {
			ins = []fleet.Instance{}
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"live": len(ins), "instances": ins})
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSERVICE\tHOST\tVERSION\tSEQ\tLAG\tLAG MS\tSTALENESS MS\tREADY")
	for _, in := range ins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%t\n", in.ID, dash(in.Service), dash(in.Host), dash(in.Version),
			in.Seq, in.LagEvents, in.LagMS, in.StalenessMS, in.Ready)
	}
	return tw.Flush()
}

// confirmer watches the fleet while the CLI publishes a revocation with --wait. The CLI
// publishes to JetStream itself, so it waits on the tables' reports itself: it starts
// listening before the publish, and counts every instance heard from within one report
// interval.
type confirmer struct {
	sub   *nats.Subscription
	start time.Time

	mu      sync.Mutex
	target  uint64
	stored  time.Time
	members map[string]*heard
	changed chan struct{}
}

type heard struct {
	service   string
	seq       uint64
	appliedIn time.Duration // since the event was stored; 0 until applied
}

func startConfirm(nc *nats.Conn) (*confirmer, error) {
	c := &confirmer{start: time.Now(), members: map[string]*heard{}, changed: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(events.FleetSubjects, func(m *nats.Msg) {
		var id, service string
		var seq uint64
		if r, err := events.DecodeReport(m.Subject, m.Data); err == nil {
			id, service, seq = r.Instance, r.Service, r.Seq
		} else if i, s, err := events.DecodeApplied(m.Subject, m.Data); err == nil {
			id, seq = i, s
		} else {
			return
		}
		c.mu.Lock()
		h := c.members[id]
		if h == nil {
			h = &heard{}
			c.members[id] = h
		}
		if service != "" {
			h.service = service
		}
		h.seq = seq
		if c.target > 0 && seq >= c.target && h.appliedIn == 0 {
			h.appliedIn = max(time.Since(c.stored), time.Nanosecond)
		}
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	c.sub = sub
	return c, nil
}

// wait waits until every instance heard from has applied seq, and at least one report
// interval has passed since listening began (so every live instance has been heard), or
// until wait is over; then prints who applied it and how fast.
func (c *confirmer) wait(ctx context.Context, seq uint64, wait time.Duration, stdout io.Writer) error {
	defer func() { _ = c.sub.Unsubscribe() }()
	c.mu.Lock()
	c.target, c.stored = seq, time.Now()
	for _, h := range c.members {
		if h.seq >= seq {
			h.appliedIn = time.Nanosecond
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	heardAll := time.NewTimer(time.Until(c.start.Add(fleetListen)))
	defer heardAll.Stop()
	listened := false
	for {
		c.mu.Lock()
		done := listened
		for _, h := range c.members {
			done = done && h.appliedIn > 0
		}
		c.mu.Unlock()
		if done {
			break
		}
		select {
		case <-c.changed:
		case <-heardAll.C:
			listened = true
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.members))
	applied := 0
	var slowest time.Duration
	for id, h := range c.members {
		ids = append(ids, id)
		if h.appliedIn > 0 {
			applied++
			slowest = max(slowest, h.appliedIn)
		}
	}
	slices.Sort(ids)
	fmt.Fprintf(stdout, "applied by %d/%d live instances", applied, len(ids))
	if applied > 0 {
		fmt.Fprintf(stdout, " (the last after %s)", slowest.Round(10*time.Microsecond))
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	var pending []string
	for _, id := range ids {
		h := c.members[id]
		took := "pending"
		if h.appliedIn > 0 {
			took = h.appliedIn.Round(10 * time.Microsecond).String()
		} else {
			pending = append(pending, id)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", id, dash(h.service), took)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("stored, but not applied within %s by %s", wait, strings.Join(pending, ", "))
	}
	return nil
}
