package client

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// BenchmarkMiddlewareOverhead runs the same EdDSA token through a bare
// jwt.ParseWithClaims, through Verify, and through the middleware, against a table with
// watermarks for the token's app and user. Overhead = Verify / ParseWithClaims - 1.
func BenchmarkMiddlewareOverhead(b *testing.B) {
	f := newFixture(b)
	tab := f.readyTable(b, WithLogger(zap.NewNop()))
	wm := time.Now().Add(-time.Hour)
	tab.apply(mustUser(b, 42, wm))
	tab.apply(mustApp(b, "shop", wm))
	raw := f.token(b, "shop", 42, millis(time.Now()), nil)
	ctx := context.Background()

	b.Run("ParseWithClaims", func(b *testing.B) {
		parser := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parser.ParseWithClaims(raw, jwt.MapClaims{}, f.keyfunc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tab.Verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Middleware", func(b *testing.B) {
		h := tab.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+raw)
		w := httptest.NewRecorder()
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, req)
		}
		if w.Code != http.StatusOK {
			b.Fatalf("status = %d", w.Code)
		}
	})
}

// benchSelected reports whether -bench names the benchmark explicitly, for benchmarks too
// slow for `-bench .`.
func benchSelected(name string) bool {
	f := flag.Lookup("test.bench")
	return f != nil && strings.Contains(f.Value.String(), name)
}

// BenchmarkReady1M measures how long a new table takes to be ready with 1M revoked users in
// the stream: from the stream alone (the latest event of each subject), from a snapshot at
// the end of the stream, and from a snapshot followed by 10k more events. It runs only when
// selected by name: -bench Ready1M.
func BenchmarkReady1M(b *testing.B) {
	if !benchSelected("Ready1M") {
		b.Skip("run with -bench Ready1M")
	}
	const n, tail = 1_000_000, 10_000
	f := newFixture(b)
	publishUsers(b, f.js, 1, n)
	ready := func(b *testing.B, users int, opts ...Option) {
		for b.Loop() {
			tab, err := New(f.srv.Connect(), append([]Option{WithKeyfunc(f.keyfunc)}, opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tab.Run(ctx) }()
			if err := tab.WaitReady(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if s := tab.Stats(); s.Users != users {
				b.Fatalf("users = %d, want %d", s.Users, users)
			}
			cancel()
			<-done
			b.StartTimer()
		}
	}
	b.Run("Stream", func(b *testing.B) { ready(b, n, WithSnapshot(false)) })

	writer := f.readyTable(b, WithLogger(zap.NewNop()))
	f.caughtUp(b, writer)
	start := time.Now()
	var buf bytes.Buffer
	h, err := writer.WriteSnapshot(&buf)
	if err != nil {
		b.Fatal(err)
	}
	f.putSnapshot(b, buf.Bytes())
	b.Logf("snapshot of %d users at seq %d: %d bytes, written and stored in %s", h.UsersHint, h.Seq, buf.Len(), time.Since(start))
	b.Run("Snapshot", func(b *testing.B) { ready(b, n) })

	publishUsers(b, f.js, n+1, tail)
	b.Run("SnapshotTail10k", func(b *testing.B) { ready(b, n+tail) })
}

// publishUsers stores user.reset events for n users from id first on, many in flight at
// once.
func publishUsers(b *testing.B, js jetstream.JetStream, first, n int) {
	b.Helper()
	start := time.Now()
	nb := time.Now().Add(-time.Minute)
	const batch = 20_000
	for from := first; from < first+n; from += batch {
		for id := from; id < from+batch && id < first+n; id++ {
			ev := mustUserFast(int64(id), nb)
			ev.ID, ev.Actor = events.NewID(), "bench"
			data, err := events.Encode(ev)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.PublishAsync(ev.Subject(), data); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publish batch not acknowledged in a minute")
		}
	}
	b.Logf("published %d events in %s", n, time.Since(start))
}
