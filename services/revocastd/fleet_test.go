package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/fleet"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
)

// fleetInterval is the report interval of the tables in these tests.
const fleetInterval = 100 * time.Millisecond

// fleetTable runs a table as a resource server does, on its own connection, until stop or
// the end of the test, and waits until it is ready.
func fleetTable(tb testing.TB, srv *instance, id string, opts ...client.Option) (*client.Table, context.CancelFunc) {
	tb.Helper()
	opts = append([]client.Option{client.WithInstanceID(id), client.WithService("test"), client.WithReportInterval(fleetInterval)}, opts...)
	tab, err := client.New(srv.connect(tb, natsutil.Resource), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tab.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if err := tab.WaitReady(wctx); err != nil {
		tb.Fatalf("table %s: %v", id, err)
	}
	return tab, cancel
}

// request calls the API and returns the status, the headers and the body.
func request(tb testing.TB, method, url string, header map[string]string) (int, http.Header, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// liveFleet is GET /v1/fleet.
func liveFleet(tb testing.TB, srv *instance, apiKey string) map[string]fleet.Instance {
	tb.Helper()
	code, _, body := request(tb, "GET", srv.api+"/v1/fleet", map[string]string{"X-API-Key": apiKey})
	if code != 200 {
		tb.Fatalf("GET /v1/fleet = %d %s", code, body)
	}
	var res struct {
		Success bool
		Data    struct {
			Live      int
			Instances []fleet.Instance
		}
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil || !res.Success || res.Data.Live != len(res.Data.Instances) {
		tb.Fatalf("GET /v1/fleet body %s: %v", body, err)
	}
	m := map[string]fleet.Instance{}
	for _, in := range res.Data.Instances {
		m[in.ID] = in
	}
	return m
}

func waitUntil(tb testing.TB, what string, within time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll
	}
}

func TestFleetConfirmedFlush(t *testing.T) {
	srv := start(t, nil)
	st, _ := openStore(t, srv)
	ctx := context.Background()
	_, rootKey, err := st.CreateApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	_, pauseKey, err := st.CreateApp(ctx, "pause")
	if err != nil {
		t.Fatal(err)
	}
	_, apiKey, err := st.CreateKey(ctx, "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, readOnly, err := st.CreateKey(ctx, "viewer", []string{store.ScopeAuditRead})
	if err != nil {
		t.Fatal(err)
	}

	var tables []*client.Table
	for _, id := range []string{"t1", "t2", "t3"} {
		tab, _ := fleetTable(t, srv, id)
		tables = append(tables, tab)
	}
	// The paused table stops applying (its consumer delivers nothing more) at the flush of
	// the app "pause", until release is closed; it keeps reporting meanwhile.
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	fleetTable(t, srv, "paused", client.WithOnApply(func(ev events.Event, _ uint64) {
		if ev.AppID == "pause" {
			<-release
		}
	}))
	waitUntil(t, "4 instances in the fleet", 10*time.Second, func() bool { return len(liveFleet(t, srv, string(apiKey))) == 4 })
	if code, _, _ := request(t, "GET", srv.api+"/v1/fleet", map[string]string{"X-API-Key": string(readOnly)}); code != 403 {
		t.Fatalf("GET /v1/fleet without fleet:read = %d, want 403", code)
	}

	// Without Prefer nothing changes.
	flushURL := srv.api + "/root/shop/flush"
	code, hdr, body := request(t, "DELETE", flushURL, map[string]string{"Authorization": string(rootKey)})
	if code != 200 || body != `{"status":"ok"}` || hdr.Get("Revocast-Applied") != "" || hdr.Get("Preference-Applied") != "" {
		t.Fatalf("plain flush = %d %s %v", code, body, hdr)
	}

	// Confirmed by all 4: every table holds the watermark when the answer arrives.
	before := time.Now()
	code, hdr, body = request(t, "DELETE", flushURL, map[string]string{"Authorization": string(rootKey), "Prefer": "wait=5"})
	if code != 200 || body != `{"status":"ok"}` {
		t.Fatalf("flush with Prefer: wait=5 = %d %s", code, body)
	}
	if got := hdr.Get("Revocast-Applied"); got != "4/4" || hdr.Get("Preference-Applied") != "wait=5" || hdr.Get("Revocast-Pending") != "" {
		t.Fatalf("headers %v, want Revocast-Applied 4/4 and Preference-Applied wait=5", hdr)
	}
	for i, tab := range tables {
		if nb := tab.NotBefore("shop", 42); nb.Before(before.Add(-time.Second)) {
			t.Fatalf("table %d: watermark %s when the confirmed answer arrived, want the flush at %s", i, nb, before)
		}
	}

	// The reset too.
	code, hdr, body = request(t, "POST", srv.api+"/v2/users/reset/42", map[string]string{"X-API-Key": string(apiKey), "Prefer": "wait=5"})
	if code != 200 || body != `{"success":true,"data":true}` || hdr.Get("Revocast-Applied") != "4/4" {
		t.Fatalf("reset with Prefer: wait=5 = %d %s %v", code, body, hdr)
	}

	// The paused table is pending: the call waits its second, then answers 200 with the id.
	if code, _, _ := request(t, "DELETE", srv.api+"/root/pause/flush", map[string]string{"Authorization": string(pauseKey)}); code != 200 {
		t.Fatalf("flush pause = %d", code)
	}
	start := time.Now()
	code, hdr, body = request(t, "DELETE", flushURL, map[string]string{"Authorization": string(rootKey), "Prefer": "wait=1"})
	took := time.Since(start)
	if code != 200 || body != `{"status":"ok"}` {
		t.Fatalf("flush while paused = %d %s", code, body)
	}
	if hdr.Get("Revocast-Applied") != "3/4" || hdr.Get("Revocast-Pending") != "paused" || hdr.Get("Preference-Applied") != "wait=1" {
		t.Fatalf("headers while paused %v, want 3/4 pending paused", hdr)
	}
	if took < time.Second {
		t.Fatalf("answered after %s, before the wait was over", took)
	}
	if in := liveFleet(t, srv, string(apiKey))["paused"]; in.LagEvents == 0 {
		t.Fatalf("the paused table shows no lag: %+v", in)
	}
	close(release)

	// The request log line and the metrics carry the confirmation.
	if logs := srv.logs.String(); !strings.Contains(logs, `"applied":4,"live":4`) || !strings.Contains(logs, `"pending":["paused"]`) {
		t.Fatalf("no confirmation in the request log lines:\n%s", logs)
	}
	_, _, metrics := request(t, "GET", srv.api+"/metrics", nil)
	for _, want := range []string{`revocast_revocations_confirmed_total{outcome="complete"} 2`, `revocast_revocations_confirmed_total{outcome="pending"} 1`, "revocast_fleet_instances 4"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
}

func TestFleetInstanceLeaves(t *testing.T) {
	srv := start(t, nil)
	st, _ := openStore(t, srv)
	_, apiKey, err := st.CreateKey(context.Background(), "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	fleetTable(t, srv, "stays")
	_, stop := fleetTable(t, srv, "leaves")
	waitUntil(t, "2 instances", 10*time.Second, func() bool { return len(liveFleet(t, srv, string(apiKey))) == 2 })
	stop()
	stopped := time.Now()
	// Gone within 3 intervals of its last report (plus the poll and a loaded machine).
	waitUntil(t, "the stopped instance leaves", 3*fleetInterval+time.Second, func() bool {
		_, ok := liveFleet(t, srv, string(apiKey))["leaves"]
		return !ok
	})
	t.Logf("left %s after it stopped (3 intervals = %s)", time.Since(stopped), 3*fleetInterval)
	if _, ok := liveFleet(t, srv, string(apiKey))["stays"]; !ok {
		t.Fatal("the running instance left too")
	}
}

func TestFleetForgedReportRefused(t *testing.T) {
	srv := start(t, nil)
	st, _ := openStore(t, srv)
	_, apiKey, err := st.CreateKey(context.Background(), "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	report, _ := events.EncodeReport(events.Report{Version: events.ReportVersion, Instance: "forged", IntervalMS: 60000, Ready: true})
	for _, tc := range []struct {
		name    string
		role    natsutil.Role
		subject string
	}{
		{"ErrAuditorReport", natsutil.Auditor, events.ReportSubject("forged")},
		{"ErrAuditorApplied", natsutil.Auditor, events.AppliedSubject("forged")},
		{"ErrResourceOtherSubject", natsutil.Resource, "revocast.fleet.other.forged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := make(chan error, 4)
			nc := srv.connect(t, tc.role, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
			if err := nc.Publish(tc.subject, report); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errs:
				if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
					t.Fatalf("error = %v, want a permissions violation", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("NATS did not refuse the forged report")
			}
		})
	}
	// A resource server's own report is accepted, and malformed reports are ignored.
	nc := srv.connect(t, natsutil.Resource)
	good, _ := events.EncodeReport(events.Report{Version: events.ReportVersion, Instance: "real", IntervalMS: 60000})
	for subj, data := range map[string][]byte{events.ReportSubject("real"): good, events.ReportSubject("liar"): good, events.ReportSubject("junk"): []byte("{")} {
		if err := nc.Publish(subj, data); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the real report", 10*time.Second, func() bool { _, ok := liveFleet(t, srv, string(apiKey))["real"]; return ok })
	if f := liveFleet(t, srv, string(apiKey)); len(f) != 1 {
		t.Fatalf("fleet = %v, want only the real instance", f)
	}
}
