package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/tokens"
)

// TestEmbeddedDefaultTrustsNoOne is the attacker on the revocastd machine: a local process
// that connects to the embedded NATS without credentials, or with the resource servers' or
// the auditors' credentials, and tries to read the signing seeds and key hashes or to store
// a forged revocation. None of it works, and the stream holds only what the API stored.
func TestEmbeddedDefaultTrustsNoOne(t *testing.T) {
	srv := start(t, nil)
	st, js := openStore(t, srv)
	if _, _, err := st.CreateApp(t.Context(), "shop"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateKey(t.Context(), "oncall", nil); err != nil {
		t.Fatal(err)
	}

	t.Run("AnonymousIsRefused", func(t *testing.T) {
		nc, err := nats.Connect(srv.nats, nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Fatal("anonymous connection accepted")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("anonymous connection: %v, want an authorization error", err)
		}
	})

	for _, role := range []natsutil.Role{natsutil.Resource, natsutil.Auditor} {
		t.Run(string(role), func(t *testing.T) {
			violations := make(chan string, 64)
			nc := srv.connect(t, role, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrPermissionViolation) {
					select {
					case violations <- err.Error():
					default:
					}
				}
			}))
			rjs, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			for _, bucket := range []string{tokens.PrivateBucket, store.KeysBucket, store.AppsBucket} {
				if kv, err := rjs.KeyValue(ctx, bucket); err == nil {
					if e, err := kv.Get(ctx, "shop"); err == nil {
						t.Errorf("%s read %s: %q", role, bucket, e.Value())
					}
					if keys, err := kv.ListKeys(ctx); err == nil {
						for k := range keys.Keys() {
							t.Errorf("%s listed key %q of %s", role, k, bucket)
						}
					}
				}
			}
			// The raw subjects too: a direct get of the newest signing seed.
			if m, err := nc.Request("$JS.API.DIRECT.GET.KV_"+tokens.PrivateBucket, []byte(`{"last_by_subj":"$KV.`+tokens.PrivateBucket+`.>"}`), time.Second); err == nil && len(m.Data) > 0 {
				t.Errorf("%s direct get of the signing keys answered %q", role, m.Data)
			}
			// Reading the replies of the broadcaster (secrets travel there): the server
			// refuses the subscription, and no reply to the broadcaster's reads arrives.
			sub, err := nc.SubscribeSync(natsutil.InboxPrefix + ".>")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			refused := false
			for deadline := time.After(10 * time.Second); !refused; {
				select {
				case v := <-violations:
					refused = strings.Contains(v, "Subscription to \""+natsutil.InboxPrefix)
				case <-deadline:
					t.Fatalf("%s: no permissions violation for a subscription to the broadcaster's inbox", role)
				}
			}
			if _, err := st.ListApps(t.Context()); err != nil {
				t.Fatal(err)
			}
			if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
				t.Errorf("%s read a reply to the broadcaster: %q", role, m.Data)
			}
			// A forged flush, through JetStream and as a plain publish.
			ev, err := events.NewAppFlushed("shop", time.Now(), "forged")
			if err != nil {
				t.Fatal(err)
			}
			data, _ := events.Encode(ev)
			if _, err := rjs.Publish(ctx, ev.Subject(), data); err == nil {
				t.Errorf("%s stored a forged flush", role)
			}
			_ = nc.Publish(ev.Subject(), data)
			_ = nc.Flush()
		})
	}

	// Only the API's events are in the stream: none of the forged ones.
	evs, _ := readAll(t, js)
	for _, ev := range evs {
		if ev.Actor == "forged" {
			t.Fatalf("forged event in the stream: %+v", ev)
		}
	}
}
