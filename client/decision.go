package client

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// Outcome is what a [Decision] says of a request.
type Outcome uint8

// The outcomes of [Table.Decide].
const (
	// Allow: the token is valid and not revoked (or the table is stale and fails open:
	// see [Decision].FailOpen).
	Allow Outcome = iota + 1
	// Deny: no bearer token, or an invalid, expired, revoked or non-access token (401).
	Deny
	// Unavailable: the table cannot vouch for its watermarks, not ready or stale and
	// failing closed (503).
	Unavailable
)

// String is the outcome's name in lower case, for logs and metric labels.
func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// Decision is the answer of [Table.Decide] to "may this request pass?", with everything a
// front door needs to say it: the net/http middleware, the Gin adapter, revocast-agent's
// HTTP endpoint for proxies and its gRPC ext_authz service all answer from it.
type Decision struct {
	Outcome Outcome
	// Claims are the verified claims, for Allow only. With [WithSignatureCache] they may
	// be shared by every request that carries the same token: read them, never modify them.
	Claims *Claims
	// FailOpen says that the token was allowed although the table is stale, because
	// [WithFailOpen] was chosen. It is counted in [Stats] and logged.
	FailOpen bool
	// Status is the HTTP status to answer: 200, 401 or 503.
	Status int
	// Challenge is the RFC 6750 WWW-Authenticate value of a Deny.
	Challenge string
	// RetryAfter is the Retry-After value (seconds) of an Unavailable.
	RetryAfter string
	// Err says why a token was refused, for logs (it never holds the token, but may quote
	// pieces of its header and claims): never send it to the client.
	Err error
}

// Decide decides on a request from its Authorization header value: the bearer token is
// verified as [Table.Verify] does, and the decision says how to answer. It is the one
// decision behind every front door; [Table.DecideRequest] adds the checks on the request.
func (t *Table) Decide(ctx context.Context, authorization string) Decision {
	raw, err := bearer(authorization)
	var c *Claims
	var failOpen bool
	if err == nil {
		c, failOpen, err = t.verify(ctx, raw)
	}
	if err == nil {
		return Decision{Outcome: Allow, Claims: c, FailOpen: failOpen, Status: http.StatusOK}
	}
	return t.refusal(err)
}

// DecideRequest is [Table.Decide] on a request's Authorization header. A request with
// more than one Authorization header is refused (error="invalid_request"): which one a
// proxy or a library reads is not defined, so none is trusted.
func (t *Table) DecideRequest(r *http.Request) Decision {
	h := r.Header["Authorization"]
	switch len(h) {
	case 0:
		return t.Decide(r.Context(), "")
	case 1:
		return t.Decide(r.Context(), h[0])
	}
	return t.refusal(ErrMultipleAuthorization)
}

// ErrMultipleAuthorization means a request carries more than one Authorization header.
var ErrMultipleAuthorization = errors.New("client: more than one Authorization header")

// refusal is the decision for a token that err refused.
func (t *Table) refusal(err error) Decision {
	switch {
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrStale):
		t.log.Debug("token check unavailable", zap.Error(err))
		return Decision{Outcome: Unavailable, Status: http.StatusServiceUnavailable, RetryAfter: "1", Err: err}
	case errors.Is(err, ErrMissingToken):
		return Decision{Outcome: Deny, Status: http.StatusUnauthorized, Err: err,
			Challenge: `Bearer realm="` + t.cfg.realm + `"`}
	case errors.Is(err, ErrMultipleAuthorization):
		return Decision{Outcome: Deny, Status: http.StatusUnauthorized, Err: err,
			Challenge: `Bearer realm="` + t.cfg.realm + `", error="invalid_request", error_description="the request carries more than one Authorization header"`}
	}
	// The description is a fixed phrase: the error itself may quote token content.
	t.log.Debug("token refused", zap.Error(err))
	return Decision{Outcome: Deny, Status: http.StatusUnauthorized, Err: err,
		Challenge: `Bearer realm="` + t.cfg.realm + `", error="invalid_token", error_description="` + describe(err) + `"`}
}

// WriteHTTP answers a refused request (Deny or Unavailable) as [Table.Middleware] does:
// the status, WWW-Authenticate or Retry-After, Cache-Control: no-store and a short body.
// It writes nothing for Allow.
func (d Decision) WriteHTTP(w http.ResponseWriter) {
	if d.Outcome == Allow {
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if d.Challenge != "" {
		h.Set("WWW-Authenticate", d.Challenge)
	}
	if d.RetryAfter != "" {
		h.Set("Retry-After", d.RetryAfter)
	}
	msg := "unauthorized"
	if d.Outcome == Unavailable {
		msg = "revocation list unavailable"
	}
	http.Error(w, msg, d.Status)
}

// bearer returns the token of an "Authorization: Bearer <token>" header value, or
// [ErrMissingToken] when it holds no bearer credentials.
func bearer(h string) (string, error) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrMissingToken
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", ErrMissingToken
	}
	return token, nil
}
