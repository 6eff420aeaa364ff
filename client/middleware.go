package client

import (
	"context"
	"errors"
	"net/http"

	"github.com/golang-jwt/jwt/v5"
)

type claimsKey struct{}

// ContextWithClaims returns a copy of ctx that carries c, as [Table.Middleware] does.
func ContextWithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the verified claims that [Table.Middleware] put in a request's
// context.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header, or
// [ErrMissingToken] when the request carries no bearer credentials.
func BearerToken(r *http.Request) (string, error) {
	return bearer(r.Header.Get("Authorization"))
}

// Middleware lets a request through to next only with a valid, unrevoked bearer token, and
// puts the token's claims in the request context ([ClaimsFromContext]). It answers:
//   - 401 with `WWW-Authenticate: Bearer realm="..."` when there is no bearer token;
//   - 401 with `error="invalid_token"` and a description (RFC 6750) when the token is
//     invalid, expired, revoked or not an access token;
//   - 503 with `Retry-After` while the table is not ready, or stale and failing closed.
//
// It answers from [Table.DecideRequest], as revocast-agent does for proxies.
func (t *Table) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := t.DecideRequest(r)
		if d.Outcome != Allow {
			d.WriteHTTP(w)
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), d.Claims)))
	})
}

// VerifyRequest is [Table.Verify] on the bearer token of r. A request with more than one
// Authorization header gets [ErrMultipleAuthorization].
func (t *Table) VerifyRequest(r *http.Request) (*Claims, error) {
	if len(r.Header["Authorization"]) > 1 {
		return nil, ErrMultipleAuthorization
	}
	raw, err := BearerToken(r)
	if err != nil {
		return nil, err
	}
	return t.Verify(r.Context(), raw)
}

// WriteError answers a request whose token [Table.Verify] refused with err, as
// [Table.Middleware] does. Adapters for other routers use it to answer the same way.
func (t *Table) WriteError(w http.ResponseWriter, err error) {
	t.refusal(err).WriteHTTP(w)
}

// describe names why a token was refused, in words safe for a quoted header value.
func describe(err error) string {
	switch {
	case errors.Is(err, ErrNotAccessToken):
		// Before the signature cases: revocast's key functions refuse a token by its type.
		return "the token is not an access token"
	case errors.Is(err, ErrRevoked):
		return "the token has been revoked"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token signature is invalid"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token is not meant for this service"
	}
	return "the token is invalid"
}
