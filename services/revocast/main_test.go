package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/store"
)

type cli struct {
	t     *testing.T
	url   string
	store *store.Store
	js    jetstream.JetStream
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	return newCLIOn(t, eventstest.RunJetStream(t))
}

// newCLIOn is newCLI on a server the test also uses otherwise.
func newCLIOn(t *testing.T, srv *eventstest.Server) *cli {
	t.Helper()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Setup(t.Context(), js, store.Config{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &cli{t: t, url: srv.URL(), store: st, js: js}
}

// run runs the CLI with args and returns stdout, stderr and the error.
func (c *cli) run(args ...string) (string, string, error) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "NATS_URL" {
			return c.url
		}
		return ""
	}
	err := run(context.Background(), append([]string{"revocast"}, args...), getenv, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func (c *cli) msgs() uint64 {
	c.t.Helper()
	info, err := c.store.Stream().Info(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	return info.State.Msgs
}

func TestAppsLifecycle(t *testing.T) {
	c := newCLI(t)
	out, _, err := c.run("apps", "create", "shop")
	if err != nil {
		t.Fatalf("apps create: %v", err)
	}
	key := lastLine(out)
	if _, err := c.store.AuthenticateApp(context.Background(), "shop", key); err != nil {
		t.Fatalf("the last line %q is not a working root key: %v", key, err)
	}
	if _, _, err := c.run("apps", "create", "shop"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("apps create twice = %v, want ErrExists", err)
	}
	out, _, err = c.run("apps", "list")
	if err != nil || !strings.Contains(out, "shop") || strings.Contains(out, key) {
		t.Fatalf("apps list = %q, %v", out, err)
	}
	out, _, err = c.run("apps", "rotate", "shop")
	if err != nil {
		t.Fatal(err)
	}
	newKey := lastLine(out)
	if _, err := c.store.AuthenticateApp(context.Background(), "shop", key); err == nil {
		t.Fatal("old root key still works after rotation")
	}
	if _, err := c.store.AuthenticateApp(context.Background(), "shop", newKey); err != nil {
		t.Fatalf("new root key: %v", err)
	}
}

func TestKeysLifecycle(t *testing.T) {
	c := newCLI(t)
	out, _, err := c.run("keys", "create", "auditor", "--scopes", "audit:read")
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.store.AuthenticateKey(context.Background(), lastLine(out))
	if err != nil || k.Name != "auditor" || k.Allows(store.ScopeUsersReset) {
		t.Fatalf("created key = %+v, %v", k, err)
	}
	out, _, err = c.run("keys", "list")
	if err != nil || !strings.Contains(out, k.ID) || !strings.Contains(out, "audit:read") {
		t.Fatalf("keys list = %q, %v", out, err)
	}
	out, _, err = c.run("--nats-url", c.url, "keys", "rotate", "auditor")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := c.store.AuthenticateKey(context.Background(), lastLine(out))
	if err != nil || k2.ID != k.ID {
		t.Fatalf("rotated key = %+v, %v", k2, err)
	}
}

func TestFlushAndReset(t *testing.T) {
	c := newCLI(t)
	if _, _, err := c.run("apps", "create", "shop"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.run("flush", "shop", "--reason", "incident 42"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.run("reset", "42"); err != nil {
		t.Fatal(err)
	}
	s := c.store.Stream()
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Decode(m.Data)
	if err != nil || ev.Type != events.TypeAppFlushed || ev.AppID != "shop" || ev.Reason != "incident 42" || !strings.HasPrefix(ev.Actor, "cli:") {
		t.Fatalf("flush event = %+v, %v", ev, err)
	}
	if n := c.msgs(); n != 2 {
		t.Fatalf("stream holds %d events, want 2", n)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{},
		{"apps"},
		{"apps", "create"},
		{"apps", "create", "a.b"},
		{"apps", "delete", "shop"},
		{"keys", "create", "k", "--scopes", "root"},
		{"flush", "a*"},
		{"reset", "+1"},
		{"reset", "0"},
		{"reset", "9223372036854775808"},
		{"reset", "1", "2"},
		{"reset", "1", "--scopes", "audit:read"},
		{"apps", "list", "--nope"},
	} {
		_, _, err := c.run(args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("revocast %v = %v, want a usage error", args, err)
		}
	}
	if n := c.msgs(); n != 0 {
		t.Fatalf("stream holds %d events after bad input", n)
	}
	if apps, _ := c.store.ListApps(context.Background()); len(apps) != 0 {
		t.Fatalf("apps = %+v after bad input", apps)
	}
}

func TestNoServer(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"revocast", "--nats-url", "nats://127.0.0.1:1", "apps", "list"},
		func(string) string { return "" }, &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "is revocastd running") {
		t.Fatalf("err = %v, want a hint that revocastd is not running", err)
	}
}

func TestNotSetUp(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	err := run(context.Background(), []string{"revocast", "--nats-url", srv.URL(), "apps", "list"},
		func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, store.ErrNotSetUp) {
		t.Fatalf("err = %v, want ErrNotSetUp", err)
	}
}

func TestCheckClock(t *testing.T) {
	for off, ok := range map[time.Duration]bool{0: true, 900 * time.Millisecond: true, -900 * time.Millisecond: true,
		2 * time.Second: false, -10 * time.Second: false} {
		if err := checkClock(off); (err == nil) != ok {
			t.Errorf("checkClock(%s) = %v, want ok=%v", off, err, ok)
		}
	}
}
