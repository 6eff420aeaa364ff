package client

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// Claims are the verified claims of a token.
type Claims struct {
	// AppID is the app the token was issued for, empty when [WithAppClaim]("") is set.
	AppID string
	// UserID is the positive user id from the user claim.
	UserID int64
	// SessionID is the login session from the session claim ([WithSessionClaim]), empty
	// when the token names none: session revocation does not apply to it.
	SessionID string
	// IssuedAt is the exact "iat", sub-second digits included.
	IssuedAt time.Time
	// ExpiresAt is "exp".
	ExpiresAt time.Time
	// All holds every claim; numbers are json.Number.
	All jwt.MapClaims

	sessionDigest int64 // events.SessionDigest(SessionID), 0 without a session
}

func newParser(cfg config) *jwt.Parser {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithJSONNumber(),
		jwt.WithLeeway(cfg.leeway),
		jwt.WithTimeFunc(cfg.now),
	}
	if cfg.issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.issuer))
	}
	if len(cfg.audience) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.audience...))
	}
	return jwt.NewParser(opts...)
}

// Verify checks a raw JWT and returns its claims if it is valid and not revoked. The order
// is: the size cap, that the table is ready ([ErrNotReady]), the signature with an allowed algorithm, required "exp" and "iat" (not
// in the future), the optional issuer and audience, that it is an access token
// ([ErrNotAccessToken], see [AccessTokenType]), the app, user and session claims, the maximum
// lifetime, the table's freshness ([ErrStale] unless fail-open), and then the
// watermarks ([ErrRevoked]). Every token error wraps [ErrInvalidToken].
//
// The revocation comparison uses the raw "iat": with a whole-second iat, a token issued in
// the watermark's second is revoked; with a fractional iat (e.g. 1763890215.123456) it is
// revoked only if issued strictly before the watermark. No leeway applies to it.
//
// With [WithSignatureCache], a token verified before and not expired since skips
// everything up to the table's state; the state and the watermarks are checked every time.
func (t *Table) Verify(ctx context.Context, raw string) (*Claims, error) {
	c, _, err := t.verify(ctx, raw)
	return c, err
}

// verify is Verify, saying also whether the token passed only because the table fails open.
func (t *Table) verify(ctx context.Context, raw string) (c *Claims, failOpen bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if raw == "" {
		return nil, false, ErrMissingToken
	}
	if len(raw) > t.cfg.maxTokenSize {
		return nil, false, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidToken, len(raw), t.cfg.maxTokenSize)
	}
	if !t.ready.Load() {
		// Before the table is ready, revocast's own keys may not be loaded yet: a valid
		// token would be refused as badly signed (401), and its user logged out.
		return nil, false, ErrNotReady
	}
	var iat issuedAt
	var key [32]byte
	cached := false
	if t.sigCache != nil {
		key = cacheKey(raw)
		c, iat, cached = t.sigCache.get(key, t.cfg.now().Add(-t.cfg.leeway))
	}
	if !cached {
		mc := jwt.MapClaims{}
		tok, err := t.parser.ParseWithClaims(raw, mc, t.cfg.keyfunc)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		if err := checkUse(tok.Header, mc, t.cfg.requireAT); err != nil {
			return nil, false, err
		}
		if c, iat, err = t.claims(mc); err != nil {
			return nil, false, err
		}
		if t.sigCache != nil {
			t.sigCache.put(key, c, iat)
		}
	}
	// The state is checked last so that fail-open counts only tokens it lets through.
	// Neither it nor the watermarks are ever cached: a flush refuses a cached token on
	// the next request the table sees after applying it.
	if failOpen, err = t.checkState(); err != nil {
		return nil, false, err
	}
	if err := t.checkWatermark(c.AppID, c.UserID, c.sessionDigest, iat); err != nil {
		return nil, false, err
	}
	return c, failOpen, nil
}

// AccessTokenType is the JOSE "typ" header of the access tokens that revocast mints
// (RFC 9068). Tokens verified with revocast's own keys must carry it: revocast signs its
// refresh tokens with the same keys, and types them differently ("rt+jwt").
const AccessTokenType = "at+jwt"

// claimTokenUse is the claim in which revocast (and e.g. Amazon Cognito) says what a token
// is for; an access token says "access".
const claimTokenUse = "token_use"

// checkUse refuses a token that says it is not an access token: a "token_use" claim other
// than "access" (a refresh token, an ID token), or a "typ" header that names another
// explicit type (RFC 8725, section 3.11: "rt+jwt", "id+jwt", ...). Untyped tokens and "JWT"
// pass unless strict, which asks for [AccessTokenType].
func checkUse(header map[string]any, mc jwt.MapClaims, strict bool) error {
	if v, ok := mc[claimTokenUse]; ok {
		if use, _ := v.(string); use != "access" {
			return fmt.Errorf("%w: %w: claim %s is %s", ErrInvalidToken, ErrNotAccessToken,
				claimTokenUse, truncate(fmt.Sprintf("%q", v), 32))
		}
	}
	v, ok := header["typ"]
	if !ok {
		if strict {
			return fmt.Errorf("%w: %w: no typ header, want %q", ErrInvalidToken, ErrNotAccessToken, AccessTokenType)
		}
		return nil
	}
	typ, ok := v.(string)
	if !ok {
		return fmt.Errorf("%w: typ header is not a string", ErrInvalidToken)
	}
	access, other := tokenType(typ)
	if access || (!strict && !other) {
		return nil
	}
	return fmt.Errorf("%w: %w: typ %q, want %q", ErrInvalidToken, ErrNotAccessToken, truncate(typ, 32), AccessTokenType)
}

// tokenType reports whether a "typ" header value says access token ("at+jwt" or
// "application/at+jwt", in any case, as RFC 7515 and RFC 9068 allow), and whether it names
// another explicit type: any other media type ending in "+jwt".
func tokenType(typ string) (access, other bool) {
	const prefix = "application/"
	if len(typ) > len(prefix) && strings.EqualFold(typ[:len(prefix)], prefix) {
		typ = typ[len(prefix):]
	}
	if strings.EqualFold(typ, AccessTokenType) {
		return true, false
	}
	const suffix = "+jwt"
	return false, len(typ) >= len(suffix) && strings.EqualFold(typ[len(typ)-len(suffix):], suffix)
}

// requireAccessType is the check of revocast's own key sources (the key bucket and
// [JWKS]): their keys sign refresh tokens too, so a token verified with them must say
// [AccessTokenType]. It runs in the key function, before the signature is checked, so that
// it holds whatever key function wraps them.
func requireAccessType(tok *jwt.Token) error {
	typ, _ := tok.Header["typ"].(string)
	if access, _ := tokenType(typ); !access {
		return fmt.Errorf("%w: typ %q, want %q for a token signed by revocast", ErrNotAccessToken, truncate(typ, 32), AccessTokenType)
	}
	return nil
}

// claims extracts what revocast needs from verified claims.
func (t *Table) claims(mc jwt.MapClaims) (*Claims, issuedAt, error) {
	c := &Claims{All: mc}
	n, ok := mc["iat"].(json.Number)
	if !ok {
		return nil, issuedAt{}, fmt.Errorf("%w: iat is missing or not a number", ErrInvalidToken)
	}
	iat, err := parseIssuedAt(n)
	if err != nil {
		return nil, iat, err
	}
	c.IssuedAt = time.Unix(iat.sec, iat.nsec)
	exp, err := mc.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, iat, fmt.Errorf("%w: exp is missing or not a number", ErrInvalidToken)
	}
	c.ExpiresAt = exp.Time
	if t.cfg.maxLifetime > 0 && c.ExpiresAt.Sub(c.IssuedAt) > t.cfg.maxLifetime {
		// Pruning relies on this: a longer-lived token could outlive its watermark.
		return nil, iat, fmt.Errorf("%w: lifetime %s exceeds %s", ErrInvalidToken,
			c.ExpiresAt.Sub(c.IssuedAt), t.cfg.maxLifetime)
	}
	if t.cfg.appClaim != "" {
		app, _ := mc[t.cfg.appClaim].(string)
		if err := events.ValidateAppID(app); err != nil {
			return nil, iat, fmt.Errorf("%w: claim %q: %w", ErrInvalidToken, t.cfg.appClaim, err)
		}
		c.AppID = app
	}
	var user string
	switch v := mc[t.cfg.userClaim].(type) {
	case string:
		user = v
	case json.Number:
		user = v.String()
	}
	if c.UserID, err = events.ParseUserID(user); err != nil {
		return nil, iat, fmt.Errorf("%w: claim %q: %w", ErrInvalidToken, t.cfg.userClaim, err)
	}
	if t.cfg.sessionClaim != "" {
		// A token without the claim has no session to revoke; one that names a session
		// nobody could revoke (a subject token, a 10 KB string) is refused.
		if v, ok := mc[t.cfg.sessionClaim]; ok {
			sid, _ := v.(string)
			if err := events.ValidateSessionID(sid); err != nil {
				return nil, iat, fmt.Errorf("%w: claim %q: %w", ErrInvalidToken, t.cfg.sessionClaim, err)
			}
			c.SessionID, c.sessionDigest = sid, events.SessionDigest(sid)
		}
	}
	return c, iat, nil
}

// issuedAt is a token's iat as written: whole seconds, or exact to the nanosecond.
type issuedAt struct {
	sec, nsec int64
	whole     bool // no fractional part was written
}

// parseIssuedAt reads a NumericDate exactly, which golang-jwt does not (it goes through
// float64 and truncates to seconds by default). Only plain decimals are accepted: no sign,
// no exponent. Digits past the nanosecond are dropped, which never changes the outcome of a
// comparison with a watermark in whole nanoseconds.
func parseIssuedAt(n json.Number) (issuedAt, error) {
	s := string(n)
	intPart, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			break
		}
	}
	bad := func() (issuedAt, error) {
		return issuedAt{}, fmt.Errorf("%w: iat %q is not a plain decimal number of seconds", ErrInvalidToken, truncate(s, 32))
	}
	if intPart == "" || len(intPart) > 12 || (frac == "" && len(intPart) < len(s)) {
		return bad()
	}
	sec, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || sec < 0 || intPart[0] == '+' || intPart[0] == '-' {
		return bad()
	}
	var nsec int64
	for i := 0; i < len(frac); i++ {
		d := frac[i]
		if d < '0' || d > '9' {
			return bad()
		}
		if i < 9 {
			nsec = nsec*10 + int64(d-'0')
		}
	}
	for i := len(frac); i < 9; i++ {
		nsec *= 10
	}
	return issuedAt{sec: sec, nsec: nsec, whole: frac == ""}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// revokedBy applies the revocation rule to one watermark in Unix nanoseconds.
func (iat issuedAt) revokedBy(nb int64) bool {
	if nb == 0 {
		return false
	}
	if iat.whole {
		// Whole-second iat: the watermark's own second is revoked too, because a token
		// issued just before the watermark in that second carries the same iat.
		return iat.sec <= floorDiv(nb, int64(time.Second))
	}
	// iat.sec has at most 12 digits, so this cannot overflow.
	return iat.sec*int64(time.Second)+iat.nsec < nb
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// CheckIssuedAt checks a token's raw "iat" claim (as decoded with json.Number) for a user
// of an app against the watermarks, after the table's state. It returns nil, [ErrRevoked],
// [ErrNotReady], [ErrStale] or [ErrInvalidToken] (malformed iat). It is for code that has
// verified a token by other means; [Table.Verify] does both.
func (t *Table) CheckIssuedAt(appID string, userID int64, iat json.Number) error {
	return t.CheckSessionIssuedAt(appID, userID, "", iat)
}

// CheckSessionIssuedAt is [Table.CheckIssuedAt] for a token of login session sid: the
// session's watermark applies too. An empty sid is a token without a session; an invalid
// one is [ErrInvalidToken].
func (t *Table) CheckSessionIssuedAt(appID string, userID int64, sid string, iat json.Number) error {
	if _, err := t.checkState(); err != nil {
		return err
	}
	v, err := parseIssuedAt(iat)
	if err != nil {
		return err
	}
	var digest int64
	if sid != "" {
		if err := events.ValidateSessionID(sid); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		digest = events.SessionDigest(sid)
	}
	return t.checkWatermark(appID, userID, digest, v)
}

// checkWatermark is the revocation lookup of the request path: app, user and session
// (by digest, 0 for none) in one comparison.
func (t *Table) checkWatermark(appID string, userID, session int64, iat issuedAt) error {
	nb := t.lookup(appID, userID, session)
	if iat.revokedBy(nb) {
		return fmt.Errorf("%w: issued at %s, not before %s (app %q, user %d, session digest %x)", ErrRevoked,
			time.Unix(iat.sec, iat.nsec).UTC().Format(time.RFC3339Nano),
			time.Unix(0, nb).UTC().Format(time.RFC3339Nano), appID, userID, uint64(session))
	}
	return nil
}

// checkState refuses when the table cannot vouch for its watermarks, and says whether it
// lets the token through only because it fails open.
func (t *Table) checkState() (failOpen bool, err error) {
	if !t.ready.Load() {
		return false, ErrNotReady
	}
	stale := t.Staleness()
	if stale <= t.cfg.maxStaleness {
		return false, nil
	}
	if !t.cfg.failOpen {
		return false, fmt.Errorf("%w: last confirmed %s ago, limit %s", ErrStale, stale.Truncate(time.Millisecond), t.cfg.maxStaleness)
	}
	t.failOpen.Add(1)
	now := t.mono()
	if last := t.lastWarn.Load(); now-last > int64(time.Second) && t.lastWarn.CompareAndSwap(last, now) {
		t.log.Warn("revocation table is stale; accepting tokens (fail-open)",
			zap.Duration("staleness", stale), zap.Uint64("fail_open_accepts", t.failOpen.Load()))
	}
	return true, nil
}
