package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// issuerKeys are the public keys of tokens minted by revocast itself, followed from the
// events.PublicKeysBucket KV bucket. They are used when no [WithKeyfunc] is given, so a
// resource server needs nothing but its NATS connection to verify revocast tokens.
type issuerKeys struct {
	keys   atomic.Pointer[map[string]ed25519.PublicKey]
	loaded atomic.Bool // the bucket's current keys have all been read
}

func newIssuerKeys() *issuerKeys {
	k := &issuerKeys{}
	k.keys.Store(&map[string]ed25519.PublicKey{})
	return k
}

// keyfunc picks the key named by the token's "kid" header, for access tokens only.
func (k *issuerKeys) keyfunc(tok *jwt.Token) (any, error) {
	if err := requireAccessType(tok); err != nil {
		return nil, err
	}
	kid, _ := tok.Header["kid"].(string)
	if key, ok := (*k.keys.Load())[kid]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("client: unknown key id %q", truncate(kid, 64))
}

// set adds or removes one key; a single goroutine calls it.
func (k *issuerKeys) set(kid string, key ed25519.PublicKey) {
	next := maps.Clone(*k.keys.Load())
	if key == nil {
		delete(next, kid)
	} else {
		next[kid] = key
	}
	k.keys.Store(&next)
}

// followKeys watches the public key bucket until ctx is done. Rotations and retirements
// made by the broadcaster arrive as puts and deletes.
func (t *Table) followKeys(ctx context.Context, js jetstream.JetStream) {
	for try := 0; ctx.Err() == nil; try++ {
		kv, err := js.KeyValue(ctx, events.PublicKeysBucket)
		if err == nil {
			var w jetstream.KeyWatcher
			if w, err = kv.WatchAll(ctx); err == nil {
				try = 0
				t.watchKeys(ctx, w)
				_ = w.Stop()
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		if try == 0 || try%20 == 0 {
			t.log.Warn("revocast public keys unavailable; retrying", zap.String("bucket", events.PublicKeysBucket), zap.Error(err))
		}
		if !sleep(ctx, backoff(try)) {
			return
		}
	}
}

func (t *Table) watchKeys(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return
		case e, ok = <-w.Updates():
			if !ok {
				return
			}
		}
		if e == nil {
			// The watcher has delivered every current key.
			if !t.issuer.loaded.Swap(true) {
				t.askConfirmation()
			}
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			t.issuer.set(e.Key(), nil)
			continue
		}
		key, err := parsePublicKey(e.Value())
		if err != nil {
			t.log.Warn("malformed revocast public key; ignored", zap.String("kid", e.Key()), zap.Error(err))
			continue
		}
		t.issuer.set(e.Key(), key)
	}
}

func parsePublicKey(data []byte) (ed25519.PublicKey, error) {
	var pk events.PublicKey
	if err := json.Unmarshal(data, &pk); err != nil {
		return nil, err
	}
	if pk.JWK.Alg != "" && pk.JWK.Alg != "EdDSA" {
		return nil, errors.New("not an EdDSA key")
	}
	return pk.JWK.Ed25519()
}
