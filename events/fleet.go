package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fleet reports: every client table says, on core NATS (not JetStream: nothing is stored),
// that it is alive and how far it has got in the stream. The broadcaster keeps the live
// fleet from them and confirms revocations once every live table has applied them.
//
// NATS cannot bind a subject to the identity of a user within one account, so any holder
// of the resource role may publish a report in the name of another instance. The resource
// role may publish nothing else on these subjects, other roles not at all, and the
// broadcaster ignores a report that does not decode, whose instance differs from its
// subject's, or whose fields are out of bounds.
const (
	// FleetPrefix starts every fleet subject.
	FleetPrefix = "revocast.fleet."
	// FleetSubjects matches every fleet subject: what the broadcaster subscribes to.
	FleetSubjects = FleetPrefix + ">"
	// ReportPrefix is followed by the instance id: the presence report, a JSON [Report].
	ReportPrefix = FleetPrefix + "report."
	// AppliedPrefix is followed by the instance id: the decimal stream sequence the
	// instance has just applied, sent right after it applies an event.
	AppliedPrefix = FleetPrefix + "applied."
	// ReportSubjects and AppliedSubjects are what a table may publish on.
	ReportSubjects  = ReportPrefix + "*"
	AppliedSubjects = AppliedPrefix + "*"
	// ReportVersion is the "v" of a [Report].
	ReportVersion = 1
	// MaxInstanceIDLen and MaxReportSize bound what a report may hold.
	MaxInstanceIDLen = 64
	MaxReportSize    = 1024
	maxReportField   = 128
)

// Report is an instance's presence report.
type Report struct {
	Version  int    `json:"v"`
	Instance string `json:"instance"`
	Service  string `json:"service,omitempty"`
	Host     string `json:"host,omitempty"`
	// ClientVersion is the version of the program (or of the client module) reporting.
	ClientVersion string `json:"version,omitempty"`
	// Seq is the stream sequence of the last event the table handled.
	Seq uint64 `json:"seq"`
	// StalenessMS is [client.Table.Staleness] in milliseconds, -1 before the first
	// confirmation.
	StalenessMS int64 `json:"staleness_ms"`
	Ready       bool  `json:"ready"`
	// IntervalMS is how often the instance reports: it counts as gone after 3 without one.
	IntervalMS int64 `json:"interval_ms"`
}

// ReportSubject is the subject of an instance's presence reports.
func ReportSubject(instance string) string { return ReportPrefix + instance }

// AppliedSubject is the subject of an instance's "applied" messages.
func AppliedSubject(instance string) string { return AppliedPrefix + instance }

// ValidateInstanceID checks an instance id: 1 to 64 letters, digits, '-' or '_' (one
// subject token).
func ValidateInstanceID(id string) error {
	if len(id) == 0 || len(id) > MaxInstanceIDLen {
		return fmt.Errorf("%w: instance id of %d bytes, want 1 to %d", ErrInvalidEvent, len(id), MaxInstanceIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return fmt.Errorf("%w: instance id %q: use letters, digits, '-' or '_'", ErrInvalidEvent, id)
		}
	}
	return nil
}

// Validate checks a report.
func (r Report) Validate() error {
	if r.Version != ReportVersion {
		return fmt.Errorf("%w: report version %d", ErrVersion, r.Version)
	}
	if err := ValidateInstanceID(r.Instance); err != nil {
		return err
	}
	for _, f := range []string{r.Service, r.Host, r.ClientVersion} {
		if len(f) > maxReportField || ValidateReason(f) != nil {
			return fmt.Errorf("%w: report field too long or not plain text", ErrInvalidEvent)
		}
	}
	if r.IntervalMS <= 0 || r.IntervalMS > int64(time.Hour/time.Millisecond) || r.StalenessMS < -1 {
		return fmt.Errorf("%w: report interval %dms or staleness %dms out of bounds", ErrInvalidEvent, r.IntervalMS, r.StalenessMS)
	}
	return nil
}

// EncodeReport validates and encodes a report.
func EncodeReport(r Report) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// DecodeReport decodes the report received on subject and checks it, including that its
// instance is the subject's.
func DecodeReport(subject string, data []byte) (Report, error) {
	var r Report
	if len(data) > MaxReportSize {
		return r, fmt.Errorf("%w: report of %d bytes", ErrInvalidEvent, len(data))
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	if subject != ReportSubject(r.Instance) {
		return r, fmt.Errorf("%w: report of %s sent on %s", ErrInvalidEvent, r.Instance, subject)
	}
	return r, nil
}

// EncodeApplied is the body of an "applied" message.
func EncodeApplied(seq uint64) []byte { return strconv.AppendUint(nil, seq, 10) }

// DecodeApplied returns the instance and the sequence of an "applied" message.
func DecodeApplied(subject string, data []byte) (string, uint64, error) {
	id, ok := strings.CutPrefix(subject, AppliedPrefix)
	if !ok || ValidateInstanceID(id) != nil {
		return "", 0, fmt.Errorf("%w: applied message on %q", ErrInvalidEvent, subject)
	}
	seq, err := strconv.ParseUint(string(data), 10, 64)
	if err != nil || len(data) > 20 {
		return "", 0, fmt.Errorf("%w: applied message %q", ErrInvalidEvent, data)
	}
	return id, seq, nil
}
