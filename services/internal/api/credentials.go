package api

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// singleHeader refuses, with 400, a request that repeats the credential header name: which
// copy is meant is ambiguous (a proxy may have added one; a handler would read the first).
// It is a malformed request, not a failed guess, so the failure limiter does not count it.
func (s *server) singleHeader(name string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if len(c.Request.Header.Values(name)) > 1 {
			s.fail(c, newError(http.StatusBadRequest, "repeated "+name+" header: send the credential once"))
			return
		}
		c.Next()
	}
}

// bearer reads an Authorization value. With the Bearer scheme (in any case, RFC 7235) it
// returns the token after it, which may be empty, and true; otherwise the trimmed value
// and false.
func bearer(value string) (string, bool) {
	value = strings.TrimSpace(value)
	scheme, token := value, ""
	if i := strings.IndexAny(value, " \t"); i >= 0 {
		scheme, token = value[:i], value[i+1:]
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return value, false
	}
	return strings.TrimSpace(token), true
}
