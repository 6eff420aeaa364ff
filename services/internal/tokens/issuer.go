package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
)

// Claim names and values in revocast tokens, and the "typ" header of each kind: access
// tokens are typed as RFC 9068 says, refresh tokens differently, so that neither passes
// for the other by its header or by its claims.
const (
	ClaimApp      = "app"
	ClaimSession  = client.DefaultSessionClaim // "sid": the login session, kept by refresh
	ClaimTokenUse = "token_use"
	UseAccess     = "access"
	UseRefresh    = "refresh"
	TypeAccess    = client.AccessTokenType // "at+jwt"
	TypeRefresh   = "rt+jwt"
	// UsedRefreshBucket remembers refresh token ids that were exchanged, until they expire.
	UsedRefreshBucket = "revocast_refresh_used"
)

// Errors of the refresh call; the API maps them to 401 with a clear message.
var (
	ErrInvalidRefresh = errors.New("tokens: invalid refresh token")
	ErrRevoked        = errors.New("tokens: refresh token revoked")
	ErrReused         = errors.New("tokens: refresh token already used")
	ErrNotReady       = errors.New("tokens: revocation table not ready")
)

// Revocations is what the issuer needs from the revocation table that resource servers use
// too ([client.Table]): the watermark that applies to a user of an app, and the verdict on a
// token's raw iat (nil, or an error matching client.ErrRevoked, ErrNotReady or ErrStale).
type Revocations interface {
	Ready() bool
	// WaitApplied returns once the table holds the stream's events up to seq.
	WaitApplied(ctx context.Context, seq uint64) error
	NotBefore(appID string, userID int64) time.Time
	// SessionNotBefore is the watermark of a login session, zero if none.
	SessionNotBefore(sid string) time.Time
	// CheckSessionIssuedAt is CheckIssuedAt for a token of login session sid ("" for none).
	CheckSessionIssuedAt(appID string, userID int64, sid string, iat json.Number) error
}

// Config sets token lifetimes and the issuer name.
type Config struct {
	Issuer     string        // iss claim; default "revocast"
	AccessTTL  time.Duration // default 15m
	RefreshTTL time.Duration // default 30 days
}

// Issuer mints and refreshes token pairs.
type Issuer struct {
	ring *KeyRing
	rev  Revocations
	js   jetstream.JetStream
	used jetstream.KeyValue
	cfg  Config
	now  func() time.Time
}

// Pair is an access and a refresh token of one login session, with their expiry times.
type Pair struct {
	// SessionID is the "sid" of both tokens: new at each login, kept by refresh.
	SessionID        string
	AccessToken      string
	RefreshToken     string
	AccessExpiresAt  time.Time
	RefreshExpiresAt time.Time
}

// DefaultIssuer is the iss of the tokens revocast mints unless revocastd is told otherwise
// (-issuer), and what the resource servers and the agent expect by default.
const DefaultIssuer = "revocast"

// NewIssuer sets up the used-refresh bucket (entries expire with the refresh tokens) and
// returns an issuer.
func NewIssuer(ctx context.Context, js jetstream.JetStream, replicas int, ring *KeyRing, rev Revocations, cfg Config) (*Issuer, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = 15 * time.Minute
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 30 * 24 * time.Hour
	}
	used, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: UsedRefreshBucket, Description: "exchanged refresh token ids (reuse detection)",
		TTL: cfg.RefreshTTL, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: create bucket %s: %v", ErrUnavailable, UsedRefreshBucket, err)
	}
	return &Issuer{ring: ring, rev: rev, js: js, used: used, cfg: cfg, now: time.Now}, nil
}

// IssuedAt is the iat of a token minted at now for a user of an app: now, or the watermark if
// that is later (another replica's clock may be ahead), rounded up to the microsecond, and
// written with six decimals. The client compares sub-second iat exactly, so a token minted
// after a revocation is never refused.
func IssuedAt(now, watermark time.Time) (time.Time, json.Number) {
	t := now
	if watermark.After(t) {
		t = watermark
	}
	us := t.UnixMicro()
	if t.UnixNano()%1000 != 0 {
		us++
	}
	return time.UnixMicro(us), json.Number(fmt.Sprintf("%d.%06d", us/1e6, us%1e6))
}

// Mint issues a new pair for a user of an app: a login, so a new session. It refuses
// (ErrNotReady) while the revocation table has not caught up or is stale: the iat it would
// choose might then be earlier than a watermark it has not seen, and the new tokens refused
// at once.
func (i *Issuer) Mint(appID string, userID int64) (Pair, error) {
	return i.mint(appID, userID, NewSessionID())
}

// NewSessionID returns a random 128-bit session id, "s_" and 22 base64url characters.
func NewSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return "s_" + base64.RawURLEncoding.EncodeToString(b[:])
}

func (i *Issuer) mint(appID string, userID int64, sid string) (Pair, error) {
	if err := events.ValidateAppID(appID); err != nil {
		return Pair{}, err
	}
	if userID <= 0 {
		return Pair{}, fmt.Errorf("%w: %d", events.ErrInvalidUserID, userID)
	}
	if err := events.ValidateSessionID(sid); err != nil {
		return Pair{}, err
	}
	wm := i.rev.NotBefore(appID, userID)
	if s := i.rev.SessionNotBefore(sid); s.After(wm) {
		wm = s
	}
	iat, iatNum := IssuedAt(i.now(), wm)
	if err := i.rev.CheckSessionIssuedAt(appID, userID, sid, iatNum); err != nil {
		if errors.Is(err, client.ErrNotReady) || errors.Is(err, client.ErrStale) {
			return Pair{}, fmt.Errorf("%w: %v", ErrNotReady, err)
		}
		return Pair{}, fmt.Errorf("tokens: a new token would be refused: %w", err)
	}
	p := Pair{SessionID: sid, AccessExpiresAt: iat.Add(i.cfg.AccessTTL).Truncate(time.Second),
		RefreshExpiresAt: iat.Add(i.cfg.RefreshTTL).Truncate(time.Second)}
	var err error
	if p.AccessToken, err = i.sign(appID, userID, sid, iatNum, p.AccessExpiresAt, UseAccess, TypeAccess); err != nil {
		return Pair{}, err
	}
	if p.RefreshToken, err = i.sign(appID, userID, sid, iatNum, p.RefreshExpiresAt, UseRefresh, TypeRefresh); err != nil {
		return Pair{}, err
	}
	return p, nil
}

func (i *Issuer) sign(appID string, userID int64, sid string, iat json.Number, exp time.Time, use, typ string) (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	kid, key := i.ring.Signer()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss":         i.cfg.Issuer,
		"sub":         strconv.FormatInt(userID, 10),
		ClaimApp:      appID,
		ClaimSession:  sid,
		"iat":         iat,
		"exp":         exp.Unix(),
		"jti":         hex.EncodeToString(jti[:]),
		ClaimTokenUse: use,
	})
	tok.Header["kid"], tok.Header["typ"] = kid, typ
	s, err := tok.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("tokens: sign: %w", err)
	}
	return s, nil
}

// MaxTokenSize caps what Refresh will parse.
const MaxTokenSize = 8 << 10

// Refresh exchanges a valid, unrevoked, unused refresh token for a new pair of the same
// session. The old refresh token is spent: a second use returns ErrReused, with the claims,
// so that the caller revokes the whole session (a stolen token or a client bug: either way
// one of the two holders is not who the session belongs to). A refresh token minted before
// tokens carried a session gets a new session.
func (i *Issuer) Refresh(ctx context.Context, raw string) (Pair, Claims, error) {
	c, err := i.parse(ctx, raw, UseRefresh)
	if err != nil {
		return Pair{}, c, err
	}
	// A revocation is acknowledged before the table has applied it: wait until the table
	// holds every event stored so far, so a refresh right after a flush is refused.
	if err := i.waitForStream(ctx); err != nil {
		return Pair{}, c, err
	}
	if err := i.rev.CheckSessionIssuedAt(c.App, c.User, c.Session, c.IssuedAt); err != nil {
		switch {
		case errors.Is(err, client.ErrRevoked):
			return Pair{}, c, fmt.Errorf("%w: %v", ErrRevoked, err)
		case errors.Is(err, client.ErrNotReady), errors.Is(err, client.ErrStale):
			return Pair{}, c, fmt.Errorf("%w: %v", ErrNotReady, err)
		}
		return Pair{}, c, fmt.Errorf("%w: %v", ErrInvalidRefresh, err)
	}
	// Create is atomic: of two concurrent refreshes with one token, exactly one wins.
	if _, err := i.used.Create(ctx, c.ID, []byte(i.now().UTC().Format(time.RFC3339Nano))); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Pair{}, c, ErrReused
		}
		return Pair{}, c, fmt.Errorf("%w: record refresh: %v", ErrUnavailable, err)
	}
	sid := c.Session
	if sid == "" {
		sid = NewSessionID()
	}
	p, err := i.mint(c.App, c.User, sid)
	return p, c, err
}

// Revocable returns the claims of a revocast token of any kind (access or refresh) that
// is validly signed by this issuer, expired or not, for RFC 7009 revocation: ErrInvalidRefresh
// for anything else. Revoked says whether its session is already revoked for it.
func (i *Issuer) Revocable(ctx context.Context, raw string) (c Claims, revoked bool, err error) {
	if c, err = i.parse(ctx, raw, ""); err != nil {
		return c, false, err
	}
	if err := i.waitForStream(ctx); err != nil {
		return c, false, err
	}
	err = i.rev.CheckSessionIssuedAt(c.App, c.User, c.Session, c.IssuedAt)
	switch {
	case errors.Is(err, client.ErrRevoked):
		return c, true, nil
	case errors.Is(err, client.ErrNotReady), errors.Is(err, client.ErrStale):
		return c, false, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return c, false, nil
}

// waitForStream waits until the revocation table has applied the last event of the stream.
func (i *Issuer) waitForStream(ctx context.Context) error {
	stream, err := i.js.Stream(ctx, events.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // nothing was ever revoked
	}
	if err != nil {
		return fmt.Errorf("%w: revocation stream: %v", ErrUnavailable, err)
	}
	if err := i.rev.WaitApplied(ctx, stream.CachedInfo().State.LastSeq); err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return nil
}

// Claims are the parts of a revocast token the issuer checks.
type Claims struct {
	App      string
	User     int64
	Session  string // "" in tokens minted before tokens carried a session
	ID       string
	IssuedAt json.Number
}

// parse verifies a revocast token of kind use (UseRefresh), or of either kind with
// expired ones accepted when use is "" (for revocation).
func (i *Issuer) parse(ctx context.Context, raw, use string) (Claims, error) {
	var c Claims
	if len(raw) == 0 || len(raw) > MaxTokenSize {
		return c, fmt.Errorf("%w: empty or larger than %d bytes", ErrInvalidRefresh, MaxTokenSize)
	}
	mc := jwt.MapClaims{}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(i.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithJSONNumber(),
	}
	if use == "" {
		// Revoking an expired token does no harm and says nothing (RFC 7009, 2.2).
		opts = append(opts, jwt.WithoutClaimsValidation())
	}
	tok, err := jwt.NewParser(opts...).ParseWithClaims(raw, mc, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return i.ring.PublicKey(ctx, kid)
	})
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidRefresh, err)
	}
	if use == UseRefresh {
		if got, _ := mc[ClaimTokenUse].(string); got != UseRefresh {
			return c, fmt.Errorf("%w: this is an %s token, not a refresh token", ErrInvalidRefresh, got)
		}
		if typ, _ := tok.Header["typ"].(string); !refreshType(typ) {
			return c, fmt.Errorf("%w: typed %q, not a refresh token", ErrInvalidRefresh, typ)
		}
	}
	c.App, _ = mc[ClaimApp].(string)
	if err := events.ValidateAppID(c.App); err != nil {
		return c, fmt.Errorf("%w: app claim: %v", ErrInvalidRefresh, err)
	}
	sub, _ := mc["sub"].(string)
	if c.User, err = events.ParseUserID(sub); err != nil {
		return c, fmt.Errorf("%w: sub claim: %v", ErrInvalidRefresh, err)
	}
	c.ID, _ = mc["jti"].(string)
	if len(c.ID) != 32 {
		return c, fmt.Errorf("%w: jti claim missing", ErrInvalidRefresh)
	}
	c.IssuedAt, _ = mc["iat"].(json.Number)
	if c.IssuedAt == "" {
		return c, fmt.Errorf("%w: iat claim missing", ErrInvalidRefresh)
	}
	if v, ok := mc[ClaimSession]; ok {
		c.Session, _ = v.(string)
		if err := events.ValidateSessionID(c.Session); err != nil {
			return c, fmt.Errorf("%w: sid claim: %v", ErrInvalidRefresh, err)
		}
	}
	return c, nil
}

// refreshType reports whether a "typ" header fits a refresh token: TypeRefresh, or "JWT"
// as refresh tokens minted before tokens were typed say (their token_use claim still has to
// say refresh). Anything else, an access token's "at+jwt" first, is refused.
func refreshType(typ string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, TypeRefresh) || strings.EqualFold(typ, "JWT")
}

// Ready reports whether the revocation table has caught up, so that Mint and Refresh work.
func (i *Issuer) Ready() bool { return i.rev.Ready() }

// JWKS returns the published public keys.
func (i *Issuer) JWKS(ctx context.Context) ([]JWK, error) { return i.ring.JWKS(ctx) }
