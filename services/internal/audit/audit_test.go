package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/audit"
	"github.com/revocast/revocast/services/internal/store"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	good := map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"2026-11-01":           time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"":                     {},
	}
	for in, want := range good {
		got, err := audit.ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-5h", "2026-13-01", "24", "1d"} {
		if _, err := audit.ParseTime(in, now); !errors.Is(err, audit.ErrQuery) {
			t.Errorf("ParseTime(%q) = %v, want ErrQuery", in, err)
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	tests := []struct {
		f    audit.Filter
		want string
	}{
		{audit.Filter{}, ""},
		{audit.Filter{App: "shop"}, "revocation.app.flushed.shop"},
		{audit.Filter{User: 42}, "revocation.user.reset.42"},
		{audit.Filter{App: "shop", User: 42}, "revocation.app.flushed.shop,revocation.user.reset.42"},
		{audit.Filter{App: "shop", User: 42, Type: events.TypeUserReset}, "revocation.user.reset.42"},
		{audit.Filter{Type: events.TypeAppFlushed}, "revocation.app.flushed.*"},
		{audit.Filter{Type: events.TypeUserReset, Actor: "x"}, "revocation.user.reset.*"},
		{audit.Filter{Session: "s_1"}, "revocation.session.revoked.s_1"},
		{audit.Filter{App: "shop", User: 42, Session: "s_1"}, "revocation.app.flushed.shop,revocation.user.reset.42,revocation.session.revoked.s_1"},
		{audit.Filter{User: 42, Session: "s_1", Type: events.TypeSessionRevoked}, "revocation.session.revoked.s_1"},
		{audit.Filter{Type: events.TypeSessionRevoked}, "revocation.session.revoked.*"},
	}
	for _, tt := range tests {
		if got := strings.Join(tt.f.Subjects(), ","); got != tt.want {
			t.Errorf("%+v.Subjects() = %q, want %q", tt.f, got, tt.want)
		}
	}
	for name, f := range map[string]audit.Filter{
		"ErrType":            {Type: "app.deleted"},
		"ErrRange":           {Since: time.Now(), Until: time.Now().Add(-time.Hour)},
		"ErrAppID":           {App: "a.>"},
		"ErrUserFlush":       {User: 1, Type: events.TypeAppFlushed},
		"ErrAppReset":        {App: "a", Type: events.TypeUserReset},
		"ErrSession":         {Session: "a.>"},
		"ErrSessionFlush":    {Session: "s_1", Type: events.TypeAppFlushed},
		"ErrUserSessionType": {User: 1, Type: events.TypeSessionRevoked},
	} {
		if err := f.Validate(); !errors.Is(err, audit.ErrQuery) {
			t.Errorf("%s: Validate = %v, want ErrQuery", name, err)
		}
	}
}

// publishMix stores app and user events from two actors and returns them in order.
func publishMix(t testing.TB, js jetstream.JetStream, n int) []events.Event {
	t.Helper()
	var out []events.Event
	for i := 0; i < n; i++ {
		var ev events.Event
		if i%3 == 0 {
			ev, _ = events.NewAppFlushed([]string{"shop", "blog"}[i%2], time.Now(), "rvcr_00000000000"+string(rune('0'+i%2)))
		} else {
			ev, _ = events.NewUserReset(int64(i%5+1), time.Now(), []string{"rvca_aaaaaaaaaaaa", "rvca_bbbbbbbbbbbb"}[i%2])
		}
		eventstest.Publish(t, js, ev)
		out = append(out, ev)
	}
	return out
}

func setup(t testing.TB) (*eventstest.Server, jetstream.JetStream) {
	t.Helper()
	srv := eventstest.RunJetStream(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Setup(context.Background(), js, store.Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

func TestReplayFilters(t *testing.T) {
	_, js := setup(t)
	published := publishMix(t, js, 30)
	ctx := t.Context()

	collect := func(q audit.Query) ([]audit.Record, audit.Summary) {
		t.Helper()
		var recs []audit.Record
		sum, err := audit.Replay(ctx, js, q, func(r audit.Record) error { recs = append(recs, r); return nil })
		if err != nil {
			t.Fatalf("Replay(%+v): %v", q, err)
		}
		return recs, sum
	}
	want := func(keep func(events.Event) bool) []string {
		var ids []string
		for _, ev := range published {
			if keep(ev) {
				ids = append(ids, ev.ID)
			}
		}
		return ids
	}
	ids := func(recs []audit.Record) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Event.ID)
		}
		return out
	}
	tests := map[string]struct {
		f    audit.Filter
		keep func(events.Event) bool
	}{
		"All":       {audit.Filter{}, func(events.Event) bool { return true }},
		"App":       {audit.Filter{App: "shop"}, func(e events.Event) bool { return e.AppID == "shop" }},
		"User":      {audit.Filter{User: 3}, func(e events.Event) bool { return e.UserID == 3 }},
		"AppOrUser": {audit.Filter{App: "blog", User: 3}, func(e events.Event) bool { return e.AppID == "blog" || e.UserID == 3 }},
		"Type":      {audit.Filter{Type: events.TypeAppFlushed}, func(e events.Event) bool { return e.Type == events.TypeAppFlushed }},
		"Actor":     {audit.Filter{Actor: "rvca_bbbbbbbbbbbb"}, func(e events.Event) bool { return e.Actor == "rvca_bbbbbbbbbbbb" }},
		"NoMatch":   {audit.Filter{App: "nobody"}, func(e events.Event) bool { return false }},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			recs, sum := collect(audit.Query{Filter: tt.f})
			got, exp := strings.Join(ids(recs), ","), strings.Join(want(tt.keep), ",")
			if got != exp {
				t.Fatalf("ids = %s\nwant %s", got, exp)
			}
			if sum.Matched != len(recs) {
				t.Fatalf("summary matched %d, emitted %d", sum.Matched, len(recs))
			}
			for i := 1; i < len(recs); i++ {
				if recs[i].Seq <= recs[i-1].Seq || recs[i].Stored.Before(recs[i-1].Stored) {
					t.Fatal("records out of order")
				}
			}
		})
	}
	t.Run("ServerSideFilterReadsOnlyTheApp", func(t *testing.T) {
		_, sum := collect(audit.Query{Filter: audit.Filter{App: "shop"}})
		if sum.Scanned != sum.Matched {
			t.Fatalf("scanned %d events for %d matches: the filter was not applied by the server", sum.Scanned, sum.Matched)
		}
	})
	t.Run("TimeRange", func(t *testing.T) {
		all, _ := collect(audit.Query{})
		mid := all[len(all)/2].Stored
		after, _ := collect(audit.Query{Filter: audit.Filter{Since: mid}})
		before, _ := collect(audit.Query{Filter: audit.Filter{Until: mid}})
		if len(after) == 0 || after[0].Stored.Before(mid) || len(before) == 0 || before[len(before)-1].Stored.After(mid) {
			t.Fatalf("since/until split: %d after, %d before", len(after), len(before))
		}
		if len(after)+len(before) < len(all) {
			t.Fatalf("since and until around %v cover %d+%d of %d", mid, len(after), len(before), len(all))
		}
	})
	t.Run("Pages", func(t *testing.T) {
		var seen []string
		var after uint64
		for pages := 0; ; pages++ {
			recs, sum := collect(audit.Query{AfterSeq: after, Limit: 7})
			seen = append(seen, ids(recs)...)
			after = sum.LastSeq
			if !sum.More {
				break
			}
			if pages > 10 {
				t.Fatal("pagination does not end")
			}
		}
		if strings.Join(seen, ",") != strings.Join(want(func(events.Event) bool { return true }), ",") {
			t.Fatal("pages do not add up to the stream")
		}
	})
}

func TestFollow(t *testing.T) {
	_, js := setup(t)
	publishMix(t, js, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan audit.Record, 10)
	done := make(chan error, 1)
	go func() {
		_, err := audit.Replay(ctx, js, audit.Query{Follow: true}, func(r audit.Record) error { got <- r; return nil })
		done <- err
	}()
	for i := 0; i < 2; i++ {
		<-got
	}
	ev, _ := events.NewUserReset(77, time.Now(), "rvca_cccccccccccc")
	eventstest.Publish(t, js, ev)
	select {
	case r := <-got:
		if r.Event.ID != ev.ID {
			t.Fatalf("followed %+v, want %s", r.Event, ev.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not deliver a new event within 10s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow returned %v after cancel", err)
	}
}

// TestVerifyFindsDeletedAndInvalid builds a copy of the stream without the deny flags (as a
// privileged operator could), deletes a message and stores garbage: Verify reports all of it.
func TestVerifyFindsDeletedAndInvalid(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	js, _ := jetstream.New(srv.Connect())
	ctx := t.Context()
	cfg := store.StreamConfig(1)
	cfg.DenyDelete, cfg.DenyPurge = false, false
	stream, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	publishMix(t, js, 5)
	if err := stream.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "revocation.user.reset.5", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	problems, sum, err := audit.Verify(ctx, js, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{"deny_delete is off", "deny_purge is off", "1 events were deleted: seqs [3]", "1 messages are not valid events"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(sum.Gaps) != 1 || sum.Gaps[0] != (audit.Gap{From: 3, To: 3}) {
		t.Errorf("gaps = %v, want seq 3", sum.Gaps)
	}

	// The production configuration passes.
	_, js2 := setup(t)
	publishMix(t, js2, 5)
	if problems, _, err := audit.Verify(ctx, js2, nil); err != nil || len(problems) > 0 {
		t.Fatalf("Verify(intact) = %v, %v", problems, err)
	}
}

// BenchmarkReplayJSONL measures replay to JSON lines on io.Discard, in events per second.
// The stream is filled once per run with b.N events.
func BenchmarkReplayJSONL(b *testing.B) {
	_, js := setup(b)
	fill(b, js, b.N)
	w := audit.NewJSONLWriter(discard{})
	b.ResetTimer()
	start := time.Now()
	sum, err := audit.Replay(context.Background(), js, audit.Query{}, w.Write)
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil || sum.Matched != b.N {
		b.Fatalf("replayed %d of %d: %v", sum.Matched, b.N, err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// fill publishes n user.reset events asynchronously, as fast as the server takes them.
func fill(tb testing.TB, js jetstream.JetStream, n int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		ev, _ := events.NewUserReset(int64(i%100000+1), time.Now(), "rvca_aaaaaaaaaaaa")
		ev.Source = events.Source{RemoteAddr: "203.0.113.9", RequestID: "0123456789abcdef", UserAgent: "bench"}
		data, _ := events.Encode(ev)
		if _, err := js.PublishAsync(ev.Subject(), data, jetstream.WithMsgID(ev.ID)); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("publishing did not complete")
	}
}
