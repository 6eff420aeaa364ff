package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
)

func TestTokenMatrixRejected(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithIssuer("revocast"), WithAudience("api"), WithMaxTokenLifetime(24*time.Hour))
	now := time.Now()
	good := jwt.MapClaims{"iss": "revocast", "aud": "api"}
	with := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "revocast", "aud": "api"}
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		base := jwt.MapClaims{"sub": "42", "app": "shop", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range claims {
			base[k] = v
		}
		s, err := jwt.NewWithClaims(method, base).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)

	if _, err := tab.Verify(context.Background(), f.token(t, "shop", 42, secs(now), good)); err != nil {
		t.Fatalf("good token: err = %v", err)
	}
	tests := []struct {
		name string
		raw  string
		want error // besides ErrInvalidToken
	}{
		{"AlgNone", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), jwt.ErrTokenSignatureInvalid},
		{"HS256WithPublicKeyBytes", sign(jwt.SigningMethodHS256, []byte(f.pub), good), jwt.ErrTokenSignatureInvalid},
		{"OtherSigningKey", sign(jwt.SigningMethodEdDSA, otherKey, good), jwt.ErrTokenSignatureInvalid},
		{"Expired", f.token(t, "shop", 42, secs(now.Add(-2*time.Hour)), with("exp", now.Add(-time.Hour).Unix())), jwt.ErrTokenExpired},
		{"NoExp", f.token(t, "shop", 42, secs(now), with("exp", nil)), jwt.ErrTokenRequiredClaimMissing},
		{"NoIat", f.token(t, "shop", 42, secs(now), with("iat", nil)), nil},
		{"IatInTheFuture", f.token(t, "shop", 42, secs(now.Add(time.Hour)), good), jwt.ErrTokenUsedBeforeIssued},
		{"IatExponent", f.token(t, "shop", 42, "1.7e9", good), nil},
		{"NotYetValid", f.token(t, "shop", 42, secs(now), with("nbf", now.Add(time.Hour).Unix())), jwt.ErrTokenNotValidYet},
		{"WrongIssuer", f.token(t, "shop", 42, secs(now), with("iss", "evil")), jwt.ErrTokenInvalidIssuer},
		{"WrongAudience", f.token(t, "shop", 42, secs(now), with("aud", "other")), jwt.ErrTokenInvalidAudience},
		{"LifetimeTooLong", f.token(t, "shop", 42, secs(now), with("exp", now.Add(48*time.Hour).Unix())), nil},
		{"NoApp", f.token(t, "shop", 42, secs(now), with("app", nil)), nil},
		{"AppWithDot", f.token(t, "shop.x", 42, secs(now), good), nil},
		{"SubLeadingZero", f.token(t, "shop", 42, secs(now), with("sub", "042")), nil},
		{"SubNotANumber", f.token(t, "shop", 42, secs(now), with("sub", "alice")), nil},
		{"SubNegative", f.token(t, "shop", 42, secs(now), with("sub", "-1")), nil},
		{"HundredThousandDots", strings.Repeat(".", 100_000), nil},
		{"FewDots", "..", jwt.ErrTokenMalformed},
		{"OneMegabyte", strings.Repeat("a", 1<<20), nil},
		{"Garbage", "not a token", jwt.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tab.Verify(context.Background(), tt.raw)
			if !errors.Is(err, ErrInvalidToken) || c != nil {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want it to wrap %v", err, tt.want)
			}
		})
	}
	if _, err := tab.Verify(context.Background(), ""); !errors.Is(err, ErrMissingToken) {
		t.Fatalf("empty token: err = %v, want ErrMissingToken", err)
	}
}

func TestHMACNeedsExplicitAlgorithm(t *testing.T) {
	f := newFixture(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	raw, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "7", "app": "shop", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	keyfunc := WithKeyfunc(func(*jwt.Token) (any, error) { return secret, nil })
	byDefault := f.readyTable(t, keyfunc)
	if _, err := byDefault.Verify(context.Background(), raw); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("HS256 with default algorithms: err = %v, want ErrInvalidToken", err)
	}
	explicit := f.readyTable(t, keyfunc, WithAlgorithms("HS256"))
	if _, err := explicit.Verify(context.Background(), raw); err != nil {
		t.Fatalf("HS256 listed explicitly: err = %v", err)
	}
}

func TestConfigurableClaims(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithUserClaim("uid"), WithAppClaim(""))
	raw := f.token(t, "", 0, secs(time.Now()), jwt.MapClaims{"uid": 77, "sub": "ignored", "app": nil})
	c, err := tab.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if c.UserID != 77 || c.AppID != "" {
		t.Fatalf("claims = %q/%d, want \"\"/77", c.AppID, c.UserID)
	}
}

func TestOptionsRefuseBadValues(t *testing.T) {
	kf := WithKeyfunc(func(*jwt.Token) (any, error) { return nil, nil })
	tests := map[string][]Option{
		"AlgNone":            {kf, WithAlgorithms("none")},
		"UnknownAlg":         {kf, WithAlgorithms("XX999")},
		"ZeroStaleness":      {kf, WithMaxStaleness(0)},
		"NegativeSkew":       {kf, WithClockSkew(-time.Second)},
		"ZeroTokenSize":      {kf, WithMaxTokenSize(0)},
		"EmptyUserClaim":     {kf, WithUserClaim("")},
		"RealmWithQuote":     {kf, WithRealm(`a"b`)},
		"NilLogger":          {kf, WithLogger(nil)},
		"ZeroTokenLifetime":  {kf, WithMaxTokenLifetime(0)},
		"NegativeLeeway":     {kf, WithLeeway(-time.Second)},
		"NoAlgorithmAtAll":   {kf, WithAlgorithms()},
		"NilKeyfuncExplicit": {WithKeyfunc(nil)},
	}
	for name, opts := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := New(&nats.Conn{}, opts...); err == nil {
				t.Fatal("New = nil error, want a configuration error")
			}
		})
	}
}

// TestOnlyAccessTokens: with a caller's key function, untyped tokens and "JWT" pass, while a
// type or a token_use claim that names another use is refused; WithRequireAccessTokenType
// asks for "at+jwt" as revocast's own keys do.
func TestOnlyAccessTokens(t *testing.T) {
	f := newFixture(t)
	foreign := f.readyTable(t)
	strict := f.readyTable(t, WithRequireAccessTokenType())
	now := secs(time.Now())
	use := func(v any) jwt.MapClaims { return jwt.MapClaims{"token_use": v} }
	tests := []struct {
		name            string
		typ             any
		claims          jwt.MapClaims
		foreign, strict error // nil: accepted
	}{
		{"NoType", nil, nil, nil, ErrNotAccessToken},
		{"JWT", "JWT", nil, nil, ErrNotAccessToken},
		{"ApplicationJWT", "application/jwt", nil, nil, ErrNotAccessToken},
		{"JOSE", "JOSE", nil, nil, ErrNotAccessToken},
		{"AccessType", "at+jwt", nil, nil, nil},
		{"AccessTypeUpperCase", "AT+JWT", nil, nil, nil},
		{"AccessMediaType", "application/at+jwt", nil, nil, nil},
		{"AccessTypeAndUse", "at+jwt", use("access"), nil, nil},
		{"AccessUse", "JWT", use("access"), nil, ErrNotAccessToken},
		{"RefreshType", "rt+jwt", nil, ErrNotAccessToken, ErrNotAccessToken},
		{"RefreshMediaType", "Application/RT+JWT", nil, ErrNotAccessToken, ErrNotAccessToken},
		{"IDType", "id+jwt", nil, ErrNotAccessToken, ErrNotAccessToken},
		{"AccessTypeOtherMediaType", "text/at+jwt", nil, ErrNotAccessToken, ErrNotAccessToken},
		{"RefreshUse", "JWT", use("refresh"), ErrNotAccessToken, ErrNotAccessToken},
		{"RefreshUseAccessType", "at+jwt", use("refresh"), ErrNotAccessToken, ErrNotAccessToken},
		{"IDUse", nil, use("id"), ErrNotAccessToken, ErrNotAccessToken},
		{"UseNotAString", "at+jwt", use(1), ErrNotAccessToken, ErrNotAccessToken},
		{"TypeNotAString", 5, nil, ErrInvalidToken, ErrInvalidToken},
	}
	for _, tt := range tests {
		raw := f.typedToken(t, tt.typ, "shop", 42, now, tt.claims)
		for mode, tab := range map[string]*Table{"Foreign": foreign, "Strict": strict} {
			want := tt.foreign
			if mode == "Strict" {
				want = tt.strict
			}
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				c, err := tab.Verify(context.Background(), raw)
				if want == nil {
					if err != nil || c.UserID != 42 {
						t.Fatalf("Verify = %+v, %v, want accepted", c, err)
					}
					return
				}
				if !errors.Is(err, want) || !errors.Is(err, ErrInvalidToken) || c != nil {
					t.Fatalf("err = %v, want %v (and ErrInvalidToken)", err, want)
				}
			})
		}
	}
}
