package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
)

// App is a registered application. Its root key and its token credential are kept only as
// hashes.
type App struct {
	ID        string    `json:"id"`
	KeyID     string    `json:"key_id"`
	KeyHash   string    `json:"key_hash"`
	CreatedAt time.Time `json:"created_at"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// CredID and CredHash are the app credential its backend uses to mint tokens for its
	// users (POST /v1/apps/{app_id}/tokens). It is not the root key: a backend that mints
	// tokens cannot flush the app.
	CredID    string    `json:"cred_id,omitempty"`
	CredHash  string    `json:"cred_hash,omitempty"`
	CredSetAt time.Time `json:"cred_set_at,omitzero"`
}

// CreateApp registers an app and returns its root key, which is shown once and never stored.
func (s *Store) CreateApp(ctx context.Context, id string) (App, Secret, error) {
	if err := events.ValidateAppID(id); err != nil {
		return App{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	keyID := newPublicID(RootKeyPrefix)
	key, hash := newKey(keyID)
	app := App{ID: id, KeyID: keyID, KeyHash: hash, CreatedAt: s.now().UTC()}
	data, _ := json.Marshal(app)
	if _, err := s.apps.Create(ctx, id, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return App{}, "", fmt.Errorf("%w: app %q (use 'revocast apps rotate %s' for a new root key)", ErrExists, id, id)
		}
		return App{}, "", kvErr("create app", err)
	}
	return app, key, nil
}

// RotateApp replaces an app's root key: the old key stops working at once.
func (s *Store) RotateApp(ctx context.Context, id string) (App, Secret, error) {
	return s.updateApp(ctx, id, "rotate app", func(app *App) Secret {
		id := newPublicID(RootKeyPrefix)
		key, hash := newKey(id)
		app.KeyID, app.KeyHash, app.RotatedAt = id, hash, s.now().UTC()
		return key
	})
}

// SetAppCredential creates the app's token credential, or replaces it (the old one stops
// working at once), and returns it, shown once.
func (s *Store) SetAppCredential(ctx context.Context, id string) (App, Secret, error) {
	return s.updateApp(ctx, id, "set app credential", func(app *App) Secret {
		id := newPublicID(CredentialPrefix)
		key, hash := newKey(id)
		app.CredID, app.CredHash, app.CredSetAt = id, hash, s.now().UTC()
		return key
	})
}

// updateApp gives an existing app a new secret through change, with a compare-and-set on
// the revision it read, and returns the secret.
func (s *Store) updateApp(ctx context.Context, id, op string, change func(*App) Secret) (App, Secret, error) {
	if err := events.ValidateAppID(id); err != nil {
		return App{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var app App
	rev, err := getJSON(ctx, s.apps, id, &app)
	if errors.Is(err, ErrNotFound) {
		return App{}, "", fmt.Errorf("%w: app %q (create it with 'revocast apps create %s')", ErrNotFound, id, id)
	}
	if err != nil {
		return App{}, "", err
	}
	key := change(&app)
	data, _ := json.Marshal(app)
	if _, err := s.apps.Update(ctx, id, data, rev); err != nil {
		return App{}, "", kvErr(op, err)
	}
	return app, key, nil
}

// AuthenticateAppCredential checks an app's token credential, with the same answer and work
// for an unknown app, an app without a credential and a wrong credential.
func (s *Store) AuthenticateAppCredential(ctx context.Context, appID, presented string) (App, error) {
	if app, ok := s.appMirror.get(appID); ok && verify(presented, app.CredHash) {
		return app, nil
	}
	var app App
	if _, err := getJSON(ctx, s.apps, appID, &app); err != nil && !errors.Is(err, ErrNotFound) {
		return App{}, err
	}
	if !verify(presented, app.CredHash) {
		return App{}, ErrUnauthorized
	}
	return app, nil
}

// AuthenticateAnyAppCredential finds the app whose token credential was presented, for
// calls that name no app (RFC 7009 revocation). The credential's public id says which app
// it is; the answer and the work are the same for an unknown and a wrong credential.
func (s *Store) AuthenticateAnyAppCredential(ctx context.Context, presented string) (App, error) {
	id := splitKey(CredentialPrefix, presented)
	match := func(a App) bool { return id != "" && a.CredID == id }
	if app, ok := s.appMirror.find(match); ok && verify(presented, app.CredHash) {
		return app, nil
	}
	apps, err := s.ListApps(ctx)
	if err != nil {
		return App{}, err
	}
	var app App
	for _, a := range apps {
		if match(a) {
			app = a
			break
		}
	}
	if !verify(presented, app.CredHash) {
		return App{}, ErrUnauthorized
	}
	return app, nil
}

// ListApps returns every app, sorted by id.
func (s *Store) ListApps(ctx context.Context) ([]App, error) {
	return listJSON[App](ctx, s.apps)
}

// AuthenticateApp checks an app's root key. An unknown app and a wrong key give the same
// error after the same work, so the answer does not tell which apps exist.
func (s *Store) AuthenticateApp(ctx context.Context, appID, presented string) (App, error) {
	if app, ok := s.appMirror.get(appID); ok && verify(presented, app.KeyHash) {
		return app, nil
	}
	var app App
	if _, err := getJSON(ctx, s.apps, appID, &app); err != nil && !errors.Is(err, ErrNotFound) {
		return App{}, err
	}
	if !verify(presented, app.KeyHash) {
		return App{}, ErrUnauthorized
	}
	return app, nil
}
