package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/store"
)

func setup(t *testing.T) (*store.Store, jetstream.JetStream) {
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
	return st, js
}

func TestAppsCreateAuthenticateRotate(t *testing.T) {
	st, _ := setup(t)
	ctx := t.Context()
	app, key, err := st.CreateApp(ctx, "shop")
	if err != nil {
		t.Fatalf("CreateApp: %v", err)
	}
	if !strings.HasPrefix(key.Reveal(), app.KeyID+"_") || !strings.HasPrefix(app.KeyID, "rvcr_") {
		t.Fatalf("key %q does not start with its public id %q", key.Reveal(), app.KeyID)
	}
	if strings.Contains(app.KeyHash, key.Reveal()) || key.String() != "[REDACTED]" {
		t.Fatal("secret leaks through the stored record or String()")
	}
	if _, _, err := st.CreateApp(ctx, "shop"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateApp twice = %v, want ErrExists", err)
	}
	if _, _, err := st.CreateApp(ctx, "a.b"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("CreateApp(a.b) = %v, want ErrInvalid", err)
	}
	if _, err := st.AuthenticateApp(ctx, "shop", key.Reveal()); err != nil {
		t.Fatalf("AuthenticateApp(right key) = %v", err)
	}
	for name, tc := range map[string][2]string{
		"ErrWrongKey":    {"shop", key.Reveal() + "x"},
		"ErrUnknownApp":  {"nope", key.Reveal()},
		"ErrEmptyKey":    {"shop", ""},
		"ErrOtherPrefix": {"shop", strings.Replace(key.Reveal(), "rvcr", "rvca", 1)},
	} {
		if _, err := st.AuthenticateApp(ctx, tc[0], tc[1]); !errors.Is(err, store.ErrUnauthorized) {
			t.Errorf("%s: AuthenticateApp = %v, want ErrUnauthorized", name, err)
		}
	}
	_, newKey, err := st.RotateApp(ctx, "shop")
	if err != nil {
		t.Fatalf("RotateApp: %v", err)
	}
	if _, err := st.AuthenticateApp(ctx, "shop", key.Reveal()); !errors.Is(err, store.ErrUnauthorized) {
		t.Fatalf("old key after rotation = %v, want ErrUnauthorized", err)
	}
	if _, err := st.AuthenticateApp(ctx, "shop", newKey.Reveal()); err != nil {
		t.Fatalf("new key after rotation = %v", err)
	}
	if _, _, err := st.RotateApp(ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RotateApp(ghost) = %v, want ErrNotFound", err)
	}
	apps, err := st.ListApps(ctx)
	if err != nil || len(apps) != 1 || apps[0].ID != "shop" || apps[0].RotatedAt.IsZero() {
		t.Fatalf("ListApps = %+v, %v", apps, err)
	}
}

func TestKeysCreateAuthenticateRotate(t *testing.T) {
	st, _ := setup(t)
	ctx := t.Context()
	k, secret, err := st.CreateKey(ctx, "oncall", nil)
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if !k.Allows(store.ScopeUsersReset) || !k.Allows(store.ScopeAuditRead) {
		t.Fatalf("default scopes = %v, want all", k.Scopes)
	}
	if _, _, err := st.CreateKey(ctx, "oncall", nil); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateKey twice = %v, want ErrExists", err)
	}
	got, err := st.AuthenticateKey(ctx, secret.Reveal())
	if err != nil || got.ID != k.ID {
		t.Fatalf("AuthenticateKey = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "rvca_", secret.Reveal()[:30], secret.Reveal() + "A", "rvca_zzzzzzzzzzzz_x"} {
		if _, err := st.AuthenticateKey(ctx, bad); !errors.Is(err, store.ErrUnauthorized) {
			t.Errorf("AuthenticateKey(%q) = %v, want ErrUnauthorized", bad, err)
		}
	}
	rotated, newSecret, err := st.RotateKey(ctx, "oncall")
	if err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	if rotated.ID != k.ID {
		t.Fatalf("rotation changed the public id: %s -> %s", k.ID, rotated.ID)
	}
	if _, err := st.AuthenticateKey(ctx, secret.Reveal()); !errors.Is(err, store.ErrUnauthorized) {
		t.Fatalf("old key after rotation = %v", err)
	}
	if _, err := st.AuthenticateKey(ctx, newSecret.Reveal()); err != nil {
		t.Fatalf("new key after rotation = %v", err)
	}
	if _, _, err := st.RotateKey(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RotateKey(nobody) = %v, want ErrNotFound", err)
	}
	ro, _, err := st.CreateKey(ctx, "auditor", []string{store.ScopeAuditRead})
	if err != nil || ro.Allows(store.ScopeUsersReset) {
		t.Fatalf("CreateKey(auditor) = %+v, %v", ro, err)
	}
	if _, err := store.ParseScopes("users:reset,root"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ParseScopes(root) = %v, want ErrInvalid", err)
	}
}

func TestPublishIsDurableDedupedAndUndeletable(t *testing.T) {
	st, js := setup(t)
	ctx := t.Context()
	ev, _ := events.NewUserReset(42, time.Now(), "rvca_0123456789ab")
	ack1, err := st.Publish(ctx, ev)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	ack2, err := st.Publish(ctx, ev)
	if err != nil {
		t.Fatalf("Publish again: %v", err)
	}
	if !ack2.Duplicate || ack2.Seq != ack1.Seq {
		t.Fatalf("retried publish stored twice: %+v then %+v", ack1, ack2)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, ack1.Seq); err == nil {
		t.Fatal("DeleteMsg succeeded on the audit stream")
	}
	if err := stream.Purge(ctx); err == nil {
		t.Fatal("Purge succeeded on the audit stream")
	}
	msg, err := stream.GetMsg(ctx, ack1.Seq)
	if err != nil {
		t.Fatalf("GetMsg: %v", err)
	}
	got, err := events.Decode(msg.Data)
	if err != nil || got.ID != ev.ID || msg.Header.Get("Nats-Msg-Id") != ev.ID {
		t.Fatalf("stored event = %+v (%v), msg id %q", got, err, msg.Header.Get("Nats-Msg-Id"))
	}
	info, _ := stream.Info(ctx)
	if !info.Config.DenyDelete || !info.Config.DenyPurge || info.Config.Discard != jetstream.DiscardNew {
		t.Fatalf("stream config = %+v", info.Config)
	}
	bad := ev
	bad.ID = "not-an-id"
	if _, err := st.Publish(ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Publish(invalid) = %v, want ErrInvalid", err)
	}
}

func TestOpenBeforeSetup(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	js, _ := jetstream.New(srv.Connect())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := store.Open(ctx, js); !errors.Is(err, store.ErrNotSetUp) {
		t.Fatalf("Open before Setup = %v, want ErrNotSetUp", err)
	}
}

// TestWatermarksNeverGoDownOnASubject: a new client reads only the latest event of each
// subject, so a later event must never carry an earlier not_before than the one before it
// (a replica with a slower clock, or a CLI on another machine).
func TestWatermarksNeverGoDownOnASubject(t *testing.T) {
	st, js := setup(t)
	ctx := t.Context()
	later := time.Now().Add(2 * time.Second)
	first, _ := events.NewAppFlushed("shop", later, "rvcr_0123456789ab")
	if _, err := st.Publish(ctx, first); err != nil {
		t.Fatal(err)
	}
	slow, _ := events.NewAppFlushed("shop", later.Add(-time.Second), "rvcr_0123456789ab")
	ack, err := st.Publish(ctx, slow)
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := js.Stream(ctx, events.StreamName)
	m, err := stream.GetMsg(ctx, ack.Seq)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := events.Decode(m.Data)
	if !got.NotBefore.Equal(first.NotBefore) || got.ID != slow.ID || !ack.Event.NotBefore.Equal(first.NotBefore) {
		t.Fatalf("stored not_before %v, want it raised to the previous %v", got.NotBefore, first.NotBefore)
	}

	// Concurrent publishers on one subject (two replicas): the subject's watermarks still
	// only go up.
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				ev, _ := events.NewUserReset(9, time.Now().Add(time.Duration(w*i%7)*time.Millisecond), "rvca_0123456789ab")
				if _, err := st.Publish(ctx, ev); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"revocation.user.reset.9"}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(100)
	if err != nil {
		t.Fatal(err)
	}
	var prev time.Time
	n := 0
	for m := range batch.Messages() {
		ev, _ := events.Decode(m.Data())
		if ev.NotBefore.Before(prev) {
			t.Fatalf("event %d on the subject has not_before %v < previous %v", n, ev.NotBefore, prev)
		}
		prev = ev.NotBefore
		n++
	}
	if n != 100 {
		t.Fatalf("read %d events, want 100", n)
	}
}

// TestTwoPublishersOnOneSubject: each store remembers what it wrote last; when another
// replica wrote since, the conditional write fails, the store reads the subject again and
// still never lowers its watermark.
func TestTwoPublishersOnOneSubject(t *testing.T) {
	st1, js := setup(t)
	ctx := t.Context()
	st2, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	publish := func(st *store.Store, nb time.Time) store.Stored {
		t.Helper()
		ev, _ := events.NewUserReset(5, nb, "rvca_0123456789ab")
		s, err := st.Publish(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	publish(st1, base)                         // st1 remembers seq 1
	publish(st2, base.Add(3*time.Second))      // st2 reads seq 1, writes seq 2
	got := publish(st1, base.Add(time.Second)) // st1's guess (seq 1) is refused; it reads seq 2
	if got.Seq != 3 || !got.Event.NotBefore.Equal(base.Add(3*time.Second)) {
		t.Fatalf("third write = seq %d not_before %v, want seq 3 raised to %v", got.Seq, got.Event.NotBefore, base.Add(3*time.Second))
	}
}

// TestFutureWatermarksAreRefused: a watermark beyond the clock-skew margin would be refused
// by every client, and raising later events to it would make them refused too.
func TestFutureWatermarksAreRefused(t *testing.T) {
	st, js := setup(t)
	ctx := t.Context()
	future, _ := events.NewUserReset(8, time.Now().Add(time.Hour), "rvca_0123456789ab")
	if _, err := st.Publish(ctx, future); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Publish(1h ahead) = %v, want ErrInvalid", err)
	}
	// A bogus future event already in the stream (an old writer with a fast clock) does
	// not drag later events into the future.
	bogus, _ := events.NewUserReset(8, time.Now().Add(time.Hour), "rvca_0123456789ab")
	eventstest.Publish(t, js, bogus)
	now := time.Now()
	ev, _ := events.NewUserReset(8, now, "rvca_0123456789ab")
	stored, err := st.Publish(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.Event.NotBefore.Equal(ev.NotBefore) {
		t.Fatalf("not_before = %v, want %v (not the bogus future one)", stored.Event.NotBefore, ev.NotBefore)
	}
	if store.MaxClockSkew != client.DefaultClockSkew {
		t.Fatalf("publisher margin %s differs from the clients' %s", store.MaxClockSkew, client.DefaultClockSkew)
	}
	off, err := st.ClockOffset(ctx)
	if err != nil || off > time.Second || off < -time.Second {
		t.Fatalf("ClockOffset against an in-process server = %v, %v", off, err)
	}
}
