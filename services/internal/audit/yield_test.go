package audit_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/revocast/revocast/services/internal/audit"
)

// TestReplayYieldsBetweenBatches: a replay with a Yield calls it after every YieldEvery
// events scanned, and reads nothing more until it returns.
func TestReplayYieldsBetweenBatches(t *testing.T) {
	_, js := setup(t)
	const n = 2*audit.YieldEvery + 10
	publishMix(t, js, n)
	emitted := 0
	var at []int
	q := audit.Query{Yield: func(context.Context) { at = append(at, emitted) }}
	if _, err := audit.Replay(t.Context(), js, q, func(audit.Record) error { emitted++; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []int{audit.YieldEvery, 2 * audit.YieldEvery}; emitted != n || !slices.Equal(at, want) {
		t.Fatalf("yielded after %v of %d events, want after %v of %d", at, emitted, want, n)
	}
}

// TestReplayYieldEndsWithContext: a replay whose context ends while it yields stops there.
func TestReplayYieldEndsWithContext(t *testing.T) {
	_, js := setup(t)
	publishMix(t, js, audit.YieldEvery+10)
	ctx, cancel := context.WithCancel(t.Context())
	emitted := 0
	q := audit.Query{Yield: func(context.Context) { cancel() }}
	_, err := audit.Replay(ctx, js, q, func(audit.Record) error { emitted++; return nil })
	if !errors.Is(err, context.Canceled) || emitted != audit.YieldEvery {
		t.Fatalf("Replay = %v after %d events, want context.Canceled after %d", err, emitted, audit.YieldEvery)
	}
}
