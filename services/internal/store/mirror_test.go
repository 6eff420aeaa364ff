package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events/eventstest"
)

// within polls cond every millisecond for at most 10s.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		<-tick.C
	}
}

// TestWatchedCredentials: with WatchCredentials running, valid credentials are checked in
// memory, a new credential works at once, and a rotated or deleted one is refused as soon as
// the watcher delivers the change.
func TestWatchedCredentials(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	js, err := jetstream.New(srv.Connect(nats.MaxReconnects(-1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := Setup(ctx, js, Config{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	k, key, err := st.CreateKey(ctx, "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, root, err := st.CreateApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := st.WatchCredentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	refused := func(err error) bool { return errors.Is(err, ErrUnauthorized) }
	authKey := func(key Secret) error { _, err := st.AuthenticateKey(ctx, key.Reveal()); return err }
	authApp := func(key Secret) error { _, err := st.AuthenticateApp(ctx, "shop", key.Reveal()); return err }
	authCred := func(key Secret) error { _, err := st.AuthenticateAppCredential(ctx, "shop", key.Reveal()); return err }
	within(t, "the mirrors catch up", func() bool {
		_, okKey := st.keyMirror.get(k.ID)
		_, okApp := st.appMirror.get("shop")
		return okKey && okApp
	})

	// A key created after the watch started works at once, before the watcher has it.
	_, key2, err := st.CreateKey(ctx, "second", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := authKey(key2); err != nil {
		t.Fatalf("new key: %v", err)
	}
	// Rotations: the new secret works at once, the old one is refused soon after.
	_, rotated, err := st.RotateKey(ctx, "oncall")
	if err != nil {
		t.Fatal(err)
	}
	if err := authKey(rotated); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	within(t, "the old key is refused", func() bool { return refused(authKey(key)) })
	_, newRoot, err := st.RotateApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := authApp(newRoot); err != nil {
		t.Fatalf("rotated root key: %v", err)
	}
	within(t, "the old root key is refused", func() bool { return refused(authApp(root)) })
	_, cred, err := st.SetAppCredential(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := authCred(cred); err != nil {
		t.Fatalf("credential: %v", err)
	}
	_, cred2, err := st.SetAppCredential(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	within(t, "the old credential is refused", func() bool { return refused(authCred(cred)) && authCred(cred2) == nil })
	// A deleted key is refused.
	if err := st.keys.Delete(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	within(t, "the deleted key is refused", func() bool { return refused(authKey(rotated)) })

	// Valid credentials are checked in memory: they pass with JetStream down, while an
	// unknown key, which needs the bucket, fails as unavailable.
	within(t, "the mirror holds the second key", func() bool { _, ok := st.keyMirror.get(splitKey(APIKeyPrefix, key2.Reveal())); return ok })
	srv.Shutdown()
	if err := authKey(key2); err != nil {
		t.Fatalf("valid key with JetStream down: %v", err)
	}
	if err := authApp(newRoot); err != nil {
		t.Fatalf("valid root key with JetStream down: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := st.AuthenticateKey(short, "rvca_000000000000_x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown key with JetStream down: %v, want ErrUnavailable", err)
	}

	// Once stopped, the store reads the buckets again.
	stop()
	if _, ok := st.keyMirror.get(splitKey(APIKeyPrefix, key2.Reveal())); ok {
		t.Fatal("the mirror answers after stop")
	}
}
