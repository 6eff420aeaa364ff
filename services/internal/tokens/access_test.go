package tokens_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/tokens"
)

// accessFixture is revocast's token side as it runs: the revocation stream, the real key
// ring, an issuer that takes its watermarks from a real client table, and resource-server
// tables that verify with revocast's keys, read from NATS (zero configuration) or from the
// JWKS URL.
type accessFixture struct {
	ring     *tokens.KeyRing
	iss      *tokens.Issuer
	resource map[string]*client.Table
}

// newAccessFixture mints refresh tokens that live 12h, well within the 24h maximum lifetime
// of the resource servers (resourced's default): the lifetime cap does not refuse them.
func newAccessFixture(t *testing.T) *accessFixture {
	t.Helper()
	srv := eventstest.RunJetStream(t)
	srv.CreateStream()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := tokens.OpenKeyRing(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys, err := ring.JWKS(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(jwksSrv.Close)
	jwks := client.NewJWKS(jwksSrv.URL, nil)

	table := func(opts ...client.Option) *client.Table {
		opts = append([]client.Option{client.WithIssuer("revocast"), client.WithMaxTokenLifetime(24 * time.Hour)}, opts...)
		tab, err := client.New(srv.Connect(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tab.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := tab.WaitReady(wctx); err != nil {
			t.Fatalf("WaitReady = %v", err)
		}
		return tab
	}
	f := &accessFixture{ring: ring, resource: map[string]*client.Table{
		"RevocastKeys": table(),
		"JWKS":         table(client.WithKeyfunc(jwks.Keyfunc)),
	}}
	f.iss, err = tokens.NewIssuer(t.Context(), js, 1, ring, f.resource["RevocastKeys"],
		tokens.Config{RefreshTTL: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// handMinted signs a token with revocast's current signing key, the issuer's claims
// changed by claims and its header "typ" set to typ.
func (f *accessFixture) handMinted(t *testing.T, typ string, claims jwt.MapClaims) string {
	t.Helper()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	_, iat := tokens.IssuedAt(time.Now(), time.Time{})
	mc := jwt.MapClaims{"iss": "revocast", "sub": "42", "app": "shop", "iat": iat,
		"exp": time.Now().Add(time.Hour).Unix(), "jti": hex.EncodeToString(jti[:])}
	for k, v := range claims {
		mc[k] = v
	}
	kid, key := f.ring.Signer()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, mc)
	tok.Header["kid"], tok.Header["typ"] = kid, typ
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// hello calls a handler behind the table's middleware over real HTTP, with raw as the
// bearer token, and returns the status and the WWW-Authenticate header.
func hello(t *testing.T, tab *client.Table, raw string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(tab.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := client.ClaimsFromContext(r.Context()); !ok {
			t.Error("handler reached without claims")
		}
		_, _ = w.Write([]byte("hello"))
	})))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+raw)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	return res.StatusCode, res.Header.Get("WWW-Authenticate")
}

// TestResourceServersAcceptOnlyAccessTokens: a refresh token is refused by resource servers
// whatever its lifetime, and so is a token that calls itself an access token in its header
// but a refresh token in its claims.
func TestResourceServersAcceptOnlyAccessTokens(t *testing.T) {
	f := newAccessFixture(t)
	pair, err := f.iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"RefreshToken":           pair.RefreshToken,
		"RefreshClaimAccessType": f.handMinted(t, "at+jwt", jwt.MapClaims{"token_use": "refresh"}),
		"AccessClaimRefreshType": f.handMinted(t, "rt+jwt", jwt.MapClaims{"token_use": "access"}),
		"AccessClaimPlainJWT":    f.handMinted(t, "JWT", jwt.MapClaims{"token_use": "access"}),
	}
	for name, tab := range f.resource {
		t.Run(name, func(t *testing.T) {
			t.Run("AccessTokenAccepted", func(t *testing.T) {
				if c, err := tab.Verify(t.Context(), pair.AccessToken); err != nil || c.UserID != 42 || c.AppID != "shop" {
					t.Fatalf("Verify(access token) = %+v, %v", c, err)
				}
				if code, wa := hello(t, tab, pair.AccessToken); code != http.StatusOK {
					t.Fatalf("GET /hello with the access token = %d (%s), want 200", code, wa)
				}
			})
			for what, raw := range refused {
				t.Run("ErrNotAccessToken/"+what, func(t *testing.T) {
					_, err := tab.Verify(t.Context(), raw)
					if !errors.Is(err, client.ErrNotAccessToken) || !errors.Is(err, client.ErrInvalidToken) {
						t.Fatalf("Verify = %v, want ErrNotAccessToken and ErrInvalidToken", err)
					}
					code, wa := hello(t, tab, raw)
					if code != http.StatusUnauthorized || !strings.Contains(wa, `error="invalid_token"`) ||
						!strings.Contains(wa, "not an access token") {
						t.Fatalf("GET /hello = %d, WWW-Authenticate %q; want 401 invalid_token, not an access token", code, wa)
					}
				})
			}
		})
	}
}

// TestRefreshAcceptsOnlyRefreshTokens: the refresh call refuses an access token, and a
// token whose claims say refresh but whose header says access token; it accepts refresh
// tokens typed "rt+jwt", and "JWT" as they were before.
func TestRefreshAcceptsOnlyRefreshTokens(t *testing.T) {
	f := newAccessFixture(t)
	pair, err := f.iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]string{
		"AccessToken":            pair.AccessToken,
		"RefreshClaimAccessType": f.handMinted(t, "at+jwt", jwt.MapClaims{"token_use": "refresh"}),
		"RefreshClaimAppAT":      f.handMinted(t, "application/AT+JWT", jwt.MapClaims{"token_use": "refresh"}),
	} {
		t.Run("ErrInvalidRefresh/"+name, func(t *testing.T) {
			if _, _, err := f.iss.Refresh(t.Context(), raw); !errors.Is(err, tokens.ErrInvalidRefresh) {
				t.Fatalf("Refresh = %v, want ErrInvalidRefresh", err)
			}
		})
	}
	if _, _, err := f.iss.Refresh(t.Context(), pair.RefreshToken); err != nil {
		t.Fatalf("Refresh(refresh token) = %v", err)
	}
	// Refresh tokens minted before tokens were typed say "JWT"; they keep working.
	untyped := f.handMinted(t, "JWT", jwt.MapClaims{"token_use": "refresh"})
	if _, _, err := f.iss.Refresh(t.Context(), untyped); err != nil {
		t.Fatalf("Refresh(refresh token typed JWT) = %v", err)
	}
}
