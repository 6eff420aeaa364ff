package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"
)

const requestIDHeader = "X-Request-Id"

// requestID takes the caller's X-Request-Id when it is short and plain, or makes one, and
// echoes it, so a caller can quote it when asking what happened to a call.
func (s *server) requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(requestIDHeader)
		if !plainID(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Set(requestIDHeader, id)
		c.Header(requestIDHeader, id)
		c.Next()
	}
}

func requestIDOf(c *gin.Context) string { return c.GetString(requestIDHeader) }

func plainID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// accessLog logs one line per call. It never logs headers: they carry the keys.
func (s *server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		s.log.Info("request", append([]zap.Field{
			zap.String("request_id", requestIDOf(c)),
			zap.String("method", c.Request.Method),
			zap.String("route", c.FullPath()),
			zap.Int("status", c.Writer.Status()),
			zap.Duration("latency", time.Since(start)),
			zap.String("remote", c.ClientIP()),
		}, confirmationFields(c)...)...)
	}
}

// recoverer turns a panic into a logged 500 instead of a dropped connection.
func (s *server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic", zap.String("request_id", requestIDOf(c)), zap.Any("panic", r), zap.Stack("stack"))
				s.fail(c, errInternal)
			}
		}()
		c.Next()
	}
}

// limitBody refuses bodies over max with 413, whether announced by Content-Length or not.
func limitBody(max int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > max {
			c.Abort()
			writeJSON(c, http.StatusRequestEntityTooLarge, envelope(c, tooLarge))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, max)
		c.Next()
	}
}

const tooLarge = "request body too large"

// readBody reads the (already size-limited) body, mapping an overflow to 413.
func readBody(c *gin.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, newError(http.StatusRequestEntityTooLarge, tooLarge)
	}
	if err != nil {
		return nil, newError(http.StatusBadRequest, "could not read the request body")
	}
	return b, nil
}
