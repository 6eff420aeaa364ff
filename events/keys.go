package events

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"time"
)

// PublicKeysBucket is the JetStream KV bucket where revocastd publishes the public keys of
// the tokens it issues, one [PublicKey] per key id. Resource servers watch it to verify
// revocast tokens with no configuration beyond their NATS connection.
const PublicKeysBucket = "revocast_public_keys"

// JWK is an Ed25519 public key as a JSON Web Key (RFC 8037), as served in the JWKS.
type JWK struct {
	Kty string `json:"kty"` // "OKP"
	Crv string `json:"crv"` // "Ed25519"
	X   string `json:"x"`   // the key, base64url without padding
	Kid string `json:"kid"`
	Alg string `json:"alg"` // "EdDSA"
	Use string `json:"use"` // "sig"
}

// Ed25519 returns the key, or an error if the JWK is not an Ed25519 signing key.
func (k JWK) Ed25519() (ed25519.PublicKey, error) {
	if k.Kty != "OKP" || k.Crv != "Ed25519" {
		return nil, fmt.Errorf("events: key %q is %s/%s, not OKP/Ed25519", k.Kid, k.Kty, k.Crv)
	}
	b, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("events: key %q: malformed x", k.Kid)
	}
	return ed25519.PublicKey(b), nil
}

// PublicKey is the value stored in [PublicKeysBucket]: a JWK with its lifecycle. A retired
// key stays published until every token it signed has expired.
type PublicKey struct {
	JWK       JWK       `json:"jwk"`
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
}
