package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/store"
)

// checkSessionsArgs checks 'sessions revoke SID' before anything touches NATS: args are the
// words after 'sessions'.
func checkSessionsArgs(args []string) error {
	if len(args) != 2 || args[0] != "revoke" {
		return usagef("usage: revocast sessions revoke SID")
	}
	if err := events.ValidateSessionID(args[1]); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// sessionPublisher is what the sessions commands need from the store.
type sessionPublisher interface {
	ClockOffset(ctx context.Context) (time.Duration, error)
	Publish(ctx context.Context, ev events.Event) (store.Stored, error)
}

// runSessions runs 'revocast sessions revoke SID': args are the words after 'sessions'.
func runSessions(ctx context.Context, st sessionPublisher, args []string, reason string, stdout io.Writer) error {
	if err := checkSessionsArgs(args); err != nil {
		return err
	}
	// The watermark comes from this machine's clock, as for flush and reset.
	off, err := st.ClockOffset(ctx)
	if err != nil {
		return err
	}
	if err := checkClock(off); err != nil {
		return err
	}
	ev, err := events.NewSessionRevoked(args[1], time.Now(), cliActor())
	if err != nil {
		return err
	}
	ev.Reason = reason
	ev.Source.UserAgent = "revocast-cli"
	stored, err := st.Publish(ctx, ev)
	switch {
	case errors.Is(err, store.ErrUnknownOutcome):
		return fmt.Errorf("%w; the revocation may or may not be stored (no acknowledgement came in time): run the same command again, repeating it is safe", err)
	case err != nil:
		return fmt.Errorf("%w; nothing was revoked, retry", err)
	}
	fmt.Fprintf(stdout, "stored %s on %s (seq %d, not_before %s)\n", ev.Type, ev.Subject(), stored.Seq, stored.Event.NotBefore.Format(time.RFC3339Nano))
	return nil
}
