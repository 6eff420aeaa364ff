package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

// TestFastDecodeAgrees checks that the replay's decoder gives exactly what events.Decode
// gives, on the golden events and on every kind of malformed input.
func TestFastDecodeAgrees(t *testing.T) {
	inputs := []string{
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"4","not_before":"2026-01-01T00:00:00Z","actor":"x"}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"4","not_before":"2026-01-01T00:00:00Z","actor":"x"} {}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":4,"not_before":"2026-01-01T00:00:00Z","actor":"x"}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"-4","not_before":"2026-01-01T00:00:00Z","actor":"x"}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"4","not_before":"yesterday","actor":"x"}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"app.flushed","app_id":"a.b","not_before":"2026-01-01T00:00:00Z","actor":"x"}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"app.flushed","app_id":"a","not_before":"2026-01-01T00:00:00Z","actor":"x","extra":{"n":[1,2]}}`,
		`{"V":1,"ID":"0123456789abcdef0123456789abcdef","TYPE":"app.flushed","app_id":"a","not_before":"2026-01-01T00:00:00Z","actor":"x"}`,
		`{"v":2}`, `garbage`, `[]`, `null`, ``, `{"v":1,"id":"\u0030123456789abcdef0123456789abcdef"}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"app.flushed","app_id":"a","not_before":"2026-01-01T00:00:00Z","actor":"\ud800"}`,
		`{"v":1,"reason":"` + strings.Repeat("r", events.MaxEventSize) + `"}`,
	}
	golden, _ := filepath.Glob(filepath.Join("..", "..", "..", "events", "testdata", "*.json"))
	if len(golden) == 0 {
		t.Fatal("no golden files found")
	}
	for _, g := range golden {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		want, wantErr := events.Decode([]byte(in))
		got, gotErr := decodeOn(want.Subject(), []byte(in))
		if (wantErr == nil) != (gotErr == nil) {
			t.Errorf("input %.80q: events.Decode err = %v, fast err = %v", in, wantErr, gotErr)
			continue
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("input %.80q: fast = %+v, want %+v", in, got, want)
		}
	}
}

// TestJSONLFastPathMatchesMarshal checks that copying the stored event behind the record's
// fields gives the same object as encoding the record.
func TestJSONLFastPathMatchesMarshal(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "events", "testdata", "app_flushed.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw = []byte(strings.TrimSpace(string(raw)))
	ev, err := events.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Seq: 7, Stored: ev.NotBefore.Add(time.Millisecond), Subject: ev.Subject(), Event: ev, Raw: raw}
	var fast, slow strings.Builder
	if err := NewJSONLWriter(&fast).Write(rec); err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(&slow)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(MarshalRecord(rec)); err != nil {
		t.Fatal(err)
	}
	var a, b map[string]any
	if err := json.Unmarshal([]byte(fast.String()), &a); err != nil {
		t.Fatalf("fast path wrote invalid JSON %q: %v", fast.String(), err)
	}
	_ = json.Unmarshal([]byte(slow.String()), &b)
	if !reflect.DeepEqual(a, b) || strings.Count(fast.String(), "\n") != 1 {
		t.Fatalf("fast path = %s\nencoded   = %s", fast.String(), slow.String())
	}
	// An event with a newline inside (a foreign writer's pretty JSON) is encoded again, so
	// each record stays on one line.
	rec.Raw = []byte("{\n" + string(raw[1:]))
	fast.Reset()
	_ = NewJSONLWriter(&fast).Write(rec)
	if strings.Count(fast.String(), "\n") != 1 {
		t.Fatalf("multi-line raw event broke the line: %q", fast.String())
	}
}
