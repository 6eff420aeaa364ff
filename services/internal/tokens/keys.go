// Package tokens issues revocast's own JWTs for apps that have no issuer: access and refresh
// token pairs signed with Ed25519 keys that live in JetStream KV, a refresh call that refuses
// revoked and reused refresh tokens, and the public keys as a JWKS.
package tokens

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
)

// Buckets. The private one is for revocastd (and the admin CLI) only; resource servers read
// the public one to verify tokens without any configuration.
const (
	PrivateBucket = "revocast_signing_keys"
	PublicBucket  = events.PublicKeysBucket
	currentEntry  = "current"
)

// ErrUnavailable wraps every failure to reach JetStream.
var ErrUnavailable = errors.New("tokens: JetStream unavailable")

// JWK and PublicKey are the published forms, part of the wire contract.
type (
	JWK       = events.JWK
	PublicKey = events.PublicKey
)

// seed is private key material. It never prints.
type seed []byte

func (seed) String() string   { return "[REDACTED]" }
func (seed) GoString() string { return "[REDACTED]" }

type privateKey struct {
	Kid       string    `json:"kid"`
	Seed      seed      `json:"seed"`
	CreatedAt time.Time `json:"created_at"`
}

// signer is the key new tokens are signed with.
type signer struct {
	kid string
	key ed25519.PrivateKey
}

// KeyRing holds the current signing key, following rotations made by any replica or by the
// CLI through a KV watch.
type KeyRing struct {
	priv, pub jetstream.KeyValue
	current   atomic.Pointer[signer]
	now       func() time.Time
}

func bucket(name, desc string, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: name, Description: desc, History: 5,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
}

// SetupBuckets creates or updates the key buckets.
func SetupBuckets(ctx context.Context, js jetstream.JetStream, replicas int) (priv, pub jetstream.KeyValue, err error) {
	priv, err = js.CreateOrUpdateKeyValue(ctx, bucket(PrivateBucket, "revocast signing keys (private, broadcaster only)", replicas))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: create bucket %s: %v", ErrUnavailable, PrivateBucket, err)
	}
	pub, err = js.CreateOrUpdateKeyValue(ctx, bucket(PublicBucket, "revocast public keys (JWKs) for resource servers", replicas))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: create bucket %s: %v", ErrUnavailable, PublicBucket, err)
	}
	return priv, pub, nil
}

// OpenKeyRing opens the key buckets, makes the first signing key if there is none, and
// follows the current key until ctx is done.
func OpenKeyRing(ctx context.Context, js jetstream.JetStream, replicas int) (*KeyRing, error) {
	priv, pub, err := SetupBuckets(ctx, js, replicas)
	if err != nil {
		return nil, err
	}
	r := &KeyRing{priv: priv, pub: pub, now: time.Now}
	if _, err := priv.Get(ctx, currentEntry); errors.Is(err, jetstream.ErrKeyNotFound) {
		// First start. Two replicas may race here: Create lets exactly one key win.
		if _, err := r.install(ctx, 0, true); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("%w: read current key: %v", ErrUnavailable, err)
	}
	w, err := priv.Watch(ctx, currentEntry)
	if err != nil {
		return nil, fmt.Errorf("%w: watch current key: %v", ErrUnavailable, err)
	}
	// The watch delivers the current value first, then every rotation.
	first := true
	for first {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			if err := r.load(ctx, string(e.Value())); err != nil {
				_ = w.Stop()
				return nil, err
			}
			first = false
		case <-ctx.Done():
			_ = w.Stop()
			return nil, ctx.Err()
		}
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				_ = r.load(ctx, string(e.Value())) // on error keep signing with the key we have
			}
		}
	}()
	return r, nil
}

func (r *KeyRing) load(ctx context.Context, kid string) error {
	e, err := r.priv.Get(ctx, "key."+kid)
	if err != nil {
		return fmt.Errorf("%w: read signing key %s: %v", ErrUnavailable, kid, err)
	}
	var pk privateKey
	if err := json.Unmarshal(e.Value(), &pk); err != nil || len(pk.Seed) != ed25519.SeedSize {
		return fmt.Errorf("tokens: signing key %s is malformed", kid)
	}
	r.current.Store(&signer{kid: pk.Kid, key: ed25519.NewKeyFromSeed(pk.Seed)})
	return nil
}

// install makes a new key, publishes its public half, and makes it current: with Create on
// first start (rev 0), else with an Update on the revision the caller read.
func (r *KeyRing) install(ctx context.Context, rev uint64, first bool) (string, error) {
	var s [ed25519.SeedSize]byte
	_, _ = rand.Read(s[:])
	var id [8]byte
	_, _ = rand.Read(id[:])
	now := r.now().UTC()
	kid := now.Format("20060102") + "-" + hex.EncodeToString(id[:])
	key := ed25519.NewKeyFromSeed(s[:])
	pk, _ := json.Marshal(privateKey{Kid: kid, Seed: s[:], CreatedAt: now})
	if _, err := r.priv.Put(ctx, "key."+kid, pk); err != nil {
		return "", fmt.Errorf("%w: store signing key: %v", ErrUnavailable, err)
	}
	pub, _ := json.Marshal(PublicKey{CreatedAt: now, JWK: JWK{Kty: "OKP", Crv: "Ed25519", Kid: kid, Alg: "EdDSA", Use: "sig",
		X: base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey))}})
	// Publish the public key before any token is signed with it.
	if _, err := r.pub.Put(ctx, kid, pub); err != nil {
		return "", fmt.Errorf("%w: publish public key: %v", ErrUnavailable, err)
	}
	var err error
	if first {
		_, err = r.priv.Create(ctx, currentEntry, []byte(kid))
	} else {
		_, err = r.priv.Update(ctx, currentEntry, []byte(kid), rev)
	}
	if err != nil {
		_ = r.pub.Delete(ctx, kid)
		_ = r.priv.Delete(ctx, "key."+kid)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return "", err
		}
		return "", fmt.Errorf("%w: make key current: %v", ErrUnavailable, err)
	}
	return kid, nil
}

// Signer returns the key id and key that new tokens are signed with.
func (r *KeyRing) Signer() (string, ed25519.PrivateKey) {
	s := r.current.Load()
	return s.kid, s.key
}

// Rotate makes a new signing key current and retires the old one; the old public key stays
// published until keepRetired has passed (the longest token lifetime), so tokens it signed
// keep verifying until they expire. Public keys retired longer ago are removed.
func Rotate(ctx context.Context, js jetstream.JetStream, keepRetired time.Duration) (oldKid, newKid string, err error) {
	priv, err := bind(ctx, js, PrivateBucket)
	if err != nil {
		return "", "", err
	}
	pub, err := bind(ctx, js, PublicBucket)
	if err != nil {
		return "", "", err
	}
	r := &KeyRing{priv: priv, pub: pub, now: time.Now}
	e, err := priv.Get(ctx, currentEntry)
	var rev uint64
	first := errors.Is(err, jetstream.ErrKeyNotFound)
	if err != nil && !first {
		return "", "", fmt.Errorf("%w: read current key: %v", ErrUnavailable, err)
	}
	if !first {
		oldKid, rev = string(e.Value()), e.Revision()
	}
	if newKid, err = r.install(ctx, rev, first); err != nil {
		return "", "", err
	}
	now := r.now().UTC()
	keys, err := r.PublicKeys(ctx)
	if err != nil {
		return oldKid, newKid, err
	}
	for _, k := range keys {
		switch {
		case k.JWK.Kid == oldKid && k.RetiredAt.IsZero():
			k.RetiredAt = now
			b, _ := json.Marshal(k)
			if _, err := pub.Put(ctx, k.JWK.Kid, b); err != nil {
				return oldKid, newKid, fmt.Errorf("%w: retire key %s: %v", ErrUnavailable, oldKid, err)
			}
		case !k.RetiredAt.IsZero() && now.Sub(k.RetiredAt) > keepRetired:
			_ = pub.Delete(ctx, k.JWK.Kid)
			_ = priv.Delete(ctx, "key."+k.JWK.Kid)
		}
	}
	return oldKid, newKid, nil
}

// bind opens a bucket that revocastd created; it never creates or reconfigures one (the
// CLI must not change a cluster's replica count).
func bind(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("tokens: bucket %s does not exist yet; start revocastd once against this NATS so it creates it", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open bucket %s: %v", ErrUnavailable, name, err)
	}
	return kv, nil
}

// OpenPublic opens the public keys only, for listing them.
func OpenPublic(ctx context.Context, js jetstream.JetStream) (*KeyRing, error) {
	pub, err := bind(ctx, js, PublicBucket)
	if err != nil {
		return nil, err
	}
	return &KeyRing{pub: pub, now: time.Now}, nil
}

// PublicKeys returns every published public key with its lifecycle, newest first.
func (r *KeyRing) PublicKeys(ctx context.Context) ([]PublicKey, error) {
	lister, err := r.pub.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: list public keys: %v", ErrUnavailable, err)
	}
	var out []PublicKey
	for kid := range lister.Keys() {
		e, err := r.pub.Get(ctx, kid)
		if err != nil {
			continue // deleted meanwhile
		}
		var k PublicKey
		if json.Unmarshal(e.Value(), &k) == nil {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b PublicKey) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// JWKS returns the published public keys, newest first.
func (r *KeyRing) JWKS(ctx context.Context) ([]JWK, error) {
	keys, err := r.PublicKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]JWK, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.JWK)
	}
	return out, nil
}

// PublicKey returns the public key with id kid, for verifying refresh tokens.
func (r *KeyRing) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	e, err := r.pub.Get(ctx, kid)
	if err != nil {
		return nil, fmt.Errorf("tokens: unknown key id %q", kid)
	}
	var k PublicKey
	if err := json.Unmarshal(e.Value(), &k); err != nil {
		return nil, fmt.Errorf("tokens: key %s is malformed", kid)
	}
	return k.JWK.Ed25519()
}
