package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/events"
)

// JWKS verifies revocast tokens with the keys served at a JWKS URL (revocastd's
// /.well-known/jwks.json), for resource servers that prefer HTTP to reading the key bucket
// over NATS. Use it as the key function: client.New(nc, client.WithKeyfunc(jwks.Keyfunc)).
//
// Keys are fetched on first use and again when a token names an unknown key id (a rotation),
// at most once per MinRefresh whatever the tokens say, so a flood of made-up key ids cannot
// turn into a flood of requests.
type JWKS struct {
	url        string
	hc         *http.Client
	minRefresh time.Duration

	// keys is read on the request path without a lock; fetch replaces it whole.
	keys atomic.Pointer[map[string]ed25519.PublicKey]

	// fetching is held by the one goroutine that fetches; others do not wait for it.
	fetching sync.Mutex
	fetched  time.Time // guarded by fetching
	lastErr  atomic.Pointer[error]
}

// DefaultJWKSMinRefresh is how often, at most, a [JWKS] fetches its URL.
const DefaultJWKSMinRefresh = 5 * time.Second

// NewJWKS returns a key source for url. hc may be nil (http.DefaultClient with a 10 s
// timeout per fetch).
func NewJWKS(url string, hc *http.Client) *JWKS {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	j := &JWKS{url: url, hc: hc, minRefresh: DefaultJWKSMinRefresh}
	j.keys.Store(&map[string]ed25519.PublicKey{})
	return j
}

// Keyfunc is a jwt.Keyfunc: the key named by the token's "kid". A known key costs a map
// lookup. An unknown one makes one request fetch the set again (if MinRefresh has passed);
// requests arriving meanwhile do not wait for it, they fail as unknown.
//
// It gives keys for access tokens only: revocast signs refresh tokens with the same keys,
// so a token whose "typ" header is not [AccessTokenType] gets [ErrNotAccessToken], and
// costs no fetch.
func (j *JWKS) Keyfunc(tok *jwt.Token) (any, error) {
	if err := requireAccessType(tok); err != nil {
		return nil, err
	}
	kid, _ := tok.Header["kid"].(string)
	if key, ok := (*j.keys.Load())[kid]; ok {
		return key, nil
	}
	if j.fetching.TryLock() {
		if time.Since(j.fetched) >= j.minRefresh {
			j.fetched = time.Now()
			err := j.fetch()
			j.lastErr.Store(&err)
		}
		j.fetching.Unlock()
		if key, ok := (*j.keys.Load())[kid]; ok {
			return key, nil
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
		Keys []events.JWK `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("GET %s: %w", j.url, err)
	}
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if pub, err := k.Ed25519(); err == nil && k.Kid != "" {
			keys[k.Kid] = pub
		}
	}
	j.keys.Store(&keys)
	return nil
}
