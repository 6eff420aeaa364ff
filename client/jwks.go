package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/events"
)

// JWKS verifies tokens with the keys served at a JWKS URL: revocast's own
// (/.well-known/jwks.json of revocastd, [NewJWKS]), for resource servers that prefer HTTP to
// reading the key bucket over NATS, or another issuer's ([NewIssuerJWKS]). Use it as the key
// function: client.New(nc, client.WithKeyfunc(jwks.Keyfunc)).
//
// Keys are fetched on first use and again when a token names an unknown key id (a rotation),
// at most once per MinRefresh whatever the tokens say, so a flood of made-up key ids cannot
// turn into a flood of requests.
type JWKS struct {
	url        string
	hc         *http.Client
	minRefresh time.Duration

	// issuer is set for another issuer's keys: RSA, EC and Ed25519, and no typ asked of the
	// token here (revocast's keys sign refresh tokens too, so they ask at+jwt).
	issuer bool

	// keys is read on the request path without a lock; fetch replaces it whole.
	keys atomic.Pointer[map[string]jwksKey]

	// fetching is held by the one goroutine that fetches; others do not wait for it.
	fetching sync.Mutex
	fetched  time.Time // guarded by fetching
	lastErr  atomic.Pointer[error]
}

// DefaultJWKSMinRefresh is how often, at most, a [JWKS] fetches its URL.
const DefaultJWKSMinRefresh = 5 * time.Second

// jwksKey is one verification key of a set, with the algorithm its JWK names, if any.
type jwksKey struct {
	key any // ed25519.PublicKey, *rsa.PublicKey or *ecdsa.PublicKey
	alg string
}

// NewJWKS returns a key source for revocast's JWKS at url: its Ed25519 keys, for access
// tokens only (see [JWKS.Keyfunc]). hc may be nil (http.DefaultClient with a 10 s timeout
// per fetch).
func NewJWKS(url string, hc *http.Client) *JWKS {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	j := &JWKS{url: url, hc: hc, minRefresh: DefaultJWKSMinRefresh}
	j.keys.Store(&map[string]jwksKey{})
	return j
}

// NewIssuerJWKS returns a key source for another issuer's JWKS at url (an OpenID provider's
// jwks_uri): its RSA (2048 to 8192 bits), EC (P-256, P-384, P-521) and Ed25519 signing
// keys. Each key verifies one algorithm: its curve's for EC, EdDSA for Ed25519, the one its
// JWK names for RSA (any RSA algorithm without one); keys whose "use" is not "sig" are left
// out. It asks no "typ" of the token: the [Table]'s own
// checks apply (never a type or token_use of another use; [WithRequireAccessTokenType] for
// at+jwt), as do its algorithms ([WithAlgorithms]). Pair it with [WithIssuer].
func NewIssuerJWKS(url string, hc *http.Client) *JWKS {
	j := NewJWKS(url, hc)
	j.issuer = true
	return j
}

// Keyfunc is a jwt.Keyfunc: the key named by the token's "kid". A known key costs a map
// lookup. An unknown one makes one request fetch the set again (if MinRefresh has passed);
// requests arriving meanwhile do not wait for it, they fail as unknown.
//
// From [NewJWKS], it gives keys for access tokens only: revocast signs refresh tokens with
// the same keys, so a token whose "typ" header is not [AccessTokenType] gets
// [ErrNotAccessToken], and costs no fetch.
func (j *JWKS) Keyfunc(tok *jwt.Token) (any, error) {
	if !j.issuer {
		if err := requireAccessType(tok); err != nil {
			return nil, err
		}
	}
	kid, _ := tok.Header["kid"].(string)
	if k, ok := (*j.keys.Load())[kid]; ok {
		return k.verifies(tok)
	}
	if j.fetching.TryLock() {
		if time.Since(j.fetched) >= j.minRefresh {
			j.fetched = time.Now()
			err := j.fetch()
			j.lastErr.Store(&err)
		}
		j.fetching.Unlock()
		if k, ok := (*j.keys.Load())[kid]; ok {
			return k.verifies(tok)
		}
	}
	if p := j.lastErr.Load(); p != nil && *p != nil {
		return nil, fmt.Errorf("client: unknown key id %q (JWKS: %v)", truncate(kid, 64), *p)
	}
	return nil, fmt.Errorf("client: unknown key id %q", truncate(kid, 64))
}

// fetch replaces the keys with those at the URL; on failure it keeps the old ones.
func (j *JWKS) fetch() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return err
	}
	res, err := j.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", j.url, res.Status)
	}
	var set struct {
		Keys []jsonWebKey `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("GET %s: %w", j.url, err)
	}
	keys := make(map[string]jwksKey, len(set.Keys))
	for _, k := range set.Keys {
		// revocast signs with Ed25519 keys only.
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") || (!j.issuer && k.Kty != "OKP") {
			continue
		}
		if key, alg, err := k.publicKey(); err == nil {
			keys[k.Kid] = jwksKey{key: key, alg: alg}
		}
	}
	j.keys.Store(&keys)
	return nil
}

// verifies returns the key for tok, unless its JWK names another algorithm than the
// token's (a key is for one algorithm: RFC 7517 section 4.4).
func (k jwksKey) verifies(tok *jwt.Token) (any, error) {
	if k.alg != "" && tok.Method != nil && k.alg != tok.Method.Alg() {
		return nil, fmt.Errorf("client: key %q is for %s, the token says %s", truncate(fmt.Sprint(tok.Header["kid"]), 64),
			truncate(k.alg, 16), truncate(tok.Method.Alg(), 16))
	}
	return k.key, nil
}

// jsonWebKey is a JWK of any key type this package verifies with (RFC 7517, 7518, 8037).
type jsonWebKey struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// RSA moduli outside these sizes are refused: below, too weak (NIST SP 800-131A; crypto/rsa
// calls less than 2048 insecure); above, a hostile JWKS could make every verification cost
// tens of milliseconds.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// curveAlgs are the EC curves accepted and the one algorithm each verifies (RFC 7518
// section 3.4): golang-jwt checks an ECDSA signature's size, not that the key's curve fits.
var curveAlgs = map[string]struct {
	curve elliptic.Curve
	alg   string
}{
	"P-256": {elliptic.P256(), "ES256"},
	"P-384": {elliptic.P384(), "ES384"},
	"P-521": {elliptic.P521(), "ES512"},
}

// publicKey decodes an RSA, EC or Ed25519 public key, and the algorithm it verifies: the
// JWK's "alg" (any RSA algorithm without one), always the curve's for EC and EdDSA for
// Ed25519. A JWK whose "alg" contradicts its key type or curve is refused.
func (k jsonWebKey) publicKey() (key any, alg string, err error) {
	b64 := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 || len(n) > maxRSABits/8+1 {
			return nil, "", fmt.Errorf("client: RSA key %q: malformed n or e", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits || pub.E < 3 || pub.E%2 == 0 || pub.E > 1<<31-1 {
			return nil, "", fmt.Errorf("client: RSA key %q: %d-bit modulus, exponent %d", k.Kid, pub.N.BitLen(), pub.E)
		}
		if k.Alg != "" && !strings.HasPrefix(k.Alg, "RS") && !strings.HasPrefix(k.Alg, "PS") {
			return nil, "", fmt.Errorf("client: RSA key %q: alg %q", k.Kid, k.Alg)
		}
		return pub, k.Alg, nil
	case "EC":
		c, ok := curveAlgs[k.Crv]
		if !ok || (k.Alg != "" && k.Alg != c.alg) {
			return nil, "", fmt.Errorf("client: EC key %q: curve %q, alg %q", k.Kid, k.Crv, k.Alg)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		size := (c.curve.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, "", fmt.Errorf("client: EC key %q: malformed x or y", k.Kid)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(c.curve, append(append([]byte{4}, x...), y...))
		return pub, c.alg, err
	case "OKP":
		if k.Alg != "" && k.Alg != "EdDSA" && k.Alg != "Ed25519" {
			return nil, "", fmt.Errorf("client: OKP key %q: alg %q", k.Kid, k.Alg)
		}
		pub, err := events.JWK{Kty: k.Kty, Crv: k.Crv, X: k.X, Kid: k.Kid}.Ed25519()
		return pub, "EdDSA", err
	}
	return nil, "", fmt.Errorf("client: key %q: key type %q", k.Kid, k.Kty)
}
