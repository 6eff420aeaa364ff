package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events/eventstest"
)

// fleetTables runs n tables (no keys needed: a key function that refuses) that report
// under t0..t(n-1) on their own connections.
func fleetTables(t *testing.T, srv *eventstest.Server, n int) {
	t.Helper()
	for i := range n {
		tab, err := client.New(srv.Connect(), client.WithInstanceID("t"+string(rune('0'+i))), client.WithService("svc"),
			client.WithKeyfunc(func(*jwt.Token) (any, error) { return nil, jwt.ErrTokenUnverifiable }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = tab.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tab.WaitReady(wctx); err != nil {
			t.Fatal(err)
		}
		wcancel()
	}
}

func TestFleetCommands(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	c := newCLIOn(t, srv)
	fleetTables(t, srv, 2)

	if _, _, err := c.run("apps", "create", "shop"); err != nil {
		t.Fatal(err)
	}
	out, _, err := c.run("flush", "shop", "--wait", "5s")
	if err != nil {
		t.Fatalf("flush --wait: %v\n%s", err, out)
	}
	if !strings.Contains(out, "applied by 2/2 live instances") || !strings.Contains(out, "t0") || !strings.Contains(out, "t1") {
		t.Fatalf("flush --wait printed:\n%s", out)
	}
	out, _, err = c.run("fleet", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Live      int
		Instances []struct{ Instance, Service string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Live != 2 || res.Instances[0].Service != "svc" {
		t.Fatalf("fleet --format json = %s (%v)", out, err)
	}
	out, _, err = c.run("fleet")
	if err != nil || !strings.Contains(out, "INSTANCE") || !strings.Contains(out, "t1") {
		t.Fatalf("fleet = %v\n%s", err, out)
	}
	if _, _, err := c.run("fleet", "--wait", "1s"); err == nil {
		t.Fatal("fleet --wait accepted")
	}
}
