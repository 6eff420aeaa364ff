package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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
	a := startAgent(t, s, map[string]string{"REVOCAST_ISSUER": iss, "REVOCAST_JWKS_URL": jwks.URL, "REVOCAST_JWKS_KIND": "issuer",
		"REVOCAST_ALGORITHMS": "RS256", "REVOCAST_SESSION_CLAIM": "session_state", "REVOCAST_LOG_LEVEL": "warn"})
	sign := func(k *rsa.PrivateKey, issuer string) string {
		return signIdP(t, k, issuer, "idp-session-1")
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
	// A session revocation reaches the issuer's tokens through -session-claim; the user's
	// other session keeps working.
	other := signIdP(t, key, iss, "idp-session-2")
	code, _, body := call(t, "POST", s.api+"/v2/sessions/revoke/idp-session-1", map[string]string{"X-API-Key": s.apiKey(t, "sessions:revoke")})
	if code != 200 {
		t.Fatalf("session revocation = %d %s", code, body)
	}
	waitFor(t, "the revoked session's token refused", func() bool {
		code, _, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + tok})
		return code == 401
	})
	if code, _, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + other}); code != 200 {
		t.Fatalf("the other session = %d, want 200", code)
	}
	s.flush(t)
	waitFor(t, "the issuer's token refused after the flush", func() bool {
		code, _, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + other})
		return code == 401
	})
}

// signIdP signs an RS256 token as an OpenID provider would: typ JWT, a numeric sub, the
// app and the provider's session id (Keycloak's session_state).
func signIdP(t *testing.T, k *rsa.PrivateKey, issuer, session string) string {
	t.Helper()
	{
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": issuer, "sub": "42", "app": "shop",
			"session_state": session, "iat": now.Add(-2 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()})
		tok.Header["kid"] = "idp-1"
		raw, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
}

// TestJWKSKindRequired: with a JWKS URL and an issuer other than revocast's, the agent does
// not guess whose keys they are (guessing wrong would drop the session check of revocast's
// own tokens): it refuses to start and says which flag to add.
func TestJWKSKindRequired(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"REVOCAST_ISSUER": "https://auth.corp", "REVOCAST_JWKS_URL": "http://127.0.0.1:1/jwks"}, "-jwks-kind revocast"},
		{map[string]string{"REVOCAST_JWKS_URL": "http://127.0.0.1:1/jwks", "REVOCAST_JWKS_KIND": "theirs"}, "want revocast or issuer"},
		{map[string]string{"REVOCAST_JWKS_KIND": "issuer"}, "without -jwks-url"},
	} {
		var stderr strings.Builder
		_, err := parseConfig([]string{"revocast-agent"}, func(k string) string { return tc.env[k] }, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: err = %v, want it to say %q", tc.env, err, tc.want)
		}
	}
	cfg, err := parseConfig([]string{"revocast-agent", "-jwks-url", "http://127.0.0.1:1/jwks"}, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.jwksKind != "revocast" {
		t.Fatalf("default issuer: kind %q, %v; want revocast", cfg.jwksKind, err)
	}
}
