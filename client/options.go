package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// Defaults of the options.
const (
	// DefaultMaxTokenSize caps the bytes of a token before it is parsed.
	DefaultMaxTokenSize = 8 << 10
	// DefaultClockSkew is how far in the future a watermark may lie, measured on this
	// machine's clock, before it is held back. Clocks synchronized by NTP differ by
	// milliseconds; 5 seconds absorbs a badly kept clock without letting a broken one lock
	// users out for long.
	DefaultClockSkew = 5 * time.Second
	// DefaultMaxStaleness is how long ago JetStream may last have confirmed that the table
	// holds every event before the table counts as stale.
	DefaultMaxStaleness = 15 * time.Second
	// DefaultAppClaim names the claim that holds the app id.
	DefaultAppClaim = "app"
	// DefaultUserClaim names the claim that holds the decimal user id.
	DefaultUserClaim = "sub"
	// DefaultRealm is the realm of the WWW-Authenticate challenge.
	DefaultRealm = "revocast"
)

// defaultAlgorithms are the signing algorithms accepted when [WithAlgorithms] is not given:
// asymmetric only, so that a public key can never be used as an HMAC secret.
var defaultAlgorithms = []string{"EdDSA", "ES256", "RS256"}

// Option configures a [Table]. Options check their arguments, so [New] reports a bad
// configuration instead of running with it.
type Option func(*config) error

type config struct {
	log           *zap.Logger
	keyfunc       jwt.Keyfunc
	algorithms    []string
	issuer        string
	audience      []string
	leeway        time.Duration
	appClaim      string
	userClaim     string
	sessionClaim  string
	sessionSet    bool // WithSessionClaim was given
	revocastKeys  bool // WithJWKS with revocast's JWKS: the tokens are revocast's own
	maxTokenSize  int
	maxLifetime   time.Duration
	clockSkew     time.Duration
	maxStaleness  time.Duration
	failOpen      bool
	requireAT     bool // refuse tokens not typed at+jwt, whatever key verifies them
	realm         string
	now           func() time.Time
	pullBatchSize int
	onApply       func(events.Event, uint64)
	snapshot      bool
	sigCacheSize  int
	fleet         fleetConfig
}

func defaultConfig() config {
	return config{
		log:           zap.NewNop(),
		algorithms:    defaultAlgorithms,
		appClaim:      DefaultAppClaim,
		userClaim:     DefaultUserClaim,
		maxTokenSize:  DefaultMaxTokenSize,
		clockSkew:     DefaultClockSkew,
		maxStaleness:  DefaultMaxStaleness,
		realm:         DefaultRealm,
		now:           time.Now,
		pullBatchSize: 1000,
		snapshot:      true,
	}
}

// WithLogger sets the logger. The default logs nothing. Tokens are never logged.
func WithLogger(log *zap.Logger) Option {
	return func(c *config) error {
		if log == nil {
			return errors.New("client: WithLogger: nil logger")
		}
		c.log = log
		return nil
	}
}

// WithKeyfunc sets the function that returns the key a token is verified with: an HMAC
// secret ([]byte), a public key (ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey) or a
// [jwt.VerificationKeySet], e.g. from a JWKS. Without it, the table verifies tokens minted
// by revocast with the keys revocast publishes (see [New]). Whatever the key function, a
// token that says it is not an access token is refused (see [WithRequireAccessTokenType]).
func WithKeyfunc(f jwt.Keyfunc) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("client: WithKeyfunc: nil key function")
		}
		c.keyfunc, c.revocastKeys = f, false
		return nil
	}
}

// WithJWKS verifies tokens with the keys of j. With revocast's JWKS ([NewJWKS]) the
// tokens are revocast's own, as with the keys over NATS: their session id is read from
// "sid" (unless [WithSessionClaim] says otherwise), so session revocations apply. With
// another issuer's ([NewIssuerJWKS]) it is [WithKeyfunc](j.Keyfunc).
func WithJWKS(j *JWKS) Option {
	return func(c *config) error {
		if j == nil {
			return errors.New("client: WithJWKS: nil JWKS")
		}
		c.keyfunc = j.Keyfunc
		c.revocastKeys = !j.issuer
		return nil
	}
}

// WithRequireAccessTokenType refuses, with [ErrNotAccessToken], every token whose "typ"
// header is not [AccessTokenType] ("at+jwt", or "application/at+jwt", in any case), for
// issuers that type their access tokens as RFC 9068 says. Tokens verified with revocast's
// own keys (without [WithKeyfunc], or with a [JWKS]) need it anyway. Without it, a token
// verified with a [WithKeyfunc] key may carry no "typ" or "JWT", but never a type that
// names another use ("rt+jwt", "id+jwt"...) nor a "token_use" claim other than "access".
func WithRequireAccessTokenType() Option {
	return func(c *config) error {
		c.requireAT = true
		return nil
	}
}

// WithAlgorithms sets the accepted signing algorithms ("alg" header), replacing the default
// of EdDSA, ES256 and RS256. HMAC algorithms (HS256...) must be listed here explicitly, and
// "none" is never accepted.
func WithAlgorithms(algs ...string) Option {
	return func(c *config) error {
		if len(algs) == 0 {
			return errors.New("client: WithAlgorithms: no algorithm")
		}
		for _, a := range algs {
			if a == "none" || a == "" || jwt.GetSigningMethod(a) == nil {
				return fmt.Errorf("client: WithAlgorithms: unsupported algorithm %q", a)
			}
		}
		c.algorithms = append([]string(nil), algs...)
		return nil
	}
}

// WithIssuer requires the "iss" claim to equal iss.
func WithIssuer(iss string) Option {
	return func(c *config) error {
		c.issuer = iss
		return nil
	}
}

// WithAudience requires the "aud" claim to contain one of aud.
func WithAudience(aud ...string) Option {
	return func(c *config) error {
		c.audience = append([]string(nil), aud...)
		return nil
	}
}

// WithLeeway allows for clock skew when checking "exp", "nbf" and "iat" against the time
// of this machine. It never applies to the revocation comparison.
func WithLeeway(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("client: WithLeeway: negative leeway %s", d)
		}
		c.leeway = d
		return nil
	}
}

// WithAppClaim names the claim that holds the app id (default "app"). The empty name means
// that tokens carry no app: only user watermarks apply to them.
func WithAppClaim(name string) Option {
	return func(c *config) error {
		c.appClaim = name
		return nil
	}
}

// DefaultSessionClaim names the claim that holds the login session in revocast's own
// tokens ("sid", as in OpenID Connect).
const DefaultSessionClaim = "sid"

// WithSessionClaim names the claim that holds the login session id, so that
// session.revoked events apply to the token (e.g. "sid"). Without it, tokens verified with
// revocast's own keys use [DefaultSessionClaim], and tokens of other issuers
// ([WithKeyfunc]) have no session: session revocation does not apply to them. The empty
// name turns sessions off. A token without the claim has no session; a token whose claim is
// not a valid session id ([events.ValidateSessionID]) is refused.
func WithSessionClaim(name string) Option {
	return func(c *config) error {
		c.sessionClaim, c.sessionSet = name, true
		return nil
	}
}

// WithUserClaim names the claim that holds the user id as a decimal string or an integer
// (default "sub"). It must not be empty.
func WithUserClaim(name string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("client: WithUserClaim: empty claim name")
		}
		c.userClaim = name
		return nil
	}
}

// WithMaxTokenSize caps the length of a token before it is parsed (default 8 KiB).
func WithMaxTokenSize(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("client: WithMaxTokenSize: %d is not positive", n)
		}
		c.maxTokenSize = n
		return nil
	}
}

// WithMaxTokenLifetime sets the longest lifetime (exp - iat) of an accepted token and lets
// the table drop watermarks older than now minus that lifetime: they can no longer revoke
// any token that is still valid. Tokens that live longer are refused, so pruning never lets
// a revoked token through. By default nothing is pruned and lifetimes are not limited.
func WithMaxTokenLifetime(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("client: WithMaxTokenLifetime: %s is not positive", d)
		}
		c.maxLifetime = d
		return nil
	}
}

// WithClockSkew sets how far in the future a watermark may lie before it is held back
// (default [DefaultClockSkew]). A watermark further ahead would lock its users out until
// that time (every new login would be revoked at once): the table logs and counts it, and
// applies it only once it has come within the skew. It is never dropped, so every table
// ends with the same watermarks whenever it started.
func WithClockSkew(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("client: WithClockSkew: negative skew %s", d)
		}
		c.clockSkew = d
		return nil
	}
}

// WithMaxStaleness sets how long ago JetStream may last have confirmed that the table holds
// every event before the table is stale (default [DefaultMaxStaleness]). The table asks
// several times per period, so an idle system with a healthy NATS stays fresh.
func WithMaxStaleness(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("client: WithMaxStaleness: %s is not positive", d)
		}
		c.maxStaleness = d
		return nil
	}
}

// WithFailOpen accepts tokens while the table is stale, instead of refusing them with
// [ErrStale]. Each such acceptance is counted in [Stats] and logged (at most once a second).
// It does not apply before the table is ready.
func WithFailOpen() Option {
	return func(c *config) error {
		c.failOpen = true
		return nil
	}
}

// WithRealm sets the realm of the WWW-Authenticate challenge sent by [Table.Middleware].
func WithRealm(realm string) Option {
	return func(c *config) error {
		for i := 0; i < len(realm); i++ {
			if b := realm[i]; b < 0x20 || b > 0x7e || b == '"' || b == '\\' {
				return fmt.Errorf("client: WithRealm: %q has characters a quoted string cannot hold", realm)
			}
		}
		c.realm = realm
		return nil
	}
}

// WithOnApply calls f, on the follow goroutine, after each event is applied, with the event
// and its stream sequence: for metrics, audit hooks and measuring propagation. f must be
// quick; the table applies nothing else while it runs. Watermarks a table starts with from
// a snapshot ([WithSnapshot]) are not events and do not reach f.
func WithOnApply(f func(ev events.Event, seq uint64)) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("client: WithOnApply: nil function")
		}
		c.onApply = f
		return nil
	}
}

// WithSnapshot(false) makes the table bootstrap from the stream (the latest event of every
// subject) even when the broadcaster has written a snapshot. By default a table starts
// from the snapshot in events.SnapshotBucket when there is one for its stream, and then
// reads only the events after it; the resulting table is the same either way, the snapshot
// is only faster with many users. Watermarks loaded from a snapshot are not passed to
// [WithOnApply].
func WithSnapshot(enabled bool) Option {
	return func(c *config) error {
		c.snapshot = enabled
		return nil
	}
}
