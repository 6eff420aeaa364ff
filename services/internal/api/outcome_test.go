package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/api"
	"github.com/revocast/revocast/services/internal/store"
)

// TestLostAckGives500MayOrMayNot: a revocation that was sent but never acknowledged may be
// stored, so its 500 must not say that nothing was revoked.
func TestLostAckGives500MayOrMayNot(t *testing.T) {
	f := newFixture(t, api.Config{})
	admin := map[string]string{"X-API-Key": f.adminKey}
	if r := f.do(t, "POST", "/v2/users/reset/7", admin, ""); r.status != 200 {
		t.Fatalf("first reset: %d %s", r.status, r.raw)
	}
	// The stream stops storing resets and a responder that never acknowledges takes them:
	// to the API, a stream that stored the event and whose acknowledgement was lost.
	nc := f.nats.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cfg := store.StreamConfig(1)
	cfg.Subjects = []string{events.AppFlushedSubjects}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	got := make(chan *nats.Msg, 1)
	if _, err := nc.ChanSubscribe(events.UserResetSubjects, got); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	r := f.do(t, "POST", "/v2/users/reset/7", admin, "")
	if r.status != 500 || r.body["success"] != false {
		t.Fatalf("reset without acknowledgement: %d %s, want 500", r.status, r.raw)
	}
	msg, _ := r.body["message"].(string)
	if !strings.Contains(msg, "may or may not be stored") || strings.Contains(msg, "nothing was revoked") {
		t.Fatalf("message %q, want one that says the revocation may or may not be stored", msg)
	}
	select {
	case <-got:
	default:
		t.Fatal("the event never reached the responder")
	}
}
