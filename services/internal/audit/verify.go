package audit

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
)

// Verify checks the audit log's integrity: the stream still denies delete and purge and
// refuses writes at its limits instead of dropping old events, nothing was removed from it,
// and every message is a valid event on its own subject. It returns the problems found (none
// means the log is intact) and the summary of the full replay.
func Verify(ctx context.Context, js jetstream.JetStream, progress func(int, uint64)) ([]string, Summary, error) {
	var problems []string
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, Summary{}, fmt.Errorf("audit: open stream %s: %w", events.StreamName, err)
	}
	info, err := stream.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return nil, Summary{}, fmt.Errorf("audit: stream info: %w", err)
	}
	cfg, st := info.Config, info.State
	if !cfg.DenyDelete {
		problems = append(problems, "stream allows deleting messages (deny_delete is off)")
	}
	if !cfg.DenyPurge {
		problems = append(problems, "stream allows purging (deny_purge is off)")
	}
	if cfg.Discard != jetstream.DiscardNew && (cfg.MaxMsgs > 0 || cfg.MaxBytes > 0 || cfg.MaxAge > 0 || cfg.MaxMsgsPerSubject > 0) {
		problems = append(problems, "stream drops old events at its limits (discard is not new)")
	}
	if cfg.MaxAge > 0 {
		problems = append(problems, fmt.Sprintf("stream expires events after %s (max_age)", cfg.MaxAge))
	}
	if st.Msgs > 0 && st.FirstSeq > 1 {
		problems = append(problems, fmt.Sprintf("the first %d events are gone (stream starts at seq %d)", st.FirstSeq-1, st.FirstSeq))
	}
	if st.NumDeleted > 0 {
		problems = append(problems, fmt.Sprintf("%d events were deleted: seqs %v", st.NumDeleted, st.Deleted))
	}
	sum, err := Replay(ctx, js, Query{Progress: progress}, func(Record) error { return nil })
	if err != nil {
		return problems, sum, err
	}
	if sum.Invalid > 0 {
		problems = append(problems, fmt.Sprintf("%d messages are not valid events", sum.Invalid))
	}
	if st.NumDeleted == 0 && len(sum.Gaps) > 0 {
		problems = append(problems, fmt.Sprintf("sequence gaps: %v", sum.Gaps))
	}
	return problems, sum, nil
}
