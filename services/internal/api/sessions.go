package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/tokens"
)

// handleSessionRevoke is POST /v2/sessions/revoke/{sid}: an admin key with the
// sessions:revoke scope revokes every token of one login session issued until now; the
// user's other sessions keep working. Same envelope as the user reset.
func (s *server) handleSessionRevoke() gin.HandlerFunc {
	return s.handleKeyRevocation(store.ScopeSessionsRevoke, func(c *gin.Context) (eventFor, error) {
		sid := c.Param("sid")
		if err := events.ValidateSessionID(sid); err != nil {
			return nil, newError(http.StatusBadRequest, "invalid session id: use 1 to 128 letters, digits, '-' or '_'")
		}
		return func(now time.Time, actor string) (events.Event, error) {
			return events.NewSessionRevoked(sid, now, actor)
		}, nil
	}, func() { s.metrics.sessionsRevoked.WithLabelValues("admin").Inc() })
}

// revokeSession stores session.revoked(sid, now), counted by how it was asked for.
func (s *server) revokeSession(ctx context.Context, c *gin.Context, sid, actor, reason, via string) error {
	ev, err := events.NewSessionRevoked(sid, s.now(), actor)
	if err != nil {
		return err
	}
	if err := s.publish(ctx, c, ev, reason); err != nil {
		return err
	}
	s.metrics.sessionsRevoked.WithLabelValues(via).Inc()
	return nil
}

// handleTokenRevoke is POST /v1/tokens/revoke, OAuth 2.0 token revocation (RFC 7009): an
// app's backend, with its app credential as a bearer token, sends form token=<access or
// refresh token> (token_type_hint is accepted and not needed: both kinds revoke their
// session). A token of that app revokes its whole session, access and refresh tokens
// alike. As the RFC says, an invalid, expired, unknown or already revoked token is answered
// 200 too, with an empty body: the caller's intent (this token must not work) is met.
func (s *server) handleTokenRevoke() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer s.revocations.Begin()() // audit reads step aside until it is done
		cred, ok := bearer(c.GetHeader("Authorization"))
		if !ok || cred == "" {
			s.fail(c, newError(http.StatusUnauthorized, "missing Authorization: Bearer <app credential>"))
			return
		}
		body, err := readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		form, err := url.ParseQuery(string(body))
		raw := form.Get("token")
		if err != nil || raw == "" {
			s.fail(c, newError(http.StatusBadRequest, "invalid_request: the body must be the form token=<token> (application/x-www-form-urlencoded)"))
			return
		}
		ctx, cancel := s.storeContext(c)
		defer cancel()
		app, err := s.store.AuthenticateAnyAppCredential(ctx, cred)
		if errors.Is(err, store.ErrUnauthorized) {
			s.fail(c, s.refused(c, "app_credential", newError(http.StatusUnauthorized, "unauthorized: wrong or unknown app credential")))
			return
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		claims, revoked, err := s.tokens.Revocable(ctx, raw)
		switch {
		case errors.Is(err, tokens.ErrNotReady):
			s.fail(c, &apiError{status: http.StatusServiceUnavailable, msg: "revocation table not ready; retry", retryAfter: 1})
			return
		case err != nil, revoked, claims.Session == "":
			// Not a revocast token, already revoked, or minted before tokens had sessions.
			c.Status(http.StatusOK)
			return
		case claims.App != app.ID:
			// Another app's token: nothing to do for this caller, and nothing to tell it.
			s.log.Warn("token revocation for another app's token ignored", zap.String("request_id", requestIDOf(c)),
				zap.String("app_id", app.ID), zap.String("token_app_id", claims.App))
			c.Status(http.StatusOK)
			return
		}
		if err := s.revokeSession(ctx, c, claims.Session, app.CredID, "", "oauth_revoke"); err != nil {
			s.fail(c, err)
			return
		}
		c.Status(http.StatusOK)
	}
}
