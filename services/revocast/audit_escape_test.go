package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/audit"
)

// hostile holds what a caller could get stored before the API refused control characters:
// a NUL, a colour escape, a bell, a CR LF that starts a forged row, a DEL, a C1 CSI and a
// right-to-left override.
const hostile = "ok\x00\x1b[31mred\x07\r\n9999  2020-01-01T00:00:00.000Z  app.flushed  app forged\x7f\u009b2J\u202eevil"

// storeOldEvent stores an event with hostile text fields directly through the store, as an
// event written before the API's check would be.
func storeOldEvent(t *testing.T, c *cli) events.Event {
	t.Helper()
	ev, err := events.NewUserReset(5, time.Now(), "cli:\x1b]0;title\x07me")
	if err != nil {
		t.Fatal(err)
	}
	ev.Reason = hostile
	ev.Source = events.Source{RemoteAddr: "10.0.0.1\r\n", RequestID: "req\x1b[2K", UserAgent: "ua\r\nX: y"}
	stored, err := c.store.Publish(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return stored.Event
}

// terminalUnsafe returns the first byte of out that a terminal would act on: a C0 control
// other than the newline ending a row, or DEL.
func terminalUnsafe(out string) (byte, int) {
	for i := 0; i < len(out); i++ {
		if b := out[i]; (b < 0x20 && b != '\n') || b == 0x7f {
			return b, i
		}
	}
	return 0, -1
}

func TestAuditTableEscapesControlCharacters(t *testing.T) {
	c := newCLI(t)
	storeOldEvent(t, c)
	out, _, err := c.run("audit", "--format", "table")
	if err != nil {
		t.Fatal(err)
	}
	if b, i := terminalUnsafe(out); i >= 0 {
		t.Fatalf("table holds byte %#x at %d:\n%q", b, i, out)
	}
	for _, r := range []rune{'\u009b', '\u202e'} {
		if strings.ContainsRune(out, r) {
			t.Fatalf("table holds %U:\n%q", r, out)
		}
	}
	if rows := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(rows) != 2 {
		t.Fatalf("%d rows, want header + 1:\n%s", len(rows), out)
	}
	// The escapes say what was stored, Go-quoted.
	for _, want := range []string{`\x00\x1b[31mred\a\r\n9999`, `\x7f\u009b2J\u202eevil"`, `"req\x1b[2K"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("table lacks %s:\n%s", want, out)
		}
	}
}

func TestAuditTablePrintsPlainUnicode(t *testing.T) {
	c := newCLI(t)
	ev, err := events.NewUserReset(5, time.Now(), "cli:me")
	if err != nil {
		t.Fatal(err)
	}
	ev.Reason = "Überprüfung 🔒"
	if _, err := c.store.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	out, _, err := c.run("audit", "--format", "table")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "  Überprüfung 🔒\n") {
		t.Fatalf("reason not printed as is:\n%s", out)
	}
}

func TestAuditJSONLKeepsControlCharactersExactly(t *testing.T) {
	c := newCLI(t)
	want := storeOldEvent(t, c)
	out, _, err := c.run("audit", "--format", "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if b, i := terminalUnsafe(out); i >= 0 {
		t.Fatalf("jsonl holds byte %#x at %d:\n%q", b, i, out)
	}
	for _, r := range []rune{'\u009b', '\u202e'} {
		if strings.ContainsRune(out, r) {
			t.Fatalf("jsonl holds %U unescaped:\n%q", r, out)
		}
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("want one line:\n%q", out)
	}
	var got audit.JSONRecord
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%q", err, out)
	}
	if got.Event.Reason != want.Reason || got.Event.Actor != want.Actor || got.Event.Source != want.Source {
		t.Fatalf("round trip changed the event:\ngot  %+v\nwant %+v", got.Event, want)
	}
}

// The CLI applies the API's rule: a reason that would reach the audit log with control
// characters is a usage error, and nothing is stored.
func TestReasonWithControlCharactersIsAUsageError(t *testing.T) {
	c := newCLI(t)
	if _, _, err := c.store.CreateApp(t.Context(), "shop"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"reset", "5", "--reason", "a\x1b[2Jb"},
		{"reset", "5", "--reason", "ok\r\nforged row"},
		{"flush", "shop", "--reason", "x\u202ey"},
	} {
		_, _, err := c.run(args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--reason") {
			t.Errorf("revocast %q = %v, want a usage error about --reason", args, err)
		}
	}
	if n := c.msgs(); n != 0 {
		t.Fatalf("stream holds %d events after refused reasons", n)
	}
	if _, _, err := c.run("reset", "5", "--reason", "Überprüfung 🔒"); err != nil {
		t.Fatalf("plain Unicode reason: %v", err)
	}
}
