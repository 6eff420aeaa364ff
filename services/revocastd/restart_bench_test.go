package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/natsutil"
)

// fixedPort is a free loopback port below the usual ephemeral range, so no outgoing
// connection takes it while revocastd is down between two starts.
func fixedPort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		port := 20000 + rand.IntN(10000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	tb.Fatal("no free port")
	return 0
}

// BenchmarkEnforcedAfterRestart measures how soon a revocation sent right after revocastd
// restarted (same data directory, same embedded NATS port) is applied by resource-server
// tables: one connected with client.Connect, one with nats.go's default reconnect wait
// (2 s), in the same run. Each iteration stops revocastd, starts it again, and as soon as
// it serves resets one user through the API; a sample is the time from "serving" to the
// table having applied that reset.
func BenchmarkEnforcedAfterRestart(b *testing.B) {
	env := map[string]string{"REVOCAST_LOG_LEVEL": "warn", "REVOCAST_DATA_DIR": b.TempDir(),
		"REVOCAST_NATS_LISTEN": "127.0.0.1:" + strconv.Itoa(fixedPort(b))}
	srv := start(b, env)
	st, _ := openStore(b, srv)
	_, key, err := st.CreateKey(context.Background(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	type applied struct {
		table int
		user  int64
		at    time.Time
	}
	seen := make(chan applied, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The tables' asynchronous NATS errors (permission refusals when the key watcher gives
	// up its consumer, as the resource role may not delete consumers) are not measured.
	creds := []nats.Option{nats.UserCredentials(srv.credentials(natsutil.Resource)), client.LogNATSErrors(zap.NewNop())}
	names := []string{"client.Connect", "nats.go default"}
	conns := make([]*nats.Conn, 2)
	if conns[0], err = client.Connect(srv.nats, creds...); err != nil {
		b.Fatal(err)
	}
	if conns[1], err = nats.Connect(srv.nats, append(creds, nats.MaxReconnects(-1))...); err != nil {
		b.Fatal(err)
	}
	for i, nc := range conns {
		b.Cleanup(nc.Close)
		tab, err := client.New(nc, client.WithOnApply(func(ev events.Event, _ uint64) {
			seen <- applied{table: i, user: ev.UserID, at: time.Now()}
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
	samples := make([][]time.Duration, len(conns))
	var sinceOK []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := srv.stop(); err != nil {
			b.Fatalf("stop: %v", err)
		}
		srv = start(b, env)
		back := time.Now()
		user := int64(i + 1)
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v2/users/reset/%d", srv.api, user), nil)
		req.Header.Set("X-API-Key", key.Reveal())
		res, err := httpc.Do(req)
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("reset after restart: %v %v", res, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		ok := time.Now()
		sinceOK = append(sinceOK, ok.Sub(back))
		for got := 0; got < len(conns); {
			select {
			case a := <-seen:
				if a.user != user {
					continue
				}
				got++
				samples[a.table] = append(samples[a.table], a.at.Sub(back))
			case <-time.After(30 * time.Second):
				b.Fatalf("user %d: %d of %d tables applied it within 30s of the restart", user, got, len(conns))
			}
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	q := func(s []time.Duration, p float64) time.Duration {
		s = slices.Clone(s)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1))]
	}
	b.ReportMetric(ms(q(sinceOK, 0.5)), "api-200-p50-ms")
	for i, s := range samples {
		tag := [...]string{"helper", "default"}[i]
		b.ReportMetric(ms(q(s, 0.5)), tag+"-p50-ms")
		b.ReportMetric(ms(q(s, 1)), tag+"-max-ms")
		b.Logf("%s: enforced after serving again: p50 %s, max %s (n=%d)", names[i], q(s, 0.5).Round(time.Millisecond), q(s, 1).Round(time.Millisecond), len(s))
	}
}
