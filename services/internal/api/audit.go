package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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
//
// Audit reads are bounded so that they cannot starve revocations: at most AuditConcurrency
// run at once (past it, a call waits up to AuditQueueWait for a slot, then gets 429; the key
// is checked first, so callers without one take no slot), a read steps aside for a bounded time between batches of events whenever
// revocations are in flight ([Revocations]), and a page holds at most AuditPageBytes of
// events, written as stored instead of being decoded into values and encoded again.
func (s *server) handleAudit() gin.HandlerFunc {
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
		if !s.takeAuditSlot(c.Request.Context()) {
			s.fail(c, errAuditBusy)
			return
		}
		defer func() { <-s.auditSlots }()
		ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
		defer cancel()
		// Revocations come first: the replay pauses between batches while any is in flight.
		q.Yield = func(ctx context.Context) { s.revocations.Wait(ctx, s.auditYieldWait) }
		// The page is built as the response body: {"success":true,"data":{"events":[...],
		// "next_after_seq":N,"more":B}}, the shape of the documented response.
		buf := pageBuffers.Get().(*[]byte)
		defer pageBuffers.Put(buf)
		b := append((*buf)[:0], `{"success":true,"data":{"events":[`...)
		defer func() { *buf = b[:0] }() // keep what grew for the next page
		first := len(b)
		n, lastSeq := 0, q.AfterSeq
		full := false
		sum, err := s.replay(ctx, q, func(r audit.Record) error {
			mark := len(b)
			if n > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = audit.AppendJSON(b, r); err != nil {
				return err
			}
			if n > 0 && len(b)-first > s.auditPageBytes {
				b, full = b[:mark], true
				return errPageFull
			}
			n++
			lastSeq = r.Seq
			return nil
		})
		switch {
		case full:
			// Scanned events past the last one sent did not match; reading them again
			// from lastSeq costs little and skips nothing.
			sum.LastSeq, sum.More = lastSeq, true
		case err != nil:
			s.fail(c, fmt.Errorf("%w: %w", errAuditRead, err))
			return
		}
		next := max(sum.LastSeq, q.AfterSeq)
		b = append(b, `],"next_after_seq":`...)
		b = strconv.AppendUint(b, next, 10)
		b = append(b, `,"more":`...)
		b = strconv.AppendBool(b, sum.More)
		b = append(b, "}}"...)
		c.Data(http.StatusOK, "application/json; charset=utf-8", b)
	}
}

// pageBuffers recycles page buffers (up to AuditPageBytes each): pages come back to back
// under load, and a fresh megabyte per page would keep the garbage collector busy.
var pageBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// errPageFull stops a replay whose page reached its size in bytes.
var errPageFull = errors.New("api: audit page full")

func parseAuditQuery(c *gin.Context) (audit.Query, error) {
	bad := func(msg string) error { return newError(http.StatusBadRequest, msg) }
	q := audit.Query{Limit: defaultAuditLimit}
	q.App, q.Actor, q.Type = c.Query("app"), c.Query("actor"), events.Type(c.Query("type"))
	if v := c.Query("session"); v != "" {
		if events.ValidateSessionID(v) != nil {
			return q, bad("session: 1 to 128 letters, digits, '-' or '_'")
		}
		q.Session = v
	}
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

// takeAuditSlot takes one of the audit slots, waiting for one at most s.auditQueueWait. The
// wait is what slows a client that ignores Retry-After: answered at once, 400 of them
// calling again and again burn the CPU revocations need on nothing but refusals.
func (s *server) takeAuditSlot(ctx context.Context) bool {
	select {
	case s.auditSlots <- struct{}{}:
		return true
	default:
	}
	if s.auditQueueWait <= 0 {
		return false
	}
	s.metrics.auditWaiting.Inc()
	defer s.metrics.auditWaiting.Dec()
	wait := time.NewTimer(s.auditQueueWait)
	defer wait.Stop()
	select {
	case s.auditSlots <- struct{}{}:
		return true
	case <-wait.C:
	case <-ctx.Done():
	}
	return false
}
