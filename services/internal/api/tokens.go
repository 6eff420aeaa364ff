package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/tokens"
)

// Tokens is what the token endpoints need; *tokens.Issuer and *tokens.KeyRing provide it.
type Tokens interface {
	Ready() bool
	Mint(appID string, userID int64) (tokens.Pair, error)
	Refresh(ctx context.Context, raw string) (tokens.Pair, tokens.Claims, error)
	Revocable(ctx context.Context, raw string) (tokens.Claims, bool, error)
	JWKS(ctx context.Context) ([]tokens.JWK, error)
}

// tokenResponse follows the field names of OAuth 2.0 (RFC 6749, section 5.1).
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
	// SessionID is the login session of both tokens, for the app to list and revoke.
	SessionID string `json:"sid"`
}

func (s *server) pairResponse(p tokens.Pair) gin.H {
	now := s.now()
	return gin.H{"success": true, "data": tokenResponse{
		AccessToken: p.AccessToken, TokenType: "Bearer", ExpiresIn: int64(p.AccessExpiresAt.Sub(now).Seconds()),
		RefreshToken: p.RefreshToken, RefreshExpiresIn: int64(p.RefreshExpiresAt.Sub(now).Seconds()),
		SessionID: p.SessionID,
	}}
}

// handleMintTokens is POST /v1/apps/{app_id}/tokens: the app's backend, with its app
// credential as a bearer token, gets an access and a refresh token for one of its users.
// Body: {"user_id": "42"} (a string or an integer).
func (s *server) handleMintTokens() gin.HandlerFunc {
	return func(c *gin.Context) {
		appID := c.Param("app_id")
		if err := events.ValidateAppID(appID); err != nil {
			s.fail(c, newError(http.StatusBadRequest, "invalid app id: use 1 to 64 letters, digits, '-' or '_'"))
			return
		}
		cred, ok := bearer(c.GetHeader("Authorization"))
		if !ok {
			s.fail(c, &apiError{status: http.StatusUnauthorized, msg: "missing Authorization: Bearer <app credential> (create one with 'revocast apps credential create " + appID + "')"})
			return
		}
		if cred == "" {
			// A malformed request (RFC 6750, section 3.1), not a wrong credential.
			s.fail(c, newError(http.StatusBadRequest, "missing app credential after Authorization: Bearer (create one with 'revocast apps credential create "+appID+"')"))
			return
		}
		body, err := readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		var req struct {
			UserID json.Number `json:"user_id"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&req); err != nil || req.UserID == "" {
			s.fail(c, newError(http.StatusBadRequest, `the body must be {"user_id": "<positive integer>"}`))
			return
		}
		userID, err := events.ParseUserID(req.UserID.String())
		if err != nil {
			s.fail(c, newError(http.StatusBadRequest, "invalid user_id: must be a positive integer below 2^63, digits only"))
			return
		}
		ctx, cancel := s.storeContext(c)
		defer cancel()
		if _, err := s.store.AuthenticateAppCredential(ctx, appID, cred); err != nil {
			if errors.Is(err, store.ErrUnauthorized) {
				s.fail(c, s.refused(c, "app_credential", newError(http.StatusUnauthorized, "unauthorized: wrong app credential or unknown app")))
				return
			}
			s.fail(c, err)
			return
		}
		pair, err := s.tokens.Mint(appID, userID)
		if errors.Is(err, tokens.ErrNotReady) {
			s.fail(c, &apiError{status: http.StatusServiceUnavailable, msg: "revocation table not ready; retry", retryAfter: 1})
			return
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c, http.StatusOK, s.pairResponse(pair))
	}
}

// handleRefresh is POST /v1/tokens/refresh with {"refresh_token": "..."}: a new pair for a
// valid refresh token that was neither revoked (flush, reset) nor used before.
func (s *server) handleRefresh() gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		var req struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.RefreshToken == "" {
			s.fail(c, newError(http.StatusBadRequest, `the body must be {"refresh_token": "<token>"}`))
			return
		}
		ctx, cancel := s.storeContext(c)
		defer cancel()
		pair, claims, err := s.tokens.Refresh(ctx, req.RefreshToken)
		switch {
		case err == nil:
			writeJSON(c, http.StatusOK, s.pairResponse(pair))
		case errors.Is(err, tokens.ErrReused):
			s.metrics.authFailed.WithLabelValues("refresh_reused").Inc()
			s.log.Warn("refresh token reused: it may have been stolen; revoking its session",
				zap.String("request_id", requestIDOf(c)), zap.String("app_id", claims.App),
				zap.Int64("user_id", claims.User), zap.String("sid", claims.Session), zap.String("jti", claims.ID), zap.String("remote", c.ClientIP()))
			if claims.Session != "" {
				// The thief's and the victim's tokens of the session stop at once.
				end := s.revocations.Begin()
				err := s.revokeSession(ctx, c, claims.Session, reuseActor, "refresh token reused", "refresh_reuse")
				end()
				if err != nil {
					s.fail(c, err)
					return
				}
			}
			s.fail(c, &apiError{status: http.StatusUnauthorized, msg: "refresh token already used: the session is revoked, log in again"})
		case errors.Is(err, tokens.ErrRevoked):
			s.fail(c, &apiError{status: http.StatusUnauthorized, msg: "refresh token revoked (its app flushed, its user reset or its session logged out): log in again"})
		case errors.Is(err, tokens.ErrInvalidRefresh):
			s.fail(c, &apiError{status: http.StatusUnauthorized, msg: "invalid refresh token: " + strings.TrimPrefix(err.Error(), tokens.ErrInvalidRefresh.Error()+": ")})
		case errors.Is(err, tokens.ErrNotReady):
			s.fail(c, &apiError{status: http.StatusServiceUnavailable, msg: "revocation table not ready; retry", retryAfter: 1})
		default:
			s.fail(c, err)
		}
	}
}

// reuseActor is the actor of the session revocation that a reused refresh token causes.
const reuseActor = "revocast:refresh-reuse"

// handleJWKS is GET /.well-known/jwks.json: the public keys revocast tokens are signed with.
func (s *server) handleJWKS() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
		defer cancel()
		keys, err := s.tokens.JWKS(ctx)
		if err != nil {
			s.fail(c, err)
			return
		}
		// Short enough that a rotated-in key is seen soon; clients also refetch on an
		// unknown kid.
		c.Header("Cache-Control", "public, max-age=300")
		writeJSON(c, http.StatusOK, gin.H{"keys": keys})
	}
}
