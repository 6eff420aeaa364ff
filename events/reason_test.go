package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

func TestValidateReason(t *testing.T) {
	for name, reason := range map[string]string{
		"Empty":         "",
		"ASCII":         "signing key leaked (ticket #42)",
		"Unicode":       "Überprüfung 🔒",
		"EmojiZWJ":      "👩‍💻 on call",
		"RightToLeft":   "מפתח דלף",
		"Longest":       strings.Repeat("x", events.MaxReasonLen),
		"Replacement":   "a\ufffdb",
		"NonASCIISpace": "a\u00a0b",
	} {
		t.Run("OK"+name, func(t *testing.T) {
			if err := events.ValidateReason(reason); err != nil {
				t.Fatalf("ValidateReason(%q) = %v, want nil", reason, err)
			}
		})
	}
	for name, reason := range map[string]string{
		"NUL":           "a\x00b",
		"Escape":        "\x1b[2J",
		"Bell":          "a\a",
		"CRLF":          "a\r\nb",
		"Tab":           "a\tb",
		"DEL":           "a\x7f",
		"C1":            "a\u0085b",
		"RLO":           "a\u202eb",
		"RLI":           "a\u2067b",
		"LRM":           "a\u200eb",
		"ALM":           "a\u061cb",
		"LineSeparator": "a\u2028b",
		"ParaSeparator": "a\u2029b",
		"InvalidUTF8":   "a\xffb",
		"TooLong":       strings.Repeat("x", events.MaxReasonLen+1),
	} {
		t.Run("Err"+name, func(t *testing.T) {
			if err := events.ValidateReason(reason); !errors.Is(err, events.ErrInvalidReason) {
				t.Fatalf("ValidateReason(%q) = %v, want ErrInvalidReason", reason, err)
			}
		})
	}
}

// Events stored before reasons were checked stay readable: the check is for new events,
// and readers that print a reason escape it.
func TestDecodeKeepsStoredReasonsWithControlCharacters(t *testing.T) {
	ev, err := events.NewUserReset(42, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "rvca_1")
	if err != nil {
		t.Fatal(err)
	}
	ev.Reason = "old\x00\x1b[31m\r\n\u202e"
	b, err := events.Encode(ev)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := events.Decode(b)
	if err != nil || got.Reason != ev.Reason {
		t.Fatalf("Decode = %q, %v; want the stored reason", got.Reason, err)
	}
}
