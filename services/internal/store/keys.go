package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
)

// APIKey is an admin API key, sent in X-API-Key. It is stored under its public id; the
// secret is kept only as a hash.
type APIKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	KeyHash   string    `json:"key_hash"`
	CreatedAt time.Time `json:"created_at"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`
}

// Allows reports whether the key holds scope.
func (k APIKey) Allows(scope string) bool { return slices.Contains(k.Scopes, scope) }

// ParseScopes turns "users:reset,audit:read" into a checked list; "" means every scope.
func ParseScopes(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return slices.Clone(AllScopes), nil
	}
	var out []string
	for _, sc := range strings.Split(s, ",") {
		sc = strings.TrimSpace(sc)
		if !slices.Contains(AllScopes, sc) {
			return nil, fmt.Errorf("%w: unknown scope %q (known: %s)", ErrInvalid, sc, strings.Join(AllScopes, ", "))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// CreateKey creates an admin API key with a unique name and returns it, shown once.
func (s *Store) CreateKey(ctx context.Context, name string, scopes []string) (APIKey, Secret, error) {
	if err := events.ValidateAppID(name); err != nil {
		return APIKey{}, "", fmt.Errorf("%w: key name %q: letters, digits, '-' and '_' only, at most %d", ErrInvalid, name, events.MaxAppIDLen)
	}
	if len(scopes) == 0 {
		scopes = slices.Clone(AllScopes)
	}
	existing, err := s.ListKeys(ctx)
	if err != nil {
		return APIKey{}, "", err
	}
	for _, k := range existing {
		if k.Name == name {
			return APIKey{}, "", fmt.Errorf("%w: key named %q (use 'revocast keys rotate %s' for a new secret)", ErrExists, name, name)
		}
	}
	id := newPublicID(APIKeyPrefix)
	key, hash := newKey(id)
	k := APIKey{ID: id, Name: name, Scopes: scopes, KeyHash: hash, CreatedAt: s.now().UTC()}
	data, _ := json.Marshal(k)
	if _, err := s.keys.Create(ctx, id, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return APIKey{}, "", fmt.Errorf("%w: key id %s", ErrExists, id)
		}
		return APIKey{}, "", kvErr("create key", err)
	}
	return k, key, nil
}

// ListKeys returns every admin key, sorted by public id.
func (s *Store) ListKeys(ctx context.Context) ([]APIKey, error) {
	return listJSON[APIKey](ctx, s.keys)
}

// RotateKey gives a key (named by name or public id) a new secret; its public id, name and
// scopes stay, so the audit trail of "what did this key do" continues across rotations.
func (s *Store) RotateKey(ctx context.Context, nameOrID string) (APIKey, Secret, error) {
	id, err := s.findKey(ctx, nameOrID)
	if err != nil {
		return APIKey{}, "", err
	}
	var k APIKey
	rev, err := getJSON(ctx, s.keys, id, &k)
	if err != nil {
		return APIKey{}, "", err
	}
	key, hash := newKey(k.ID)
	k.KeyHash, k.RotatedAt = hash, s.now().UTC()
	data, _ := json.Marshal(k)
	if _, err := s.keys.Update(ctx, id, data, rev); err != nil {
		return APIKey{}, "", kvErr("rotate key", err)
	}
	return k, key, nil
}

func (s *Store) findKey(ctx context.Context, nameOrID string) (string, error) {
	if strings.HasPrefix(nameOrID, APIKeyPrefix+"_") {
		return nameOrID, nil
	}
	keys, err := s.ListKeys(ctx)
	if err != nil {
		return "", err
	}
	for _, k := range keys {
		if k.Name == nameOrID {
			return k.ID, nil
		}
	}
	return "", fmt.Errorf("%w: no key named %q (see 'revocast keys list')", ErrNotFound, nameOrID)
}

// AuthenticateKey checks a presented admin key and returns it. Unknown and wrong keys give
// the same error after the same work. With [Store.WatchCredentials] running, a valid key is
// checked in memory.
func (s *Store) AuthenticateKey(ctx context.Context, presented string) (APIKey, error) {
	id := splitKey(APIKeyPrefix, presented)
	if k, ok := s.keyMirror.get(id); ok && verify(presented, k.KeyHash) {
		return k, nil
	}
	var k APIKey
	if id != "" {
		if _, err := getJSON(ctx, s.keys, id, &k); err != nil && !errors.Is(err, ErrNotFound) {
			return APIKey{}, err
		}
	}
	if !verify(presented, k.KeyHash) {
		return APIKey{}, ErrUnauthorized
	}
	return k, nil
}
