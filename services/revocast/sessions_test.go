package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/revocast/revocast/events"
)

func TestSessionsRevoke(t *testing.T) {
	c := newCLI(t)
	before := c.msgs()
	for _, args := range [][]string{
		{"sessions", "revoke"},
		{"sessions", "revoke", "a.b"},
		{"sessions", "revoke", "*"},
		{"sessions", "revoke", "a b"},
		{"sessions", "revoke", "séance"},
		{"sessions", "revoke", strings.Repeat("s", 10<<10)},
		{"sessions", "list", "x"},
		{"sessions", "revoke", "s_1", "--scopes", "x"},
	} {
		var ue usageError
		if _, _, err := c.run(args...); !errors.As(err, &ue) {
			t.Fatalf("%.60q: err = %v, want a usage error", args, err)
		}
	}
	if c.msgs() != before {
		t.Fatal("a refused command stored an event")
	}
	out, _, err := c.run("sessions", "revoke", "s_laptop", "--reason", "stolen")
	if err != nil || !strings.Contains(out, "stored session.revoked on "+events.SessionRevokedPrefix+"s_laptop") {
		t.Fatalf("sessions revoke = %q, %v", out, err)
	}
	if _, _, err := c.run("reset", "42"); err != nil {
		t.Fatal(err)
	}
	out, _, err = c.run("audit", "--session", "s_laptop", "--format", "jsonl")
	if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"session_id":"s_laptop"`) || !strings.Contains(out, `"reason":"stolen"`) {
		t.Fatalf("audit --session = %q, %v", out, err)
	}
	out, _, err = c.run("audit", "--session", "s_laptop", "--format", "table")
	if err != nil || !strings.Contains(out, "session s_laptop") {
		t.Fatalf("audit --session table = %q, %v", out, err)
	}
	var ue usageError
	if _, _, err := c.run("audit", "--session", "a.b"); !errors.As(err, &ue) {
		t.Fatalf("audit --session a.b = %v, want a usage error", err)
	}
}
