package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
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

	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	fetched time.Time
	lastErr error
}

// DefaultJWKSMinRefresh is how often, at most, a [JWKS] fetches its URL.
const DefaultJWKSMinRefresh = 5 * time.Second

// NewJWKS returns a key source for url. hc may be nil (http.DefaultClient with a 10 s
// timeout per fetch).
func NewJWKS(url string, hc *http.Client) *JWKS {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &JWKS{url: url, hc: hc, minRefresh: DefaultJWKSMinRefresh, keys: map[string]ed25519.PublicKey{}}
}

// Keyfunc is a jwt.Keyfunc: the key named by the token's "kid".
func (j *JWKS) Keyfunc(tok *jwt.Token) (any, error) {
	kid, _ := tok.Header["kid"].(string)
	j.mu.Lock()
	defer j.mu.Unlock()
	if key, ok := j.keys[kid]; ok {
		return key, nil
	}
	if time.Since(j.fetched) >= j.minRefresh {
		j.fetched = time.Now()
		j.lastErr = j.fetchLocked()
		if key, ok := j.keys[kid]; ok {
			return key, nil
		}
	}
	if j.lastErr != nil {
		return nil, fmt.Errorf("client: unknown key id %q (JWKS: %v)", truncate(kid, 64), j.lastErr)
	}
	return nil, fmt.Errorf("client: unknown key id %q", truncate(kid, 64))
}

// fetchLocked replaces the keys with those at the URL; on failure it keeps the old ones.
func (j *JWKS) fetchLocked() error {
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
	j.keys = keys
	return nil
}
