package client

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/events/eventstest"
)

// serve sends one request with the given Authorization header (none if empty).
func serve(h http.Handler, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// whoami answers with the user and app from the verified claims.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, ok := ClaimsFromContext(r.Context())
	if !ok {
		http.Error(w, "no claims", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%s/%d", c.AppID, c.UserID)
})

func TestMiddleware(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithRealm("shop-api"))
	wm := time.Now().Add(-time.Minute)
	eventstest.Publish(t, f.js, mustUser(t, 9, wm))
	waitWatermark(t, tab, "shop", 9, wm)
	h := tab.Middleware(whoami)

	tests := []struct {
		name      string
		auth      string
		status    int
		challenge string
		body      string
	}{
		{"OK", "Bearer " + f.token(t, "shop", 8, secs(time.Now()), nil), 200, "", "shop/8"},
		{"OKLowercaseScheme", "bearer " + f.token(t, "shop", 8, secs(time.Now()), nil), 200, "", "shop/8"},
		{"MissingHeader", "", 401, `Bearer realm="shop-api"`, ""},
		{"OtherScheme", "Basic dXNlcjpwYXNz", 401, `Bearer realm="shop-api"`, ""},
		{"EmptyBearer", "Bearer ", 401, `Bearer realm="shop-api"`, ""},
		{"Malformed", "Bearer abc", 401, `Bearer realm="shop-api", error="invalid_token", error_description="the token is invalid"`, ""},
		{"Expired", "Bearer " + f.token(t, "shop", 8, secs(time.Now().Add(-2*time.Hour)), map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}),
			401, `Bearer realm="shop-api", error="invalid_token", error_description="the token has expired"`, ""},
		{"Revoked", "Bearer " + f.token(t, "shop", 9, secs(wm.Add(-time.Hour)), nil),
			401, `Bearer realm="shop-api", error="invalid_token", error_description="the token has been revoked"`, ""},
		{"RefreshToken", "Bearer " + f.typedToken(t, "rt+jwt", "shop", 8, secs(time.Now()), nil),
			401, `Bearer realm="shop-api", error="invalid_token", error_description="the token is not an access token"`, ""},
		{"RefreshTokenUse", "Bearer " + f.token(t, "shop", 8, secs(time.Now()), jwt.MapClaims{"token_use": "refresh"}),
			401, `Bearer realm="shop-api", error="invalid_token", error_description="the token is not an access token"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(h, tt.auth)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Fatalf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if tt.status == 200 && rec.Body.String() != "shop/8" {
				t.Fatalf("body = %q, want shop/8", rec.Body)
			}
		})
	}
}

func TestMiddlewareNotReady(t *testing.T) {
	f := newFixtureWithoutStream(t) // the table cannot get ready
	tab := f.table(t)
	rec := serve(tab.Middleware(whoami), "Bearer "+f.token(t, "shop", 1, secs(time.Now()), nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status = %d, Retry-After = %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}
