package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

// jwksServer serves a key set that the test can change, and counts the fetches.
type jwksServer struct {
	mu      sync.Mutex
	keys    []events.JWK
	fetches atomic.Int32
	srv     *httptest.Server
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) add(kid string, pub ed25519.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, events.JWK{Kty: "OKP", Crv: "Ed25519", Kid: kid, Alg: "EdDSA", Use: "sig",
		X: base64.RawURLEncoding.EncodeToString(pub)})
}

func signed(t *testing.T, kid string, priv ed25519.PrivateKey) *jwt.Token {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "1"})
	tok.Header["kid"], tok.Header["typ"] = kid, AccessTokenType
	raw, err := tok.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}

func TestJWKSRotationAndRateLimit(t *testing.T) {
	s := newJWKSServer(t)
	pub1, priv1, _ := ed25519.GenerateKey(rand.Reader)
	s.add("k1", pub1)
	j := NewJWKS(s.srv.URL, nil)
	// Longer than the loop below can take on a loaded machine: the limit is what is tested,
	// not how fast 51 lookups run (with 200 ms, a slow run earned a third fetch).
	j.minRefresh = time.Hour

	key, err := j.Keyfunc(signed(t, "k1", priv1))
	if err != nil || !pub1.Equal(key) {
		t.Fatalf("k1 = %v, %v", key, err)
	}
	// Made-up key ids do not each cost a fetch.
	for i := 0; i < 50; i++ {
		if _, err := j.Keyfunc(signed(t, "bogus", priv1)); err == nil {
			t.Fatal("unknown kid accepted")
		}
	}
	if n := s.fetches.Load(); n > 2 {
		t.Fatalf("%d fetches for 51 lookups within the refresh interval, want at most 2", n)
	}
	// A rotation: the new kid is found once the interval has passed.
	j.minRefresh = 200 * time.Millisecond
	pub2, priv2, _ := ed25519.GenerateKey(rand.Reader)
	s.add("k2", pub2)
	deadline := time.Now().Add(5 * time.Second)
	for {
		key, err := j.Keyfunc(signed(t, "k2", priv2))
		if err == nil && pub2.Equal(key) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new key not picked up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := j.Keyfunc(signed(t, "k1", priv1)); err != nil {
		t.Fatalf("old key after rotation: %v", err)
	}
}

func TestJWKSDownKeepsKnownKeys(t *testing.T) {
	s := newJWKSServer(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s.add("k1", pub)
	j := NewJWKS(s.srv.URL, nil)
	j.minRefresh = 0
	if _, err := j.Keyfunc(signed(t, "k1", priv)); err != nil {
		t.Fatal(err)
	}
	s.srv.Close()
	if _, err := j.Keyfunc(signed(t, "other", priv)); err == nil {
		t.Fatal("unknown kid accepted with the JWKS down")
	}
	if _, err := j.Keyfunc(signed(t, "k1", priv)); err != nil {
		t.Fatalf("known key forgotten when the JWKS is down: %v", err)
	}
}

// TestJWKSSlowFetchBlocksNobody: while one request fetches a slow JWKS for an unknown key,
// requests with known keys go on.
func TestJWKSSlowFetchBlocksNobody(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	var slow atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if slow.Load() {
			entered <- struct{}{}
			<-release
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []events.JWK{{Kty: "OKP", Crv: "Ed25519", Kid: "k1", Alg: "EdDSA", Use: "sig",
			X: base64.RawURLEncoding.EncodeToString(pub)}}})
	}))
	defer srv.Close()
	defer close(release)
	j := NewJWKS(srv.URL, nil)
	j.minRefresh = 0
	if _, err := j.Keyfunc(signed(t, "k1", priv)); err != nil {
		t.Fatal(err)
	}
	slow.Store(true)
	go func() { _, _ = j.Keyfunc(signed(t, "rotated", priv)) }() // fetches, and hangs
	time.Sleep(50 * time.Millisecond)                            // let it take the fetch
	done := make(chan error, 1)
	go func() { _, err := j.Keyfunc(signed(t, "k1", priv)); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a known key waited for another request's fetch")
	}
}

func TestJWKSGivesKeysForAccessTokensOnly(t *testing.T) {
	s := newJWKSServer(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s.add("k1", pub)
	j := NewJWKS(s.srv.URL, nil)
	for _, typ := range []any{"rt+jwt", "JWT", nil} {
		tok := signed(t, "k1", priv)
		if typ == nil {
			delete(tok.Header, "typ")
		} else {
			tok.Header["typ"] = typ
		}
		if _, err := j.Keyfunc(tok); !errors.Is(err, ErrNotAccessToken) {
			t.Fatalf("typ %v: err = %v, want ErrNotAccessToken", typ, err)
		}
	}
	if n := s.fetches.Load(); n != 0 {
		t.Fatalf("%d fetches for tokens that are not access tokens, want 0", n)
	}
	tok := signed(t, "k1", priv)
	tok.Header["typ"] = "application/AT+JWT"
	if key, err := j.Keyfunc(tok); err != nil || !pub.Equal(key) {
		t.Fatalf("application/AT+JWT = %v, %v", key, err)
	}
}

// TestWithJWKSRevokesSessions: revocast's tokens verified over its JWKS URL are revocast's
// own tokens, so a session revocation applies to them as it does with the keys over NATS.
// (With WithKeyfunc alone the table cannot know whose keys these are, and reads no sid.)
func TestWithJWKSRevokesSessions(t *testing.T) {
	f := newFixture(t)
	s := newJWKSServer(t)
	s.add("k1", f.pub)
	tab := f.readyTable(t, WithJWKS(NewJWKS(s.srv.URL, nil)))
	token := func(sid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "42", "app": "shop", "sid": sid,
			"iat": json.Number(millis(time.Now().Add(-time.Second))), "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"], tok.Header["typ"] = "k1", AccessTokenType
		raw, err := tok.SignedString(f.priv)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	laptop, laptop2, phone := token("laptop-1"), token("laptop-1"), token("phone-1")
	for _, raw := range []string{laptop, phone} {
		if _, err := tab.Verify(context.Background(), raw); err != nil {
			t.Fatalf("before the logout: %v", err)
		}
	}
	wm := time.Now().Truncate(time.Millisecond)
	eventstest.Publish(t, f.js, mustSession(t, "laptop-1", wm))
	eventually(t, "the session's watermark", func() bool { return tab.SessionNotBefore("laptop-1").Equal(wm) })
	if _, err := tab.Verify(context.Background(), laptop2); !errors.Is(err, ErrRevoked) {
		t.Fatalf("token of the logged-out session: %v, want ErrRevoked", err)
	}
	if _, err := tab.Verify(context.Background(), phone); err != nil {
		t.Fatalf("token of the other session: %v", err)
	}
	// An issuer's JWKS is another issuer's: no sid unless WithSessionClaim says so.
	other := f.readyTable(t, WithJWKS(NewIssuerJWKS(s.srv.URL, nil)))
	eventually(t, "the session's watermark", func() bool { return other.SessionNotBefore("laptop-1").Equal(wm) })
	if _, err := other.Verify(context.Background(), laptop2); err != nil {
		t.Fatalf("another issuer's token with a sid, no WithSessionClaim: %v", err)
	}
}
