package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/testkit"
	"github.com/revocast/revocast/services/internal/tokens"
)

// syncBuffer lets the test read what a running process or goroutine wrote so far.
type syncBuffer = testkit.SyncBuffer

var servingLine = regexp.MustCompile(`resourced: serving (http://\S+)`)

// iso8601 is zap's ISO8601TimeEncoder, as revocastd writes it.
var iso8601 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$|^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// TestLogsMatchRevocastd: resourced writes its log to the stderr it is given, one JSON
// object a line, with the ISO 8601 time stamps revocastd writes (not epoch floats), and
// becomes ready against the embedded default with no configuration but its data directory.
func TestLogsMatchRevocastd(t *testing.T) {
	dir := t.TempDir()
	e, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := nats.Connect(e.ClientURL(), nats.UserCredentials(e.Credentials(natsutil.Broadcaster)), natsutil.PrivateInbox())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := store.Setup(t.Context(), js, store.Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.OpenKeyRing(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}

	env := map[string]string{"NATS_URL": e.ClientURL(), "REVOCAST_DATA_DIR": dir, "RESOURCED_HTTP_ADDR": "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"resourced"}, func(k string) string { return env[k] }, stdout, stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })

	var url string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := servingLine.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resourced not serving after 30s; logs:\n%s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("resourced not ready after 30s; logs:\n%s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}

	logs := strings.TrimSpace(stderr.String())
	if logs == "" {
		t.Fatal("resourced logged nothing to the stderr it was given")
	}
	for _, line := range strings.Split(logs, "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		ts, ok := entry["ts"].(string)
		if !ok || !iso8601.MatchString(ts) {
			t.Fatalf("ts = %v in %q, want ISO 8601 as revocastd writes", entry["ts"], line)
		}
	}
}

// TestUsageNamesTheProgram: under go run, args[0] is a path in the build cache; the usage
// line names resourced instead.
func TestUsageNamesTheProgram(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"/tmp/go-build1234/b001/exe/resourced", "-h"}, func(string) string { return "" }, &bytes.Buffer{}, &stderr)
	if err == nil {
		t.Fatal("-h returned nil, want flag.ErrHelp")
	}
	if first, _, _ := strings.Cut(stderr.String(), "\n"); first != "Usage of resourced:" {
		t.Fatalf("usage line = %q, want %q", first, "Usage of resourced:")
	}
	if !strings.Contains(stderr.String(), "RESOURCED_HTTP_ADDR") {
		t.Fatal("-h does not name RESOURCED_HTTP_ADDR")
	}
}
