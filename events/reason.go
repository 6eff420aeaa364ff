package events

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidReason is returned by [ValidateReason].
var ErrInvalidReason = errors.New("events: invalid reason")

// ValidateReason checks a reason before it goes into a new event: at most [MaxReasonLen]
// bytes of UTF-8 text on one line. It refuses the control characters (C0 such as NUL, ESC,
// BEL, CR, LF and TAB; DEL; C1), the line and paragraph separators, and the bidi controls
// that reorder what is displayed (U+202E RIGHT-TO-LEFT OVERRIDE and the like), because
// auditors read reasons on terminals, where such characters move the cursor, forge rows or
// disguise text. Letters, marks, numbers, punctuation, symbols and spaces of every script
// pass, and so do the joiners that emoji sequences need.
//
// [Decode] does not apply it: events stored before the check existed stay readable, so
// whatever prints a reason from the stream still escapes it.
func ValidateReason(reason string) error {
	if len(reason) > MaxReasonLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidReason, len(reason), MaxReasonLen)
	}
	for i, r := range reason {
		if r == utf8.RuneError && !validRuneAt(reason, i) {
			return fmt.Errorf("%w: not valid UTF-8 at byte %d", ErrInvalidReason, i)
		}
		if unicode.In(r, unicode.Cc, unicode.Zl, unicode.Zp, unicode.Bidi_Control) {
			return fmt.Errorf("%w: control character %U at byte %d", ErrInvalidReason, r, i)
		}
	}
	return nil
}

// validRuneAt reports whether s holds a real U+FFFD at i rather than a broken sequence.
func validRuneAt(s string, i int) bool {
	_, n := utf8.DecodeRuneInString(s[i:])
	return n == 3
}
