package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/natsutil"
)

func TestAuditConcurrencyConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want int
		err  string
	}{
		"Default":  {[]string{"revocastd"}, nil, 4, ""},
		"Env":      {[]string{"revocastd"}, map[string]string{"REVOCAST_AUDIT_CONCURRENCY": "8"}, 8, ""},
		"Flag":     {[]string{"revocastd", "-audit-concurrency", "2"}, map[string]string{"REVOCAST_AUDIT_CONCURRENCY": "8"}, 2, ""},
		"ErrZero":  {[]string{"revocastd", "-audit-concurrency", "0"}, nil, 0, "must be at least 1"},
		"ErrNoInt": {[]string{"revocastd"}, map[string]string{"REVOCAST_AUDIT_CONCURRENCY": "many"}, 0, "REVOCAST_AUDIT_CONCURRENCY"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseConfig = %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || cfg.auditReaders != tc.want {
				t.Fatalf("audit concurrency = %d (%v), want %d", cfg.auditReaders, err, tc.want)
			}
		})
	}
}

// BenchmarkRevocationsUnderAuditLoad measures POST /v2/users/reset latency from 16 clients
// on the durable embedded default, first alone and then while 400 goroutines call
// GET /v1/audit?limit=1000 (random pages of a stream of 20,000 events) without pause:
// RetryAfter waits the Retry-After of a 429 before calling again, as a client should;
// NoBackoff calls again at once. b.N is the number of revocations in each phase. Peak RSS is
// sampled from /proc/self/status during the loaded phase: the process holds revocastd, its
// embedded NATS server and every client. engine-*-p99-ms is the same number of user.reset
// events published straight to JetStream by 16 goroutines (no HTTP, no key check), after
// the revocations of each phase and under the same load: what the engine underneath does
// on the same machine at the same moment, since the machine is shared and only ratios
// hold. REVOCAST_AUDIT_CONCURRENCY in the environment
// measures another limit than the default.
func BenchmarkRevocationsUnderAuditLoad(b *testing.B) {
	const streamEvents = 20_000
	srv := start(b, map[string]string{"REVOCAST_LOG_LEVEL": "error",
		"REVOCAST_AUDIT_CONCURRENCY": os.Getenv("REVOCAST_AUDIT_CONCURRENCY")})
	st, _ := openStore(b, srv)
	_, key, err := st.CreateKey(context.Background(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	fillStream(b, srv, streamEvents)
	users := 0
	for _, honorRetryAfter := range []bool{true, false} {
		name := map[bool]string{true: "RetryAfter", false: "NoBackoff"}[honorRetryAfter]
		b.Run(name, func(b *testing.B) {
			benchAuditLoad(b, srv, key.Reveal(), streamEvents, honorRetryAfter, &users)
		})
	}
}

func benchAuditLoad(b *testing.B, srv *instance, key string, streamEvents int, honorRetryAfter bool, users *int) {
	api := srv.api
	js, err := jetstream.New(srv.connect(b, natsutil.Broadcaster))
	if err != nil {
		b.Fatal(err)
	}
	const (
		revokers      = 16
		auditors      = 400
		auditMaxCalls = 2000 // per auditor: bounds the load even if revocations stall
	)
	revokeClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: revokers}}
	auditClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: auditors}, Timeout: 60 * time.Second}
	defer revokeClient.CloseIdleConnections()
	defer auditClient.CloseIdleConnections()
	revoke := func(n int) (lat []time.Duration, fivexx, failed int) {
		var mu sync.Mutex
		next := make(chan int, revokers)
		var wg sync.WaitGroup
		for range revokers {
			wg.Go(func() {
				for id := range next {
					req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v2/users/reset/%d", api, id), nil)
					req.Header.Set("X-API-Key", key)
					t0 := time.Now()
					res, err := revokeClient.Do(req)
					d := time.Since(t0)
					if err == nil {
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
					mu.Lock()
					lat = append(lat, d)
					switch {
					case err != nil:
						failed++
					case res.StatusCode >= 500:
						fivexx++
					case res.StatusCode != 200:
						failed++
					}
					mu.Unlock()
				}
			})
		}
		for range n {
			*users++
			next <- 1_000_000 + *users
		}
		close(next)
		wg.Wait()
		slices.Sort(lat)
		return lat, fivexx, failed
	}
	// publish is the engine alone: n events straight to JetStream from as many goroutines.
	publish := func(n int) []time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		next := make(chan int, revokers)
		var wg sync.WaitGroup
		for range revokers {
			wg.Go(func() {
				for id := range next {
					ev, _ := events.NewUserReset(int64(id), time.Now(), "rvca_000000000000")
					data, _ := events.Encode(ev)
					t0 := time.Now()
					_, err := js.Publish(context.Background(), ev.Subject(), data, jetstream.WithMsgID(ev.ID))
					d := time.Since(t0)
					if err != nil {
						b.Error(err)
					}
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			})
		}
		for range n {
			*users++
			next <- 1_000_000 + *users
		}
		close(next)
		wg.Wait()
		slices.Sort(lat)
		return lat
	}
	q := func(lat []time.Duration, p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}

	b.ResetTimer()
	unloaded, fivexx, failed := revoke(b.N)
	if fivexx+failed > 0 {
		b.Fatalf("without audit load: %d 5xx and %d other failures of %d revocations", fivexx, failed, b.N)
	}
	engineUnloaded := publish(b.N)

	ctx, stop := context.WithTimeout(context.Background(), 90*time.Second)
	defer stop()
	var ok, busy, other atomic.Int64
	var auditWG sync.WaitGroup
	started := make(chan struct{}, auditors)
	for range auditors {
		auditWG.Go(func() {
			started <- struct{}{}
			for range auditMaxCalls {
				if ctx.Err() != nil {
					return
				}
				after := rand.IntN(streamEvents - 1000)
				req, _ := http.NewRequestWithContext(ctx, "GET", api+"/v1/audit?limit=1000&after_seq="+strconv.Itoa(after), nil)
				req.Header.Set("X-API-Key", key)
				res, err := auditClient.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						other.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
					busy.Add(1)
					if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); honorRetryAfter && err == nil {
						select { // the client's back-off, not a wait for the server
						case <-ctx.Done():
						case <-time.After(time.Duration(secs) * time.Second):
						}
					}
				default:
					other.Add(1)
				}
			}
		})
	}
	for range auditors {
		<-started
	}
	peak := rssSampler(ctx)
	loadedStart := time.Now()
	loaded, fivexx, failed := revoke(b.N)
	loadedFor := time.Since(loadedStart)
	engineLoaded := publish(b.N)
	stop()
	auditWG.Wait()
	b.StopTimer()

	b.ReportMetric(q(unloaded, 0.5), "unloaded-p50-ms")
	b.ReportMetric(q(unloaded, 0.99), "unloaded-p99-ms")
	b.ReportMetric(q(loaded, 0.5), "loaded-p50-ms")
	b.ReportMetric(q(loaded, 0.99), "loaded-p99-ms")
	b.ReportMetric(q(loaded, 0.99)/q(unloaded, 0.99), "p99-ratio")
	b.ReportMetric(q(engineUnloaded, 0.99), "engine-unloaded-p99-ms")
	b.ReportMetric(q(engineLoaded, 0.99), "engine-loaded-p99-ms")
	b.ReportMetric(q(engineLoaded, 0.99)/q(engineUnloaded, 0.99), "engine-p99-ratio")
	b.ReportMetric(float64(fivexx), "rev-5xx")
	b.ReportMetric(float64(failed), "rev-other-fail")
	b.ReportMetric(float64(ok.Load()), "audit-200")
	b.ReportMetric(float64(busy.Load()), "audit-429")
	b.ReportMetric(float64(other.Load()), "audit-other")
	b.ReportMetric(float64(ok.Load())/loadedFor.Seconds(), "audit-pages/s")
	b.ReportMetric(float64(<-peak)/(1<<20), "peak-rss-MB")
}

// fillStream publishes n valid user.reset events straight to the stream, many in flight.
func fillStream(tb testing.TB, srv *instance, n int) {
	tb.Helper()
	nc := srv.connect(tb, natsutil.Broadcaster)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		ev, err := events.NewUserReset(int64(i+1), time.Now(), "rvca_000000000000")
		if err != nil {
			tb.Fatal(err)
		}
		ev.Reason = "audit load benchmark"
		ev.Source = events.Source{RemoteAddr: "127.0.0.1", RequestID: strconv.Itoa(i), UserAgent: "bench"}
		data, err := events.Encode(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := js.PublishAsync(ev.Subject(), data, jetstream.WithMsgID(ev.ID), jetstream.WithStallWait(time.Minute)); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		tb.Fatalf("%d events not stored within 2 minutes", n)
	}
	if pending := js.PublishAsyncPending(); pending != 0 {
		tb.Fatalf("%d publishes unacknowledged", pending)
	}
}

// rssSampler reads this process's resident set size every 20 ms until ctx is done, then
// sends the largest value seen, in bytes.
func rssSampler(ctx context.Context) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, readRSS())
			select {
			case <-ctx.Done():
				out <- max(peak, readRSS())
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// readRSS is VmRSS from /proc/self/status (Linux), in bytes; 0 where there is none.
func readRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
