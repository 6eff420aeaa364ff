package client_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/revocast/revocast/client"
)

// A resource server follows the revocations, waits until it has caught up, and puts the
// middleware in front of its handlers.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	nc, err := nats.Connect(nats.DefaultURL, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	var issuerKey ed25519.PublicKey // the public key of your token issuer
	table, err := client.New(nc,
		client.WithKeyfunc(func(*jwt.Token) (any, error) { return issuerKey, nil }),
		client.WithIssuer("https://auth.example.com"),
		client.WithMaxTokenLifetime(24*time.Hour),
		client.WithLogger(zap.NewExample()),
	)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := table.Run(ctx); err != nil {
			log.Print(err)
		}
	}()
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := table.WaitReady(readyCtx); err != nil {
		log.Fatal(err)
	}

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := client.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "hello user %d of %s\n", claims.UserID, claims.AppID)
	})
	http.Handle("/hello", table.Middleware(hello))
	log.Fatal(http.ListenAndServe(":8080", nil))
}

// Verify tells a revoked token from an invalid one and from a table that cannot vouch for
// its watermarks.
func ExampleTable_Verify() {
	var table *client.Table // from client.New, running
	var raw string          // the token from the request

	claims, err := table.Verify(context.Background(), raw)
	switch {
	case errors.Is(err, client.ErrRevoked):
		fmt.Println("log in again")
	case errors.Is(err, client.ErrNotReady), errors.Is(err, client.ErrStale):
		fmt.Println("try again shortly")
	case err != nil:
		fmt.Println("invalid token")
	default:
		fmt.Println("user", claims.UserID)
	}
}

// Stats feeds metrics and health checks.
func ExampleTable_Stats() {
	var table *client.Table // from client.New, running

	s := table.Stats()
	fmt.Printf("ready=%v users=%d apps=%d staleness=%s invalid=%d\n",
		s.Ready, s.Users, s.Apps, s.Staleness, s.EventsInvalid)
}
