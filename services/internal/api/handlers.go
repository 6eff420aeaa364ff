package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/store"
)

// handleFlush is DELETE /root/{app_id}/flush: the app's root key in Authorization revokes
// every token of the app issued until now. 200 {"status":"ok"} only once the event is stored.
func (s *server) handleFlush() gin.HandlerFunc {
	type response struct {
		Status string `json:"status"`
	}
	return func(c *gin.Context) {
		end := s.revocations.Begin() // audit reads step aside until it is stored
		defer end()
		appID := c.Param("app_id")
		if err := events.ValidateAppID(appID); err != nil {
			s.fail(c, newError(http.StatusBadRequest, "invalid app id: use 1 to 64 letters, digits, '-' or '_'"))
			return
		}
		// The root key, raw or as a bearer token; "Bearer" alone sends no key at all.
		key, _ := bearer(c.GetHeader("Authorization"))
		if key == "" {
			s.fail(c, newError(http.StatusBadRequest, "missing Authorization header: send the app's root key"))
			return
		}
		reason, err := readReason(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		ctx, cancel := s.storeContext(c)
		defer cancel()
		app, err := s.store.AuthenticateApp(ctx, appID, key)
		if errors.Is(err, store.ErrUnauthorized) {
			s.fail(c, s.refused(c, "root_key", newError(http.StatusForbidden, "forbidden: wrong root key or unknown app")))
			return
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		ev, err := events.NewAppFlushed(appID, s.now(), app.KeyID)
		if err != nil {
			s.fail(c, err)
			return
		}
		if err := s.publish(ctx, c, ev, reason); err != nil {
			s.fail(c, err)
			return
		}
		s.confirm(c, end) // Prefer: wait=N
		writeJSON(c, http.StatusOK, response{Status: "ok"})
	}
}

// handleUserReset is POST /v2/users/reset/{id}: an admin key with the users:reset scope
// revokes every token of the user, in every app, issued until now.
func (s *server) handleUserReset() gin.HandlerFunc {
	return s.handleKeyRevocation(store.ScopeUsersReset, func(c *gin.Context) (eventFor, error) {
		userID, err := events.ParseUserID(c.Param("id"))
		if err != nil {
			return nil, newError(http.StatusBadRequest, "invalid user id: must be a positive integer below 2^63, digits only")
		}
		return func(now time.Time, actor string) (events.Event, error) {
			return events.NewUserReset(userID, now, actor)
		}, nil
	}, nil)
}

// eventFor makes the event of a revocation at now by actor (the key's public id).
type eventFor func(now time.Time, actor string) (events.Event, error)

// handleKeyRevocation is a revocation an admin API key with scope asks for (a user reset, a
// session revocation), in the /v2 envelope: target reads what to revoke from the path (its
// error is the answer), the key is checked, the event stored, stored (if set) runs, and
// Prefer: wait is honoured.
func (s *server) handleKeyRevocation(scope string, target func(*gin.Context) (eventFor, error), stored func()) gin.HandlerFunc {
	type response struct {
		Success bool `json:"success"`
		Data    bool `json:"data"`
	}
	return func(c *gin.Context) {
		end := s.revocations.Begin() // audit reads step aside until it is stored
		defer end()
		build, err := target(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		reason, err := readReason(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		ctx, cancel := s.storeContext(c)
		defer cancel()
		k, err := s.authenticateKey(ctx, c, scope)
		if err != nil {
			s.fail(c, err)
			return
		}
		ev, err := build(s.now(), k.ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		if err := s.publish(ctx, c, ev, reason); err != nil {
			s.fail(c, err)
			return
		}
		if stored != nil {
			stored()
		}
		s.confirm(c, end) // Prefer: wait=N
		writeJSON(c, http.StatusOK, response{Success: true, Data: true})
	}
}

// storeContext bounds the store work of one call (key check and publish) by the publish
// timeout. It is not cancelled when the caller hangs up: a revocation that was started is
// finished.
func (s *server) storeContext(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.Request.Context()), s.publishTimeout)
}

// authenticateKey checks the X-API-Key header and that the key holds scope: 401 for a
// missing, unknown or wrong key (counted against the client), 403 for a missing scope.
func (s *server) authenticateKey(ctx context.Context, c *gin.Context, scope string) (store.APIKey, error) {
	key := strings.TrimSpace(c.GetHeader("X-API-Key"))
	if key == "" {
		return store.APIKey{}, newError(http.StatusUnauthorized, "missing X-API-Key header: send an admin API key")
	}
	k, err := s.store.AuthenticateKey(ctx, key)
	if errors.Is(err, store.ErrUnauthorized) {
		return store.APIKey{}, s.refused(c, "api_key", newError(http.StatusUnauthorized, "unauthorized: unknown or wrong API key"))
	}
	if err != nil {
		return store.APIKey{}, err
	}
	if !k.Allows(scope) {
		return store.APIKey{}, newError(http.StatusForbidden, "forbidden: this API key does not hold the "+scope+" scope")
	}
	return k, nil
}

// publish completes ev with where the call came from and stores it.
func (s *server) publish(ctx context.Context, c *gin.Context, ev events.Event, reason string) error {
	ev.Reason = reason
	ev.Source = events.Source{
		RemoteAddr: clip(c.ClientIP(), events.MaxSourceLen),
		RequestID:  requestIDOf(c),
		UserAgent:  clip(c.Request.UserAgent(), events.MaxSourceLen),
	}
	stored, err := s.store.Publish(ctx, ev)
	if err != nil {
		return err
	}
	ev = stored.Event
	c.Set(storedSeqKey, stored.Seq) // for s.confirm
	s.metrics.revocations.WithLabelValues(string(ev.Type)).Inc()
	s.log.Info("revocation stored",
		zap.String("request_id", ev.Source.RequestID),
		zap.String("type", string(ev.Type)),
		zap.String("subject", ev.Subject()),
		zap.String("event_id", ev.ID),
		zap.Uint64("seq", stored.Seq),
		zap.String("actor", ev.Actor),
		zap.Time("not_before", ev.NotBefore),
	)
	return nil
}

// refused handles a wrong credential: it is counted against the client's address, and a
// client past its budget of failures gets 429 with Retry-After instead of answer. Only
// failures are limited, and the check comes after the credential's, so a valid key is
// always let through: an attacker cannot lock its owner out, even from behind the same
// address.
func (s *server) refused(c *gin.Context, kind string, answer *apiError) error {
	addr := c.ClientIP()
	s.metrics.authFailed.WithLabelValues(kind).Inc()
	if wait := s.failures.wait(addr); wait > 0 {
		s.metrics.authFailed.WithLabelValues("rate_limited").Inc()
		return &apiError{status: http.StatusTooManyRequests,
			msg:        "too many failed key attempts from this address; retry later",
			retryAfter: int(math.Ceil(wait.Seconds()))}
	}
	s.failures.fail(addr)
	return answer
}

// readReason reads the optional body {"reason": "..."}. An empty body is fine; a reason
// with control characters is refused ([events.ValidateReason]).
func readReason(c *gin.Context) (string, error) {
	body, err := readBody(c)
	if err != nil {
		return "", err
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return "", nil
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", newError(http.StatusBadRequest, `the body must be empty or a JSON object such as {"reason":"..."}`)
	}
	if len(req.Reason) > events.MaxReasonLen {
		return "", newError(http.StatusBadRequest, "reason is too long (at most 512 bytes)")
	}
	if err := events.ValidateReason(req.Reason); err != nil {
		return "", newError(http.StatusBadRequest, "reason must be one line of plain text: control characters (such as newlines, tabs or escape sequences) and bidi overrides are refused")
	}
	return req.Reason, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func handleHealthz() gin.HandlerFunc {
	return func(c *gin.Context) { writeJSON(c, http.StatusOK, gin.H{"status": "ok"}) }
}

// handleReadyz is ready only when JetStream answers for the stream and the revocation table
// (which the token calls need) has caught up: a replica that cannot serve should get no
// traffic.
func (s *server) handleReadyz() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			writeJSON(c, http.StatusServiceUnavailable, gin.H{"status": "unavailable", "error": "event stream unavailable"})
			return
		}
		if s.tokens != nil && !s.tokens.Ready() {
			writeJSON(c, http.StatusServiceUnavailable, gin.H{"status": "unavailable", "error": "revocation table catching up"})
			return
		}
		writeJSON(c, http.StatusOK, gin.H{"status": "ready"})
	}
}
