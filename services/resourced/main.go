// Command resourced is a sample resource server: a few lines of revocast client in front of
// an ordinary handler. Tokens issued by revocast are verified with the keys revocast
// publishes (no configuration beyond NATS), and a token issued before a flush or a reset is
// refused within milliseconds of the admin call, with no network call per request.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/services/internal/flagenv"
	"github.com/revocast/revocast/services/internal/logging"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/tokens"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "resourced: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := flagenv.Defaults(getenv)
	// Named, not args[0]: under go run that is a path in the build cache.
	fs := flag.NewFlagSet("resourced", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http-addr", env("RESOURCED_HTTP_ADDR", "127.0.0.1:8081"), "listen address (RESOURCED_HTTP_ADDR)")
	natsURL := fs.String("nats-url", env("NATS_URL", nats.DefaultURL), "NATS server of revocast (NATS_URL)")
	creds := fs.String("nats-creds", getenv("NATS_CREDS"),
		"NATS credentials file (NATS_CREDS; default the embedded default's resource.creds in REVOCAST_DATA_DIR, default ./revocast-data)")
	issuer := fs.String("issuer", env("REVOCAST_ISSUER", tokens.DefaultIssuer), "required iss claim (REVOCAST_ISSUER)")
	maxStale := fs.Duration("max-staleness", client.DefaultMaxStaleness, "refuse tokens (503) when the table is older than this")
	failOpen := fs.Bool("fail-open", false, "accept tokens past -max-staleness instead of answering 503 (logged and counted)")
	maxLifetime := fs.Duration("max-token-lifetime", 24*time.Hour, "longest exp-iat accepted; watermarks older than this are pruned (RESOURCED_MAX_TOKEN_LIFETIME)")
	reportEvery := fs.Duration("report-interval", client.DefaultReportInterval, "how often the table reports itself to revocastd's fleet (RESOURCED_REPORT_INTERVAL)")
	if err := flagenv.Set(fs, getenv, map[string]string{
		"max-token-lifetime": "RESOURCED_MAX_TOKEN_LIFETIME", "report-interval": "RESOURCED_REPORT_INTERVAL",
	}); err != nil {
		return err
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *creds == "" {
		*creds = natsutil.DefaultCredentials(getenv, *natsURL, natsutil.Resource)
	}
	// The log format of revocastd: JSON lines with ISO 8601 times.
	log, err := logging.New("info", "json", stderr)
	if err != nil {
		return err
	}
	log = log.WithOptions(zap.AddCaller())
	defer func() { _ = log.Sync() }()

	// Keep trying when NATS is not up yet: resource servers and revocast may start in any
	// order. Until the table has caught up, /readyz says 503 and the middleware 503 too.
	if err := natsutil.WaitForCredentials(ctx, *creds, func() {
		log.Warn("waiting for the NATS credentials file (revocastd writes it on its first start; on another host, set NATS_CREDS to a copy of resource.creds)", zap.String("file", *creds))
	}); err != nil {
		return err
	}
	// client.Connect reconnects within a few hundred milliseconds of a NATS restart and
	// retries while NATS is not up yet; LogNATSErrors keeps nats.go's asynchronous errors in
	// this log instead of raw lines on stderr.
	opts := []nats.Option{nats.Name("resourced"), client.LogNATSErrors(log),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("connected to NATS", zap.String("url", nc.ConnectedUrlRedacted())) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", zap.Error(err)) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted())) })}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	nc, err := client.Connect(*natsURL, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	if !nc.IsConnected() {
		log.Warn("NATS not reachable yet; retrying (is revocastd running?)", zap.String("url", *natsURL))
	}

	// The revocast part: a table that follows the revocations, and its middleware.
	copts := []client.Option{client.WithLogger(log), client.WithIssuer(*issuer), client.WithMaxStaleness(*maxStale),
		client.WithMaxTokenLifetime(*maxLifetime), client.WithService("resourced"), client.WithReportInterval(*reportEvery)}
	if *failOpen {
		copts = append(copts, client.WithFailOpen())
	}
	table, err := client.New(nc, copts...)
	if err != nil {
		return err
	}
	runCtx, stopTable := context.WithCancel(ctx)
	defer stopTable()
	go func() { _ = table.Run(runCtx) }()

	mux := http.NewServeMux()
	mux.Handle("GET /hello", table.Middleware(http.HandlerFunc(hello)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	// Ready while the table can decide: caught up, and confirmed by JetStream within the
	// maximum staleness. A table that cannot follow the stream (its NATS node is lost and
	// no other answers) turns not ready when the middleware starts answering 503, so the
	// load balancer stops sending it requests. With -fail-open it keeps serving once it has
	// caught up, so it stays ready.
	var caughtUp atomic.Bool
	go func() {
		if table.WaitReady(runCtx) == nil {
			caughtUp.Store(true)
		}
	}()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !table.Ready() && !(*failOpen && caughtUp.Load()) {
			http.Error(w, "revocation table not ready or stale", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set RESOURCED_HTTP_ADDR)", *httpAddr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stdout, "resourced: serving http://%s (fleet instance %s)\n", ln.Addr(), table.Instance())
	<-ctx.Done()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

// hello is the protected handler: it only ever sees verified, unrevoked tokens.
func hello(w http.ResponseWriter, r *http.Request) {
	c, _ := client.ClaimsFromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"message": "hello", "app": c.AppID, "user": c.UserID})
}
