package store

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Key kinds, the first part of every key revocast hands out. The prefix makes a leaked key
// recognisable (by people and by secret scanners) and says what it unlocks.
const (
	// RootKeyPrefix starts an app's root key, sent in Authorization to flush the app.
	RootKeyPrefix = "rvcr"
	// APIKeyPrefix starts an admin API key, sent in X-API-Key.
	APIKeyPrefix = "rvca"
	// CredentialPrefix starts an app credential, with which the app's backend mints tokens.
	CredentialPrefix = "rvcc"
)

// Secret is a full key as handed to its owner once. Its String and GoString redact it, so
// that a Secret passed to a logger or fmt by mistake shows nothing.
type Secret string

func (Secret) String() string   { return "[REDACTED]" }
func (Secret) GoString() string { return "[REDACTED]" }

// Reveal returns the key itself, for the single place that shows it to its owner.
func (s Secret) Reveal() string { return string(s) }

// newPublicID returns "<prefix>_<12 hex>", the part of a key that is safe to log and to
// record in events as the actor.
func newPublicID(prefix string) string {
	var id [6]byte
	_, _ = rand.Read(id[:])
	return prefix + "_" + hex.EncodeToString(id[:])
}

// newKey returns a fresh key "<publicID>_<43 base64url>" and the hash to store. Rotation
// calls it with the existing public id, so a key keeps its identity across rotations.
func newKey(publicID string) (key Secret, hash string) {
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	key = Secret(publicID + "_" + base64.RawURLEncoding.EncodeToString(secret[:]))
	return key, hashKey(string(key))
}

// hashKey hashes a whole key. Keys carry 256 random bits, so a fast hash is enough: there
// is nothing to brute-force, and a slow KDF would only make every admin call slower.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// splitKey returns the public id of a presented key, or "" if it is not shaped like a key
// of that prefix. It never looks at the secret part beyond its presence.
func splitKey(prefix, presented string) string {
	rest, ok := strings.CutPrefix(presented, prefix+"_")
	if !ok || len(rest) < 14 || rest[12] != '_' {
		return ""
	}
	for i := 0; i < 12; i++ {
		c := rest[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	return prefix + "_" + rest[:12]
}

// verify compares a presented key with a stored hash in constant time. With nothing stored
// (unknown app or key) it does the same work against a placeholder and says no, so the
// answer and its timing do not tell which apps and keys exist.
func verify(presented, storedHash string) bool {
	target := storedHash
	if target == "" {
		target = unknownHash
	}
	match := subtle.ConstantTimeCompare([]byte(hashKey(presented)), []byte(target)) == 1
	return match && storedHash != ""
}

// unknownHash stands in for a missing hash; no key hashes to it.
var unknownHash = hashKey("revocast: no such key")
