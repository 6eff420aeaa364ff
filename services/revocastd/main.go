// Command revocastd is the revocast broadcaster: a REST API that turns "flush this app" and
// "reset this user" into durable revocation events on NATS JetStream.
//
// With no configuration it starts an embedded NATS server with JetStream on loopback and
// keeps its data in ./revocast-data; with NATS_URL set it uses that NATS and embeds nothing.
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
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/api"
	"github.com/revocast/revocast/services/internal/audit"
	"github.com/revocast/revocast/services/internal/flagenv"
	"github.com/revocast/revocast/services/internal/fleet"
	"github.com/revocast/revocast/services/internal/httpguard"
	"github.com/revocast/revocast/services/internal/logging"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/snapshot"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/tokens"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	gin.SetMode(gin.ReleaseMode)
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "revocastd: %v\n", err)
		os.Exit(1)
	}
}

// config is every setting, each a flag with an environment variable.
type config struct {
	httpAddr       string
	dataDir        string
	natsListen     string
	natsURL        string
	natsCreds      string
	replicas       int
	syncInterval   time.Duration
	publishTimeout time.Duration
	trustedProxies string
	logLevel       string
	logFormat      string
	issuer         string
	accessTTL      time.Duration
	refreshTTL     time.Duration
	snapshotEvery  time.Duration
	auditReaders   int
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	// Named, not args[0]: under go run that is a path in the build cache.
	fs := flag.NewFlagSet("revocastd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := flagenv.Defaults(getenv)
	fs.StringVar(&cfg.httpAddr, "http-addr", env("REVOCAST_HTTP_ADDR", "127.0.0.1:8080"), "API listen address (REVOCAST_HTTP_ADDR)")
	fs.StringVar(&cfg.dataDir, "data-dir", env("REVOCAST_DATA_DIR", natsutil.DefaultDataDir), "embedded NATS data directory (REVOCAST_DATA_DIR)")
	fs.StringVar(&cfg.natsListen, "nats-listen", env("REVOCAST_NATS_LISTEN", natsutil.DefaultListen), "embedded NATS listen address (REVOCAST_NATS_LISTEN)")
	fs.StringVar(&cfg.natsURL, "nats-url", env("NATS_URL", ""), "use this NATS server or cluster and embed nothing (NATS_URL)")
	fs.StringVar(&cfg.natsCreds, "nats-creds", env("NATS_CREDS", ""), "NATS credentials file, with -nats-url (NATS_CREDS); the embedded default uses its own <data dir>/credentials/broadcaster.creds")
	fs.IntVar(&cfg.replicas, "replicas", 0, "JetStream replicas for the stream and buckets; 0 = 1 on a single server, 3 on a cluster (REVOCAST_REPLICAS)")
	fs.DurationVar(&cfg.syncInterval, "nats-sync-interval", 0, "embedded JetStream fsync interval; 0 = fsync before every ack (REVOCAST_NATS_SYNC_INTERVAL)")
	fs.DurationVar(&cfg.publishTimeout, "publish-timeout", 5*time.Second, "how long a call waits for JetStream to store its event before answering 500 (REVOCAST_PUBLISH_TIMEOUT)")
	fs.StringVar(&cfg.trustedProxies, "trusted-proxies", env("REVOCAST_TRUSTED_PROXIES", ""), "comma-separated proxy CIDRs whose X-Forwarded-For is trusted (REVOCAST_TRUSTED_PROXIES)")
	fs.StringVar(&cfg.issuer, "issuer", env("REVOCAST_ISSUER", tokens.DefaultIssuer), "iss claim of the tokens revocast mints (REVOCAST_ISSUER)")
	fs.DurationVar(&cfg.accessTTL, "access-token-ttl", 15*time.Minute, "lifetime of minted access tokens (REVOCAST_ACCESS_TOKEN_TTL)")
	fs.DurationVar(&cfg.refreshTTL, "refresh-token-ttl", 30*24*time.Hour, "lifetime of minted refresh tokens (REVOCAST_REFRESH_TOKEN_TTL)")
	fs.DurationVar(&cfg.snapshotEvery, "snapshot-interval", time.Minute, "how often to write the revocation table to the snapshot bucket when events came since the last one, for clients to start from; 0 = never (REVOCAST_SNAPSHOT_INTERVAL)")
	fs.IntVar(&cfg.auditReaders, "audit-concurrency", api.DefaultAuditConcurrency, "how many GET /v1/audit calls may read the stream at once; past it they get 429 (REVOCAST_AUDIT_CONCURRENCY)")
	fs.StringVar(&cfg.logLevel, "log-level", env("REVOCAST_LOG_LEVEL", "info"), "debug, info, warn or error (REVOCAST_LOG_LEVEL)")
	fs.StringVar(&cfg.logFormat, "log-format", env("REVOCAST_LOG_FORMAT", "json"), "json or console (REVOCAST_LOG_FORMAT)")
	// Numeric and duration defaults from the environment are parsed by the flag package
	// itself, so a bad value gets the same error as a bad flag.
	if err := flagenv.Set(fs, getenv, map[string]string{
		"replicas": "REVOCAST_REPLICAS", "nats-sync-interval": "REVOCAST_NATS_SYNC_INTERVAL",
		"publish-timeout": "REVOCAST_PUBLISH_TIMEOUT", "access-token-ttl": "REVOCAST_ACCESS_TOKEN_TTL",
		"refresh-token-ttl": "REVOCAST_REFRESH_TOKEN_TTL", "snapshot-interval": "REVOCAST_SNAPSHOT_INTERVAL",
		"audit-concurrency": "REVOCAST_AUDIT_CONCURRENCY",
	}); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (revocastd takes flags only; see -h)", fs.Arg(0))
	}
	if cfg.accessTTL <= 0 || cfg.refreshTTL < cfg.accessTTL {
		return cfg, fmt.Errorf("token lifetimes: want 0 < -access-token-ttl (%s) <= -refresh-token-ttl (%s)", cfg.accessTTL, cfg.refreshTTL)
	}
	if cfg.snapshotEvery < 0 {
		return cfg, fmt.Errorf("-snapshot-interval %s: must be 0 (never) or positive", cfg.snapshotEvery)
	}
	if cfg.auditReaders < 1 {
		return cfg, fmt.Errorf("-audit-concurrency %d: must be at least 1", cfg.auditReaders)
	}
	if cfg.replicas < 0 || cfg.replicas > 5 {
		return cfg, fmt.Errorf("-replicas %d: must be 0 (auto) or 1 to 5", cfg.replicas)
	}
	return cfg, nil
}

// run starts everything, serves until ctx is done, then shuts down in order: HTTP (finishing
// calls in flight), NATS (draining), the embedded server. It prints one line to stdout
// when it serves, with the API and NATS addresses.
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

	natsURL, natsCreds := cfg.natsURL, cfg.natsCreds
	var embedded *natsutil.Embedded
	if natsURL == "" {
		embedded, err = natsutil.StartEmbedded(natsutil.EmbeddedConfig{
			Listen: cfg.natsListen, DataDir: cfg.dataDir, SyncInterval: cfg.syncInterval,
		})
		if err != nil {
			return err
		}
		defer embedded.Shutdown()
		natsURL = embedded.ClientURL()
		// The embedded server knows only its own users; NATS_CREDS is for NATS_URL.
		natsCreds = embedded.Credentials(natsutil.Broadcaster)
		abs, _ := filepath.Abs(cfg.dataDir)
		log.Info("embedded NATS started", zap.String("url", natsURL), zap.String("data_dir", abs),
			zap.Bool("fsync_before_ack", cfg.syncInterval == 0),
			zap.String("credentials", natsutil.CredentialsDir(abs)))
		if embedded.Adopted {
			log.Warn("the data of the embedded NATS that ran without credentials now belongs to the revocast account; clients need the credentials in the data directory from now on",
				zap.String("credentials", natsutil.CredentialsDir(abs)))
		}
	}

	// natsClosed is closed by the last callback nats.go runs for the connection: run waits
	// for it, so no callback logs after run has returned.
	natsClosed := make(chan struct{})
	nc, err := natsutil.Connect(natsURL, "revocastd", natsCreds, natsutil.PrivateInbox(), client.LogNATSErrors(log),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", zap.Error(err)) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted())) }),
		nats.ClosedHandler(func(*nats.Conn) { close(natsClosed) }),
	)
	if err != nil {
		return err
	}
	defer func() {
		if !nc.IsDraining() {
			nc.Close()
		}
		select {
		case <-natsClosed:
		case <-time.After(15 * time.Second):
			nc.Close()
		}
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	replicas := cfg.replicas
	if replicas == 0 {
		replicas = autoReplicas(nc)
	}
	log.Info("JetStream storage", zap.Int("replicas", replicas), zap.String("cluster", nc.ConnectedClusterName()))
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := store.Setup(setupCtx, js, store.Config{Replicas: replicas})
	cancel()
	if err != nil {
		return err
	}
	// Keys checked in memory: a flood of refused audit reads costs no NATS round trips on
	// the connection that publishes revocations.
	stopWatch, err := st.WatchCredentials(ctx)
	if err != nil {
		return err
	}
	defer stopWatch()

	if off, err := st.ClockOffset(ctx); err == nil && (off > time.Second || off < -time.Second) {
		log.Warn("this machine's clock differs from the NATS server's; watermarks come from this clock, and clients refuse those more than 5s ahead of theirs: fix the clock (NTP)",
			zap.Duration("nats_server_ahead_by", off))
	}

	// Tokens: the signing keys, and the same revocation table resource servers run, which
	// the refresh call checks and the mint call reads the watermarks from.
	ring, err := tokens.OpenKeyRing(ctx, js, replicas)
	if err != nil {
		return err
	}
	// The live fleet, from the reports of every table (resource servers, agents). This
	// replica's own table does not report: it is not a resource server.
	fl := fleet.New(log.Named("fleet"), nil)
	fleetSub, err := fl.Subscribe(nc)
	if err != nil {
		return fmt.Errorf("fleet reports: %w", err)
	}
	defer func() { _ = fleetSub.Unsubscribe() }()
	tableOpts := []client.Option{client.WithLogger(log.Named("table")), client.WithReports(false),
		client.WithOnApply(func(_ events.Event, seq uint64) { fl.Observe(seq) })}
	if cfg.snapshotEvery == 0 {
		// Only what can still revoke a token of ours needs keeping. A table that writes
		// snapshots keeps everything: clients may accept tokens that live longer.
		tableOpts = append(tableOpts, client.WithMaxTokenLifetime(cfg.refreshTTL))
	}
	table, err := client.New(nc, tableOpts...)
	if err != nil {
		return err
	}
	var snapshots *snapshot.Writer
	if cfg.snapshotEvery > 0 {
		snapshots = snapshot.New(js, replicas, table, log.Named("snapshot"))
	}
	tableCtx, stopTable := context.WithCancel(context.WithoutCancel(ctx))
	tableDone := make(chan struct{})
	go func() {
		defer close(tableDone)
		var wg sync.WaitGroup
		if snapshots != nil {
			wg.Go(func() { snapshots.Run(tableCtx, cfg.snapshotEvery) })
		}
		if err := table.Run(tableCtx); err != nil && tableCtx.Err() == nil {
			log.Error("revocation table stopped", zap.Error(err))
		}
		wg.Wait()
	}()
	defer func() { stopTable(); <-tableDone }()
	issuer, err := tokens.NewIssuer(ctx, js, replicas, ring, table, tokens.Config{
		Issuer: cfg.issuer, AccessTTL: cfg.accessTTL, RefreshTTL: cfg.refreshTTL,
	})
	if err != nil {
		return err
	}

	var proxies []string
	if cfg.trustedProxies != "" {
		proxies = strings.Split(cfg.trustedProxies, ",")
	}
	// Audit replays get their own connection: their consumers and flow control never share
	// the socket and write lock of the connection that publishes revocations.
	auditNC, err := natsutil.Connect(natsURL, "revocastd-audit", natsCreds, natsutil.PrivateInbox(), client.LogNATSErrors(log))
	if err != nil {
		return err
	}
	defer auditNC.Close()
	auditJS, err := jetstream.New(auditNC)
	if err != nil {
		return err
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), fl.Collector())
	handler, err := api.NewServer(api.Config{
		Registry: registry,
		Tokens:   issuer,
		Fleet:    fl,
		Store:    st, Logger: log, PublishTimeout: cfg.publishTimeout, TrustedProxies: proxies,
		Replay: func(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error) {
			q.DeleteConsumer = true // API pages come quickly: leave no consumer behind
			return audit.Replay(ctx, auditJS, q, emit)
		},
		AuditConcurrency: cfg.auditReaders,
	})
	if err != nil {
		return fmt.Errorf("-trusted-proxies: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("API cannot listen on %s: %w (set REVOCAST_HTTP_ADDR to another address)", cfg.httpAddr, err)
	}
	ln = httpguard.Listener(ln, api.MaxHeaderBytes) // refuses ambiguous request framing (smuggling)
	srv := &http.Server{
		Handler:           handler,
		MaxHeaderBytes:    api.MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	apiURL := "http://" + ln.Addr().String()
	log.Info("revocastd serving", zap.String("api", apiURL), zap.String("nats", nc.ConnectedUrlRedacted()))
	fmt.Fprintf(stdout, "revocastd: serving %s (NATS %s)\n", apiURL, nc.ConnectedUrlRedacted())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("HTTP shutdown", zap.Error(err))
	}
	// Drain lets in-flight requests finish; the deferred close then waits for it.
	if err := nc.Drain(); err != nil {
		log.Warn("NATS drain", zap.Error(err))
	}
	return nil
}

// autoReplicas keeps one copy on a single server and three on a cluster, the usual
// majority that survives the loss of one node.
func autoReplicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() == "" {
		return 1
	}
	return 3
}
