package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/store"
)

// stopListeningForResets makes the stream stop storing user.reset subjects, so what is
// published on them reaches whatever else listens (or nothing).
func stopListeningForResets(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cfg := store.StreamConfig(1)
	cfg.Subjects = []string{events.AppFlushedSubjects}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

func publishReset(t *testing.T, st *store.Store, user int64, timeout time.Duration) error {
	t.Helper()
	ev, err := events.NewUserReset(user, time.Now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	_, err = st.Publish(ctx, ev)
	return err
}

// TestPublishSaysWhatIsKnown: a publish that JetStream refused, or that nobody received, is
// ErrNotStored; one that was sent and never acknowledged is ErrUnknownOutcome, as the
// event may be stored (only its acknowledgement was lost).
func TestPublishSaysWhatIsKnown(t *testing.T) {
	t.Run("ErrNotStoredStreamFull", func(t *testing.T) {
		st, js := setup(t)
		cfg := store.StreamConfig(1)
		cfg.MaxMsgs = 1
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		if err := publishReset(t, st, 1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		err := publishReset(t, st, 2, 10*time.Second)
		if !errors.Is(err, store.ErrNotStored) || errors.Is(err, store.ErrUnknownOutcome) {
			t.Fatalf("publish into a full stream = %v, want ErrNotStored", err)
		}
	})
	t.Run("ErrNotStoredNoResponders", func(t *testing.T) {
		st, js := setup(t)
		if err := publishReset(t, st, 1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		stopListeningForResets(t, js)
		// The retries on "no responders" take 2s; the deadline is well beyond them.
		err := publishReset(t, st, 1, 30*time.Second)
		if !errors.Is(err, store.ErrNotStored) || errors.Is(err, store.ErrUnknownOutcome) {
			t.Fatalf("publish that no stream receives = %v, want ErrNotStored", err)
		}
	})
	t.Run("ErrUnknownOutcomeNoAck", func(t *testing.T) {
		srv, st, js := setupWithServer(t)
		if err := publishReset(t, st, 1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		stopListeningForResets(t, js)
		// A responder receives the event and never acknowledges: from the publisher's side
		// this is a stream that stored it and whose acknowledgement was lost.
		silent := srv.Connect()
		got := make(chan *nats.Msg, 1)
		if _, err := silent.ChanSubscribe(events.UserResetSubjects, got); err != nil {
			t.Fatal(err)
		}
		if err := silent.Flush(); err != nil {
			t.Fatal(err)
		}
		err := publishReset(t, st, 1, time.Second)
		if !errors.Is(err, store.ErrUnknownOutcome) || errors.Is(err, store.ErrNotStored) {
			t.Fatalf("publish without acknowledgement = %v, want ErrUnknownOutcome", err)
		}
		select {
		case <-got:
		default:
			t.Fatal("the event never reached the responder")
		}
	})
}

func setupWithServer(t *testing.T) (*eventstest.Server, *store.Store, jetstream.JetStream) {
	t.Helper()
	srv := eventstest.RunJetStream(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Setup(t.Context(), js, store.Config{Replicas: 1})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return srv, st, js
}
