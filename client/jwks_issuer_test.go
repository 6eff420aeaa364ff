package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/events/eventstest"
)

// foreignKeys are the signing keys of another issuer, as an OpenID provider publishes them.
type foreignKeys struct {
	rsa, weak, enc *rsa.PrivateKey
	ec             *ecdsa.PrivateKey
	ed             ed25519.PrivateKey
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid, alg, use string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": alg, "use": use,
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

// serveIssuerJWKS serves RSA, EC and Ed25519 keys, and keys that must be left out: an
// encryption key, a 1024-bit RSA key, an EC point off the curve, an unknown key type.
func serveIssuerJWKS(t *testing.T) (string, foreignKeys) {
	t.Helper()
	var k foreignKeys
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.enc} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	}
	if k.weak, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	k.ed = edPriv
	point, err := k.ec.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	offCurve := append([]byte(nil), point[33:]...)
	offCurve[len(offCurve)-1] ^= 1
	set := []map[string]string{
		rsaJWK("rsa", "RS256", "sig", &k.rsa.PublicKey),
		{"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256", "x": b64(point[1:33]), "y": b64(point[33:])},
		{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(edPub)},
		rsaJWK("enc", "", "enc", &k.enc.PublicKey), // no alg: only its use keeps it out
		rsaJWK("weak", "RS256", "sig", &k.weak.PublicKey),
		{"kty": "EC", "crv": "P-256", "kid": "off-curve", "x": b64(point[1:33]), "y": b64(offCurve)},
		{"kty": "oct", "kid": "hmac", "k": b64([]byte("a shared secret"))},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	t.Cleanup(srv.Close)
	return srv.URL, k
}

// TestIssuerJWKS: tokens of another issuer verify with the RSA, EC and Ed25519 keys of its
// JWKS, with no at+jwt asked of them, and are revoked like revocast's own. Keys for another
// use, too weak or malformed are not used; a key verifies only the algorithm its JWK names.
func TestIssuerJWKS(t *testing.T) {
	url, k := serveIssuerJWKS(t)
	f := newFixture(t)
	const iss = "https://auth.example.com"
	tab := f.readyTable(t, WithKeyfunc(NewIssuerJWKS(url, nil).Keyfunc), WithIssuer(iss),
		WithAlgorithms("RS256", "PS256", "ES256", "EdDSA", "HS256"))
	now := time.Now()
	sign := func(method jwt.SigningMethod, kid string, key any, typ string) string {
		tok := jwt.NewWithClaims(method, jwt.MapClaims{"iss": iss, "sub": "42", "app": "shop",
			"iat": now.Add(-time.Second).Unix(), "exp": now.Add(time.Hour).Unix()})
		tok.Header["kid"], tok.Header["typ"] = kid, typ
		raw, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"RS256": sign(jwt.SigningMethodRS256, "rsa", k.rsa, "JWT"),
		"ES256": sign(jwt.SigningMethodES256, "ec", k.ec, "JWT"),
		"EdDSA": sign(jwt.SigningMethodEdDSA, "ed", k.ed, "at+jwt"),
	}
	for name, raw := range good {
		c, err := tab.Verify(context.Background(), raw)
		if err != nil || c.UserID != 42 || c.AppID != "shop" {
			t.Fatalf("%s token of the issuer: %+v, %v", name, c, err)
		}
	}
	for name, raw := range map[string]string{
		"PS256 with the RS256 key":   sign(jwt.SigningMethodPS256, "rsa", k.rsa, "JWT"),
		"a key for encryption":       sign(jwt.SigningMethodRS256, "enc", k.enc, "JWT"),
		"a 1024-bit key":             sign(jwt.SigningMethodRS256, "weak", k.weak, "JWT"),
		"HS256 with a published oct": sign(jwt.SigningMethodHS256, "hmac", []byte("a shared secret"), "JWT"),
		"HS256 with the RSA key's n": sign(jwt.SigningMethodHS256, "rsa", k.rsa.PublicKey.N.Bytes(), "JWT"),
		"another EC key, same kid":   sign(jwt.SigningMethodES256, "ec", otherEC, "JWT"),
		"a refresh token":            sign(jwt.SigningMethodRS256, "rsa", k.rsa, "rt+jwt"),
	} {
		if c, err := tab.Verify(context.Background(), raw); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("%s: %+v, %v; want ErrInvalidToken", name, c, err)
		}
	}
	// A reset of user 42 revokes the issuer's tokens as it does revocast's.
	eventstest.Publish(t, f.js, mustUser(t, 42, now.Truncate(time.Second)))
	waitWatermark(t, tab, "", 42, now.Truncate(time.Second))
	for name, raw := range good {
		if _, err := tab.Verify(context.Background(), raw); !errors.Is(err, ErrRevoked) {
			t.Fatalf("%s token after the reset: %v, want ErrRevoked", name, err)
		}
	}
}

// TestIssuerJWKSKeyBinding: a key verifies the one algorithm its type and curve allow, and
// a set cannot load keys that are malformed, off their curve, too weak or too costly.
func TestIssuerJWKSKeyBinding(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, _ := p256.PublicKey.Bytes()
	x, y := b64(point[1:33]), b64(point[33:])
	offCurve := append([]byte(nil), point[33:]...)
	offCurve[31] ^= 1
	huge := new(big.Int).Lsh(big.NewInt(1), 20000)
	huge.Add(huge, big.NewInt(1))
	for name, k := range map[string]jsonWebKey{
		"off its curve":        {Kty: "EC", Crv: "P-256", Kid: "k", X: x, Y: b64(offCurve)},
		"P-256 saying ES384":   {Kty: "EC", Crv: "P-256", Kid: "k", Alg: "ES384", X: x, Y: y},
		"P-256K":               {Kty: "EC", Crv: "secp256k1", Kid: "k", X: x, Y: y},
		"short x":              {Kty: "EC", Crv: "P-256", Kid: "k", X: x[:10], Y: y},
		"20,001-bit RSA":       {Kty: "RSA", Kid: "k", N: b64(huge.Bytes()), E: "AQAB"},
		"RSA saying HS256":     rsaKey(t, "HS256"),
		"RSA without e":        {Kty: "RSA", Kid: "k", N: b64(huge.Bytes()[:256])},
		"Ed25519 saying RS256": {Kty: "OKP", Crv: "Ed25519", Kid: "k", Alg: "RS256", X: b64(make([]byte, 32))},
		"oct":                  {Kty: "oct", Kid: "k"},
	} {
		if key, alg, err := k.publicKey(); err == nil {
			t.Errorf("%s: loaded %T for %q", name, key, alg)
		}
	}
	// ES384 header, P-256 key, SHA-384 digest: golang-jwt checks the signature's size, not
	// the key's curve. The key is bound to ES256 whatever its JWK says.
	key, alg, err := jsonWebKey{Kty: "EC", Crv: "P-256", Kid: "ec", X: x, Y: y}.publicKey()
	if err != nil || alg != "ES256" {
		t.Fatalf("P-256 key without alg: %q, %v", alg, err)
	}
	hdr := b64([]byte(`{"alg":"ES384","kid":"ec","typ":"JWT"}`))
	body := b64([]byte(`{"sub":"42","iat":1,"exp":9999999999}`))
	digest := sha512.Sum384([]byte(hdr + "." + body))
	r, s, err := ecdsa.Sign(rand.Reader, p256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 96)
	r.FillBytes(sig[:48])
	s.FillBytes(sig[48:])
	raw := hdr + "." + body + "." + b64(sig)
	// Without the binding the token verifies: the check above is what refuses it.
	if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		t.Fatalf("the forged-curve token does not verify even unbound (%v): the test proves nothing", err)
	}
	jk := jwksKey{key: key, alg: alg}
	if _, err := jwt.Parse(raw, func(tok *jwt.Token) (any, error) { return jk.verifies(tok) }); err == nil {
		t.Fatal("an ES384 token verified with a P-256 key")
	}
}

func rsaKey(t *testing.T, alg string) jsonWebKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return jsonWebKey{Kty: "RSA", Kid: "k", Alg: alg, N: b64(k.N.Bytes()), E: b64(big.NewInt(int64(k.E)).Bytes())}
}
