package eventstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

// TestPublishWaitsForTheStream: a stream that has no leader yet (just created in a
// cluster, or being elected) answers a publish with "no responders". Publish must keep
// trying within its timeout, as the message id makes a retry of a stored event a no-op,
// instead of failing the test after nats.go's two default retries (half a second).
func TestPublishWaitsForTheStream(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewUserReset(7, time.Now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	// The stream appears 1.5 s after the publish starts, as a leader would after an election.
	created := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: events.StreamName, Subjects: []string{events.StreamSubjects}})
		created <- err
	}()
	ack := eventstest.Publish(t, js, ev)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if ack.Stream != events.StreamName || ack.Sequence != 1 {
		t.Fatalf("ack = %+v, want sequence 1 of %s", ack, events.StreamName)
	}
}
