package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/services/internal/api"
)

type pairBody struct {
	Success bool `json:"success"`
	Data    struct {
		AccessToken      string `json:"access_token"`
		TokenType        string `json:"token_type"`
		ExpiresIn        int64  `json:"expires_in"`
		RefreshToken     string `json:"refresh_token"`
		RefreshExpiresIn int64  `json:"refresh_expires_in"`
		SessionID        string `json:"sid"`
	} `json:"data"`
	Message string `json:"message"`
}

func (f *fixture) mint(t *testing.T, app, cred, body string) (int, pairBody) {
	t.Helper()
	r := f.do(t, "POST", "/v1/apps/"+app+"/tokens", map[string]string{"Authorization": "Bearer " + cred}, body)
	var p pairBody
	_ = json.Unmarshal([]byte(r.raw), &p)
	return r.status, p
}

func (f *fixture) refresh(t *testing.T, token string) (int, pairBody) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"refresh_token": token})
	r := f.do(t, "POST", "/v1/tokens/refresh", nil, string(b))
	var p pairBody
	_ = json.Unmarshal([]byte(r.raw), &p)
	return r.status, p
}

func TestMintAndRefresh(t *testing.T) {
	f := newFixture(t, api.Config{})
	status, p := f.mint(t, "shop", f.appCred, `{"user_id":"42"}`)
	if status != 200 || !p.Success || p.Data.TokenType != "Bearer" || p.Data.ExpiresIn < 890 || p.Data.ExpiresIn > 900 ||
		p.Data.RefreshExpiresIn < 30*24*3600-10 || strings.Count(p.Data.AccessToken, ".") != 2 {
		t.Fatalf("mint = %d %+v", status, p)
	}
	// Both spellings of the user id.
	if status, _ := f.mint(t, "shop", f.appCred, `{"user_id":42}`); status != 200 {
		t.Fatalf("mint with a number = %d", status)
	}

	status, next := f.refresh(t, p.Data.RefreshToken)
	if status != 200 || next.Data.RefreshToken == p.Data.RefreshToken {
		t.Fatalf("refresh = %d %+v", status, next)
	}
	if status, body := f.refresh(t, p.Data.RefreshToken); status != 401 || !strings.Contains(body.Message, "already used") {
		t.Fatalf("reuse = %d %q, want 401 already used", status, body.Message)
	}
	if m := f.do(t, "GET", "/metrics", nil, ""); !strings.Contains(m.raw, `revocast_auth_failures_total{kind="refresh_reused"} 1`) {
		t.Fatal("a reused refresh token is not counted in /metrics")
	}
	if status, body := f.refresh(t, next.Data.AccessToken); status != 401 || !strings.Contains(body.Message, "not a refresh token") {
		t.Fatalf("access token as refresh = %d %q", status, body.Message)
	}

	// Flush the app: the refresh token from before is refused once the table has the event.
	if r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey}, ""); r.status != 200 {
		t.Fatalf("flush = %d", r.status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.table.NotBefore("shop", 42).IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("table did not apply the flush within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, body := f.refresh(t, next.Data.RefreshToken); status != 401 || !strings.Contains(body.Message, "revoked") {
		t.Fatalf("refresh after flush = %d %q, want 401 revoked", status, body.Message)
	}
	status, again := f.mint(t, "shop", f.appCred, `{"user_id":"42"}`)
	if status != 200 {
		t.Fatalf("mint after flush = %d", status)
	}
	if status, _ := f.refresh(t, again.Data.RefreshToken); status != 200 {
		t.Fatalf("refresh of a token minted after the flush = %d", status)
	}
}

func TestTokenBadInput(t *testing.T) {
	f := newFixture(t, api.Config{})
	tests := []struct {
		name, app, cred, body string
		status                int
	}{
		{"ErrUnknownApp", "ghost", f.appCred, `{"user_id":"1"}`, 401},
		{"ErrWrongCredential", "shop", f.appCred + "x", `{"user_id":"1"}`, 401},
		{"ErrRootKeyAsCredential", "shop", f.rootKey, `{"user_id":"1"}`, 401},
		{"ErrEmptyBearer", "shop", "", `{"user_id":"1"}`, 400}, // "Bearer " alone: malformed (RFC 6750)
		{"ErrBadAppID", "a.b", f.appCred, `{"user_id":"1"}`, 400},
		{"ErrUserNotInteger", "shop", f.appCred, `{"user_id":"abc"}`, 400},
		{"ErrUserFloat", "shop", f.appCred, `{"user_id":1.5}`, 400},
		{"ErrUserZero", "shop", f.appCred, `{"user_id":0}`, 400},
		{"ErrUserTooBig", "shop", f.appCred, `{"user_id":9223372036854775808}`, 400},
		{"ErrNoUser", "shop", f.appCred, `{}`, 400},
		{"ErrNotJSON", "shop", f.appCred, `user_id=1`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.mint(t, tt.app, tt.cred, tt.body)
			if status != tt.status || body.Success || body.Data.AccessToken != "" || body.Message == "" {
				t.Fatalf("mint = %d %+v, want %d and no token", status, body, tt.status)
			}
		})
	}
	_, good := f.mint(t, "shop", f.appCred, `{"user_id":"5"}`)
	refreshes := map[string]string{
		"ErrGarbled":     "garbled",
		"ErrTampered":    good.Data.RefreshToken[:len(good.Data.RefreshToken)-2] + "xx",
		"ErrAccessToken": good.Data.AccessToken,
		"ErrForeignAlg":  "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI1In0.",
	}
	for name, tok := range refreshes {
		t.Run(name, func(t *testing.T) {
			if status, body := f.refresh(t, tok); status != 401 || body.Data.AccessToken != "" {
				t.Fatalf("refresh = %d %+v, want 401", status, body)
			}
		})
	}
	if r := f.do(t, "POST", "/v1/tokens/refresh", nil, `{}`); r.status != 400 {
		t.Fatalf("refresh without a token = %d, want 400", r.status)
	}
}

func TestJWKS(t *testing.T) {
	f := newFixture(t, api.Config{})
	r := f.do(t, "GET", "/.well-known/jwks.json", nil, "")
	if r.status != 200 || !strings.Contains(r.header.Get("Cache-Control"), "max-age") {
		t.Fatalf("jwks = %d %v", r.status, r.header)
	}
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use string }
	}
	if err := json.Unmarshal([]byte(r.raw), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Alg != "EdDSA" || set.Keys[0].Kid == "" {
		t.Fatalf("jwks body = %s", r.raw)
	}
	if strings.Contains(r.raw, "seed") || strings.Contains(r.raw, `"d"`) {
		t.Fatal("private key material in the JWKS")
	}
}

// TestTokenChallenges: a 401 names the credential its route wants (RFC 7235), not the admin
// API key of the other routes.
func TestTokenChallenges(t *testing.T) {
	f := newFixture(t, api.Config{})
	b, _ := json.Marshal(map[string]string{"refresh_token": "garbled"})
	tests := []struct {
		name, method, path string
		header             map[string]string
		body, want         string
	}{
		{"MintWantsTheAppCredential", "POST", "/v1/apps/shop/tokens", map[string]string{"Authorization": "Bearer wrong"}, `{"user_id":"1"}`, `Bearer realm="revocast"`},
		{"RefreshNamesTheBadToken", "POST", "/v1/tokens/refresh", nil, string(b), `Bearer realm="revocast", error="invalid_token"`},
		{"ResetWantsAnAPIKey", "POST", "/v2/users/reset/1", nil, "", `APIKey realm="revocast", header="X-API-Key"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(t, tt.method, tt.path, tt.header, tt.body)
			if got := r.header.Get("WWW-Authenticate"); r.status != 401 || got != tt.want {
				t.Fatalf("%d with WWW-Authenticate %q, want 401 with %q", r.status, got, tt.want)
			}
		})
	}
}
