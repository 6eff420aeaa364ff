package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// DefaultReportInterval is how often a table reports itself to the broadcaster. A
// report is about 200 bytes on core NATS: 1,000 instances cost 500 messages a second.
const DefaultReportInterval = 2 * time.Second

// fleetConfig is the part of config about fleet reports.
type fleetConfig struct {
	off      bool
	service  string
	instance string
	version  string
	interval time.Duration
}

// WithService names the service the table belongs to in its fleet reports (default the
// program's name).
func WithService(name string) Option {
	return func(c *config) error {
		if len(name) > 128 || events.ValidateReason(name) != nil {
			return fmt.Errorf("client: WithService: %q is not one short line of text", name)
		}
		c.fleet.service = name
		return nil
	}
}

// WithInstanceID sets the id the table reports under (default random, new for each
// [New]): 1 to 64 letters, digits, '-' or '_'.
func WithInstanceID(id string) Option {
	return func(c *config) error {
		if err := events.ValidateInstanceID(id); err != nil {
			return fmt.Errorf("client: WithInstanceID: %w", err)
		}
		c.fleet.instance = id
		return nil
	}
}

// WithVersion sets the version the table reports (default the main module's version).
func WithVersion(v string) Option {
	return func(c *config) error {
		if len(v) > 128 || events.ValidateReason(v) != nil {
			return fmt.Errorf("client: WithVersion: %q is not one short line of text", v)
		}
		c.fleet.version = v
		return nil
	}
}

// WithReportInterval sets how often the table reports itself (default
// [DefaultReportInterval]); the broadcaster counts it as gone after 3 intervals without a
// report.
func WithReportInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond || d > time.Hour {
			return fmt.Errorf("client: WithReportInterval: %s is not between 10ms and 1h", d)
		}
		c.fleet.interval = d
		return nil
	}
}

// WithReports(false) stops the table from reporting itself. By default, while [Table.Run]
// runs, the table publishes on core NATS a presence report every [WithReportInterval]
// (instance, service, host, version, last sequence, staleness, readiness) on
// events.ReportSubject(instance), and right after it has applied new events the sequence
// it reached on events.AppliedSubject(instance). The broadcaster shows the fleet from them
// and confirms revocations sent with "Prefer: wait". Nothing is stored, and a failed report
// never affects the table.
func WithReports(enabled bool) Option {
	return func(c *config) error {
		c.fleet.off = !enabled
		return nil
	}
}

// Instance is the id the table reports under.
func (t *Table) Instance() string { return t.cfg.fleet.instance }

// setupFleet fills in the fleet defaults; called by New.
func (c *config) setupFleet() {
	f := &c.fleet
	if f.instance == "" {
		f.instance = strings.ToLower(rand.Text()[:16])
	}
	if f.interval == 0 {
		f.interval = DefaultReportInterval
	}
	if f.service == "" {
		if exe, err := os.Executable(); err == nil {
			f.service = clipText(exe[strings.LastIndexAny(exe, `/\`)+1:])
		}
	}
	if f.version == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			f.version = clipText(bi.Main.Version)
		}
	}
}

func clipText(s string) string {
	if len(s) > 128 || events.ValidateReason(s) != nil {
		return ""
	}
	return s
}

// appliedNow tells the reporter that the table has handled events up to its last
// sequence. Called on the follow goroutine; never blocks.
func (t *Table) appliedNow() {
	select {
	case t.appliedKick <- struct{}{}:
	default:
	}
}

// report is the table's presence report now.
func (t *Table) report(host string) events.Report {
	st := int64(-1)
	if s := t.Staleness(); s < time.Duration(1<<63-1) {
		st = s.Milliseconds()
	}
	f := t.cfg.fleet
	return events.Report{Version: events.ReportVersion, Instance: f.instance, Service: f.service, Host: host,
		ClientVersion: f.version, Seq: t.lastSeq.Load(), StalenessMS: st, Ready: t.Ready(),
		IntervalMS: f.interval.Milliseconds()}
}

// reportLoop publishes the presence reports and the applied messages until ctx is done.
// Applied messages are coalesced: one per wake-up, with the latest sequence.
func (t *Table) reportLoop(ctx context.Context) {
	host, _ := os.Hostname()
	host = clipText(host)
	reportSubj, appliedSubj := events.ReportSubject(t.cfg.fleet.instance), events.AppliedSubject(t.cfg.fleet.instance)
	var warned bool
	publish := func(subj string, data []byte) {
		if err := t.nc.Publish(subj, data); err != nil && !warned && !errors.Is(err, context.Canceled) {
			warned = true
			t.log.Warn("fleet report not sent (later failures are not logged)", zap.String("subject", subj), zap.Error(err))
		}
	}
	sendReport := func() {
		if b, err := events.EncodeReport(t.report(host)); err == nil {
			publish(reportSubj, b)
		}
	}
	sendReport()
	tick := time.NewTicker(t.cfg.fleet.interval)
	defer tick.Stop()
	var sent uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			sendReport()
		case <-t.appliedKick:
			if seq := t.lastSeq.Load(); seq != sent {
				sent = seq
				publish(appliedSubj, events.EncodeApplied(seq))
			}
		}
	}
}
