package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/audit"
	"github.com/revocast/revocast/services/internal/store"
)

// Page sizes of GET /v1/audit.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// handleAudit is GET /v1/audit: the audit log for dashboards and SIEMs, with the filters of
// `revocast audit` as query parameters (app, user, type, actor, since, until), paginated by
// stream sequence: pass the previous page's next_after_seq as after_seq. Needs an admin key
// with the audit:read scope.
func (s *server) handleAudit() gin.HandlerFunc {
	type page struct {
		Events       []any  `json:"events"`
		NextAfterSeq uint64 `json:"next_after_seq"`
		More         bool   `json:"more"`
	}
	type response struct {
		Success bool `json:"success"`
		Data    page `json:"data"`
	}
	return func(c *gin.Context) {
		q, err := parseAuditQuery(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		authCtx, cancel := s.storeContext(c)
		defer cancel()
		if _, err := s.authenticateKey(authCtx, c, store.ScopeAuditRead); err != nil {
			s.fail(c, err)
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
		defer cancel()
		p := page{Events: []any{}, NextAfterSeq: q.AfterSeq}
		sum, err := s.replay(ctx, q, func(r audit.Record) error {
			p.Events = append(p.Events, audit.MarshalRecord(r))
			return nil
		})
		if err != nil {
			s.fail(c, errors.Join(store.ErrUnavailable, err))
			return
		}
		if sum.LastSeq > p.NextAfterSeq {
			p.NextAfterSeq = sum.LastSeq
		}
		p.More = sum.More
		c.JSON(http.StatusOK, response{Success: true, Data: p})
	}
}

func parseAuditQuery(c *gin.Context) (audit.Query, error) {
	bad := func(msg string) error { return newError(http.StatusBadRequest, msg) }
	q := audit.Query{Limit: defaultAuditLimit}
	q.App, q.Actor, q.Type = c.Query("app"), c.Query("actor"), events.Type(c.Query("type"))
	if v := c.Query("user"); v != "" {
		id, err := events.ParseUserID(v)
		if err != nil {
			return q, bad("user: must be a positive integer")
		}
		q.User = id
	}
	now := time.Now()
	var err error
	if q.Since, err = audit.ParseTime(c.Query("since"), now); err != nil {
		return q, bad("since: " + err.Error())
	}
	if q.Until, err = audit.ParseTime(c.Query("until"), now); err != nil {
		return q, bad("until: " + err.Error())
	}
	if v := c.Query("after_seq"); v != "" {
		if q.AfterSeq, err = strconv.ParseUint(v, 10, 64); err != nil {
			return q, bad("after_seq: must be a stream sequence (a non-negative integer)")
		}
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			return q, bad("limit: must be 1 to " + strconv.Itoa(maxAuditLimit))
		}
		q.Limit = n
	}
	if err := q.Filter.Validate(); err != nil {
		return q, bad(err.Error())
	}
	return q, nil
}
