package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/api"
	"github.com/revocast/revocast/services/internal/audit"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/tokens"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	code := m.Run()
	if code == 0 {
		// Only a full run sees every status; a -run filter may skip the tests that do.
		if problems := checkObserved(loadOpenAPI(nopTB{})); len(problems) > 0 {
			fmt.Fprintln(os.Stderr, strings.Join(problems, "\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// nopTB lets TestMain use the loader; it panics instead of failing a test.
type nopTB struct{ testing.TB }

func (nopTB) Helper()                   {}
func (nopTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (nopTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// fixture is a real API on a real embedded JetStream, with one app and two keys.
type fixture struct {
	url      string
	handler  http.Handler
	nats     *eventstest.Server
	store    *store.Store
	stream   jetstream.Stream
	rootKey  string
	adminKey string
	readOnly string
	appCred  string
	table    *client.Table
}

func newFixture(t *testing.T, cfg api.Config) *fixture {
	t.Helper()
	ns := eventstest.RunJetStream(t)
	nc := ns.Connect(nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Setup(t.Context(), js, store.Config{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, root, err := st.CreateApp(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err := st.CreateKey(t.Context(), "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, ro, err := st.CreateKey(t.Context(), "auditor", []string{store.ScopeAuditRead})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = st
	ring, err := tokens.OpenKeyRing(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	table, err := client.New(nc, client.WithKeyfunc(func(*jwt.Token) (any, error) { return nil, errors.New("unused") }))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = table.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := table.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	issuer, err := tokens.NewIssuer(t.Context(), js, 1, ring, table, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tokens = issuer
	if cfg.Replay == nil {
		cfg.Replay = func(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error) {
			return audit.Replay(ctx, js, q, emit)
		}
	}
	if cfg.PublishTimeout == 0 {
		// As long as a loaded machine may need: a test about timeouts sets its own.
		cfg.PublishTimeout = 15 * time.Second
	}
	h, err := api.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.Config.MaxHeaderBytes = api.MaxHeaderBytes
	hs.Start()
	t.Cleanup(hs.Close)
	_, cred, err := st.SetAppCredential(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{url: hs.URL, handler: h, nats: ns, table: table, appCred: cred.Reveal(), store: st, stream: st.Stream(),
		rootKey: root.Reveal(), adminKey: admin.Reveal(), readOnly: ro.Reveal()}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(t *testing.T, method, path string, header map[string]string, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if p := documentedPath(loadOpenAPI(t), req.URL.Path); p != "" {
		observe(method, p, res.StatusCode)
	}
	r := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// msgs is how many events the stream holds.
func (f *fixture) msgs(t *testing.T) uint64 {
	t.Helper()
	info, err := f.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (f *fixture) lastEvent(t *testing.T) (events.Event, string) {
	t.Helper()
	info, err := f.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.stream.GetMsg(t.Context(), info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Decode(m.Data)
	if err != nil {
		t.Fatalf("stored event does not decode: %v", err)
	}
	return ev, m.Subject
}

var badAppIDs = []string{"a.b", "a*", "a%3E", "%2e%2e", "a%20b", strings.Repeat("a", 300)}
var badUserIDs = []string{"abc", "0", "-1", "1.5", "%2B1", "9223372036854775808", "007", "1e3"}

func TestFlush(t *testing.T) {
	f := newFixture(t, api.Config{})
	auth := func(k string) map[string]string { return map[string]string{"Authorization": k} }

	t.Run("OK", func(t *testing.T) {
		before := time.Now()
		r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{
			"Authorization": f.rootKey, "User-Agent": "curl/8.5.0", "X-Request-Id": "req-flush-1",
		}, "")
		if r.status != 200 || r.raw != `{"status":"ok"}` {
			t.Fatalf("status = %d %s, want 200 {\"status\":\"ok\"}", r.status, r.raw)
		}
		ev, subj := f.lastEvent(t)
		if subj != "revocation.app.flushed.shop" || ev.Type != events.TypeAppFlushed || ev.AppID != "shop" {
			t.Fatalf("stored %+v on %s", ev, subj)
		}
		if !strings.HasPrefix(ev.Actor, "rvcr_") || strings.Contains(f.rootKey, ev.Actor+"_") == false {
			t.Fatalf("actor = %q, want the root key's public id", ev.Actor)
		}
		if ev.NotBefore.Before(before.Add(-time.Second)) || ev.NotBefore.After(time.Now()) {
			t.Fatalf("not_before = %v, want about now", ev.NotBefore)
		}
		if ev.Source.RequestID != "req-flush-1" || ev.Source.UserAgent != "curl/8.5.0" || ev.Source.RemoteAddr != "127.0.0.1" {
			t.Fatalf("source = %+v", ev.Source)
		}
		if r.header.Get("X-Request-Id") != "req-flush-1" {
			t.Fatalf("X-Request-Id = %q", r.header.Get("X-Request-Id"))
		}
	})

	t.Run("OKWithReason", func(t *testing.T) {
		r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": "Bearer " + f.rootKey}, `{"reason":"key leaked"}`)
		if r.status != 200 {
			t.Fatalf("status = %d %s, want 200", r.status, r.raw)
		}
		if ev, _ := f.lastEvent(t); ev.Reason != "key leaked" {
			t.Fatalf("reason = %q", ev.Reason)
		}
	})

	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string
		status int
	}{
		{"ErrMissingHeader", "DELETE", "/root/shop/flush", nil, "", 400},
		{"ErrWrongKey", "DELETE", "/root/shop/flush", auth(f.rootKey + "x"), "", 403},
		{"ErrUnknownApp", "DELETE", "/root/ghost/flush", auth(f.rootKey), "", 403},
		{"ErrAdminKeyAsRootKey", "DELETE", "/root/shop/flush", auth(f.adminKey), "", 403},
		{"ErrBadBody", "DELETE", "/root/shop/flush", auth(f.rootKey), "reason=x", 400},
		{"ErrBodyTooLarge", "DELETE", "/root/shop/flush", auth(f.rootKey), `{"reason":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`, 413},
		{"ErrHeaderTooLarge", "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey, "X-Big": strings.Repeat("x", 2*api.MaxHeaderBytes)}, "", 431},
		{"ErrMethod", "GET", "/root/shop/flush", auth(f.rootKey), "", 405},
		{"ErrTrailingSlash", "DELETE", "/root/shop/flush/", auth(f.rootKey), "", 404},
	}
	for _, id := range badAppIDs {
		tests = append(tests, struct {
			name   string
			method string
			path   string
			header map[string]string
			body   string
			status int
		}{"ErrBadAppID/" + id[:min(len(id), 10)], "DELETE", "/root/" + id + "/flush", auth(f.rootKey), "", 400})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.msgs(t)
			r := f.do(t, tt.method, tt.path, tt.header, tt.body)
			if r.status != tt.status {
				t.Fatalf("status = %d (%s), want %d", r.status, r.raw, tt.status)
			}
			if after := f.msgs(t); after != before {
				t.Fatalf("stream went from %d to %d events on a refused call", before, after)
			}
			if tt.status == 431 {
				return // written by net/http, not by the API
			}
			if r.body["status"] != "error" || r.body["error"] == "" {
				t.Fatalf("body = %s, want {status:error, error:...}", r.raw)
			}
			if tt.status == 405 && r.header.Get("Allow") != "DELETE" {
				t.Fatalf("Allow = %q, want DELETE", r.header.Get("Allow"))
			}
		})
	}

	t.Run("Metrics", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			f.do(t, "MADEUP"+strconv.Itoa(i), "/root/shop/flush", nil, "")
		}
		r := f.do(t, "GET", "/metrics", nil, "")
		if strings.Contains(r.raw, "MADEUP") || !strings.Contains(r.raw, `method="OTHER"`) {
			t.Error("made-up methods become metric labels")
		}
		for _, want := range []string{
			`revocast_revocations_stored_total{type="app.flushed"} 2`,
			`revocast_auth_failures_total{kind="root_key"}`,
			`revocast_http_requests_total{code="200",method="DELETE",route="/root/:app_id/flush"} 2`,
			`route="unmatched"`,
		} {
			if !strings.Contains(r.raw, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if strings.Contains(r.raw, f.rootKey) {
			t.Fatal("a key appears in /metrics")
		}
	})

	t.Run("SameAnswerForUnknownAppAndWrongKey", func(t *testing.T) {
		a := f.do(t, "DELETE", "/root/ghost/flush", auth(f.rootKey), "")
		b := f.do(t, "DELETE", "/root/shop/flush", auth("rvcr_000000000000_wrong"), "")
		if a.status != b.status || a.raw != b.raw {
			t.Fatalf("unknown app: %d %s; wrong key: %d %s", a.status, a.raw, b.status, b.raw)
		}
	})
}

func TestUserReset(t *testing.T) {
	f := newFixture(t, api.Config{})
	key := func(k string) map[string]string { return map[string]string{"X-API-Key": k} }

	t.Run("OK", func(t *testing.T) {
		r := f.do(t, "POST", "/v2/users/reset/42", key(f.adminKey), "")
		if r.status != 200 || r.raw != `{"success":true,"data":true}` {
			t.Fatalf("status = %d %s, want 200 {\"success\":true,\"data\":true}", r.status, r.raw)
		}
		ev, subj := f.lastEvent(t)
		if subj != "revocation.user.reset.42" || ev.Type != events.TypeUserReset || ev.UserID != 42 || !strings.HasPrefix(ev.Actor, "rvca_") {
			t.Fatalf("stored %+v on %s", ev, subj)
		}
	})

	type tc struct {
		name   string
		method string
		path   string
		header map[string]string
		status int
	}
	tests := []tc{
		{"ErrMissingKey", "POST", "/v2/users/reset/42", nil, 401},
		{"ErrUnknownKey", "POST", "/v2/users/reset/42", key("rvca_000000000000_nope"), 401},
		{"ErrGarbageKey", "POST", "/v2/users/reset/42", key("letmein"), 401},
		{"ErrRootKeyAsAPIKey", "POST", "/v2/users/reset/42", key(f.rootKey), 401},
		{"ErrScope", "POST", "/v2/users/reset/42", key(f.readOnly), 403},
		{"ErrMethod", "GET", "/v2/users/reset/42", key(f.adminKey), 405},
		{"ErrTrailingSlash", "POST", "/v2/users/reset/42/", key(f.adminKey), 404},
	}
	for _, id := range badUserIDs {
		tests = append(tests, tc{"ErrBadUserID/" + id, "POST", "/v2/users/reset/" + id, key(f.adminKey), 400})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.msgs(t)
			r := f.do(t, tt.method, tt.path, tt.header, "")
			if r.status != tt.status {
				t.Fatalf("status = %d (%s), want %d", r.status, r.raw, tt.status)
			}
			if after := f.msgs(t); after != before {
				t.Fatalf("stream went from %d to %d events on a refused call", before, after)
			}
			if r.body["success"] != false || r.body["message"] == "" {
				t.Fatalf("body = %s, want {success:false, message:...}", r.raw)
			}
			if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tt.status == 405 && r.header.Get("Allow") != "POST" {
				t.Fatalf("Allow = %q, want POST", r.header.Get("Allow"))
			}
		})
	}
}

func TestFailedKeysAreRateLimitedPerClient(t *testing.T) {
	f := newFixture(t, api.Config{AuthFailureBurst: 3, AuthFailureEvery: time.Hour, TrustedProxies: []string{"127.0.0.1"}})
	attacker := map[string]string{"X-API-Key": "rvca_000000000000_guess", "X-Forwarded-For": "198.51.100.66"}
	for i := 0; i < 3; i++ {
		if r := f.do(t, "POST", "/v2/users/reset/7", attacker, ""); r.status != 401 {
			t.Fatalf("attempt %d: status = %d, want 401", i, r.status)
		}
	}
	r := f.do(t, "POST", "/v2/users/reset/7", attacker, "")
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.body["success"] != false {
		t.Fatalf("after the burst: %d Retry-After=%q %s, want 429 with Retry-After", r.status, r.header.Get("Retry-After"), r.raw)
	}
	rootAttacker := map[string]string{"Authorization": "rvcr_000000000000_guess", "X-Forwarded-For": "198.51.100.66"}
	if r := f.do(t, "DELETE", "/root/shop/flush", rootAttacker, ""); r.status != 429 {
		t.Fatalf("flush from the limited client: %d, want 429", r.status)
	}
	// The legitimate caller is not locked out, not even from the attacker's address (a NAT,
	// a shared proxy): a valid key is always let through.
	sameAddr := map[string]string{"X-API-Key": f.adminKey, "X-Forwarded-For": "198.51.100.66"}
	if r := f.do(t, "POST", "/v2/users/reset/7", sameAddr, ""); r.status != 200 {
		t.Fatalf("legitimate caller behind the attacker's address: %d %s, want 200", r.status, r.raw)
	}
	if r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey, "X-Forwarded-For": "198.51.100.66"}, ""); r.status != 200 {
		t.Fatalf("legitimate flush behind the attacker's address: %d %s, want 200", r.status, r.raw)
	}
	// From its own address too.
	owner := map[string]string{"X-API-Key": f.adminKey, "X-Forwarded-For": "203.0.113.10"}
	if r := f.do(t, "POST", "/v2/users/reset/7", owner, ""); r.status != 200 {
		t.Fatalf("legitimate caller: %d %s, want 200", r.status, r.raw)
	}
	if r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey, "X-Forwarded-For": "203.0.113.10"}, ""); r.status != 200 {
		t.Fatalf("legitimate flush: %d %s, want 200", r.status, r.raw)
	}
}

func TestNATSDownGives500NeverOK(t *testing.T) {
	f := newFixture(t, api.Config{PublishTimeout: 500 * time.Millisecond})
	if r := f.do(t, "GET", "/readyz", nil, ""); r.status != 200 {
		t.Fatalf("readyz = %d, want 200", r.status)
	}
	f.nats.Shutdown()
	for name, call := range map[string]func() response{
		"flush": func() response {
			return f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey}, "")
		},
		"reset": func() response {
			return f.do(t, "POST", "/v2/users/reset/42", map[string]string{"X-API-Key": f.adminKey}, "")
		},
	} {
		r := call()
		if r.status != 500 {
			t.Fatalf("%s with NATS down: %d %s, want 500", name, r.status, r.raw)
		}
		if !strings.Contains(r.raw, "not stored") {
			t.Fatalf("%s: body %s does not say nothing was stored", name, r.raw)
		}
	}
	if r := f.do(t, "GET", "/readyz", nil, ""); r.status != 503 {
		t.Fatalf("readyz with NATS down = %d, want 503", r.status)
	}
	if r := f.do(t, "GET", "/healthz", nil, ""); r.status != 200 {
		t.Fatalf("healthz = %d, want 200", r.status)
	}
	// Back up: the API recovers by itself and nothing from the outage was stored.
	f.nats.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for f.do(t, "GET", "/readyz", nil, "").status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("API not ready 10s after NATS came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := f.msgs(t); n != 0 {
		t.Fatalf("stream holds %d events from calls that answered 500", n)
	}
	if r := f.do(t, "POST", "/v2/users/reset/42", map[string]string{"X-API-Key": f.adminKey}, ""); r.status != 200 {
		t.Fatalf("after recovery: %d %s", r.status, r.raw)
	}
}

// TestStreamRefusalGives500 makes JetStream refuse the write itself (a full stream with
// DiscardNew) after authentication succeeded: the API must answer 500, not 200.
func TestStreamRefusalGives500(t *testing.T) {
	f := newFixture(t, api.Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	info, err := f.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgs = 1
	js, _ := jetstream.New(f.nats.Connect())
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if r := f.do(t, "POST", "/v2/users/reset/1", map[string]string{"X-API-Key": f.adminKey}, ""); r.status != 200 {
		t.Fatalf("first reset: %d", r.status)
	}
	r := f.do(t, "POST", "/v2/users/reset/2", map[string]string{"X-API-Key": f.adminKey}, "")
	if r.status != 500 || r.body["success"] != false {
		t.Fatalf("reset into a full stream: %d %s, want 500", r.status, r.raw)
	}
	if msg, _ := r.body["message"].(string); !strings.Contains(msg, "not stored") || strings.Contains(msg, "may or may not") {
		t.Fatalf("message %q, want one that says the revocation was not stored", msg)
	}
	if n := f.msgs(t); n != 1 {
		t.Fatalf("stream holds %d events, want 1 (old revocations are never dropped)", n)
	}
}

func TestAudit(t *testing.T) {
	f := newFixture(t, api.Config{})
	admin := map[string]string{"X-API-Key": f.adminKey}
	for _, id := range []string{"1", "2", "3"} {
		if r := f.do(t, "POST", "/v2/users/reset/"+id, map[string]string{"X-API-Key": f.adminKey, "X-Request-Id": "r" + id}, `{"reason":"test"}`); r.status != 200 {
			t.Fatalf("reset %s: %d", id, r.status)
		}
	}
	if r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey}, ""); r.status != 200 {
		t.Fatalf("flush: %d", r.status)
	}

	type page struct {
		Success bool `json:"success"`
		Data    struct {
			Events []struct {
				Seq       uint64    `json:"seq"`
				StoredAt  time.Time `json:"stored_at"`
				Subject   string    `json:"subject"`
				Type      string    `json:"type"`
				UserID    string    `json:"user_id"`
				AppID     string    `json:"app_id"`
				Actor     string    `json:"actor"`
				Reason    string    `json:"reason"`
				NotBefore time.Time `json:"not_before"`
				Source    struct {
					RequestID string `json:"request_id"`
				} `json:"source"`
			} `json:"events"`
			NextAfterSeq uint64 `json:"next_after_seq"`
			More         bool   `json:"more"`
		} `json:"data"`
	}
	get := func(query string) page {
		t.Helper()
		r := f.do(t, "GET", "/v1/audit"+query, admin, "")
		if r.status != 200 {
			t.Fatalf("GET /v1/audit%s = %d %s", query, r.status, r.raw)
		}
		var p page
		if err := json.Unmarshal([]byte(r.raw), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}

	all := get("")
	if len(all.Data.Events) != 4 || all.Data.More || all.Data.NextAfterSeq != 4 {
		t.Fatalf("all = %+v", all.Data)
	}
	e := all.Data.Events[0]
	if e.Seq != 1 || e.Subject != "revocation.user.reset.1" || e.Type != "user.reset" || e.UserID != "1" ||
		e.Reason != "test" || e.Source.RequestID != "r1" || e.StoredAt.IsZero() || e.NotBefore.After(e.StoredAt) {
		t.Fatalf("first event = %+v", e)
	}
	// Pagination by sequence: two pages of two.
	p1 := get("?limit=2")
	p2 := get("?limit=2&after_seq=" + strconv.FormatUint(p1.Data.NextAfterSeq, 10))
	if len(p1.Data.Events) != 2 || !p1.Data.More || len(p2.Data.Events) != 2 || p2.Data.More || p2.Data.Events[1].Type != "app.flushed" {
		t.Fatalf("pages = %+v / %+v", p1.Data, p2.Data)
	}
	if p := get("?user=2"); len(p.Data.Events) != 1 || p.Data.Events[0].UserID != "2" {
		t.Fatalf("user=2: %+v", p.Data)
	}
	if p := get("?app=shop"); len(p.Data.Events) != 1 || p.Data.Events[0].AppID != "shop" {
		t.Fatalf("app=shop: %+v", p.Data)
	}
	if p := get("?type=user.reset&actor=" + all.Data.Events[0].Actor); len(p.Data.Events) != 3 {
		t.Fatalf("type+actor: %+v", p.Data)
	}
	if p := get("?since=1h&until=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); len(p.Data.Events) != 4 {
		t.Fatalf("since/until: %d events", len(p.Data.Events))
	}
	if p := get("?until=2000-01-01"); len(p.Data.Events) != 0 {
		t.Fatalf("until 2000: %d events", len(p.Data.Events))
	}

	for name, tc := range map[string]struct {
		query  string
		header map[string]string
		status int
	}{
		"ErrNoKey":     {"", nil, 401},
		"ErrScope":     {"", map[string]string{"X-API-Key": f.rootKey}, 401},
		"ErrType":      {"?type=app.deleted", admin, 400},
		"ErrSince":     {"?since=yesterday", admin, 400},
		"ErrRange":     {"?since=2026-01-02&until=2026-01-01", admin, 400},
		"ErrLimit":     {"?limit=5000", admin, 400},
		"ErrUser":      {"?user=-3", admin, 400},
		"ErrAfterSeq":  {"?after_seq=x", admin, 400},
		"ErrAppID":     {"?app=a.b", admin, 400},
		"OKAuditorKey": {"", map[string]string{"X-API-Key": f.readOnly}, 200},
	} {
		t.Run(name, func(t *testing.T) {
			r := f.do(t, "GET", "/v1/audit"+tc.query, tc.header, "")
			if r.status != tc.status {
				t.Fatalf("status = %d %s, want %d", r.status, r.raw, tc.status)
			}
			if tc.status != 200 && r.body["success"] != false {
				t.Fatalf("body = %s", r.raw)
			}
		})
	}
	// A key without audit:read is refused.
	_, resetOnly, err := f.store.CreateKey(t.Context(), "reset-only", []string{store.ScopeUsersReset})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.do(t, "GET", "/v1/audit", map[string]string{"X-API-Key": resetOnly.Reveal()}, ""); r.status != 403 {
		t.Fatalf("reset-only key: %d, want 403", r.status)
	}
}
