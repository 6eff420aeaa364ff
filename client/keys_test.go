package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/revocast/revocast/events"
)

// publishKey stores a public key in the bucket as revocastd does.
func publishKey(tb testing.TB, kv jetstream.KeyValue, kid string, pub ed25519.PublicKey) {
	tb.Helper()
	b, err := json.Marshal(events.PublicKey{CreatedAt: time.Now(), JWK: events.JWK{
		Kty: "OKP", Crv: "Ed25519", Kid: kid, Alg: "EdDSA", Use: "sig",
		X: base64.RawURLEncoding.EncodeToString(pub)}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), kid, b); err != nil {
		tb.Fatal(err)
	}
}

func TestRevocastKeysWithoutConfiguration(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tab, err := New(f.srv.Connect(fastReconnect()...), WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tab.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	signTyped := func(typ, kid string, key ed25519.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
			"sub": "5", "app": "shop", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"], tok.Header["typ"] = kid, typ
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sign := func(kid string, key ed25519.PrivateKey) string { return signTyped(AccessTokenType, kid, key) }
	pub1, priv1, _ := ed25519.GenerateKey(rand.Reader)
	pub2, priv2, _ := ed25519.GenerateKey(rand.Reader)

	// Not ready while the bucket does not exist: no key could verify anything.
	if err := tab.CheckIssuedAt("shop", 5, "1"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before the bucket exists: err = %v, want ErrNotReady", err)
	}
	kv, err := f.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.PublicKeysBucket})
	if err != nil {
		t.Fatal(err)
	}
	publishKey(t, kv, "k1", pub1)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := tab.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "key k1 known", func() bool { _, err := tab.Verify(ctx, sign("k1", priv1)); return err == nil })
	// revocast's keys sign refresh tokens too: only a token typed as an access token passes.
	for _, typ := range []string{"rt+jwt", "JWT", ""} {
		if _, err := tab.Verify(ctx, signTyped(typ, "k1", priv1)); !errors.Is(err, ErrNotAccessToken) || !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("typ %q: err = %v, want ErrNotAccessToken", typ, err)
		}
	}

	// Rotation: a new key arrives, the old one is removed later.
	publishKey(t, kv, "k2", pub2)
	eventually(t, "key k2 known", func() bool { _, err := tab.Verify(ctx, sign("k2", priv2)); return err == nil })
	if err := kv.Delete(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "key k1 removed", func() bool {
		_, err := tab.Verify(ctx, sign("k1", priv1))
		return errors.Is(err, ErrInvalidToken)
	})
	// A token naming k2 but signed with k1's private key is refused.
	if _, err := tab.Verify(ctx, sign("k2", priv1)); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("k2 header, k1 signature: err = %v, want ErrInvalidToken", err)
	}
}
