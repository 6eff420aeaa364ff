package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/revocast/revocast/services/internal/store"
)

// apiError is an error with the status and the message the client sees.
type apiError struct {
	status     int
	msg        string
	retryAfter int // seconds, for 429
}

func (e *apiError) Error() string { return e.msg }

func newError(status int, msg string) *apiError { return &apiError{status: status, msg: msg} }

var (
	errNotFound         = newError(http.StatusNotFound, "not found")
	errMethodNotAllowed = newError(http.StatusMethodNotAllowed, "method not allowed")
	errNotStored        = newError(http.StatusInternalServerError,
		"the revocation was not stored: the event stream could not be reached or refused it; nothing was revoked, retry the call (repeating a revocation is safe)")
	errUnknownOutcome = newError(http.StatusInternalServerError,
		"the revocation may or may not be stored (no acknowledgement came in time); repeating the call is safe")
	errInternal = newError(http.StatusInternalServerError, "internal error")
	// errAuditBusy answers an audit read that found no slot within AuditQueueWait.
	errAuditBusy = &apiError{status: http.StatusTooManyRequests, retryAfter: 1,
		msg: "the audit log is busy (too many audit reads at once); retry in a moment"}
	errAuditRead = newError(http.StatusInternalServerError, "the audit log could not be read: the event stream did not answer in time; retry")
)

// fail is the one place that turns an error into a response. Errors that are not the
// client's fault are logged here, once, with the request id; the client gets a plain message.
func (s *server) fail(c *gin.Context, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, store.ErrUnknownOutcome):
		ae = errUnknownOutcome
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		ae = errNotStored
	default:
		ae = errInternal
	}
	if ae.status >= 500 {
		s.log.Error("request failed", zap.String("request_id", requestIDOf(c)),
			zap.String("route", c.FullPath()), zap.Error(err))
	}
	if ae.retryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	if ae.status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", challenge(c.FullPath()))
	}
	c.Abort()
	writeJSON(c, ae.status, envelope(c, ae.msg))
}

// challenge is the WWW-Authenticate of a 401 on route: the credential the route wants.
func challenge(route string) string {
	switch route {
	case "/v1/apps/:app_id/tokens", "/v1/tokens/revoke":
		return `Bearer realm="revocast"` // the app credential
	case "/v1/tokens/refresh":
		return `Bearer realm="revocast", error="invalid_token"` // the refresh token in the body
	}
	return `APIKey realm="revocast", header="X-API-Key"`
}

// envelope shapes an error body the way the called API family does: the API-key calls
// (/v1, /v2) wrap everything in {success, data, message}; the root API answers {status, error}.
func envelope(c *gin.Context, msg string) any {
	if p := c.Request.URL.Path; strings.HasPrefix(p, "/v2/") || strings.HasPrefix(p, "/v1/") {
		return v2Error{Success: false, Data: nil, Message: msg}
	}
	return rootError{Status: "error", Error: msg}
}

type v2Error struct {
	Success bool   `json:"success"`
	Data    any    `json:"data"`
	Message string `json:"message"`
}

type rootError struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}
