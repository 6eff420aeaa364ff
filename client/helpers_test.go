package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

// fixture is a running JetStream with the revocation stream and a signing key.
type fixture struct {
	srv  *eventstest.Server
	js   jetstream.JetStream
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// fastReconnect keeps restart tests quick: the default waits 2s between attempts.
func fastReconnect() []nats.Option {
	return []nats.Option{nats.ReconnectWait(20 * time.Millisecond), nats.MaxReconnects(-1)}
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	f := newFixtureWithoutStream(tb)
	f.srv.CreateStream()
	return f
}

// newFixtureWithoutStream is a fixture before the broadcaster has created the stream.
func newFixtureWithoutStream(tb testing.TB) *fixture {
	tb.Helper()
	srv := eventstest.RunJetStream(tb)
	js, err := jetstream.New(srv.Connect(fastReconnect()...))
	if err != nil {
		tb.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{srv: srv, js: js, priv: priv, pub: pub}
}

func (f *fixture) keyfunc(*jwt.Token) (any, error) { return f.pub, nil }

// table starts a table on its own connection, runs it until the end of the test, and
// does not wait for it to be ready.
func (f *fixture) table(tb testing.TB, opts ...Option) *Table {
	tb.Helper()
	opts = append([]Option{WithKeyfunc(f.keyfunc), WithLogger(zaptest.NewLogger(tb))}, opts...)
	tab, err := New(f.srv.Connect(fastReconnect()...), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run = %v", err)
		}
	})
	return tab
}

// readyTable is table, waiting until it is ready.
func (f *fixture) readyTable(tb testing.TB, opts ...Option) *Table {
	tb.Helper()
	tab := f.table(tb, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tab.WaitReady(ctx); err != nil {
		tb.Fatalf("WaitReady = %v", err)
	}
	return tab
}

// token signs an EdDSA token for a user of an app; iat is written exactly as given, so
// tests choose whole or fractional seconds.
func (f *fixture) token(tb testing.TB, app string, user int64, iat string, extra jwt.MapClaims) string {
	tb.Helper()
	return f.typedToken(tb, "JWT", app, user, iat, extra)
}

// typedToken is token with typ as its "typ" header; nil leaves the header out.
func (f *fixture) typedToken(tb testing.TB, typ any, app string, user int64, iat string, extra jwt.MapClaims) string {
	tb.Helper()
	claims := jwt.MapClaims{
		"sub": strconv.FormatInt(user, 10),
		"app": app,
		"iat": json.Number(iat),
		"exp": time.Now().Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	if typ == nil {
		delete(tok.Header, "typ")
	} else {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(f.priv)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// secs writes t as whole seconds, millis as seconds with three decimals.
func secs(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
func millis(t time.Time) string {
	ms := t.UnixMilli()
	return fmt.Sprintf("%d.%03d", ms/1000, ms%1000)
}

// eventually polls cond every 5ms for up to 10s.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll, not a guess at timing
	}
}

// waitWatermark waits until the table holds nb for the user of an app.
func waitWatermark(tb testing.TB, tab *Table, app string, user int64, nb time.Time) {
	tb.Helper()
	eventually(tb, fmt.Sprintf("watermark %s for %q/%d", nb, app, user), func() bool {
		return tab.NotBefore(app, user).Equal(nb)
	})
}

// publishRetry publishes an event, retrying while the server restarts. The event id is the
// message id, so a retry after a lost ack is stored once.
func publishRetry(tb testing.TB, js jetstream.JetStream, ev events.Event) {
	tb.Helper()
	data, err := events.Encode(ev)
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.Publish(ctx, ev.Subject(), data, jetstream.WithMsgID(ev.ID))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("publish %s: %v", ev.Subject(), err)
		}
		time.Sleep(20 * time.Millisecond) // bounded retry
	}
}
