package api

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API's Prometheus series, registered on the registry the caller passes
// (never the global one).
type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	revocations *prometheus.CounterVec
	authFailed  *prometheus.CounterVec
	// sessionsRevoked counts stored session revocations by how they were asked for.
	sessionsRevoked *prometheus.CounterVec
	// auditWaiting is how many audit reads wait for a slot.
	auditWaiting prometheus.Gauge
	// confirmations and confirmDuration are the revocations sent with "Prefer: wait".
	confirmations   *prometheus.CounterVec
	confirmDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocast_http_requests_total", Help: "API calls by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "revocast_http_request_duration_seconds", Help: "API call latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocast_revocations_stored_total", Help: "Revocation events stored in JetStream, by type.",
		}, []string{"type"}),
		authFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocast_auth_failures_total", Help: "Refused credentials, by kind (root_key, api_key, app_credential, refresh_reused, rate_limited).",
		}, []string{"kind"}),
		sessionsRevoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocast_sessions_revoked_total", Help: "Session revocations stored, by how they were asked for (admin, oauth_revoke, refresh_reuse).",
		}, []string{"via"}),
		auditWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "revocast_audit_reads_waiting", Help: "GET /v1/audit calls waiting for one of the audit slots (-audit-concurrency).",
		}),
	}
	m.confirmations, m.confirmDuration = confirmMetrics()
	reg.MustRegister(m.requests, m.duration, m.revocations, m.authFailed, m.sessionsRevoked, m.auditWaiting, m.confirmations, m.confirmDuration)
	return m
}

// observe records one finished call.
func (m *metrics) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched" // keep the label set bounded: never the raw path
		}
		m.requests.WithLabelValues(route, methodLabel(c.Request.Method), strconv.Itoa(c.Writer.Status())).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
}

func metricsHandler(g prometheus.Gatherer) gin.HandlerFunc {
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	return gin.WrapH(h)
}

// methodLabel keeps the label set bounded: a client can send any method name.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "OTHER"
}
