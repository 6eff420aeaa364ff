package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/revocast/revocast/services/internal/api"
)

// A reason is printed by auditors' terminals: one with control or bidi characters is refused
// on both revocation calls, in the route's envelope, and nothing is stored.
func TestReasonWithControlCharactersIsRefused(t *testing.T) {
	f := newFixture(t, api.Config{})
	calls := []struct {
		name, method, path string
		header             map[string]string
	}{
		{"Flush", "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey}},
		{"Reset", "POST", "/v2/users/reset/7", map[string]string{"X-API-Key": f.adminKey}},
	}
	for _, call := range calls {
		for name, reason := range map[string]string{
			"ErrNUL":     "a\x00b",
			"ErrEscape":  "\x1b[31mred\x1b[0m",
			"ErrBell":    "ding\a",
			"ErrCRLF":    "ok\r\n7  2026-01-01T00:00:00.000Z  user.reset  forged",
			"ErrTab":     "a\tb",
			"ErrDEL":     "a\x7f",
			"ErrC1":      "a\u009b2J",
			"ErrBidi":    "invoice \u202efdp.exe",
			"ErrLineSep": "a\u2028b",
		} {
			t.Run(call.name+"/"+name, func(t *testing.T) {
				body, _ := json.Marshal(map[string]string{"reason": reason})
				before := f.msgs(t)
				r := f.do(t, call.method, call.path, call.header, string(body))
				if r.status != 400 {
					t.Fatalf("status = %d (%s), want 400", r.status, r.raw)
				}
				msg, _ := r.body["error"].(string)
				if call.name == "Reset" {
					msg, _ = r.body["message"].(string)
				}
				if !strings.Contains(msg, "reason") {
					t.Fatalf("body = %s, want a message about the reason in the route's envelope", r.raw)
				}
				if after := f.msgs(t); after != before {
					t.Fatalf("stream went from %d to %d events", before, after)
				}
			})
		}
		t.Run(call.name+"/OKPlainUnicode", func(t *testing.T) {
			r := f.do(t, call.method, call.path, call.header, `{"reason":"Überprüfung 🔒 — 👩‍💻 ok"}`)
			if r.status != 200 {
				t.Fatalf("status = %d (%s), want 200", r.status, r.raw)
			}
			if ev, _ := f.lastEvent(t); ev.Reason != "Überprüfung 🔒 — 👩‍💻 ok" {
				t.Fatalf("reason = %q", ev.Reason)
			}
		})
	}
}
