package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/tokens"
)

// TestRefreshWaitsForTheLatestRevocation: a flush is acknowledged by JetStream before the
// broadcaster's own table has applied it. A refresh in between must not pass: the issuer
// waits until its table holds every event the stream held when the refresh came, and
// answers "not ready" rather than a new pair when the table does not get there. Here the
// table stops following before the flush, so it never gets there.
func TestRefreshWaitsForTheLatestRevocation(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	srv.CreateStream()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := tokens.OpenKeyRing(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := client.New(srv.Connect(), client.WithMaxStaleness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stopFollowing := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.Run(ctx) }()
	if err := tab.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	iss, err := tokens.NewIssuer(t.Context(), js, 1, ring, tab, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	stopFollowing()
	<-done

	ev, err := events.NewAppFlushed("shop", time.Now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	data, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), ev.Subject(), data); err != nil {
		t.Fatal(err)
	}
	// The table will never get there: the bound only decides how long the test takes,
	// and leaves a loaded machine time for the key lookup and the stream info before it.
	rctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, _, err := iss.Refresh(rctx, pair.RefreshToken); !errors.Is(err, tokens.ErrNotReady) {
		t.Fatalf("refresh with a flushed token while the table lags = %v, want ErrNotReady (never a new pair)", err)
	}
}
