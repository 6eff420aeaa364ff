package tokens_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/tokens"
)

// watermarks is a plain map-backed Revocations for the issuer's own tests; the end-to-end
// tests use the real client table.
type watermarks struct {
	mu       sync.Mutex
	app      map[string]time.Time
	session  map[string]time.Time
	notReady bool
}

func (w *watermarks) SessionNotBefore(sid string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.session[sid]
}

func (w *watermarks) CheckSessionIssuedAt(app string, user int64, sid string, iat json.Number) error {
	if err := w.CheckIssuedAt(app, user, iat); err != nil {
		return err
	}
	if wm := w.SessionNotBefore(sid); !wm.IsZero() && w.CheckIssuedAtAgainst(iat, wm) {
		return client.ErrRevoked
	}
	return nil
}

func (w *watermarks) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.notReady
}

// WaitApplied has nothing to wait for: the map is changed in place.
func (w *watermarks) WaitApplied(context.Context, uint64) error { return nil }

func (w *watermarks) NotBefore(app string, _ int64) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.app[app]
}

func (w *watermarks) CheckIssuedAt(app string, user int64, iat json.Number) error {
	w.mu.Lock()
	notReady := w.notReady
	w.mu.Unlock()
	if notReady {
		return client.ErrNotReady
	}
	if w.CheckIssuedAtAgainst(iat, w.NotBefore(app, user)) {
		return client.ErrRevoked
	}
	return nil
}

// CheckIssuedAtAgainst reports whether iat is before wm.
func (w *watermarks) CheckIssuedAtAgainst(iat json.Number, wm time.Time) bool {
	sec, frac, _ := strings.Cut(iat.String(), ".")
	t, _ := time.Parse("2006-01-02", "1970-01-01")
	d, _ := time.ParseDuration(sec + "s")
	if frac != "" {
		f, _ := time.ParseDuration("0." + frac + "s")
		d += f
	}
	return t.Add(d).Before(wm)
}

func setup(t *testing.T) (jetstream.JetStream, *tokens.KeyRing, *tokens.Issuer, *watermarks) {
	t.Helper()
	srv := eventstest.RunJetStream(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := tokens.OpenKeyRing(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	wm := &watermarks{app: map[string]time.Time{}, session: map[string]time.Time{}}
	iss, err := tokens.NewIssuer(t.Context(), js, 1, ring, wm, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return js, ring, iss, wm
}

func TestIssuedAt(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	at, num := tokens.IssuedAt(now, time.Time{})
	if num != "1795428000.123457" || at.Before(now) {
		t.Fatalf("IssuedAt(now) = %v %s, want rounded up to the microsecond", at, num)
	}
	later := now.Add(3 * time.Second)
	at, num = tokens.IssuedAt(now, later)
	if at.Before(later) || num != "1795428003.123457" {
		t.Fatalf("IssuedAt with a later watermark = %v %s", at, num)
	}
	exact := time.Date(2026, 11, 23, 10, 0, 0, 5000, time.UTC)
	if _, num := tokens.IssuedAt(exact, time.Time{}); num != "1795428000.000005" {
		t.Fatalf("IssuedAt(exact µs) = %s", num)
	}
}

func TestMintAndVerifyWithJWKS(t *testing.T) {
	_, ring, iss, _ := setup(t)
	pair, err := iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ring.JWKS(t.Context())
	if err != nil || len(keys) != 1 || keys[0].Kty != "OKP" || keys[0].Crv != "Ed25519" || keys[0].Alg != "EdDSA" {
		t.Fatalf("JWKS = %+v, %v", keys, err)
	}
	pk, err := keys[0].Ed25519()
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithJSONNumber(), jwt.WithExpirationRequired(), jwt.WithIssuedAt()).
		ParseWithClaims(pair.AccessToken, claims, func(*jwt.Token) (any, error) { return pk, nil })
	if err != nil {
		t.Fatalf("access token does not verify with the JWKS key: %v", err)
	}
	if tok.Header["kid"] != keys[0].Kid || tok.Header["typ"] != "at+jwt" || claims["sub"] != "42" || claims["app"] != "shop" ||
		claims["token_use"] != "access" || claims["iss"] != "revocast" || len(claims["jti"].(string)) != 32 {
		t.Fatalf("claims = %v, header %v", claims, tok.Header)
	}
	rt, _, err := jwt.NewParser().ParseUnverified(pair.RefreshToken, jwt.MapClaims{})
	if err != nil || rt.Header["typ"] != "rt+jwt" || rt.Claims.(jwt.MapClaims)["token_use"] != "refresh" {
		t.Fatalf("refresh token header %v, claims %v, err %v; want typ rt+jwt, token_use refresh", rt.Header, rt.Claims, err)
	}
	if iat := claims["iat"].(json.Number).String(); !strings.Contains(iat, ".") {
		t.Fatalf("iat = %s, want sub-second", iat)
	}
	exp, _ := claims["exp"].(json.Number).Int64()
	if d := time.Until(time.Unix(exp, 0)); d < 14*time.Minute || d > 15*time.Minute {
		t.Fatalf("access token lives %v, want 15m", d)
	}
}

func TestRefresh(t *testing.T) {
	_, _, iss, wm := setup(t)
	ctx := t.Context()
	pair, err := iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	next, c, err := iss.Refresh(ctx, pair.RefreshToken)
	if err != nil || c.App != "shop" || c.User != 42 || next.AccessToken == "" {
		t.Fatalf("Refresh = %+v, %v", c, err)
	}
	if _, _, err := iss.Refresh(ctx, pair.RefreshToken); !errors.Is(err, tokens.ErrReused) {
		t.Fatalf("second use = %v, want ErrReused", err)
	}
	if _, _, err := iss.Refresh(ctx, pair.AccessToken); !errors.Is(err, tokens.ErrInvalidRefresh) {
		t.Fatalf("access token as refresh = %v, want ErrInvalidRefresh", err)
	}
	for name, raw := range map[string]string{
		"garbled": "not.a.token",
		"empty":   "",
		"huge":    strings.Repeat("a", tokens.MaxTokenSize+1),
		"tampered": next.RefreshToken[:len(next.RefreshToken)-4] + func() string {
			if strings.HasSuffix(next.RefreshToken, "AAAA") {
				return "BBBB"
			}
			return "AAAA"
		}(),
	} {
		if _, _, err := iss.Refresh(ctx, raw); !errors.Is(err, tokens.ErrInvalidRefresh) {
			t.Errorf("%s: Refresh = %v, want ErrInvalidRefresh", name, err)
		}
	}
	wm.mu.Lock()
	wm.app["shop"] = time.Now()
	wm.mu.Unlock()
	if _, _, err := iss.Refresh(ctx, next.RefreshToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("refresh after flush = %v, want ErrRevoked", err)
	}
	again, err := iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := iss.Refresh(ctx, again.RefreshToken); err != nil {
		t.Fatalf("refresh of a token minted after the flush = %v", err)
	}
}

func TestRotation(t *testing.T) {
	js, ring, iss, _ := setup(t)
	ctx := t.Context()
	oldKid, _ := ring.Signer()
	before, _ := iss.Mint("shop", 1)
	gotOld, newKid, err := tokens.Rotate(ctx, js, time.Hour)
	if err != nil || gotOld != oldKid || newKid == oldKid {
		t.Fatalf("Rotate = %s, %s, %v", gotOld, newKid, err)
	}
	// The running ring follows the rotation through its KV watch.
	deadline := time.Now().Add(5 * time.Second)
	for kid, _ := ring.Signer(); kid != newKid; kid, _ = ring.Signer() {
		if time.Now().After(deadline) {
			t.Fatal("key ring did not pick up the new key within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	after, _ := iss.Mint("shop", 1)
	keys, _ := ring.PublicKeys(ctx)
	if len(keys) != 2 || keys[0].JWK.Kid != newKid || keys[1].RetiredAt.IsZero() {
		t.Fatalf("public keys after rotation = %+v", keys)
	}
	// Tokens of both keys refresh.
	for name, p := range map[string]tokens.Pair{"old": before, "new": after} {
		if _, _, err := iss.Refresh(ctx, p.RefreshToken); err != nil {
			t.Fatalf("%s key's refresh token: %v", name, err)
		}
	}
	// A key retired longer ago than keep is unpublished at the next rotation.
	if _, _, err := tokens.Rotate(ctx, js, 0); err != nil {
		t.Fatal(err)
	}
	keys, _ = ring.PublicKeys(ctx)
	for _, k := range keys {
		if k.JWK.Kid == oldKid {
			t.Fatalf("key %s retired with keep=0 is still published", oldKid)
		}
	}
}

func TestTwoReplicasStartWithOneKey(t *testing.T) {
	srv := eventstest.RunJetStream(t)
	js, _ := jetstream.New(srv.Connect())
	var wg sync.WaitGroup
	rings := make([]*tokens.KeyRing, 4)
	for i := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := tokens.OpenKeyRing(context.Background(), js, 1)
			if err != nil {
				t.Error(err)
				return
			}
			rings[i] = r
		}()
	}
	wg.Wait()
	kid0, _ := rings[0].Signer()
	for _, r := range rings[1:] {
		if kid, _ := r.Signer(); kid != kid0 {
			t.Fatalf("replicas sign with %s and %s", kid0, kid)
		}
	}
	if keys, _ := rings[0].JWKS(context.Background()); len(keys) != 1 {
		t.Fatalf("%d public keys after a racy first start, want 1", len(keys))
	}
}

func TestMintRefusedWhileTableNotReady(t *testing.T) {
	_, _, iss, wm := setup(t)
	wm.mu.Lock()
	wm.notReady = true
	wm.mu.Unlock()
	if _, err := iss.Mint("shop", 1); !errors.Is(err, tokens.ErrNotReady) {
		t.Fatalf("Mint with the table not ready = %v, want ErrNotReady", err)
	}
}
