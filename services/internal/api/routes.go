package api

import "github.com/gin-gonic/gin"

// routes is the whole API surface.
func (s *server) routes(e *gin.Engine) {
	e.Use(s.requestID(), s.accessLog(), s.metrics.observe(), s.recoverer(), limitBody(MaxBodyBytes))

	// A route that takes a credential header refuses it repeated (400).
	authorization, apiKey := s.singleHeader("Authorization"), s.singleHeader("X-API-Key")
	e.DELETE("/root/:app_id/flush", authorization, s.handleFlush())
	e.POST("/v2/users/reset/:id", apiKey, s.handleUserReset())
	e.POST("/v2/sessions/revoke/:sid", apiKey, s.handleSessionRevoke())
	e.GET("/v1/audit", apiKey, s.handleAudit())
	e.GET("/v1/fleet", apiKey, s.handleFleet())
	if s.tokens != nil {
		e.POST("/v1/apps/:app_id/tokens", authorization, s.handleMintTokens())
		e.POST("/v1/tokens/refresh", s.handleRefresh())
		e.POST("/v1/tokens/revoke", authorization, s.handleTokenRevoke())
		e.GET("/.well-known/jwks.json", s.handleJWKS())
	}

	e.GET("/healthz", handleHealthz())
	e.GET("/readyz", s.handleReadyz())
	e.GET("/metrics", metricsHandler(s.registry))

	e.NoRoute(func(c *gin.Context) { s.fail(c, errNotFound) })
	e.NoMethod(func(c *gin.Context) { s.fail(c, errMethodNotAllowed) })
}
