// Package api is revocastd's REST API: the two seed calls that turn an admin's request into a
// durable revocation event, and the health endpoints. routes.go lists every route.
package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/audit"
	"github.com/revocast/revocast/services/internal/store"
)

// Limits on what a client may send. Go's HTTP server answers 431 past MaxHeaderBytes;
// the API answers 413 past MaxBodyBytes.
const (
	MaxHeaderBytes = 16 << 10
	MaxBodyBytes   = 8 << 10
)

// Store is what the API needs from the store; *store.Store implements it.
type Store interface {
	AuthenticateApp(ctx context.Context, appID, presented string) (store.App, error)
	AuthenticateKey(ctx context.Context, presented string) (store.APIKey, error)
	AuthenticateAppCredential(ctx context.Context, appID, presented string) (store.App, error)
	AuthenticateAnyAppCredential(ctx context.Context, presented string) (store.App, error)
	Publish(ctx context.Context, ev events.Event) (store.Stored, error)
	Ping(ctx context.Context) error
}

// ReplayFunc replays the audit log; revocastd passes a closure over [audit.Replay].
type ReplayFunc func(ctx context.Context, q audit.Query, emit func(audit.Record) error) (audit.Summary, error)

// Config holds the server's dependencies and settings. Store and Replay are required;
// without Tokens the token endpoints are not served.
type Config struct {
	Store  Store
	Replay ReplayFunc
	Tokens Tokens
	// Fleet is the live fleet: GET /v1/fleet shows it, and revocations sent with
	// "Prefer: wait=N" wait for it. Without it the fleet is empty and nothing waits.
	Fleet  Fleet
	Logger *zap.Logger
	// PublishTimeout bounds the JetStream work of one call (key check and publish until
	// acknowledged); past it the call answers 500. Default 5s.
	PublishTimeout time.Duration
	// TrustedProxies are the CIDRs or IPs whose X-Forwarded-For is believed. Default none:
	// the client address is the TCP peer.
	TrustedProxies []string
	// AuthFailureBurst and AuthFailureEvery limit failed key attempts per client address:
	// a client may fail Burst times at once, then once per Every. Defaults 10 and 1s.
	AuthFailureBurst int
	AuthFailureEvery time.Duration
	// AuditConcurrency is how many GET /v1/audit calls may read the stream at once; past it
	// a call gets 429 with Retry-After at once, so audit reads cannot pile up and starve
	// revocations of memory and CPU. Default [DefaultAuditConcurrency].
	AuditConcurrency int
	// AuditPageBytes bounds the events of one GET /v1/audit page in bytes: a page stops
	// there, with more=true, even before limit events (one event always fits). Default
	// [DefaultAuditPageBytes], 1 MiB.
	AuditPageBytes int
	// AuditYieldWait is how long an audit read waits at most, at each of its pauses (every
	// [audit.YieldEvery] events), while revocations are in flight: revocations come first,
	// and audit reads still progress. Default [DefaultAuditYieldWait].
	AuditYieldWait time.Duration
	// AuditQueueWait is how long an audit read past AuditConcurrency waits for a slot
	// before it gets 429. Waiting callers cost a goroutine each, no CPU; callers answered at
	// once and calling again at once would. Default [DefaultAuditQueueWait]; negative: no
	// wait.
	AuditQueueWait time.Duration
	// Revocations counts revocation calls in flight for audit reads to step aside; default
	// a new one. Tests pass theirs to hold a revocation in flight.
	Revocations *Revocations
	// Now is the clock for not_before; default time.Now.
	Now func() time.Time
	// Registry receives the API's metrics and is served on /metrics; default a new one.
	Registry *prometheus.Registry
}

type server struct {
	store          Store
	replay         ReplayFunc
	tokens         Tokens
	fleet          Fleet
	log            *zap.Logger
	publishTimeout time.Duration
	failures       *failureLimiter
	now            func() time.Time
	metrics        *metrics
	registry       *prometheus.Registry
	auditSlots     chan struct{}
	auditQueueWait time.Duration
	auditPageBytes int
	auditYieldWait time.Duration
	revocations    *Revocations
}

// Defaults of [Config.AuditConcurrency], [Config.AuditPageBytes], [Config.AuditYieldWait] and
// [Config.AuditQueueWait].
const (
	DefaultAuditConcurrency = 4
	DefaultAuditPageBytes   = 1 << 20
	DefaultAuditYieldWait   = 20 * time.Millisecond
	DefaultAuditQueueWait   = time.Second
)

// NewServer returns the API as an http.Handler. Serve it from an http.Server whose
// MaxHeaderBytes is [MaxHeaderBytes].
func NewServer(cfg Config) (http.Handler, error) {
	if cfg.Store == nil || cfg.Replay == nil {
		return nil, errors.New("api: Config.Store and Config.Replay are required")
	}
	s := &server{
		store:          cfg.Store,
		replay:         cfg.Replay,
		tokens:         cfg.Tokens,
		fleet:          cfg.Fleet,
		log:            cfg.Logger,
		publishTimeout: cfg.PublishTimeout,
		now:            cfg.Now,
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.publishTimeout <= 0 {
		s.publishTimeout = 5 * time.Second
	}
	if s.now == nil {
		s.now = time.Now
	}
	burst, every := cfg.AuthFailureBurst, cfg.AuthFailureEvery
	if burst <= 0 {
		burst = 10
	}
	if every <= 0 {
		every = time.Second
	}
	s.failures = newFailureLimiter(burst, every, time.Now)
	slots := cfg.AuditConcurrency
	if slots <= 0 {
		slots = DefaultAuditConcurrency
	}
	s.auditSlots = make(chan struct{}, slots)
	s.auditPageBytes = cfg.AuditPageBytes
	if s.auditPageBytes <= 0 {
		s.auditPageBytes = DefaultAuditPageBytes
	}
	s.auditQueueWait = cfg.AuditQueueWait
	if s.auditQueueWait == 0 {
		s.auditQueueWait = DefaultAuditQueueWait
	}
	s.auditYieldWait = cfg.AuditYieldWait
	if s.auditYieldWait <= 0 {
		s.auditYieldWait = DefaultAuditYieldWait
	}
	s.revocations = cfg.Revocations
	if s.revocations == nil {
		s.revocations = new(Revocations)
	}
	s.registry = cfg.Registry
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(s.registry)

	e := gin.New()
	// The contract has no trailing-slash or fixed-path redirects: a wrong path is a 404,
	// a wrong method a 405 with Allow.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	s.routes(e)
	return e, nil
}
