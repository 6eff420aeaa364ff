package extauthz_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/revocast-agent/extauthz"
)

// tableDecider decides with a real client table, as the agent does: a stand-in for the
// shared decision in client/ until it exists, mapping Verify's errors as the middleware does.
type tableDecider struct{ t *client.Table }

func (d tableDecider) Decide(ctx context.Context, authorization string) extauthz.Decision {
	const realm = `Bearer realm="` + client.DefaultRealm + `"`
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return extauthz.Decision{Status: 401, Challenge: realm}
	}
	c, err := d.t.Verify(ctx, strings.TrimSpace(token))
	switch {
	case err == nil:
		claims, err := json.Marshal(c.All)
		if err != nil {
			return extauthz.Decision{Status: 401, Challenge: realm + `, error="invalid_token"`}
		}
		return extauthz.Decision{Allowed: true, User: strconv.FormatInt(c.UserID, 10), App: c.AppID, ClaimsJSON: claims}
	case errors.Is(err, client.ErrNotReady), errors.Is(err, client.ErrStale):
		return extauthz.Decision{Status: 503, RetryAfter: time.Second}
	case errors.Is(err, client.ErrRevoked):
		return extauthz.Decision{Status: 401, Challenge: realm + `, error="invalid_token", error_description="the token has been revoked"`}
	default:
		return extauthz.Decision{Status: 401, Challenge: realm + `, error="invalid_token", error_description="the token is invalid"`}
	}
}

// signer mints EdDSA access tokens for the table's key function.
type signer struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newSigner(tb testing.TB) signer {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return signer{pub: pub, priv: priv}
}

func (s signer) keyfunc(*jwt.Token) (any, error) { return s.pub, nil }

// token signs an access token for a user of an app, issued at iat (exact to the millisecond).
func (s signer) token(tb testing.TB, app string, user int64, iat time.Time) string {
	tb.Helper()
	ms := iat.UnixMilli()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"sub": strconv.FormatInt(user, 10),
		"app": app,
		"iat": json.Number(fmt.Sprintf("%d.%03d", ms/1000, ms%1000)),
		"exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["typ"] = client.AccessTokenType
	raw, err := tok.SignedString(s.priv)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// runTable starts a table on its own connection and runs it until the end of the test.
func runTable(tb testing.TB, srv *eventstest.Server, s signer) *client.Table {
	tb.Helper()
	tab, err := client.New(srv.Connect(), client.WithKeyfunc(s.keyfunc))
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
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := tab.WaitReady(wctx); err != nil {
		tb.Fatalf("WaitReady = %v", err)
	}
	return tab
}

// TestCheckWithTable runs the real decision: a client table following an embedded
// JetStream, real tokens, a flush published to the stream.
func TestCheckWithTable(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	srv.CreateStream()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t)
	tab := runTable(t, srv, s)
	c := serve(t, extauthz.NewServer(tableDecider{tab}, extauthz.WithClaimsHeader(true)))

	access := s.token(t, "shop", 42, time.Now().Add(-time.Second))
	in := map[string]string{
		"authorization":   "Bearer " + access,
		"x-revocast-user": "1",
		"x-revocast-role": "admin",
	}
	resp := check(t, c, request(in))
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("valid token: not OK: %v", resp)
	}
	up := upstream(t, in, ok)
	if got := up[extauthz.HeaderUser]; len(got) != 1 || got[0] != "42" {
		t.Errorf("upstream user %q, want [42]", got)
	}
	if got := up[extauthz.HeaderApp]; len(got) != 1 || got[0] != "shop" {
		t.Errorf("upstream app %q, want [shop]", got)
	}
	if got, ok := up["x-revocast-role"]; ok {
		t.Errorf("forged x-revocast-role reached the upstream: %q", got)
	}
	var claims map[string]any
	if b, err := base64.RawURLEncoding.DecodeString(up[extauthz.HeaderClaims][0]); err != nil || json.Unmarshal(b, &claims) != nil || claims["sub"] != "42" {
		t.Errorf("claims header %q: %v, %v", up[extauthz.HeaderClaims], err, claims)
	}

	t.Run("Garbage", func(t *testing.T) {
		resp := check(t, c, request(map[string]string{"authorization": "Bearer not.a.jwt"}))
		d := wantDenied(t, resp, codes.Unauthenticated, 401)
		if wa, _ := header(d.GetHeaders(), "www-authenticate"); !strings.Contains(wa, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q", wa)
		}
	})
	t.Run("OtherKey", func(t *testing.T) {
		forged := newSigner(t).token(t, "shop", 42, time.Now())
		wantDenied(t, check(t, c, request(map[string]string{"authorization": "Bearer " + forged})), codes.Unauthenticated, 401)
	})

	// Flush the app: the stored event reaches the table, and the very next Check refuses.
	nb := time.Now()
	ev, err := events.NewAppFlushed("shop", nb, "extauthz-test")
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Publish(t, js, ev)
	deadline := time.Now().Add(10 * time.Second)
	for tab.NotBefore("shop", 42).IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the flush never reached the table")
		}
		time.Sleep(2 * time.Millisecond) // bounded poll
	}
	resp = check(t, c, request(in))
	d := wantDenied(t, resp, codes.Unauthenticated, 401)
	if wa, _ := header(d.GetHeaders(), "www-authenticate"); !strings.Contains(wa, "revoked") {
		t.Errorf("revoked token: WWW-Authenticate %q", wa)
	}

	// Logging in again works at once.
	again := s.token(t, "shop", 42, nb.Add(time.Millisecond))
	if resp := check(t, c, request(map[string]string{"authorization": "Bearer " + again})); resp.GetOkResponse() == nil {
		t.Fatalf("token issued after the flush: %v", resp)
	}
}

// TestCheckTableNotReady: a table that has not caught up answers 503, never OK.
func TestCheckTableNotReady(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	s := newSigner(t)
	tab, err := client.New(srv.Connect(), client.WithKeyfunc(s.keyfunc)) // never run
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, extauthz.NewServer(tableDecider{tab}))
	resp := check(t, c, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"authorization": "Bearer " + s.token(t, "shop", 42, time.Now())}}}}})
	d := wantDenied(t, resp, codes.Unavailable, 503)
	if ra, _ := header(d.GetHeaders(), "retry-after"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
}
