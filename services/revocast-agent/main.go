// Command revocast-agent answers a proxy's "may this request pass?" for services in any
// language: it runs beside nginx (auth_request), Caddy (forward_auth), Traefik (forwardAuth)
// or Envoy (HTTP ext_authz), follows the revocation stream with the same table as the Go
// client, and decides from memory with no call to revocastd.
//
// GET (any method) /auth, or any path under /auth/, with the request's Authorization
// header: 200 with X-Revocast-User and X-Revocast-App (and X-Revocast-Claims, base64url
// JSON, with -send-claims) for a valid token; 401 with an RFC 6750 WWW-Authenticate for a
// missing, invalid or revoked token; 503 with Retry-After while the table is not ready or
// stale (fail closed, unless -fail-open).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/services/internal/flagenv"
	"github.com/revocast/revocast/services/internal/logging"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/tokens"
	"github.com/revocast/revocast/services/revocast-agent/extauthz"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "revocast-agent: %v\n", err)
		os.Exit(1)
	}
}

// The kinds of JWKS -jwks-url may serve.
const (
	jwksRevocast = "revocast"
	jwksIssuer   = "issuer"
)

// config is every setting, each a flag with an environment variable.
type config struct {
	addr, grpcAddr       string
	natsURL, natsCreds   string
	issuer               string
	audience, algorithms string
	jwksURL, jwksKind    string
	appClaim, userClaim  string
	sessionClaim         string
	requireAccessType    bool
	maxStaleness         time.Duration
	failOpen             bool
	maxLifetime, leeway  time.Duration
	cacheSize            int
	sendClaims           bool
	logLevel, logFormat  string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := flagenv.Defaults(getenv)
	fs.StringVar(&cfg.addr, "addr", env("REVOCAST_AGENT_ADDR", "127.0.0.1:8181"), "HTTP listen address of /auth, /healthz, /readyz, /metrics (REVOCAST_AGENT_ADDR)")
	fs.StringVar(&cfg.grpcAddr, "grpc-addr", env("REVOCAST_AGENT_GRPC_ADDR", ""), "listen address of the Envoy gRPC ext_authz service; empty = off (REVOCAST_AGENT_GRPC_ADDR)")
	fs.StringVar(&cfg.natsURL, "nats-url", env("NATS_URL", natsutil.DefaultURL), "NATS server of revocast (NATS_URL)")
	fs.StringVar(&cfg.natsCreds, "nats-creds", "", "NATS credentials file of the resource role (NATS_CREDS; default the embedded default's resource.creds in REVOCAST_DATA_DIR, default ./revocast-data)")
	fs.StringVar(&cfg.issuer, "issuer", env("REVOCAST_ISSUER", tokens.DefaultIssuer), "required iss claim; empty = any (REVOCAST_ISSUER)")
	fs.StringVar(&cfg.audience, "audience", env("REVOCAST_AUDIENCE", ""), "comma-separated audiences, one of which aud must hold; empty = not checked (REVOCAST_AUDIENCE)")
	fs.StringVar(&cfg.algorithms, "algorithms", env("REVOCAST_ALGORITHMS", ""), "comma-separated signing algorithms accepted; empty = EdDSA,ES256,RS256 (REVOCAST_ALGORITHMS)")
	fs.StringVar(&cfg.jwksURL, "jwks-url", env("REVOCAST_JWKS_URL", ""), "verify tokens with the keys of this JWKS URL instead of revocast's keys over NATS (REVOCAST_JWKS_URL)")
	fs.StringVar(&cfg.jwksKind, "jwks-kind", env("REVOCAST_JWKS_KIND", ""), "whose keys -jwks-url serves: revocast (revocastd's JWKS: access tokens only, sessions from sid) or issuer (another issuer's RSA, EC and Ed25519 keys); empty = revocast when -issuer is revocast, else required (REVOCAST_JWKS_KIND)")
	fs.StringVar(&cfg.appClaim, "app-claim", env("REVOCAST_APP_CLAIM", client.DefaultAppClaim), "claim holding the app id; empty = tokens carry no app (REVOCAST_APP_CLAIM)")
	fs.StringVar(&cfg.userClaim, "user-claim", env("REVOCAST_USER_CLAIM", client.DefaultUserClaim), "claim holding the user id (REVOCAST_USER_CLAIM)")
	fs.StringVar(&cfg.sessionClaim, "session-claim", env("REVOCAST_SESSION_CLAIM", ""), "claim holding the login session id, so that session revocations apply; empty = sid for revocast's own tokens, none for another issuer's (REVOCAST_SESSION_CLAIM)")
	fs.BoolVar(&cfg.requireAccessType, "require-access-token-type", false, "refuse tokens whose typ header is not at+jwt (REVOCAST_REQUIRE_ACCESS_TOKEN_TYPE)")
	fs.DurationVar(&cfg.maxStaleness, "max-staleness", client.DefaultMaxStaleness, "answer 503 when JetStream has not confirmed the table for this long (REVOCAST_MAX_STALENESS)")
	fs.BoolVar(&cfg.failOpen, "fail-open", false, "allow tokens past -max-staleness instead of answering 503; logged and counted (REVOCAST_FAIL_OPEN)")
	fs.DurationVar(&cfg.maxLifetime, "max-token-lifetime", 24*time.Hour, "longest exp-iat accepted; older watermarks are pruned (REVOCAST_MAX_TOKEN_LIFETIME)")
	fs.DurationVar(&cfg.leeway, "leeway", 0, "clock skew allowed on exp, nbf and iat, never on the revocation check (REVOCAST_LEEWAY)")
	fs.IntVar(&cfg.cacheSize, "signature-cache", 100_000, "tokens whose verified signature is kept (by SHA-256), so a token seen again skips the signature check; 0 = off (REVOCAST_AGENT_SIGNATURE_CACHE)")
	fs.BoolVar(&cfg.sendClaims, "send-claims", false, "also answer X-Revocast-Claims: the verified claims as base64url JSON (REVOCAST_AGENT_SEND_CLAIMS)")
	fs.StringVar(&cfg.logLevel, "log-level", env("REVOCAST_LOG_LEVEL", "info"), "debug, info, warn or error (REVOCAST_LOG_LEVEL)")
	fs.StringVar(&cfg.logFormat, "log-format", env("REVOCAST_LOG_FORMAT", "json"), "json or console (REVOCAST_LOG_FORMAT)")
	// Typed defaults from the environment go through the flag package, so a bad value gets
	// the same error as a bad flag.
	if err := flagenv.Set(fs, getenv, map[string]string{
		"require-access-token-type": "REVOCAST_REQUIRE_ACCESS_TOKEN_TYPE", "max-staleness": "REVOCAST_MAX_STALENESS",
		"fail-open": "REVOCAST_FAIL_OPEN", "max-token-lifetime": "REVOCAST_MAX_TOKEN_LIFETIME", "leeway": "REVOCAST_LEEWAY",
		"signature-cache": "REVOCAST_AGENT_SIGNATURE_CACHE", "send-claims": "REVOCAST_AGENT_SEND_CLAIMS",
	}); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (revocast-agent takes flags only; see -h)", fs.Arg(0))
	}
	if cfg.natsCreds == "" {
		cfg.natsCreds = natsutil.DefaultCredentials(getenv, cfg.natsURL, natsutil.Resource)
	}
	switch {
	case cfg.jwksURL == "" && cfg.jwksKind != "":
		return cfg, fmt.Errorf("-jwks-kind %s without -jwks-url", cfg.jwksKind)
	case cfg.jwksURL == "":
	case cfg.jwksKind == "" && cfg.issuer == tokens.DefaultIssuer:
		cfg.jwksKind = jwksRevocast
	case cfg.jwksKind == "":
		// revocastd's issuer can be changed too: guessing from it could drop session checks.
		return cfg, fmt.Errorf("-jwks-url with -issuer %q: say whose keys these are: -jwks-kind %s (revocastd's JWKS, for the tokens it mints) or -jwks-kind %s (another issuer's)",
			cfg.issuer, jwksRevocast, jwksIssuer)
	case cfg.jwksKind != jwksRevocast && cfg.jwksKind != jwksIssuer:
		return cfg, fmt.Errorf("-jwks-kind %q: want %s or %s", cfg.jwksKind, jwksRevocast, jwksIssuer)
	}
	if cfg.cacheSize < 0 {
		return cfg, fmt.Errorf("-signature-cache %d: must be 0 (off) or positive", cfg.cacheSize)
	}
	return cfg, nil
}

// tableOptions turns the verification choices into client options.
func (cfg config) tableOptions(log *zap.Logger) []client.Option {
	opts := []client.Option{
		client.WithLogger(log), client.WithService("revocast-agent"), client.WithIssuer(cfg.issuer), client.WithMaxStaleness(cfg.maxStaleness),
		client.WithMaxTokenLifetime(cfg.maxLifetime), client.WithLeeway(cfg.leeway),
		client.WithAppClaim(cfg.appClaim), client.WithUserClaim(cfg.userClaim), client.WithSignatureCache(cfg.cacheSize),
	}
	if list := splitList(cfg.audience); len(list) > 0 {
		opts = append(opts, client.WithAudience(list...))
	}
	if list := splitList(cfg.algorithms); len(list) > 0 {
		opts = append(opts, client.WithAlgorithms(list...))
	}
	if cfg.sessionClaim != "" {
		opts = append(opts, client.WithSessionClaim(cfg.sessionClaim))
	}
	switch cfg.jwksKind {
	case jwksRevocast:
		opts = append(opts, client.WithJWKS(client.NewJWKS(cfg.jwksURL, nil)))
	case jwksIssuer:
		opts = append(opts, client.WithJWKS(client.NewIssuerJWKS(cfg.jwksURL, nil)))
	}
	if cfg.requireAccessType {
		opts = append(opts, client.WithRequireAccessTokenType())
	}
	if cfg.failOpen {
		opts = append(opts, client.WithFailOpen())
	}
	return opts
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// run starts the table and the HTTP server, serves until ctx is done, then shuts down in
// order: HTTP (finishing decisions in flight), the table, NATS. It prints one line to
// stdout when it serves, with the address.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.logLevel, cfg.logFormat, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	if err := natsutil.WaitForCredentials(ctx, cfg.natsCreds, func() {
		log.Warn("waiting for the NATS credentials file (revocastd writes it on its first start; on another host, set NATS_CREDS to a copy of resource.creds)", zap.String("file", cfg.natsCreds))
	}); err != nil {
		return err
	}
	natsClosed := make(chan struct{})
	nc, err := natsutil.Connect(cfg.natsURL, "revocast-agent", cfg.natsCreds,
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", zap.Error(err)) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted())) }),
		nats.ClosedHandler(func(*nats.Conn) { close(natsClosed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS error", zap.Error(err)) }),
	)
	if err != nil {
		return err
	}
	defer func() {
		nc.Close()
		select {
		case <-natsClosed:
		case <-time.After(5 * time.Second):
		}
	}()
	if !nc.IsConnected() {
		log.Warn("NATS not reachable yet; retrying (is revocastd running?)", zap.String("url", cfg.natsURL))
	}

	table, err := client.New(nc, cfg.tableOptions(log.Named("table"))...)
	if err != nil {
		return err
	}
	tableCtx, stopTable := context.WithCancel(context.WithoutCancel(ctx))
	tableDone := make(chan struct{})
	go func() {
		defer close(tableDone)
		if err := table.Run(tableCtx); err != nil && tableCtx.Err() == nil {
			log.Error("revocation table stopped", zap.Error(err))
		}
	}()
	defer func() { stopTable(); <-tableDone }()
	var caughtUp atomic.Bool
	go func() {
		if table.WaitReady(tableCtx) == nil {
			caughtUp.Store(true)
		}
	}()

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	auth := newAuthHandler(table, log.Named("auth"), registry, cfg.sendClaims)

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (set REVOCAST_AGENT_ADDR to another address)", cfg.addr, err)
	}
	srv := &http.Server{
		Handler:           routes(auth, table, func() bool { return cfg.failOpen && caughtUp.Load() }, registry),
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	// Envoy and Istio's gRPC ext_authz, on its own port when asked for: the same decision.
	var grpcSrv *grpc.Server
	if cfg.grpcAddr != "" {
		gln, err := net.Listen("tcp", cfg.grpcAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("gRPC ext_authz cannot listen on %s: %w (set REVOCAST_AGENT_GRPC_ADDR to another address)", cfg.grpcAddr, err)
		}
		grpcSrv = grpc.NewServer()
		extauthz.NewServer(envoyDecider{table: table, sendClaims: cfg.sendClaims}, extauthz.WithClaimsHeader(cfg.sendClaims)).Register(grpcSrv)
		go func() { serveErr <- grpcSrv.Serve(gln) }()
		log.Info("revocast-agent gRPC ext_authz serving", zap.String("addr", gln.Addr().String()))
		fmt.Fprintf(stdout, "revocast-agent: gRPC ext_authz on %s\n", gln.Addr())
	}
	url := "http://" + ln.Addr().String()
	log.Info("revocast-agent serving", zap.String("addr", url), zap.String("nats", cfg.natsURL),
		zap.Int("signature_cache", cfg.cacheSize), zap.Bool("fail_open", cfg.failOpen))
	fmt.Fprintf(stdout, "revocast-agent: serving %s\n", url)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("HTTP shutdown", zap.Error(err))
	}
	if grpcSrv != nil {
		stopped := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-shutCtx.Done():
			grpcSrv.Stop()
		}
	}
	return nil
}
