package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

// A stored event may carry JSON whitespace the writer did not put there (a CR between
// fields), and text that encoding/json leaves raw (DEL, C1 controls, bidi overrides): the
// JSON lines must still hold no byte a terminal acts on, and decode to exactly the event.
func TestJSONLWriterEscapesWhatATerminalRuns(t *testing.T) {
	raw := []byte("{\"v\":1,\r\"id\":\"0123456789abcdef0123456789abcdef\",\t\"type\":\"user.reset\",\"user_id\":\"4\"," +
		"\"not_before\":\"2026-01-01T00:00:00Z\",\"actor\":\"x\u202e\",\"reason\":\"a\x7fb\u009b2J\U000e0041 \\u001b[1m \\\"q\\\" \\\\ ok\"}")
	ev, err := events.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := NewJSONLWriter(&out)
	stored := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	records := []Record{
		{Seq: 1, Stored: stored, Subject: "revocation.user.reset.4", Event: ev, Raw: raw},
		{Seq: 2, Stored: stored, Subject: "revocation.user.reset.\x1b", Err: errors.New("bad\u202e"), Raw: []byte("\x1b[2J\x7f")},
	}
	for _, r := range records {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	s := out.String()
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < 0x20 && b != '\n') || b == 0x7f {
			t.Fatalf("byte %#x at %d:\n%q", b, i, s)
		}
	}
	if strings.ContainsAny(s, "\u202e\u009b\U000e0041") {
		t.Fatalf("unescaped format or C1 character:\n%q", s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), s)
	}
	var got JSONRecord
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("line 1 is not JSON: %v", err)
	}
	if got.Event != ev || got.Seq != 1 || got.Subject != records[0].Subject || !got.StoredAt.Equal(stored) {
		t.Fatalf("line 1 = %+v, want %+v", got, ev)
	}
	var bad invalidRecord
	if err := json.Unmarshal([]byte(lines[1]), &bad); err != nil {
		t.Fatalf("line 2 is not JSON: %v", err)
	}
	if bad.Subject != records[1].Subject || bad.Error != "bad\u202e" || bad.Raw != "\x1b[2J\x7f" {
		t.Fatalf("line 2 = %+v", bad)
	}
}

func TestTableWriterEscapesEveryCell(t *testing.T) {
	var out bytes.Buffer
	w := NewTableWriter(&out)
	stored := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	if err := w.Write(Record{Seq: 1, Stored: stored, Subject: "revocation.\x1b[2J", Err: errors.New("bad\r\nrow")}); err != nil {
		t.Fatal(err)
	}
	ev := events.Event{Type: events.TypeAppFlushed, AppID: "shop", NotBefore: stored, Actor: "\"quoted\"",
		Source: events.Source{RemoteAddr: "a\tb", RequestID: "r\u2028"}, Reason: "plain"}
	if err := w.Write(Record{Seq: 2, Stored: stored, Event: ev}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Count(s, "\n") != 3 {
		t.Fatalf("want header + 2 rows:\n%s", s)
	}
	for _, want := range []string{`"revocation.\x1b[2J"`, `"bad\r\nrow"`, `"\"quoted\""`, `"a\tb"`, `"r\u2028"`, "  plain\n"} {
		if !strings.Contains(s, want) {
			t.Fatalf("table lacks %s:\n%s", want, s)
		}
	}
}
