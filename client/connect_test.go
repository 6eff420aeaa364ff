package client_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events/eventstest"
)

// waitFor polls cond for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnectReconnectsQuickly: the connection waits a short, jittered time between
// attempts (not nats.go's 2 s), never gives up, and rides out a server restart; a later
// option overrides the defaults.
func TestConnectReconnectsQuickly(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	nc, err := client.Connect(srv.URL(), nats.Name("connect-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	o := nc.Opts
	if o.ReconnectWait != client.ReconnectWait || o.ReconnectWait > 250*time.Millisecond || o.ReconnectJitter != client.ReconnectJitter ||
		o.MaxReconnect != -1 || !o.RetryOnFailedConnect || o.Name != "connect-test" {
		t.Fatalf("options: wait %s jitter %s max %d retry-first %v name %q", o.ReconnectWait, o.ReconnectJitter, o.MaxReconnect, o.RetryOnFailedConnect, o.Name)
	}
	srv.Shutdown()
	waitFor(t, "disconnected", func() bool { return !nc.IsConnected() })
	srv.Restart()
	waitFor(t, "reconnected after the restart", nc.IsConnected)

	nc2, err := client.Connect(srv.URL(), nats.ReconnectWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	if nc2.Opts.ReconnectWait != time.Second {
		t.Fatalf("ReconnectWait = %s, want the caller's 1s", nc2.Opts.ReconnectWait)
	}
}

// TestConnectBeforeNATSIsUp: a resource server may start before NATS: Connect returns a
// connection that keeps trying instead of an error.
func TestConnectBeforeNATSIsUp(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	srv.Shutdown()
	nc, err := client.Connect(srv.URL())
	if err != nil {
		t.Fatalf("Connect with NATS down = %v, want a connection that retries", err)
	}
	t.Cleanup(nc.Close)
	if nc.IsConnected() {
		t.Fatal("connected to a server that is down")
	}
	srv.Restart()
	waitFor(t, "connected once NATS is up", nc.IsConnected)
}

// TestLogNATSErrors: asynchronous errors go to the logger, not to stderr as plain text.
func TestLogNATSErrors(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	core, logs := observer.New(zap.WarnLevel)
	nc, err := client.Connect(srv.URL(), nats.Name("resourced"), client.LogNATSErrors(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	sub, err := nc.Subscribe("slow", func(*nats.Msg) { <-block })
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(1, 1<<20)
	for range 10 {
		_ = nc.Publish("slow", []byte("x"))
	}
	_ = nc.Flush()
	waitFor(t, "a logged slow-consumer error", func() bool { return logs.FilterMessage("NATS asynchronous error").Len() > 0 })
	e := logs.FilterMessage("NATS asynchronous error").All()[0]
	if e.ContextMap()["subject"] != "slow" || e.ContextMap()["connection"] != "resourced" {
		t.Fatalf("logged %+v", e.ContextMap())
	}
}
