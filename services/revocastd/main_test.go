package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/testkit"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// syncBuffer lets the test read what a running process or goroutine wrote so far.
type syncBuffer = testkit.SyncBuffer

// instance is a revocastd started through run, as main would.
type instance struct {
	api, nats string
	logs      *syncBuffer
	stop      func() error
	creds     string // NATS_CREDS, for an instance on another's NATS
	dataDir   string
}

// credentials is the credentials file of role on the NATS the instance uses.
func (i *instance) credentials(role natsutil.Role) string {
	if i.creds != "" {
		return i.creds
	}
	return natsutil.CredentialsFile(i.dataDir, role)
}

// connect opens a connection to the instance's NATS as role, closed when the test ends.
func (i *instance) connect(tb testing.TB, role natsutil.Role, extra ...nats.Option) *nats.Conn {
	tb.Helper()
	opts := append([]nats.Option{nats.UserCredentials(i.credentials(role))}, extra...)
	if role == natsutil.Broadcaster {
		opts = append(opts, natsutil.PrivateInbox())
	}
	nc, err := nats.Connect(i.nats, opts...)
	if err != nil {
		tb.Fatalf("connect to %s as %s: %v", i.nats, role, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

var servingLine = regexp.MustCompile(`revocastd: serving (http://\S+) \(NATS (\S+)\)`)

// start runs revocastd with env (on top of loopback :0 defaults) until the test ends.
func start(tb testing.TB, env map[string]string) *instance {
	tb.Helper()
	full := map[string]string{
		"REVOCAST_HTTP_ADDR":   "127.0.0.1:0",
		"REVOCAST_NATS_LISTEN": "127.0.0.1:0",
		"REVOCAST_DATA_DIR":    tb.TempDir(),
	}
	for k, v := range env {
		full[k] = v
	}
	getenv := func(k string) string { return full[k] }
	ctx, cancel := context.WithCancel(context.Background())
	stdout, logs := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"revocastd"}, getenv, stdout, logs) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	tb.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := servingLine.FindStringSubmatch(stdout.String()); m != nil {
			return &instance{api: m[1], nats: m[2], logs: logs, stop: stop, creds: full["NATS_CREDS"], dataDir: full["REVOCAST_DATA_DIR"]}
		}
		select {
		case err := <-done:
			done <- err // for stop, which the cleanup calls
			tb.Fatalf("revocastd exited before serving: %v\nlogs:\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("revocastd not serving after 30s; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openStore opens the instance's store as the admin CLI does (the broadcaster role).
func openStore(tb testing.TB, srv *instance) (*store.Store, jetstream.JetStream) {
	tb.Helper()
	js, err := jetstream.New(srv.connect(tb, natsutil.Broadcaster))
	if err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(context.Background(), js)
	if err != nil {
		tb.Fatal(err)
	}
	return st, js
}

// call is request without the answer's headers.
func call(tb testing.TB, method, url string, header map[string]string) (int, string) {
	tb.Helper()
	code, _, body := request(tb, method, url, header)
	return code, body
}

// readAll returns every event in the stream with its subject, in order.
func readAll(tb testing.TB, js jetstream.JetStream) ([]events.Event, []string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var evs []events.Event
	var subjects []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatalf("seq %d: %v", seq, err)
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			tb.Fatalf("seq %d does not decode: %v", seq, err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != ev.ID {
			tb.Fatalf("seq %d: Nats-Msg-Id %q, event id %q", seq, m.Header.Get(jetstream.MsgIDHeader), ev.ID)
		}
		evs = append(evs, ev)
		subjects = append(subjects, m.Subject)
	}
	return evs, subjects
}

func TestEndToEndAndRestart(t *testing.T) {
	dataDir := t.TempDir()
	env := map[string]string{"REVOCAST_DATA_DIR": dataDir}
	srv := start(t, env)
	st, js := openStore(t, srv)
	ctx := context.Background()
	app, rootKey, err := st.CreateApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	adminKey, apiKey, err := st.CreateKey(ctx, "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := call(t, "GET", srv.api+path, nil); code != 200 {
			t.Fatalf("%s = %d %s", path, code, body)
		}
	}
	before := time.Now()
	code, body := call(t, "DELETE", srv.api+"/root/shop/flush", map[string]string{
		"Authorization": rootKey.Reveal(), "X-Request-Id": "e2e-flush", "User-Agent": "e2e-test/1"})
	if code != 200 || body != `{"status":"ok"}` {
		t.Fatalf("flush = %d %s", code, body)
	}
	code, body = call(t, "POST", srv.api+"/v2/users/reset/42", map[string]string{
		"X-API-Key": apiKey.Reveal(), "X-Request-Id": "e2e-reset", "User-Agent": "e2e-test/1"})
	if code != 200 || body != `{"success":true,"data":true}` {
		t.Fatalf("reset = %d %s", code, body)
	}
	after := time.Now()

	evs, subjects := readAll(t, js)
	if len(evs) != 2 {
		t.Fatalf("stream holds %d events, want 2", len(evs))
	}
	check := func(ev events.Event, subject string, typ events.Type, wantSubject, actor, reqID string) {
		t.Helper()
		if ev.Version != events.Version || ev.Type != typ || subject != wantSubject || ev.Subject() != subject {
			t.Fatalf("event %+v on %s, want %s on %s", ev, subject, typ, wantSubject)
		}
		if ev.Actor != actor {
			t.Fatalf("actor = %q, want %q", ev.Actor, actor)
		}
		if ev.NotBefore.Before(before.Truncate(time.Microsecond)) || ev.NotBefore.After(after) {
			t.Fatalf("not_before %v outside [%v, %v]", ev.NotBefore, before, after)
		}
		want := events.Source{RemoteAddr: "127.0.0.1", RequestID: reqID, UserAgent: "e2e-test/1"}
		if ev.Source != want || ev.Reason != "" {
			t.Fatalf("source = %+v reason %q, want %+v", ev.Source, ev.Reason, want)
		}
	}
	check(evs[0], subjects[0], events.TypeAppFlushed, "revocation.app.flushed.shop", app.KeyID, "e2e-flush")
	if evs[0].AppID != "shop" || evs[0].UserID != 0 {
		t.Fatalf("flush event ids: %+v", evs[0])
	}
	check(evs[1], subjects[1], events.TypeUserReset, "revocation.user.reset.42", adminKey.ID, "e2e-reset")
	if evs[1].UserID != 42 || evs[1].AppID != "" {
		t.Fatalf("reset event ids: %+v", evs[1])
	}

	logs := srv.logs.String()
	for _, secret := range []string{rootKey.Reveal(), apiKey.Reveal()} {
		if strings.Contains(logs, secret) || strings.Contains(logs, secret[len(secret)-20:]) {
			t.Fatal("a key appears in the logs")
		}
	}
	if !strings.Contains(logs, `"request_id":"e2e-flush"`) || !strings.Contains(logs, `"request_id":"e2e-reset"`) {
		t.Fatalf("logs lack the request ids:\n%s", logs)
	}

	if err := srv.stop(); err != nil {
		t.Fatalf("run returned %v on shutdown", err)
	}

	// Same data directory, new process: apps, keys and events are all still there.
	srv2 := start(t, env)
	st2, js2 := openStore(t, srv2)
	apps, err := st2.ListApps(ctx)
	if err != nil || len(apps) != 1 || apps[0].ID != "shop" || apps[0].KeyID != app.KeyID {
		t.Fatalf("apps after restart = %+v, %v", apps, err)
	}
	keys, err := st2.ListKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != adminKey.ID {
		t.Fatalf("keys after restart = %+v, %v", keys, err)
	}
	if evs2, _ := readAll(t, js2); len(evs2) != 2 || evs2[0].ID != evs[0].ID || evs2[1].ID != evs[1].ID {
		t.Fatalf("events after restart = %+v", evs2)
	}
	if code, _ := call(t, "DELETE", srv2.api+"/root/shop/flush", map[string]string{"Authorization": rootKey.Reveal()}); code != 200 {
		t.Fatalf("flush after restart = %d", code)
	}
	if code, _ := call(t, "POST", srv2.api+"/v2/users/reset/42", map[string]string{"X-API-Key": apiKey.Reveal()}); code != 200 {
		t.Fatalf("reset after restart = %d", code)
	}
	if evs3, _ := readAll(t, js2); len(evs3) != 4 {
		t.Fatalf("stream holds %d events, want 4", len(evs3))
	}
}

// TestSnapshotForNewClients: revocastd writes the snapshot after revocations through the
// API, and a resource server that starts later begins from it, then follows the events
// after it.
func TestSnapshotForNewClients(t *testing.T) {
	srv := start(t, map[string]string{"REVOCAST_SNAPSHOT_INTERVAL": "20ms"})
	st, js := openStore(t, srv)
	ctx := context.Background()
	_, key, err := st.CreateKey(ctx, "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	reset := func(id int) {
		t.Helper()
		if code, body := call(t, "POST", fmt.Sprintf("%s/v2/users/reset/%d", srv.api, id), map[string]string{"X-API-Key": key.Reveal()}); code != 200 {
			t.Fatalf("reset %d = %d %s", id, code, body)
		}
	}
	for id := 1; id <= 50; id++ {
		reset(id)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		obs, err := js.ObjectStore(ctx, events.SnapshotBucket)
		var info *jetstream.ObjectInfo
		if err == nil {
			info, err = obs.GetInfo(ctx, events.SnapshotObject)
		}
		if err == nil && info.Metadata["seq"] == "50" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at seq 50: %+v, %v\nlogs:\n%s", info, err, srv.logs)
		}
		time.Sleep(10 * time.Millisecond) // bounded poll
	}

	nc := srv.connect(t, natsutil.Resource)
	tab, err := client.New(nc) // revocast's own keys, as a resource server would
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tab.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if err := tab.WaitReady(waitCtx); err != nil {
		t.Fatal(err)
	}
	if s := tab.Stats(); s.SnapshotSequence != 50 || s.Users != 50 {
		t.Fatalf("stats = %+v, want the snapshot at 50 with 50 users", s)
	}
	reset(51)
	deadline = time.Now().Add(10 * time.Second)
	for tab.NotBefore("", 51).IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the reset after the snapshot never reached the client")
		}
		time.Sleep(5 * time.Millisecond) // bounded poll
	}
}

func TestConfigErrors(t *testing.T) {
	tests := map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"ErrUnknownFlag":      {[]string{"revocastd", "-nope"}, nil, "flag provided but not defined"},
		"ErrArgument":         {[]string{"revocastd", "serve"}, nil, "unexpected argument"},
		"ErrReplicas":         {[]string{"revocastd", "-replicas", "-1"}, nil, "must be 0 (auto) or 1 to 5"},
		"ErrSnapshotInterval": {[]string{"revocastd"}, map[string]string{"REVOCAST_SNAPSHOT_INTERVAL": "-1s"}, "-snapshot-interval -1s"},
		"ErrEnvDuration":      {[]string{"revocastd"}, map[string]string{"REVOCAST_PUBLISH_TIMEOUT": "soon"}, "REVOCAST_PUBLISH_TIMEOUT"},
		"ErrLogLevel":         {[]string{"revocastd", "-log-level", "loud"}, nil, "-log-level"},
		"ErrNATSListen":       {[]string{"revocastd", "-nats-listen", "nohost"}, nil, "listen address"},
		"ErrNATSURLDown":      {[]string{"revocastd"}, map[string]string{"NATS_URL": "nats://127.0.0.1:1"}, "connect to NATS"},
		"ErrHTTPAddrBusy":     {[]string{"revocastd", "-http-addr", "256.0.0.1:1"}, nil, "API cannot listen"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"REVOCAST_DATA_DIR": t.TempDir(), "REVOCAST_NATS_LISTEN": "127.0.0.1:0", "REVOCAST_HTTP_ADDR": "127.0.0.1:0"}
			for k, v := range tt.env {
				env[k] = v
			}
			var stderr bytes.Buffer
			err := run(context.Background(), tt.args, func(k string) string { return env[k] }, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tt.want) {
				t.Fatalf("run = %v (stderr %q), want an error containing %q", err, stderr.String(), tt.want)
			}
		})
	}
}

func TestEmbeddedNATSPortBusy(t *testing.T) {
	srv := start(t, nil)
	listen := strings.TrimPrefix(srv.nats, "nats://")
	err := run(context.Background(), []string{"revocastd"}, func(k string) string {
		return map[string]string{"REVOCAST_NATS_LISTEN": listen, "REVOCAST_DATA_DIR": t.TempDir()}[k]
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "NATS_URL") || !strings.Contains(err.Error(), "REVOCAST_DATA_DIR") {
		t.Fatalf("second server on a busy NATS port: %v, want a hint to set NATS_URL, or another REVOCAST_DATA_DIR", err)
	}
}

// TestDataDirInUse: a second revocastd on the data directory of a running one (on another
// NATS port, as the port-clash hint suggests) exits at once and says who holds it.
func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	start(t, map[string]string{"REVOCAST_DATA_DIR": dir})
	err := run(context.Background(), []string{"revocastd"}, func(k string) string {
		return map[string]string{"REVOCAST_NATS_LISTEN": "127.0.0.1:0", "REVOCAST_HTTP_ADDR": "127.0.0.1:0", "REVOCAST_DATA_DIR": dir}[k]
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second revocastd on a data directory in use: %v, want an error naming %s and the process holding it", err, dir)
	}
}

// TestNATSURLEmbedsNothing points a second revocastd at the first one's NATS: both serve,
// and their events land in the one stream.
func TestNATSURLEmbedsNothing(t *testing.T) {
	first := start(t, nil)
	second := start(t, map[string]string{"NATS_URL": first.nats, "NATS_CREDS": first.credentials(natsutil.Broadcaster),
		"REVOCAST_NATS_LISTEN": "256.0.0.1:1"})
	if second.nats != first.nats {
		t.Fatalf("second instance uses %s, want %s", second.nats, first.nats)
	}
	st, js := openStore(t, first)
	_, key, err := st.CreateKey(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*instance{first, second} {
		if code, body := call(t, "POST", s.api+"/v2/users/reset/9", map[string]string{"X-API-Key": key.Reveal()}); code != 200 {
			t.Fatalf("%s: %d %s", s.api, code, body)
		}
	}
	if evs, _ := readAll(t, js); len(evs) != 2 {
		t.Fatalf("stream holds %d events, want 2", len(evs))
	}
}

// TestSeedExamples runs the README's examples (docs/examples) as written against a live
// server, with only the URL, ids and keys filled in. CI installs curl, node and python
// requests and sets REVOCAST_REQUIRE_EXAMPLE_TOOLS, so there a missing tool fails the test.
func TestSeedExamples(t *testing.T) {
	srv := start(t, nil)
	st, js := openStore(t, srv)
	_, root, err := st.CreateApp(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := st.CreateKey(context.Background(), "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "REVOCAST_URL="+srv.api, "APP_ID=shop", "ROOT_KEY="+root.Reveal(),
		"USER_ID=42", "API_KEY="+key.Reveal())
	dir := filepath.Join("..", "..", "docs", "examples")
	python := findPython()
	examples := []struct {
		name, tool string
		args       []string
		want       []string
	}{
		{"curl/flush", "curl", []string{"sh", "flush.sh"}, []string{`{"status":"ok"}`}},
		{"curl/reset", "curl", []string{"sh", "reset.sh"}, []string{`{"success":true,"data":true}`}},
		{"node", "node", []string{"node", "revoke.mjs"}, []string{`flush 200 {"status":"ok"}`, `reset 200 {"success":true,"data":true}`}},
		{"python-requests", python, []string{python, "revoke.py"}, []string{`flush 200 {'status': 'ok'}`, `reset 200 {'success': True, 'data': True}`}},
	}
	stored := 0
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			if _, err := exec.LookPath(ex.tool); ex.tool == "" || err != nil {
				if os.Getenv("REVOCAST_REQUIRE_EXAMPLE_TOOLS") != "" {
					t.Fatalf("%s is not installed", ex.name)
				}
				t.Skipf("%s is not installed", ex.name)
			}
			cmd := exec.Command(ex.args[0], ex.args[1:]...)
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", ex.args, err, out)
			}
			for _, w := range ex.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("output %q lacks %q", out, w)
				}
			}
			stored += len(ex.want)
		})
	}
	if evs, _ := readAll(t, js); len(evs) != stored {
		t.Fatalf("stream holds %d events, the examples got %d OKs", len(evs), stored)
	}
}

// findPython returns a python3 that can import requests, or "".
func findPython() string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import requests").Run() == nil {
			return p
		}
	}
	return ""
}

// BenchmarkAdminCalls measures admin calls per second on the durable embedded default
// (fsync before every ack), with 16 concurrent clients calling POST /v2/users/reset.
// REVOCAST_NATS_SYNC_INTERVAL in the environment measures a relaxed setting instead.
func BenchmarkAdminCalls(b *testing.B) {
	srv := start(b, map[string]string{"REVOCAST_LOG_LEVEL": "warn",
		"REVOCAST_NATS_SYNC_INTERVAL": os.Getenv("REVOCAST_NATS_SYNC_INTERVAL")})
	st, _ := openStore(b, srv)
	_, key, err := st.CreateKey(context.Background(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	const clients = 16
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		next      = make(chan int, clients)
		wg        sync.WaitGroup
		failures  int
	)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v2/users/reset/%d", srv.api, id), nil)
				req.Header.Set("X-API-Key", key.Reveal())
				t0 := time.Now()
				res, err := client.Do(req)
				d := time.Since(t0)
				ok := err == nil && res.StatusCode == 200
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				mu.Lock()
				latencies = append(latencies, d)
				if !ok {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		next <- i + 1
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failures > 0 {
		b.Fatalf("%d of %d calls failed", failures, b.N)
	}
	slices.Sort(latencies)
	p := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}

// BenchmarkPropagation measures the time from the API's 200 to the moment each of 10
// resource-server tables (own connection each, as separate servers would have) has applied
// the revocation, on loopback with the durable embedded default. Calls are sequential, so
// each sample is one revocation's latency, not queueing.
func BenchmarkPropagation(b *testing.B) {
	srv := start(b, map[string]string{"REVOCAST_LOG_LEVEL": "warn"})
	st, _ := openStore(b, srv)
	_, key, err := st.CreateKey(context.Background(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	const subscribers = 10
	type applied struct {
		sub  int
		user int64
		at   time.Time
	}
	seen := make(chan applied, subscribers*1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < subscribers; i++ {
		nc := srv.connect(b, natsutil.Resource)
		tab, err := client.New(nc, client.WithOnApply(func(ev events.Event, _ uint64) {
			seen <- applied{sub: i, user: ev.UserID, at: time.Now()}
		}))
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = tab.Run(ctx) }()
		if err := tab.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
	}
	httpc := &http.Client{}
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		user := int64(i + 1)
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v2/users/reset/%d", srv.api, user), nil)
		req.Header.Set("X-API-Key", key.Reveal())
		res, err := httpc.Do(req)
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("reset: %v %v", res, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		ok := time.Now()
		for got := 0; got < subscribers; {
			select {
			case a := <-seen:
				if a.user != user {
					continue
				}
				got++
				samples = append(samples, max(a.at.Sub(ok), 0))
			case <-time.After(10 * time.Second):
				b.Fatalf("user %d: %d of %d subscribers applied it within 10s", user, got, subscribers)
			}
		}
	}
	b.StopTimer()
	slices.Sort(samples)
	q := func(p float64) float64 { return float64(samples[int(p*float64(len(samples)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
