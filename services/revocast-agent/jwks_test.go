package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestAuthWithRevocastJWKS: with revocastd's JWKS URL instead of its keys over NATS, the
// agent still knows the tokens are revocast's own, so logging one session out (RFC 7009)
// refuses that session's token and not the other's.
func TestAuthWithRevocastJWKS(t *testing.T) {
	s := startRevocastd(t)
	a := startAgent(t, s, map[string]string{"REVOCAST_JWKS_URL": s.api + "/.well-known/jwks.json", "REVOCAST_LOG_LEVEL": "warn"})
	laptop, phone := s.login(t, 42), s.login(t, 42)
	for _, tok := range []string{laptop, phone} {
		if code, h, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + tok}); code != 200 {
			t.Fatalf("before the logout = %d %q", code, h.Get("WWW-Authenticate"))
		}
	}
	code, _, body := callBody(t, "POST", s.api+"/v1/tokens/revoke", map[string]string{"Authorization": "Bearer " + s.appCred,
		"Content-Type": "application/x-www-form-urlencoded"}, url.Values{"token": {laptop}}.Encode())
	if code != 200 {
		t.Fatalf("RFC 7009 logout = %d %s", code, body)
	}
	waitFor(t, "the logged-out session refused", func() bool {
		code, _, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + laptop})
		return code == 401
	})
	if code, h, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + phone}); code != 200 {
		t.Fatalf("the other session = %d %q, want 200", code, h.Get("WWW-Authenticate"))
	}
}

// TestAuthAnotherIssuer: the agent in front of a service whose tokens come from another
// issuer (an OpenID provider signing RS256 with the keys of its JWKS, typ JWT): its tokens
// pass with the identity headers, a token signed by another key or naming another issuer
// does not, and a flush of the app refuses them as it refuses revocast's.
func TestAuthAnotherIssuer(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "idp-1", "alg": "RS256",
			"use": "sig", "n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	}))
	t.Cleanup(jwks.Close)
	const iss = "https://idp.example.com"
	s := startRevocastd(t)
	a := startAgent(t, s, map[string]string{"REVOCAST_ISSUER": iss, "REVOCAST_JWKS_URL": jwks.URL,
		"REVOCAST_ALGORITHMS": "RS256", "REVOCAST_LOG_LEVEL": "warn"})
	sign := func(k *rsa.PrivateKey, issuer string) string {
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": issuer, "sub": "42", "app": "shop",
			"iat": now.Add(-2 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()})
		tok.Header["kid"] = "idp-1"
		raw, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	tok := sign(key, iss)
	code, h, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + tok})
	if code != 200 || h.Get("X-Revocast-User") != "42" || h.Get("X-Revocast-App") != "shop" {
		t.Fatalf("the issuer's token = %d user %q app %q %q", code, h.Get("X-Revocast-User"), h.Get("X-Revocast-App"), h.Get("WWW-Authenticate"))
	}
	for name, raw := range map[string]string{"forged signature": sign(forger, iss), "other issuer": sign(key, "https://evil.example.com"),
		"revocast's own token": s.login(t, 42)} {
		if code, _, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + raw}); code != 401 {
			t.Fatalf("%s = %d, want 401", name, code)
		}
	}
	s.flush(t)
	waitFor(t, "the issuer's token refused after the flush", func() bool {
		code, _, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + tok})
		return code == 401
	})
}
