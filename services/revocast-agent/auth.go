package main

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/revocast/revocast/client"
)

// maxHeaderBytes bounds a request's headers: a token is at most client.DefaultMaxTokenSize
// (8 KiB), and proxies forward the client's other headers too. Past it: 431.
const maxHeaderBytes = 32 << 10

// The identity headers of an allowed request. Proxies copy them to the upstream request,
// replacing whatever the client sent under these names.
const (
	headerUser   = "X-Revocast-User"
	headerApp    = "X-Revocast-App"
	headerClaims = "X-Revocast-Claims"
)

// decider is the one decision of the client table, whatever the front door.
type decider interface {
	DecideRequest(r *http.Request) client.Decision
}

// authHandler answers /auth for a proxy.
type authHandler struct {
	table      decider
	log        *zap.Logger
	sendClaims bool
	decisions  *prometheus.CounterVec
	counted    [client.Unavailable + 1]prometheus.Counter // decisions' series by outcome, looked up once
	failedOpen prometheus.Counter
	latency    prometheus.Histogram
	lastWarn   atomic.Int64 // last fail-open log line, Unix ns
}

func newAuthHandler(table *client.Table, log *zap.Logger, reg prometheus.Registerer, sendClaims bool) *authHandler {
	h := &authHandler{
		table: table, log: log, sendClaims: sendClaims,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocast_agent_decisions_total",
			Help: "Decisions of /auth by outcome: allow, deny, unavailable (not ready or stale, fail closed), fail_open (allowed while stale).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "revocast_agent_decision_seconds",
			Help:    "Time to decide on a request, from its headers to the answer's status.",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3},
		}),
	}
	reg.MustRegister(h.decisions, h.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revocast_agent_table_staleness_seconds",
			Help: "Time since JetStream last confirmed that the table holds every revocation (+Inf before the first confirmation).",
		}, func() float64 {
			if s := table.Staleness(); s < time.Duration(1<<63-1) {
				return s.Seconds()
			}
			return math.Inf(1)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revocast_agent_table_ready",
			Help: "1 when the table has caught up and is fresh, else 0.",
		}, func() float64 {
			if table.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "revocast_agent_signature_cache_hits_total",
			Help: "Decisions whose token was found in the verified-signature cache.",
		}, func() float64 { return float64(table.Stats().CacheHits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "revocast_agent_signature_cache_misses_total",
			Help: "Decisions whose token was verified in full.",
		}, func() float64 { return float64(table.Stats().CacheMisses) }),
	)
	// Every series exists from the start, and the request path does no label lookup.
	for _, o := range []client.Outcome{client.Allow, client.Deny, client.Unavailable} {
		h.counted[o] = h.decisions.WithLabelValues(o.String())
	}
	h.failedOpen = h.decisions.WithLabelValues("fail_open")
	return h
}

func (h *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	d := h.table.DecideRequest(r)
	out := w.Header()
	// Nothing of the request is echoed: the answer is built from the decision alone, so a
	// forged X-Revocast-* header of the client never comes back to the proxy.
	out.Set("Cache-Control", "no-store")
	counter := h.counted[d.Outcome]
	if d.Outcome == client.Allow {
		out.Set(headerUser, strconv.FormatInt(d.Claims.UserID, 10))
		out.Set(headerApp, d.Claims.AppID)
		if h.sendClaims {
			if b, err := json.Marshal(d.Claims.All); err == nil {
				out.Set(headerClaims, base64.RawURLEncoding.EncodeToString(b))
			}
		}
		if d.FailOpen {
			counter = h.failedOpen
			h.warnFailOpen()
		}
		w.WriteHeader(http.StatusOK)
	} else {
		d.WriteHTTP(w)
	}
	counter.Inc()
	h.latency.Observe(time.Since(start).Seconds())
}

// warnFailOpen logs, at most once a second, that a token passed only because the agent
// fails open. The table logs it too; this line says that a proxy let the request through.
func (h *authHandler) warnFailOpen() {
	now := time.Now().UnixNano()
	if last := h.lastWarn.Load(); now-last > int64(time.Second) && h.lastWarn.CompareAndSwap(last, now) {
		h.log.Warn("revocation table stale: allowing the request (fail-open)")
	}
}

// routes is the whole HTTP surface. /auth and every path under it (Envoy's HTTP ext_authz
// appends the original path) take any method, and are matched before the mux so that no
// path is cleaned or redirected: a proxy takes a redirect for a refusal.
//
// failingOpen reports whether the agent allows tokens even when the table is stale: it
// fails open and has caught up once. It stays ready then, since it keeps allowing.
func routes(auth http.Handler, table *client.Table, failingOpen func() bool, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !table.Ready() && !failingOpen() {
			http.Error(w, "revocation table not ready or stale", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/auth" || strings.HasPrefix(p, "/auth/") {
			auth.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
