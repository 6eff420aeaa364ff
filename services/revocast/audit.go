package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/audit"
)

// auditQuery is a checked 'revocast audit' command line.
type auditQuery struct {
	audit.Query
	format string
	verify bool
}

// parseAudit checks every audit flag before anything is read.
func parseAudit(f auditFlags, now time.Time, stdout io.Writer) (auditQuery, error) {
	q := auditQuery{format: f.format, verify: f.verify}
	if f.verify && (f.app != "" || f.user != "" || f.session != "" || f.typ != "" || f.actor != "" || f.since != "" || f.until != "" || f.follow || f.format != "") {
		return q, usagef("--verify checks the whole stream and takes no other audit flag")
	}
	q.App, q.Session, q.Type, q.Actor, q.Follow = f.app, f.session, events.Type(f.typ), f.actor, f.follow
	if f.user != "" {
		id, err := events.ParseUserID(f.user)
		if err != nil {
			return q, usagef("--user: %v", err)
		}
		q.User = id
	}
	var err error
	if q.Since, err = audit.ParseTime(f.since, now); err != nil {
		return q, usagef("--since: %v", err)
	}
	if q.Until, err = audit.ParseTime(f.until, now); err != nil {
		return q, usagef("--until: %v", err)
	}
	if q.Follow && !q.Until.IsZero() {
		return q, usagef("--follow and --until exclude each other")
	}
	if err := q.Filter.Validate(); err != nil {
		return q, usagef("%v", err)
	}
	switch q.format {
	case "":
		q.format = "jsonl"
		if isTerminal(stdout) {
			q.format = "table"
		}
	case "table", "jsonl":
	default:
		return q, usagef("--format %q: want table or jsonl", q.format)
	}
	return q, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// errVerifyFailed makes main exit 1 after --verify printed its problems.
var errVerifyFailed = errors.New("audit log integrity check failed")

func runAudit(ctx context.Context, js jetstream.JetStream, q auditQuery, stdout, stderr io.Writer) error {
	progress := func(scanned int, pending uint64) {
		fmt.Fprintf(stderr, "audit: %d events scanned, %d to go\n", scanned, pending)
	}
	if q.verify {
		problems, sum, err := audit.Verify(ctx, js, progress)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "checked %d events up to seq %d\n", sum.Scanned, sum.LastSeq)
		for _, p := range problems {
			fmt.Fprintf(stdout, "PROBLEM: %s\n", p)
		}
		if len(problems) > 0 {
			return errVerifyFailed
		}
		fmt.Fprintln(stdout, "OK: the stream denies delete and purge, has no gaps, and every event is valid")
		return nil
	}

	bw := bufio.NewWriterSize(stdout, 64<<10)
	var write func(audit.Record) error
	var flushTable func() error
	if q.format == "table" {
		tw := audit.NewTableWriter(bw)
		write, flushTable = tw.Write, tw.Flush
	} else {
		write = audit.NewJSONLWriter(bw).Write
	}
	emit := write
	if q.Follow {
		// Show each event as it arrives.
		emit = func(r audit.Record) error {
			if err := write(r); err != nil {
				return err
			}
			return bw.Flush()
		}
		fmt.Fprintln(stderr, "audit: following new events; Ctrl-C to stop")
	}
	q.Progress = progress
	sum, err := audit.Replay(ctx, js, q.Query, emit)
	if flushTable != nil {
		if ferr := flushTable(); err == nil {
			err = ferr
		}
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		if strings.Contains(err.Error(), "stream not found") {
			return fmt.Errorf("%w (has revocastd been started against this NATS?)", err)
		}
		return err
	}
	fmt.Fprintln(stderr, audit.SummaryLine(sum))
	if len(sum.Gaps) > 0 {
		fmt.Fprintln(stderr, "audit: the stream has gaps: events were deleted; run 'revocast audit --verify'")
	}
	return nil
}
