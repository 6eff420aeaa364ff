package audit

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

// TestAppendJSONMatchesJSONL: the API's page objects are the CLI's JSON lines, for valid
// events (copied as stored) and invalid ones (encoded with their error).
func TestAppendJSONMatchesJSONL(t *testing.T) {
	ev, err := events.NewUserReset(42, time.Now(), "rvca_aaaaaaaaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]Record{
		"Valid":   {Seq: 3, Stored: time.Now().UTC(), Subject: ev.Subject(), Event: ev, Raw: raw},
		"Invalid": {Seq: 4, Stored: time.Now().UTC(), Subject: ev.Subject(), Err: errors.New("bad"), Raw: []byte("<not json>")},
	} {
		var line strings.Builder
		if err := NewJSONLWriter(&line).Write(rec); err != nil {
			t.Fatal(err)
		}
		b, err := AppendJSON([]byte("["), rec)
		if err != nil {
			t.Fatal(err)
		}
		var got, want any
		if err := json.Unmarshal(append(b, ']'), &got); err != nil {
			t.Fatalf("%s: AppendJSON wrote invalid JSON %q: %v", name, b, err)
		}
		_ = json.Unmarshal([]byte("["+line.String()+"]"), &want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: AppendJSON = %s\nJSONL     = %s", name, b[1:], line.String())
		}
	}
}
