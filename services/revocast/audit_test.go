package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/api"
	"github.com/revocast/revocast/services/internal/audit"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/testkit"
)

// apiEvents produces events through the real API and returns the CLI fixture, the actors
// and the API URL.
func apiEvents(t *testing.T) (*cli, string, string, string) {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	c := newCLI(t)
	h, err := api.NewServer(api.Config{Store: c.store,
		Replay: func(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error) {
			return audit.Replay(ctx, c.js, q, emit)
		}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	app, root, _ := c.store.CreateApp(t.Context(), "shop")
	k, key, _ := c.store.CreateKey(t.Context(), "oncall", nil)
	send := func(method, path string, header map[string]string, body string) {
		req, _ := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		for name, v := range header {
			req.Header.Set(name, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%s %s: %v %v", method, path, res, err)
		}
		res.Body.Close()
	}
	send("POST", "/v2/users/reset/42", map[string]string{"X-API-Key": key.Reveal(), "X-Request-Id": "req-a", "User-Agent": "audit-test"}, `{"reason":"phished"}`)
	send("DELETE", "/root/shop/flush", map[string]string{"Authorization": root.Reveal(), "X-Request-Id": "req-b", "User-Agent": "audit-test"}, "")
	send("POST", "/v2/users/reset/7", map[string]string{"X-API-Key": key.Reveal(), "X-Request-Id": "req-c", "User-Agent": "audit-test"}, "")
	return c, app.KeyID, k.ID, hs.URL
}

type line struct {
	Seq       uint64    `json:"seq"`
	StoredAt  time.Time `json:"stored_at"`
	Subject   string    `json:"subject"`
	V         int       `json:"v"`
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	AppID     string    `json:"app_id"`
	UserID    string    `json:"user_id"`
	NotBefore time.Time `json:"not_before"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason"`
	Source    struct {
		RemoteAddr string `json:"remote_addr"`
		RequestID  string `json:"request_id"`
		UserAgent  string `json:"user_agent"`
	} `json:"source"`
}

func parseLines(t *testing.T, out string) []line {
	t.Helper()
	var ls []line
	for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
		if s == "" {
			continue
		}
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("not a JSON line: %q: %v", s, err)
		}
		ls = append(ls, l)
	}
	return ls
}

func TestAuditJSONLFieldByField(t *testing.T) {
	c, rootID, keyID, _ := apiEvents(t)
	out, stderr, err := c.run("audit") // stdout is not a terminal: JSON lines
	if err != nil {
		t.Fatal(err)
	}
	ls := parseLines(t, out)
	if len(ls) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(ls), out)
	}
	r := ls[0]
	if r.Seq != 1 || r.Subject != "revocation.user.reset.42" || r.V != 1 || len(r.ID) != 32 || r.Type != "user.reset" ||
		r.UserID != "42" || r.AppID != "" || r.Actor != keyID || r.Reason != "phished" ||
		r.Source.RemoteAddr != "127.0.0.1" || r.Source.RequestID != "req-a" || r.Source.UserAgent != "audit-test" ||
		r.StoredAt.IsZero() || r.NotBefore.IsZero() || r.StoredAt.Before(r.NotBefore) {
		t.Fatalf("line 1 = %+v", r)
	}
	f := ls[1]
	if f.Seq != 2 || f.Subject != "revocation.app.flushed.shop" || f.Type != "app.flushed" || f.AppID != "shop" ||
		f.UserID != "" || f.Actor != rootID || f.Source.RequestID != "req-b" || f.Reason != "" {
		t.Fatalf("line 2 = %+v", f)
	}
	if !strings.Contains(stderr, "3 events matched, 3 scanned") {
		t.Fatalf("summary = %q", stderr)
	}

	filters := map[string]struct {
		args []string
		seqs string
	}{
		"App":         {[]string{"--app", "shop"}, "2"},
		"User":        {[]string{"--user", "7"}, "3"},
		"AppAndUser":  {[]string{"--app", "shop", "--user", "42"}, "1,2"},
		"Type":        {[]string{"--type", "user.reset"}, "1,3"},
		"Actor":       {[]string{"--actor", rootID}, "2"},
		"Since":       {[]string{"--since", "1h"}, "1,2,3"},
		"SinceFuture": {[]string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, ""},
		"Until":       {[]string{"--until", "2000-01-01"}, ""},
		"Range":       {[]string{"--since", "2000-01-01", "--until", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, "1,2,3"},
	}
	for name, tt := range filters {
		t.Run(name, func(t *testing.T) {
			out, _, err := c.run(append([]string{"audit", "--format", "jsonl"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []string
			for _, l := range parseLines(t, out) {
				seqs = append(seqs, jsonSeq(l.Seq))
			}
			if got := strings.Join(seqs, ","); got != tt.seqs {
				t.Fatalf("seqs = %q, want %q", got, tt.seqs)
			}
		})
	}
}

func jsonSeq(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func TestAuditTable(t *testing.T) {
	c, rootID, keyID, _ := apiEvents(t)
	out, _, err := c.run("audit", "--format", "table")
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 4 {
		t.Fatalf("%d rows, want header + 3:\n%s", len(rows), out)
	}
	header := rows[0]
	for _, col := range []string{"SEQ", "STORED", "TYPE", "TARGET", "NOT BEFORE", "ACTOR", "REMOTE", "REQUEST ID", "REASON"} {
		if !strings.Contains(header, col) {
			t.Fatalf("header %q lacks %s", header, col)
		}
	}
	// Columns are aligned: every row has its TYPE where the header has it.
	typeCol := strings.Index(header, "TYPE")
	for i, want := range []struct{ typ, target, actor, req, reason string }{
		{"user.reset", "user 42", keyID, "req-a", "phished"},
		{"app.flushed", "app shop", rootID, "req-b", "-"},
		{"user.reset", "user 7", keyID, "req-c", "-"},
	} {
		row := rows[i+1]
		if !strings.HasPrefix(row[typeCol:], want.typ) {
			t.Fatalf("row %d %q: type not under TYPE", i+1, row)
		}
		for _, cell := range []string{want.target, want.actor, "127.0.0.1", want.req, want.reason} {
			if !strings.Contains(row, cell) {
				t.Fatalf("row %d %q lacks %q", i+1, row, cell)
			}
		}
	}
	out, _, err = c.run("audit", "--format", "table", "--app", "nobody")
	if err != nil || !strings.HasPrefix(out, "SEQ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("empty table = %q, %v", out, err)
	}
}

// syncBuffer lets the test read what a running process or goroutine wrote so far.
type syncBuffer = testkit.SyncBuffer

func TestAuditFollow(t *testing.T) {
	c, _, _, _ := apiEvents(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"revocast", "audit", "--follow", "--format", "jsonl", "--user", "99"},
			func(k string) string { return map[string]string{"NATS_URL": c.url}[k] }, stdout, stderr)
	}()
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "following") })
	if _, _, err := c.run("reset", "99", "--reason", "late"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(stdout.String(), `"reason":"late"`) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("audit --follow returned %v on interrupt", err)
	}
	if ls := parseLines(t, stdout.String()); len(ls) != 1 || ls[0].UserID != "99" {
		t.Fatalf("followed %+v", ls)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAuditVerify(t *testing.T) {
	c, _, _, _ := apiEvents(t)
	out, _, err := c.run("audit", "--verify")
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify on an intact stream = %q, %v", out, err)
	}

	// A copy of the stream without the deny flags, as a privileged operator could make,
	// with one message deleted.
	srv := eventstest.RunJetStream(t)
	js, _ := jetstream.New(srv.Connect())
	cfg := store.StreamConfig(1)
	cfg.DenyDelete, cfg.DenyPurge = false, false
	stream, err := js.CreateStream(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := js.Publish(t.Context(), "revocation.user.reset.1", []byte(`{"v":1,"id":"0123456789abcdef0123456789abcde`+string(rune('0'+i))+`","type":"user.reset","user_id":"1","not_before":"2026-01-01T00:00:00Z","actor":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.DeleteMsg(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"revocast", "audit", "--verify"},
		func(k string) string { return map[string]string{"NATS_URL": srv.URL()}[k] }, &stdout, &stderr)
	if !errors.Is(err, errVerifyFailed) {
		t.Fatalf("verify on a tampered stream = %v, want errVerifyFailed", err)
	}
	for _, want := range []string{"deny_delete is off", "deny_purge is off", "seqs [2]"} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("verify output lacks %q:\n%s", want, stdout.String())
		}
	}
	// A plain replay reports the gap too.
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"revocast", "audit"},
		func(k string) string { return map[string]string{"NATS_URL": srv.URL()}[k] }, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "GAP seq 2") {
		t.Fatalf("replay summary lacks the gap: %q", stderr.String())
	}
}

func TestAuditBadInput(t *testing.T) {
	for name, args := range map[string][]string{
		"ErrDuration":      {"audit", "--since", "24hours"},
		"ErrTime":          {"audit", "--until", "2026-13-40"},
		"ErrType":          {"audit", "--type", "app.deleted"},
		"ErrRange":         {"audit", "--since", "2026-11-02", "--until", "2026-11-01"},
		"ErrUser":          {"audit", "--user", "-1"},
		"ErrFormat":        {"audit", "--format", "xml"},
		"ErrFollowUntil":   {"audit", "--follow", "--until", "1h"},
		"ErrVerifyMix":     {"audit", "--verify", "--app", "shop"},
		"ErrFlagElsewhere": {"apps", "list", "--since", "1h"},
		"ErrArgument":      {"audit", "shop"},
	} {
		t.Run(name, func(t *testing.T) {
			// An unreachable NATS: a usage error proves nothing was read.
			err := run(context.Background(), append([]string{"revocast", "--nats-url", "nats://127.0.0.1:1"}, args...),
				func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a usage error (exit status 2)", err)
			}
		})
	}
}
