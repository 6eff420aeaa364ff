package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestAuth: a token passes with the identity headers, on /auth and under it, whatever the
// method; the same token, cached, is refused on the first request after the flush has
// reached the agent; and no token reaches the logs.
func TestAuth(t *testing.T) {
	s := startRevocastd(t)
	a := startAgent(t, s, map[string]string{"REVOCAST_AGENT_SEND_CLAIMS": "true", "REVOCAST_LOG_LEVEL": "debug"})
	tok := s.login(t, 42)
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	for _, tc := range []struct{ method, path string }{{"GET", "/auth"}, {"POST", "/auth/api/orders?x=1"}, {"DELETE", "/auth/"}, {"HEAD", "/auth"}} {
		code, h, _ := call(t, tc.method, a.url+tc.path, bearer)
		if code != 200 || h.Get("X-Revocast-User") != "42" || h.Get("X-Revocast-App") != "shop" {
			t.Fatalf("%s %s = %d, user %q app %q; want 200 42 shop", tc.method, tc.path, code, h.Get("X-Revocast-User"), h.Get("X-Revocast-App"))
		}
		b, err := base64.RawURLEncoding.DecodeString(h.Get("X-Revocast-Claims"))
		var claims map[string]any
		if err != nil || json.Unmarshal(b, &claims) != nil || claims["sub"] != "42" || claims["app"] != "shop" {
			t.Fatalf("X-Revocast-Claims = %q: %v", h.Get("X-Revocast-Claims"), err)
		}
	}
	if code, _, _ := call(t, "GET", a.url+"/authx", bearer); code != 404 {
		t.Fatalf("/authx = %d, want 404", code)
	}

	s.flush(t)
	var code int
	var h http.Header
	waitFor(t, "the cached token refused after the flush", func() bool {
		code, h, _ = call(t, "GET", a.url+"/auth", bearer)
		return code != 200
	})
	if code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "revoked") || h.Get("X-Revocast-User") != "" {
		t.Fatalf("after the flush = %d %q user %q; want 401 revoked and no identity", code, h.Get("WWW-Authenticate"), h.Get("X-Revocast-User"))
	}
	if code, _, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + s.login(t, 42)}); code != 200 {
		t.Fatalf("after logging in again = %d, want 200", code)
	}

	_, _, metrics := call(t, "GET", a.url+"/metrics", nil)
	for _, want := range []string{`revocast_agent_decisions_total{outcome="allow"}`, `revocast_agent_decisions_total{outcome="deny"}`,
		"revocast_agent_decision_seconds_bucket", "revocast_agent_table_staleness_seconds", "revocast_agent_signature_cache_hits_total"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q:\n%s", want, metrics)
		}
	}
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	if strings.Contains(a.logs.String(), sig) || strings.Contains(a.logs.String(), tok[:40]) {
		t.Fatalf("the logs hold the token:\n%s", a.logs)
	}
	if !strings.Contains(a.logs.String(), "token refused") {
		t.Fatalf("the debug logs lack the refusal:\n%s", a.logs)
	}
}

// TestAuthBadInput: nothing but a valid token gets a 200, and nothing crashes the agent.
func TestAuthBadInput(t *testing.T) {
	s := startRevocastd(t)
	a := startAgent(t, s, nil)
	other := startAgent(t, s, map[string]string{"REVOCAST_ISSUER": "https://other.example"})
	tok := s.login(t, 42)
	parts := strings.Split(tok, ".")
	hs256, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "42", "app": "shop", "iss": "revocast", "iat": 1, "exp": 1 << 40}).SignedString([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + "."
	tests := []struct {
		name   string
		url    string
		header http.Header
		status int
	}{
		{"MissingAuthorization", a.url, http.Header{}, 401},
		{"NotBearer", a.url, http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("u:p"))}}, 401},
		{"BearerOnly", a.url, http.Header{"Authorization": {"Bearer"}}, 401},
		{"Malformed", a.url, http.Header{"Authorization": {"Bearer not.a.jwt"}}, 401},
		{"Garbage", a.url, http.Header{"Authorization": {"Bearer \xff\xfe" + tok}}, 401},
		{"Multiple", a.url, http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}, 401},
		{"MultipleOneBad", a.url, http.Header{"Authorization": {"Bearer x", "Bearer " + tok}}, 401},
		{"OversizedToken", a.url, http.Header{"Authorization": {"Bearer " + tok + strings.Repeat("A", 9<<10)}}, 401},
		{"OversizedHeader", a.url, http.Header{"Authorization": {"Bearer " + strings.Repeat("A", 40<<10)}}, 431},
		{"AlgHS256", a.url, http.Header{"Authorization": {"Bearer " + hs256}}, 401},
		{"AlgNone", a.url, http.Header{"Authorization": {"Bearer " + none}}, 401},
		{"BadSignature", a.url, http.Header{"Authorization": {"Bearer " + parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4] + "AAAA"}}, 401},
		{"OtherIssuer", other.url, http.Header{"Authorization": {"Bearer " + tok}}, 401},
		{"ForgedIdentityNoToken", a.url, http.Header{"X-Revocast-User": {"1"}, "X-Revocast-App": {"admin"}, "X-Revocast-Claims": {"e30"}}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", tt.url+"/auth", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tt.header
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.status)
			}
			for _, h := range []string{"X-Revocast-User", "X-Revocast-App", "X-Revocast-Claims"} {
				if v := res.Header.Get(h); v != "" {
					t.Fatalf("%s = %q on a refusal", h, v)
				}
			}
			if tt.status == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), `Bearer realm="revocast"`) {
				t.Fatalf("WWW-Authenticate = %q", res.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// A valid token with forged identity headers: the answer names the token's user only.
	code, h, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + tok, "X-Revocast-User": "1", "X-Revocast-App": "admin"})
	if code != 200 || h.Get("X-Revocast-User") != "42" || h.Get("X-Revocast-App") != "shop" || len(h.Values("X-Revocast-User")) != 1 {
		t.Fatalf("forged identity beside a valid token = %d user %q app %q", code, h.Values("X-Revocast-User"), h.Get("X-Revocast-App"))
	}
	if code, _, _ := call(t, "GET", a.url+"/healthz", nil); code != 200 {
		t.Fatalf("agent not alive after bad input: /healthz = %d", code)
	}
}

// TestAuthUnavailable: until the table has caught up, /auth answers 503 with Retry-After
// and /readyz 503.
func TestAuthUnavailable(t *testing.T) {
	s := startRevocastd(t)
	dead := "nats://127.0.0.1:" + itoa(freePort(t))
	a := startAgentUnready(t, s, map[string]string{"NATS_URL": dead})
	tok := s.login(t, 42)
	code, h, _ := call(t, "GET", a.url+"/auth", map[string]string{"Authorization": "Bearer " + tok})
	if code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("/auth before ready = %d Retry-After %q; want 503 with Retry-After", code, h.Get("Retry-After"))
	}
	if code, _, _ := call(t, "GET", a.url+"/readyz", nil); code != 503 {
		t.Fatalf("/readyz = %d, want 503", code)
	}
	_, _, metrics := call(t, "GET", a.url+"/metrics", nil)
	if !strings.Contains(metrics, `revocast_agent_decisions_total{outcome="unavailable"} 1`) {
		t.Fatalf("metrics do not count the 503:\n%s", metrics)
	}
}
