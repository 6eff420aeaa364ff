package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/revocast/revocast/services/internal/fleet"
	"github.com/revocast/revocast/services/internal/store"
)

// Fleet is what the API needs of the live fleet; *fleet.Fleet implements it.
type Fleet interface {
	Wait(ctx context.Context, seq uint64) fleet.Confirmation
	Instances() []fleet.Instance
}

// MaxPreferWait is the longest "Prefer: wait" honoured; a longer one is cut to it.
const MaxPreferWait = 10

// Gin context keys: the stream sequence of the event the call stored, and the confirmation
// the access log line reports.
const (
	storedSeqKey    = "revocast.stored_seq"
	confirmationKey = "revocast.confirmation"
)

// preferWait returns N of a "Prefer: wait=N" (RFC 7240), capped at [MaxPreferWait]. A
// preference with a value that is not a number of seconds is ignored, as the RFC says of
// preferences a server does not understand.
func preferWait(values []string) (int, bool) {
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			tok, _, _ := strings.Cut(pref, ";") // parameters of the preference do not matter
			name, val, ok := strings.Cut(tok, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			val = strings.Trim(strings.TrimSpace(val), `"`)
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || len(val) > 9 {
				continue
			}
			return min(n, MaxPreferWait), true
		}
	}
	return 0, false
}

// confirm honours "Prefer: wait=N" on a revocation the call has just stored (with
// s.publish): it waits until every live instance of the fleet has applied the event, or N
// seconds, and says how it went in headers; the body and the status stay the contract's,
// since the event is stored either way. Without the preference (or without a fleet) it
// does nothing. Every revocation handler calls it between s.publish and its answer, with
// the end of its [Revocations.Begin]: the event is stored, so audit reads no longer step
// aside for the call while it waits.
func (s *server) confirm(c *gin.Context, endRevocation func()) {
	n, ok := preferWait(c.Request.Header.Values("Prefer"))
	seq := c.GetUint64(storedSeqKey)
	if !ok || s.fleet == nil || seq == 0 {
		return
	}
	endRevocation()
	ctx, cancel := context.WithTimeout(c.Request.Context(), time.Duration(n)*time.Second)
	conf := s.fleet.Wait(ctx, seq)
	cancel()
	h := c.Writer.Header()
	h.Set("Preference-Applied", "wait="+strconv.Itoa(n))
	h.Set("Revocast-Applied", strconv.Itoa(conf.Applied)+"/"+strconv.Itoa(conf.Live))
	outcome := "complete"
	if !conf.Complete() {
		outcome = "pending"
		h.Set("Revocast-Pending", strings.Join(conf.Pending, ","))
	}
	h.Add("Vary", "Prefer")
	c.Set(confirmationKey, conf)
	s.metrics.confirmations.WithLabelValues(outcome).Inc()
	s.metrics.confirmDuration.Observe(conf.Took.Seconds())
}

// confirmationFields are the access log fields of a confirmed revocation.
func confirmationFields(c *gin.Context) []zap.Field {
	v, ok := c.Get(confirmationKey)
	if !ok {
		return nil
	}
	conf := v.(fleet.Confirmation)
	f := []zap.Field{zap.Uint64("seq", conf.Seq), zap.Int("applied", conf.Applied), zap.Int("live", conf.Live),
		zap.Duration("confirmed_in", conf.Took)}
	if len(conf.Pending) > 0 {
		f = append(f, zap.Strings("pending", conf.Pending))
	}
	return f
}

// confirmMetrics are the series of confirmed revocations.
func confirmMetrics() (*prometheus.CounterVec, prometheus.Histogram) {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revocast_revocations_confirmed_total",
			Help: `Revocations sent with "Prefer: wait", by outcome: complete (every live instance applied it in time) or pending.`,
		}, []string{"outcome"}),
		prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "revocast_revocation_confirm_seconds", Help: `Time from the stored event to its confirmation by every live instance (or the end of the wait).`,
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		})
}

// handleFleet is GET /v1/fleet: the live fleet, for an admin key with the fleet:read scope.
func (s *server) handleFleet() gin.HandlerFunc {
	type data struct {
		Live      int              `json:"live"`
		Instances []fleet.Instance `json:"instances"`
	}
	type response struct {
		Success bool `json:"success"`
		Data    data `json:"data"`
	}
	return func(c *gin.Context) {
		ctx, cancel := s.storeContext(c)
		defer cancel()
		if _, err := s.authenticateKey(ctx, c, store.ScopeFleetRead); err != nil {
			s.fail(c, err)
			return
		}
		var ins []fleet.Instance
		if s.fleet != nil {
			ins = s.fleet.Instances()
		}
		if ins == nil {
			ins = []fleet.Instance{}
		}
		writeJSON(c, http.StatusOK, response{Success: true, Data: data{Live: len(ins), Instances: ins}})
	}
}
