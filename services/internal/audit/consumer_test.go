package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/audit"
)

// TestReplayLeavesNoConsumer: a replay that returns has deleted its consumer on the server,
// so many short replays (API pages) do not leave consumers behind for the server to keep.
func TestReplayLeavesNoConsumer(t *testing.T) {
	_, js := setup(t)
	publishMix(t, js, 10)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for name, q := range map[string]audit.Query{
		"Limit":    {Limit: 3, DeleteConsumer: true},
		"ToTheEnd": {DeleteConsumer: true},
		"Filtered": {Filter: audit.Filter{User: 2}, DeleteConsumer: true},
	} {
		if _, err := audit.Replay(ctx, js, q, func(audit.Record) error { return nil }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		stream, err := js.Stream(ctx, events.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers != 0 {
			t.Fatalf("%s: %d consumers left on the stream after the replay returned", name, info.State.Consumers)
		}
	}
}
