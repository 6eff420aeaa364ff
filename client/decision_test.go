package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/events/eventstest"
)

func TestDecide(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		auth    string
		outcome Outcome
		status  int
		errHas  string // in the challenge
	}{
		{"Allow", "Bearer " + f.token(t, "shop", 8, millis(time.Now()), nil), Allow, 200, ""},
		{"ErrMissingToken", "", Deny, 401, ""},
		{"ErrMissingTokenBasic", "Basic dXNlcjpwYXNz", Deny, 401, ""},
		{"ErrInvalidToken", "Bearer a.b.c", Deny, 401, `error="invalid_token"`},
		{"ErrInvalidTokenOversized", "Bearer " + strings.Repeat("a", DefaultMaxTokenSize+1), Deny, 401, `error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tab.Decide(ctx, tt.auth)
			if d.Outcome != tt.outcome || d.Status != tt.status {
				t.Fatalf("decision = %s %d (%v), want %s %d", d.Outcome, d.Status, d.Err, tt.outcome, tt.status)
			}
			if tt.outcome == Allow {
				if d.Claims == nil || d.Claims.UserID != 8 || d.Claims.AppID != "shop" || d.Challenge != "" || d.FailOpen {
					t.Fatalf("allow decision = %+v", d)
				}
				return
			}
			if !strings.HasPrefix(d.Challenge, `Bearer realm="revocast"`) || !strings.Contains(d.Challenge, tt.errHas) {
				t.Fatalf("challenge = %q, want it to hold %q", d.Challenge, tt.errHas)
			}
			if d.Claims != nil {
				t.Fatal("a refusal carries claims")
			}
		})
	}
}

// TestMiddlewareMultipleAuthorization: a request with two Authorization headers is
// refused, whichever of them holds a valid token (before, the first one was used).
func TestMiddlewareMultipleAuthorization(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t)
	good := "Bearer " + f.token(t, "shop", 8, millis(time.Now()), nil)
	for _, order := range [][]string{{good, "Bearer other"}, {"Bearer other", good}, {good, good}} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header["Authorization"] = order
		rec := httptest.NewRecorder()
		tab.Middleware(whoami).ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_request"`) {
			t.Fatalf("two Authorization headers: status = %d, WWW-Authenticate = %q; want 401 invalid_request", rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
}

// TestSignatureCacheNeverCachesRevocation: a token answered from the cache is refused on
// the very next decision after the table applied a flush of its app.
func TestSignatureCacheNeverCachesRevocation(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithSignatureCache(100))
	ctx := context.Background()
	auth := "Bearer " + f.token(t, "shop", 8, millis(time.Now().Add(-time.Second)), nil)
	for i := range 3 {
		if d := tab.Decide(ctx, auth); d.Outcome != Allow {
			t.Fatalf("decision %d = %s (%v), want allow", i, d.Outcome, d.Err)
		}
	}
	if s := tab.Stats(); s.CacheHits != 2 || s.CacheMisses != 1 || s.CacheEntries != 1 {
		t.Fatalf("cache hits/misses/entries = %d/%d/%d, want 2/1/1", s.CacheHits, s.CacheMisses, s.CacheEntries)
	}
	wm := time.Now()
	eventstest.Publish(t, f.js, mustApp(t, "shop", wm))
	waitWatermark(t, tab, "shop", 8, wm)
	d := tab.Decide(ctx, auth)
	if d.Outcome != Deny || !strings.Contains(d.Challenge, "revoked") {
		t.Fatalf("decision after the flush = %s %q, want deny revoked", d.Outcome, d.Challenge)
	}
	if s := tab.Stats(); s.CacheHits != 3 {
		t.Fatalf("cache hits = %d, want 3: the refused decision should have come from the cache", s.CacheHits)
	}
}

// TestSignatureCacheExpiry: a cached token stops passing at its exp, as an uncached one.
func TestSignatureCacheExpiry(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	var clock atomicTime
	clock.Store(now)
	tab := f.readyTable(t, WithSignatureCache(100), withNow(clock.Load))
	auth := "Bearer " + f.token(t, "shop", 8, millis(now.Add(-time.Second)), jwt.MapClaims{"exp": now.Add(time.Minute).Unix()})
	if d := tab.Decide(context.Background(), auth); d.Outcome != Allow {
		t.Fatalf("decision = %s (%v), want allow", d.Outcome, d.Err)
	}
	clock.Store(now.Add(2 * time.Minute))
	if d := tab.Decide(context.Background(), auth); d.Outcome != Deny || !strings.Contains(d.Challenge, "expired") {
		t.Fatalf("decision after exp = %s %q, want deny expired", d.Outcome, d.Challenge)
	}
}

// TestSignatureCacheBounded: the cache never holds more than its size, and evicted tokens
// are verified again.
func TestSignatureCacheBounded(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithSignatureCache(32))
	for i := range 200 {
		auth := "Bearer " + f.token(t, "shop", int64(i+1), millis(time.Now()), nil)
		if d := tab.Decide(context.Background(), auth); d.Outcome != Allow {
			t.Fatalf("decision %d = %s (%v)", i, d.Outcome, d.Err)
		}
	}
	if s := tab.Stats(); s.CacheEntries > 32 || s.CacheEntries < 16 {
		t.Fatalf("cache entries = %d, want between 16 and 32", s.CacheEntries)
	}
}

// TestSignatureCacheRefusalsNotCached: a token that failed is checked again each time.
func TestSignatureCacheRefusalsNotCached(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithSignatureCache(32))
	bad := "Bearer " + f.token(t, "shop", 8, millis(time.Now()), nil) + "x"
	for range 3 {
		if d := tab.Decide(context.Background(), bad); d.Outcome != Deny {
			t.Fatalf("decision = %s, want deny", d.Outcome)
		}
	}
	if s := tab.Stats(); s.CacheEntries != 0 || s.CacheHits != 0 {
		t.Fatalf("cache entries/hits = %d/%d, want 0/0", s.CacheEntries, s.CacheHits)
	}
}

// atomicTime is a clock that a test moves.
type atomicTime struct{ ns atomic.Int64 }

func (a *atomicTime) Store(t time.Time) { a.ns.Store(t.UnixNano()) }
func (a *atomicTime) Load() time.Time   { return time.Unix(0, a.ns.Load()) }

// withNow runs a table on the clock now.
func withNow(now func() time.Time) Option {
	return func(c *config) error {
		c.now = now
		return nil
	}
}

// TestDecideNotReadyOwnKeys: before the table is ready, a token is answered 503, not 401,
// even though revocast's keys are not loaded yet and so its signature cannot be checked
// (before: 401 "the token signature is invalid" for a valid token, which makes clients log
// their users out while a resource server or agent starts).
func TestDecideNotReadyOwnKeys(t *testing.T) {
	f := newFixtureWithoutStream(t)
	tab, err := New(f.srv.Connect()) // revocast's own keys, never loaded: Run is not called
	if err != nil {
		t.Fatal(err)
	}
	d := tab.Decide(context.Background(), "Bearer "+f.typedToken(t, "at+jwt", "shop", 8, millis(time.Now()), nil))
	if d.Outcome != Unavailable || d.Status != 503 || d.RetryAfter == "" {
		t.Fatalf("decision before ready = %s %d (%v), want unavailable 503 with Retry-After", d.Outcome, d.Status, d.Err)
	}
}
