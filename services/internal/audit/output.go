package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/revocast/revocast/events"
)

// JSONRecord is the JSON form of a [Record]: the event's own fields with the stream
// sequence, the stored time and the subject beside them. The API and `revocast audit
// --format jsonl` both write it.
type JSONRecord struct {
	Seq      uint64    `json:"seq"`
	StoredAt time.Time `json:"stored_at"`
	Subject  string    `json:"subject"`
	events.Event
}

// invalidRecord is the JSON form of a message that is not a valid event.
type invalidRecord struct {
	Seq      uint64    `json:"seq"`
	StoredAt time.Time `json:"stored_at"`
	Subject  string    `json:"subject"`
	Error    string    `json:"error"`
	Raw      string    `json:"raw"`
}

// MarshalRecord returns the JSON form of r.
func MarshalRecord(r Record) any {
	if r.Err != nil {
		return invalidRecord{Seq: r.Seq, StoredAt: r.Stored, Subject: r.Subject, Error: r.Err.Error(), Raw: string(r.Raw)}
	}
	return JSONRecord{Seq: r.Seq, StoredAt: r.Stored, Subject: r.Subject, Event: r.Event}
}

// JSONLWriter writes one JSON object per line, the same objects as [MarshalRecord]. The
// lines hold no character a terminal acts on: besides the control characters that
// encoding/json escapes, DEL, C1 controls and format characters (bidi overrides) are
// written as \u escapes too, which decode to the same strings.
type JSONLWriter struct {
	w       io.Writer
	encoded bytes.Buffer
	enc     *json.Encoder
	buf     []byte
}

// NewJSONLWriter writes to w; wrap w in a bufio.Writer for long replays.
func NewJSONLWriter(w io.Writer) *JSONLWriter {
	jw := &JSONLWriter{w: w}
	jw.enc = json.NewEncoder(&jw.encoded)
	jw.enc.SetEscapeHTML(false)
	return jw
}

// Write writes r as one line. A valid event written compactly (as events.Encode writes
// them) is copied as stored, behind the record's own fields, instead of being encoded
// again: replays of millions of events spend their time reading, not re-encoding. Anything
// else (an invalid message, whitespace between fields, a character to escape) is encoded.
func (w *JSONLWriter) Write(r Record) error {
	if !copyable(r) {
		w.encoded.Reset()
		if err := w.enc.Encode(MarshalRecord(r)); err != nil {
			return err
		}
		w.buf = escapeJSON(w.buf[:0], w.encoded.Bytes())
		_, err := w.w.Write(w.buf)
		return err
	}
	w.buf = append(appendCopied(w.buf[:0], r), '\n')
	_, err := w.w.Write(w.buf)
	return err
}

// AppendJSON appends the JSON object of r (the object [JSONLWriter] writes, without the
// newline) to b. A valid event is copied as stored, as JSONLWriter does.
func AppendJSON(b []byte, r Record) ([]byte, error) {
	if copyable(r) {
		return appendCopied(b, r), nil
	}
	j, err := json.Marshal(MarshalRecord(r))
	if err != nil {
		return b, err
	}
	return escapeJSON(b, j), nil
}

// copyable reports whether r's stored JSON can be copied behind the record's own fields: a
// valid event, one compact object with nothing a terminal acts on.
func copyable(r Record) bool {
	raw := r.Raw
	return r.Err == nil && len(raw) >= 2 && raw[0] == '{' && plainJSON(raw)
}

func appendCopied(b []byte, r Record) []byte {
	raw := r.Raw
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"stored_at":"`...)
	b = r.Stored.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","subject":`...)
	b = strconv.AppendQuote(b, r.Subject)
	if raw[1] != '}' {
		b = append(b, ',')
	}
	return append(b, raw[1:]...)
}

// TableWriter writes aligned columns without buffering the whole replay, so it works with
// --follow: column widths are fixed, and a longer value simply pushes its row to the right.
type TableWriter struct {
	w      io.Writer
	header bool
}

// NewTableWriter writes to w.
func NewTableWriter(w io.Writer) *TableWriter { return &TableWriter{w: w} }

var columns = []struct {
	name  string
	width int
}{
	{"SEQ", 7}, {"STORED", 24}, {"TYPE", 11}, {"TARGET", 20}, {"NOT BEFORE", 30},
	{"ACTOR", 18}, {"REMOTE", 15}, {"REQUEST ID", 16}, {"REASON", 0},
}

func (t *TableWriter) row(cells ...string) error {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteString("  ")
		}
		c = cell(c)
		b.WriteString(c)
		if pad := columns[i].width - len(c); pad > 0 && i < len(cells)-1 {
			b.WriteString(strings.Repeat(" ", pad))
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(t.w, strings.TrimRight(b.String(), " \n")+"\n")
	return err
}

// Write writes r as one row, after the header on the first call.
func (t *TableWriter) Write(r Record) error {
	if err := t.Flush(); err != nil {
		return err
	}
	stored := r.Stored.Format("2006-01-02T15:04:05.000Z")
	if r.Err != nil {
		return t.row(strconv.FormatUint(r.Seq, 10), stored, "INVALID", r.Subject, "-", "-", "-", "-", r.Err.Error())
	}
	e := r.Event
	target := "app " + e.AppID
	switch e.Type {
	case events.TypeUserReset:
		target = "user " + strconv.FormatInt(e.UserID, 10)
	case events.TypeSessionRevoked:
		target = "session " + e.SessionID
	}
	return t.row(strconv.FormatUint(r.Seq, 10), stored, string(e.Type), target,
		e.NotBefore.Format(time.RFC3339Nano), e.Actor, dash(e.Source.RemoteAddr), dash(e.Source.RequestID), dash(e.Reason))
}

// Flush writes the header if it is not written yet, so an empty result still shows columns.
func (t *TableWriter) Flush() error {
	if t.header {
		return nil
	}
	t.header = true
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return t.row(names...)
}

// cell is s as the table prints it: as is when every character is printable (letters,
// marks, numbers, punctuation, symbols and the ASCII space), Go-quoted otherwise. Text a
// caller got stored before the API refused it (an escape sequence, a CR LF that would
// start a forged row, a bidi override) then shows what it is instead of acting on the
// terminal. A cell that starts with a quote is quoted too, so a quoted cell always means
// an escaped one.
func cell(s string) string {
	if !strings.HasPrefix(s, `"`) && utf8.ValidString(s) && strings.IndexFunc(s, notPrintable) < 0 {
		return s
	}
	return strconv.Quote(s)
}

func notPrintable(r rune) bool { return !strconv.IsPrint(r) }

// plainJSON reports whether a stored event can be copied to the output as it is: valid
// UTF-8 without control characters (not even JSON whitespace such as CR) and without
// characters that are not graphic.
func plainJSON(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError || !unicode.IsGraphic(r) {
			return false
		}
		i += n
	}
	return true
}

// escapeJSON appends enc, the output of encoding/json, to dst with DEL and every
// non-graphic character (C1 controls, format characters such as bidi overrides, line
// separators) written as \u escapes. encoding/json already escapes the C0 controls and
// leaves the rest in strings, the only place such characters can appear, so the result
// decodes to exactly the same values.
func escapeJSON(dst, enc []byte) []byte {
	for len(enc) > 0 {
		r, n := utf8.DecodeRune(enc)
		switch {
		case r == 0x7f || r >= utf8.RuneSelf && !unicode.IsGraphic(r):
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				dst = fmt.Appendf(dst, `\u%04x\u%04x`, r1, r2)
			} else {
				dst = fmt.Appendf(dst, `\u%04x`, r)
			}
		default:
			dst = append(dst, enc[:n]...)
		}
		enc = enc[n:]
	}
	return dst
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// SummaryLine is the closing line of a replay, for stderr.
func SummaryLine(s Summary) string {
	line := fmt.Sprintf("audit: %d events matched, %d scanned", s.Matched, s.Scanned)
	if s.Matched > 0 {
		line += fmt.Sprintf(", first %s, last %s", s.First.Format(time.RFC3339), s.Last.Format(time.RFC3339))
	}
	if s.Invalid > 0 {
		line += fmt.Sprintf(", %d INVALID", s.Invalid)
	}
	for _, g := range s.Gaps {
		line += ", GAP " + g.String()
	}
	return line
}
