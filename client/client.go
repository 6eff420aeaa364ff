// Package client is what a resource server imports so that revoked tokens are rejected
// locally, with no network call per request.
//
// A [Table] follows the revocation stream in NATS JetStream: it bootstraps from the
// broadcaster's latest snapshot of the table and the events after it (or, without one, from
// the latest event per subject), then applies every new event as it arrives, and recovers by
// itself from disconnects and server restarts without missing an event. Each event is a
// not-before watermark, for an app, a user or a login session; a token issued before a
// watermark that applies to it is revoked. [Table.Verify] checks a JWT (signature, algorithms, exp, iat,
// size, that it is an access token) and then the watermarks; [Table.Middleware] does the
// same for net/http handlers.
//
// The caller owns the follow loop:
//
//	t, err := client.New(nc) // revocast's own keys; or client.WithKeyfunc(keyfunc)
//	...
//	go t.Run(ctx)
//	if err := t.WaitReady(ctx); err != nil { ... }
//	http.Handle("/", t.Middleware(handler))
//
// The table also knows how fresh it is: how long ago JetStream last confirmed that it holds
// every event. Past [WithMaxStaleness] it refuses tokens with [ErrStale] (503 in the
// middleware) unless [WithFailOpen] was chosen.
package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/revocast/revocast/events"
)

// Errors returned by [Table.Verify] and [Table.CheckIssuedAt]; wrapped with detail, test
// with errors.Is.
var (
	// ErrInvalidToken means the token is malformed, badly signed, expired, or misses a
	// required claim. Errors from golang-jwt are wrapped too (e.g. jwt.ErrTokenExpired).
	ErrInvalidToken = errors.New("client: invalid token")
	// ErrNotAccessToken means the token says it is something other than an access token:
	// a refresh token, an ID token, or a token of another explicit type. It always comes
	// wrapped with [ErrInvalidToken].
	ErrNotAccessToken = errors.New("client: not an access token")
	// ErrMissingToken means the request carries no bearer token.
	ErrMissingToken = errors.New("client: missing bearer token")
	// ErrRevoked means the token was issued before a watermark of its app, user or session.
	ErrRevoked = errors.New("client: token revoked")
	// ErrNotReady means the table has not caught up with the stream yet.
	ErrNotReady = errors.New("client: revocation table not ready")
	// ErrStale means JetStream has not confirmed the table for longer than the maximum
	// staleness, and the table fails closed.
	ErrStale = errors.New("client: revocation table stale")
	// ErrRunning is returned by a second concurrent call of [Table.Run].
	ErrRunning = errors.New("client: table is already running")
)

// Table is the local copy of every revocation watermark, kept up to date by [Table.Run].
// Its lookups take no lock and allocate nothing; it is safe for concurrent use.
type Table struct {
	nc       *nats.Conn
	cfg      config
	log      *zap.Logger
	parser   *jwt.Parser
	issuer   *issuerKeys // revocast's own keys, when no key function was given
	sigCache *sigCache   // nil without WithSignatureCache
	epoch    time.Time   // freshness times are durations since epoch, on the monotonic clock

	users atomic.Pointer[userTable]
	apps  atomic.Pointer[appTable]
	// appIndex is apps for the request path: see [appIndex]. setApps publishes both.
	appIndex atomic.Pointer[appIndex]
	// sessions is a second table of the users' kind, keyed by events.SessionDigest.
	sessions atomic.Pointer[userTable]
	// writeMu serializes writers (the follow loop, pruning); readers never take it.
	writeMu sync.Mutex
	// Watermarks that lay further in the future than the clock skew when they arrived,
	// applied once they come within it. Guarded by writeMu.
	heldApps     map[string]int64
	heldUsers    map[int64]int64
	heldSessions map[int64]int64 // by session digest
	// lastStored is when JetStream stored the event at lastSeq, Unix ns. Guarded by writeMu.
	lastStored int64

	running      atomic.Bool
	following    atomic.Bool                        // a consumer is delivering to the table
	stopConsumer atomic.Pointer[context.CancelFunc] // ends the current consumer
	rewound      atomic.Bool                        // the stream was replaced: start over
	ready        atomic.Bool
	readyCh      chan struct{}
	readyOnce    sync.Once
	kick         chan struct{} // asks the freshness poller for a confirmation now
	appliedKick  chan struct{} // tells the fleet reporter that events were applied

	lastSeq       atomic.Uint64           // stream sequence of the last event handled
	snapshotSeq   atomic.Uint64           // sequence of the snapshot the table started from
	streamCreated atomic.Int64            // creation of the stream followed, Unix ns
	freshAt       atomic.Int64            // when JetStream last confirmed the table, since epoch; 0 never
	pending       atomic.Pointer[confirm] // a confirmation waiting for the loop to reach a sequence
	lastWarn      atomic.Int64            // last fail-open log line, since epoch

	applied, invalid, held, failOpen, pruned atomic.Uint64
}

// confirm says: at sentAt the stream ended at lastSeq.
type confirm struct {
	sentAt  int64
	lastSeq uint64
}

// New returns a table that reads revocations through nc. It does nothing on the network
// until [Table.Run] is called. Without [WithKeyfunc], tokens are verified with the public
// keys that revocast publishes in the events.PublicKeysBucket KV bucket (EdDSA, chosen by
// the "kid" header), and the table is ready only once it has read them.
func New(nc *nats.Conn, opts ...Option) (*Table, error) {
	if nc == nil {
		return nil, errors.New("client: nil NATS connection")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	cfg.setupFleet()
	t := &Table{
		nc:      nc,
		cfg:     cfg,
		log:     cfg.log.Named("revocast"),
		parser:  newParser(cfg),
		epoch:   time.Now(),
		readyCh: make(chan struct{}),
		kick:    make(chan struct{}, 1),

		appliedKick: make(chan struct{}, 1),

		heldApps:     map[string]int64{},
		heldUsers:    map[int64]int64{},
		heldSessions: map[int64]int64{},
	}
	if cfg.sigCacheSize > 0 {
		t.sigCache = newSigCache(cfg.sigCacheSize)
	}
	if (cfg.keyfunc == nil || cfg.revocastKeys) && !cfg.sessionSet {
		t.cfg.sessionClaim = DefaultSessionClaim
	}
	if cfg.keyfunc == nil {
		t.issuer = newIssuerKeys()
		t.cfg.keyfunc = t.issuer.keyfunc
	}
	t.users.Store(newUserTable(0))
	t.sessions.Store(newUserTable(0))
	t.setApps(appTable{})
	return t, nil
}

// mono is the time since t.epoch on the monotonic clock, never 0.
func (t *Table) mono() int64 { return int64(time.Since(t.epoch)) + 1 }

// apply raises the watermark named by ev. A watermark further in the future than the clock
// skew is held back instead, and applied once it comes within the skew: applied at once it
// would lock the users out until then, and dropped it would be a revocation lost (a table
// that starts later, from the stream or a snapshot, applies it). A later event on the same
// subject replaces a held watermark, as the latest event per subject does for a table that
// bootstraps from the stream: the publisher does not raise new events to a watermark that
// far ahead, it takes it for a broken clock. apply reports whether the watermark applies
// now.
func (t *Table) apply(ev events.Event) bool {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	return t.applyLocked(ev)
}

// applyLocked is apply for a caller that holds writeMu.
func (t *Table) applyLocked(ev events.Event) bool {
	nb := ev.NotBefore.UnixNano()
	held := nb > t.heldLimit()
	switch ev.Type {
	case events.TypeAppFlushed:
		delete(t.heldApps, ev.AppID)
		if held {
			t.heldApps[ev.AppID] = nb
		} else {
			t.putApp(ev.AppID, nb)
		}
	case events.TypeUserReset:
		delete(t.heldUsers, ev.UserID)
		if held {
			t.heldUsers[ev.UserID] = nb
		} else {
			t.putUser(ev.UserID, nb)
		}
	case events.TypeSessionRevoked:
		d := events.SessionDigest(ev.SessionID)
		delete(t.heldSessions, d)
		if held {
			t.heldSessions[d] = nb
		} else {
			t.putSession(d, nb)
		}
	}
	if held {
		t.held.Add(1)
		return false
	}
	t.applied.Add(1)
	return true
}

// heldLimit is the latest watermark that applies now, in Unix nanoseconds.
func (t *Table) heldLimit() int64 { return t.cfg.now().Add(t.cfg.clockSkew).UnixNano() }

// releaseHeld applies the held watermarks that have come within the clock skew, and
// returns how many.
func (t *Table) releaseHeld() (n int) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	limit := t.heldLimit()
	for id, nb := range t.heldApps {
		if nb <= limit {
			t.putApp(id, nb)
			delete(t.heldApps, id)
			n++
		}
	}
	for id, nb := range t.heldUsers {
		if nb <= limit {
			t.putUser(id, nb)
			delete(t.heldUsers, id)
			n++
		}
	}
	for d, nb := range t.heldSessions {
		if nb <= limit {
			t.putSession(d, nb)
			delete(t.heldSessions, d)
			n++
		}
	}
	return n
}

// putUser needs writeMu.
func (t *Table) putUser(id, nb int64) { putKeyed(&t.users, id, nb) }

// putSession needs writeMu; digest is the session's events.SessionDigest.
func (t *Table) putSession(digest, nb int64) { putKeyed(&t.sessions, digest, nb) }

// putKeyed raises a watermark in a user or session table. The caller holds writeMu.
func putKeyed(p *atomic.Pointer[userTable], id, nb int64) {
	u := p.Load()
	if g := u.grown(); g != u {
		// Readers keep using the old table until the new one is published.
		p.Store(g)
		u = g
	}
	u.put(id, nb)
}

// putApp needs writeMu.
func (t *Table) putApp(id string, nb int64) {
	apps := *t.apps.Load()
	if v, ok := apps[id]; ok {
		if nb > v.Load() {
			v.Store(nb)
		}
		return
	}
	next := make(appTable, len(apps)+1)
	for k, v := range apps {
		next[k] = v
	}
	v := new(atomic.Int64)
	v.Store(nb)
	next[id] = v
	t.setApps(next)
}

// setApps publishes a new app map and its index. The caller holds writeMu (or is New).
func (t *Table) setApps(a appTable) {
	t.appIndex.Store(newAppIndex(a))
	t.apps.Store(&a)
}

// reserve grows the user table ahead of a bootstrap of n events, so it does not regrow.
func (t *Table) reserve(n int) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	u := t.users.Load()
	if n*4 > len(u.slots)*3 {
		t.users.Store(u.rebuilt(n, 0))
	}
}

// prune drops every watermark older than cutoff: it cannot revoke a token that is still
// valid when no token lives longer than the maximum token lifetime.
func (t *Table) prune(cutoff time.Time) (dropped int) {
	c := cutoff.UnixNano()
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	for _, p := range []*atomic.Pointer[userTable]{&t.users, &t.sessions} {
		u := p.Load()
		n := u.rebuilt(u.count, c)
		if d := u.count - n.count; d > 0 {
			dropped += d
			p.Store(n)
		}
	}
	apps := *t.apps.Load()
	next := make(appTable, len(apps))
	for k, v := range apps {
		if v.Load() >= c {
			next[k] = v
		}
	}
	if len(next) < len(apps) {
		dropped += len(apps) - len(next)
		t.setApps(next)
	}
	t.pruned.Add(uint64(dropped))
	return dropped
}

// notBefore is the watermark that applies to a user of an app, in Unix nanoseconds, 0 if
// none. This is the lookup on the request path.
func (t *Table) notBefore(appID string, userID int64) int64 {
	return t.lookup(appID, userID, 0)
}

// lookup is the watermark that applies to a token of a user of an app in a session (by
// digest, 0 for none), in Unix nanoseconds, 0 if none. This is the lookup on the request
// path. It reads the home slots of the user and of the session before it compares
// anything, so that their two cache misses (in a large table) overlap, and checks the app
// (loads that hit the cache) while they are on their way. Only a key found away from its
// home slot costs a probe; the common path makes no call but the app id's comparison, so
// that on a run of requests the processor has room to fetch the next slots too.
func (t *Table) lookup(appID string, userID, session int64) int64 {
	u, ss := t.users.Load(), t.sessions.Load()
	us := u.homeSlot(userID)
	var sk, snb int64
	if session != 0 {
		sl := ss.homeSlot(session)
		sk, snb = sl.key.Load(), sl.nb.Load() // key first: see watermarks.go
	}
	uk, unb := us.key.Load(), us.nb.Load()
	var nb int64
	if appID != "" { // appIndex.get, with the home slot's check inlined
		x := t.appIndex.Load()
		i := x.home(appID)
		if s := &x.slots[i]; s.id == appID {
			nb = s.nb.Load()
		} else if s.id != "" {
			nb = x.probe(appID, i)
		}
	}
	if uk == userID && uk != 0 {
		nb = max(nb, unb)
	} else if uk != 0 {
		nb = max(nb, u.get(userID))
	}
	if sk == session { // also session 0: sk and snb are 0 then
		nb = max(nb, snb)
	} else if sk != 0 {
		nb = max(nb, ss.get(session))
	}
	return nb
}

// sessionNotBefore is the watermark of a session by its digest, 0 if none or digest is 0
// (a token without a session).
func (t *Table) sessionNotBefore(digest int64) int64 {
	if digest == 0 {
		return 0
	}
	return t.sessions.Load().get(digest)
}

// SessionNotBefore returns the watermark of login session sid: its tokens issued before it
// are revoked. It is the zero time when none applies. It takes no lock and allocates
// nothing.
func (t *Table) SessionNotBefore(sid string) time.Time {
	nb := t.sessionNotBefore(events.SessionDigest(sid))
	if nb == 0 {
		return time.Time{}
	}
	return time.Unix(0, nb)
}

// NotBefore returns the watermark that applies to a user of an app: tokens issued before it
// are revoked. It is the zero time when no watermark applies. An empty appID looks at the
// user only. It takes no lock and allocates nothing.
func (t *Table) NotBefore(appID string, userID int64) time.Time {
	nb := t.notBefore(appID, userID)
	if nb == 0 {
		return time.Time{}
	}
	return time.Unix(0, nb)
}

// Ready reports whether the table can decide now: it has caught up with the stream, and
// JetStream confirmed it within the maximum staleness ([WithMaxStaleness]). It turns false
// when the table has not been able to follow the stream for that long (whether or not
// [WithFailOpen] was chosen), which is when [Table.Verify] starts to refuse tokens with
// [ErrStale], and true again once the table has caught up. A readiness probe built on it
// takes a resource server out of service exactly while it would answer 503.
func (t *Table) Ready() bool { return t.ready.Load() && t.Staleness() <= t.cfg.maxStaleness }

// WaitReady blocks until the table has caught up with the stream for the first time, or
// ctx is done.
func (t *Table) WaitReady(ctx context.Context) error {
	select {
	case <-t.readyCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitApplied blocks until the table has handled the event at stream sequence seq (and so
// every event before it), or ctx is done. A caller that has just read the stream's last
// sequence uses it to act on a decision only once the table holds every revocation stored
// until then.
func (t *Table) WaitApplied(ctx context.Context, seq uint64) error {
	wait := 100 * time.Microsecond
	for t.lastSeq.Load() < seq {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the table has not applied stream sequence %d (it is at %d): %v", ErrNotReady, seq, t.lastSeq.Load(), ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Millisecond)
	}
	return nil
}

// Staleness is the time since JetStream last confirmed that the table holds every event
// in the stream. Before the first confirmation it is the largest duration.
func (t *Table) Staleness() time.Duration {
	at := t.freshAt.Load()
	if at == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(t.mono() - at)
}

// Stats is a snapshot of a table's counters, for metrics and health checks.
type Stats struct {
	Ready            bool          // see [Table.Ready]
	Following        bool          // a consumer is delivering the stream to the table
	Apps             int           // apps with a watermark
	Users            int           // users with a watermark
	Sessions         int           // sessions with a watermark
	EventsApplied    uint64        // events applied since New (duplicates included)
	EventsInvalid    uint64        // undecodable or invalid events, skipped
	EventsHeld       uint64        // events (and snapshot entries) with a watermark further ahead than the clock skew
	Held             int           // of those, watermarks still held back: applied once within the skew
	EntriesPruned    uint64        // watermarks dropped as older than the max token lifetime
	LastSequence     uint64        // stream sequence of the last event handled
	SnapshotSequence uint64        // sequence of the snapshot the table started from, 0 if none
	Staleness        time.Duration // see [Table.Staleness]
	FailOpenAccepts  uint64        // tokens accepted while stale, with [WithFailOpen]
	CacheHits        uint64        // tokens found in the signature cache ([WithSignatureCache])
	CacheMisses      uint64        // tokens looked up in the signature cache and not found
	CacheEntries     int           // tokens in the signature cache
}

// Stats returns a snapshot of the table's counters.
func (t *Table) Stats() Stats {
	t.writeMu.Lock()
	users, sessions := t.users.Load().count, t.sessions.Load().count
	held := len(t.heldApps) + len(t.heldUsers) + len(t.heldSessions)
	t.writeMu.Unlock()
	s := Stats{
		Ready:            t.Ready(),
		Following:        t.following.Load(),
		Apps:             len(*t.apps.Load()),
		Users:            users,
		Sessions:         sessions,
		EventsApplied:    t.applied.Load(),
		EventsInvalid:    t.invalid.Load(),
		EventsHeld:       t.held.Load(),
		Held:             held,
		EntriesPruned:    t.pruned.Load(),
		LastSequence:     t.lastSeq.Load(),
		SnapshotSequence: t.snapshotSeq.Load(),
		Staleness:        t.Staleness(),
		FailOpenAccepts:  t.failOpen.Load(),
	}
	if t.sigCache != nil {
		s.CacheHits, s.CacheMisses, s.CacheEntries = t.sigCache.hits.Load(), t.sigCache.misses.Load(), t.sigCache.len()
	}
	return s
}
