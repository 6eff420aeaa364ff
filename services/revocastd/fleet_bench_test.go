package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/natsutil"
)

// BenchmarkConfirmedFlush measures DELETE /root/{app}/flush with "Prefer: wait=5" (the
// answer comes once every table has applied the event) beside the plain flush, in the same
// run and alternating, on the durable embedded default. Tables: 10 on their own connections
// (as 10 servers would be), and 100 in this one process (own connections too). One call at
// a time: each sample is one call's latency, not queueing.
func BenchmarkConfirmedFlush(b *testing.B) {
	for _, tables := range []int{10, 100} {
		b.Run(fmt.Sprintf("tables=%d", tables), func(b *testing.B) { benchConfirmedFlush(b, tables) })
	}
}

func benchConfirmedFlush(b *testing.B, tables int) {
	srv := start(b, map[string]string{"REVOCAST_LOG_LEVEL": "warn"})
	st, _ := openStore(b, srv)
	_, rootKey, err := st.CreateApp(context.Background(), "shop")
	if err != nil {
		b.Fatal(err)
	}
	_, apiKey, err := st.CreateKey(context.Background(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range tables {
		fleetTable(b, srv, "t"+strconv.Itoa(i), client.WithReportInterval(time.Second))
	}
	waitUntil(b, "every table in the fleet", 30*time.Second, func() bool { return len(liveFleet(b, srv, string(apiKey))) == tables })
	httpc := &http.Client{}
	want := fmt.Sprintf("%d/%d", tables, tables)
	flush := func(prefer bool) time.Duration {
		req, _ := http.NewRequest("DELETE", srv.api+"/root/shop/flush", nil)
		req.Header.Set("Authorization", string(rootKey))
		if prefer {
			req.Header.Set("Prefer", "wait=5")
		}
		start := time.Now()
		res, err := httpc.Do(req)
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("flush: %v %v", res, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		took := time.Since(start)
		if got := res.Header.Get("Revocast-Applied"); prefer && got != want {
			b.Fatalf("Revocast-Applied = %q, want %s (pending %s)", got, want, res.Header.Get("Revocast-Pending"))
		}
		return took
	}
	var plain, confirmed []time.Duration
	b.ResetTimer()
	for range b.N {
		plain = append(plain, flush(false))
		confirmed = append(confirmed, flush(true))
	}
	b.StopTimer()
	q := func(s []time.Duration, p float64) float64 {
		slices.Sort(s)
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(plain, 0.5), "plain-p50-ms")
	b.ReportMetric(q(plain, 0.99), "plain-p99-ms")
	b.ReportMetric(q(confirmed, 0.5), "confirmed-p50-ms")
	b.ReportMetric(q(confirmed, 0.99), "confirmed-p99-ms")
	b.ReportMetric(q(confirmed, 0.99)/q(plain, 0.99), "p99-ratio")
}

// BenchmarkFleetReports measures what the reports of 1,000 simulated instances cost:
// each sends a presence report every 2s (client.DefaultReportInterval), spread over the
// interval, on 10 connections. The process holds revocastd, its embedded NATS server and
// the simulators, so its CPU is measured for the same time with and without them; the
// difference is what the reports cost all three together (an upper bound for revocastd).
func BenchmarkFleetReports(b *testing.B) {
	const instances, conns = 1000, 10
	interval := client.DefaultReportInterval
	srv := start(b, map[string]string{"REVOCAST_LOG_LEVEL": "warn"})
	st, _ := openStore(b, srv)
	_, apiKey, err := st.CreateKey(context.Background(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	ncs := make([]*nats.Conn, conns)
	for i := range ncs {
		ncs[i] = srv.connect(b, natsutil.Resource)
	}
	reports := make([][]byte, instances)
	for i := range reports {
		reports[i], _ = events.EncodeReport(events.Report{Version: events.ReportVersion, Instance: fmt.Sprintf("sim-%04d", i),
			Service: "sim", Host: "bench-host", ClientVersion: "v1.0.0", Seq: 1, StalenessMS: 120, Ready: true, IntervalMS: interval.Milliseconds()})
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	measure := 10 * time.Second
	// Idle first.
	c0, t0 := cpu(), time.Now()
	time.Sleep(measure) // the measurement window itself, not a wait for a condition
	idle := float64(cpu()-c0) / float64(time.Since(t0))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Int64
	go func() {
		step := interval / instances
		tick := time.NewTicker(step)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			k := i % instances
			_ = ncs[k%conns].Publish(events.ReportSubject(fmt.Sprintf("sim-%04d", k)), reports[k])
			sent.Add(1)
		}
	}()
	waitUntil(b, "1,000 instances in the fleet", 3*interval, func() bool { return len(liveFleet(b, srv, string(apiKey))) == instances })
	b.ResetTimer()
	c1, t1, n1 := cpu(), time.Now(), sent.Load()
	for range b.N {
		time.Sleep(measure) // the measurement window
	}
	elapsed := time.Since(t1)
	busy := float64(cpu()-c1) / float64(elapsed)
	n := sent.Load() - n1
	b.StopTimer()
	cancel()
	if got := len(liveFleet(b, srv, string(apiKey))); got != instances {
		b.Fatalf("%d instances live at the end, want %d", got, instances)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "reports/s")
	b.ReportMetric(idle*100, "idle-cpu-%")
	b.ReportMetric(busy*100, "cpu-%")
	b.ReportMetric((busy-idle)*100, "reports-cpu-%")
}
