package ginrevocast_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/client/ginrevocast"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

func TestMiddleware(t *testing.T) {
	gin.SetMode(gin.TestMode)
	srv := eventstest.RunJetStream(t)
	srv.CreateStream()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tab, err := client.New(srv.Connect(), client.WithKeyfunc(func(*jwt.Token) (any, error) { return pub, nil }))
	if err != nil {
		t.Fatal(err)
	}
	router := gin.New()
	router.Use(ginrevocast.Middleware(tab))
	router.GET("/me", func(c *gin.Context) {
		claims, ok := ginrevocast.Claims(c)
		stored, _ := c.Get(ginrevocast.ContextKey)
		if !ok || stored != claims {
			c.String(http.StatusInternalServerError, "no claims")
			return
		}
		c.String(http.StatusOK, "%s/%d", claims.AppID, claims.UserID)
	})
	get := func(auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/me", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, req)
		return rec
	}
	token := func(user int64, iat time.Time) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
			"sub": strconv.FormatInt(user, 10), "app": "shop", "iat": iat.Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + s
	}

	if rec := get(token(1, time.Now())); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("before Run: status = %d, want 503 with Retry-After", rec.Code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := tab.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}

	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	wm := time.Now().Add(-time.Minute)
	ev, _ := events.NewUserReset(2, wm, "test")
	eventstest.Publish(t, js, ev)
	for deadline := time.Now().Add(10 * time.Second); !tab.NotBefore("shop", 2).Equal(wm.Round(0)); {
		if time.Now().After(deadline) {
			t.Fatal("watermark not applied in 10s")
		}
		time.Sleep(5 * time.Millisecond) // bounded poll
	}

	tests := []struct {
		name, auth, challenge string
		status                int
	}{
		{"OK", token(1, time.Now()), "", http.StatusOK},
		{"MissingHeader", "", `Bearer realm="revocast"`, http.StatusUnauthorized},
		{"Revoked", token(2, wm.Add(-time.Hour)), `Bearer realm="revocast", error="invalid_token", error_description="the token has been revoked"`, http.StatusUnauthorized},
		{"Malformed", "Bearer nope", `Bearer realm="revocast", error="invalid_token", error_description="the token is invalid"`, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(tt.auth)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Fatalf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if tt.status == http.StatusOK && rec.Body.String() != "shop/1" {
				t.Fatalf("body = %q, want shop/1", rec.Body)
			}
		})
	}
}
