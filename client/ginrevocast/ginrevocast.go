// Package ginrevocast adapts the revocast client middleware to Gin, so that net/http users
// of the client do not depend on Gin.
package ginrevocast

import (
	"github.com/gin-gonic/gin"

	"github.com/revocast/revocast/client"
)

// ContextKey is the key under which [Middleware] stores the verified *client.Claims in the
// gin.Context. They are in the request context too ([client.ClaimsFromContext]).
const ContextKey = "revocast.claims"

// Middleware lets a request through only with a valid, unrevoked bearer token, answering
// exactly as [client.Table.Middleware] does otherwise (401 with WWW-Authenticate, 503 with
// Retry-After).
func Middleware(t *client.Table) gin.HandlerFunc {
	return func(c *gin.Context) {
		d := t.DecideRequest(c.Request)
		if d.Outcome != client.Allow {
			d.WriteHTTP(c.Writer)
			c.Abort()
			return
		}
		c.Request = c.Request.WithContext(client.ContextWithClaims(c.Request.Context(), d.Claims))
		c.Set(ContextKey, d.Claims)
		c.Next()
	}
}

// Claims returns the claims that [Middleware] verified for this request.
func Claims(c *gin.Context) (*client.Claims, bool) {
	return client.ClaimsFromContext(c.Request.Context())
}
