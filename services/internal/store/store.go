// Package store keeps revocast's state in JetStream, which is its only database: the
// revocation stream (the audit log) and two KV buckets for apps and admin API keys. Keys
// are stored as hashes only and checked in constant time.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
)

// Bucket names in JetStream KV.
const (
	AppsBucket = "revocast_apps"
	KeysBucket = "revocast_keys"
)

// Scopes an admin API key may hold.
const (
	// ScopeUsersReset allows POST /v2/users/reset/{id}.
	ScopeUsersReset = "users:reset"
	// ScopeAuditRead allows reading the audit log through the API.
	ScopeAuditRead = "audit:read"
	// ScopeFleetRead allows reading the live fleet (GET /v1/fleet).
	ScopeFleetRead = "fleet:read"
	// ScopeSessionsRevoke allows POST /v2/sessions/revoke/{sid}.
	ScopeSessionsRevoke = "sessions:revoke"
)

// AllScopes is what a new key gets when no scope is named.
var AllScopes = []string{ScopeUsersReset, ScopeAuditRead, ScopeFleetRead, ScopeSessionsRevoke}

// Errors; the API maps them to status codes in one place.
var (
	ErrExists       = errors.New("store: already exists")
	ErrNotFound     = errors.New("store: not found")
	ErrUnauthorized = errors.New("store: unknown or wrong key")
	ErrForbidden    = errors.New("store: key not allowed")
	ErrInvalid      = errors.New("store: invalid input")
	ErrNotSetUp     = errors.New("store: revocast stream and buckets not found")
	// ErrUnavailable wraps every failure to reach JetStream or get an acknowledgement.
	ErrUnavailable = errors.New("store: JetStream unavailable")
	// ErrNotStored is a publish that certainly stored nothing: JetStream refused it (a full
	// stream, say), or it was never sent, or no stream received it. It comes with
	// ErrUnavailable.
	ErrNotStored = errors.New("store: event not stored")
	// ErrUnknownOutcome is a publish that was sent but whose acknowledgement did not come
	// (a timeout, a connection lost after sending): the event may be stored. It comes with
	// ErrUnavailable.
	ErrUnknownOutcome = errors.New("store: event may or may not be stored")
)

// Config is how the stream and buckets are created.
type Config struct {
	// Replicas is the number of copies JetStream keeps: 1 on the embedded default, 3 on a
	// cluster.
	Replicas int
}

// StreamConfig is the configuration of the revocation stream. It is the audit log: delete
// and purge are denied by the stream itself, and when a limit is reached new writes are
// refused (DiscardNew) instead of old revocations being dropped.
func StreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "revocast revocation events (append-only audit log)",
		Subjects:    []string{events.StreamSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		MaxMsgSize:  events.MaxEventSize,
		Duplicates:  2 * time.Minute,
		Replicas:    replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

func bucketConfig(name, desc string, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: desc,
		History:     10,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Store is revocast's state on JetStream.
type Store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	apps   jetstream.KeyValue
	keys   jetstream.KeyValue
	now    func() time.Time
	heads  heads
	// keyMirror and appMirror hold the buckets in memory while WatchCredentials runs.
	keyMirror mirror[APIKey]
	appMirror mirror[App]
}

// Setup creates or updates the stream and the buckets, then opens the store. revocastd
// calls it at start; it is idempotent.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	stream, err := js.CreateOrUpdateStream(ctx, StreamConfig(cfg.Replicas))
	if err != nil {
		return nil, fmt.Errorf("%w: create stream %s: %v", ErrUnavailable, events.StreamName, err)
	}
	apps, err := js.CreateOrUpdateKeyValue(ctx, bucketConfig(AppsBucket, "revocast apps (root key hashes)", cfg.Replicas))
	if err != nil {
		return nil, fmt.Errorf("%w: create bucket %s: %v", ErrUnavailable, AppsBucket, err)
	}
	keys, err := js.CreateOrUpdateKeyValue(ctx, bucketConfig(KeysBucket, "revocast admin API keys (hashes)", cfg.Replicas))
	if err != nil {
		return nil, fmt.Errorf("%w: create bucket %s: %v", ErrUnavailable, KeysBucket, err)
	}
	return &Store{js: js, stream: stream, apps: apps, keys: keys, now: time.Now}, nil
}

// Open binds to a stream and buckets that revocastd has already set up; the CLI uses it.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, notSetUp(events.StreamName, err)
	}
	apps, err := js.KeyValue(ctx, AppsBucket)
	if err != nil {
		return nil, notSetUp(AppsBucket, err)
	}
	keys, err := js.KeyValue(ctx, KeysBucket)
	if err != nil {
		return nil, notSetUp(KeysBucket, err)
	}
	return &Store{js: js, stream: stream, apps: apps, keys: keys, now: time.Now}, nil
}

func notSetUp(name string, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w: %s does not exist yet; start revocastd once against this NATS so it creates them", ErrNotSetUp, name)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, name, err)
}

// Publish stores one event in the stream and returns only once JetStream acknowledged it.
//
// A subscriber bootstraps from the latest event of each subject, so watermarks must never
// go down along a subject: if the subject's latest event has a later not_before (another
// replica's clock runs ahead), ev takes that not_before. The write is conditional on the
// subject's last sequence, so two replicas racing on one subject cannot interleave; the loser
// reads again and retries.
//
// The event id is the Nats-Msg-Id, so when the same event is published again (a retry after
// a lost ack) the stream keeps one copy. Transient "no responders" during a leader election
// are retried within ctx.
//
// A failed publish is [ErrNotStored] when nothing was stored for certain, and
// [ErrUnknownOutcome] when the event was sent and no acknowledgement came in time: it may be
// stored. Failures before the publish (reading the subject's last event) are ErrUnavailable
// alone: nothing was sent.
func (s *Store) Publish(ctx context.Context, ev events.Event) (Stored, error) {
	if err := ev.Validate(); err != nil {
		return Stored{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// A watermark beyond the clients' clock-skew margin would be refused by every client.
	if limit := s.now().Add(MaxClockSkew); ev.NotBefore.After(limit) {
		return Stored{}, fmt.Errorf("%w: not_before %s is %s ahead of this machine's clock (limit %s); check the clock of whoever set it",
			ErrInvalid, ev.NotBefore.Format(time.RFC3339Nano), ev.NotBefore.Sub(s.now()).Round(time.Millisecond), MaxClockSkew)
	}
	subject := ev.Subject()
	// First try with what this process last stored on the subject (nothing, for a subject
	// it has not written): the common case needs no read. A wrong guess is refused by the
	// server, and then the subject's last event is read.
	head, known := s.heads.get(subject)
	for attempt := 1; ; attempt++ {
		if !known {
			last, err := s.stream.GetLastMsgForSubject(ctx, subject)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
				head = subjectHead{}
			case err != nil:
				return Stored{}, fmt.Errorf("%w: read last event of %s: %v", ErrUnavailable, subject, err)
			default:
				head = subjectHead{seq: last.Sequence}
				if prev, err := events.Decode(last.Data); err == nil {
					head.notBefore = prev.NotBefore
				}
			}
		}
		// Raise to the subject's latest watermark, unless that one lies beyond the skew
		// margin: a broken clock wrote it, clients hold it back, and this later event
		// replaces it for them (following it would get this event held back too).
		if head.notBefore.After(ev.NotBefore) && !head.notBefore.After(s.now().Add(MaxClockSkew)) {
			ev.NotBefore = head.notBefore
		}
		data, err := events.Encode(ev)
		if err != nil {
			return Stored{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		ack, err := s.js.Publish(ctx, subject, data,
			jetstream.WithMsgID(ev.ID),
			jetstream.WithExpectStream(events.StreamName),
			jetstream.WithExpectLastSequencePerSubject(head.seq),
			jetstream.WithRetryAttempts(20),
			jetstream.WithRetryWait(100*time.Millisecond),
		)
		if err == nil {
			s.heads.put(subject, subjectHead{seq: ack.Sequence, notBefore: ev.NotBefore})
			return Stored{Event: ev, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
		}
		if wrongLastSequence(err) && attempt < 50 && ctx.Err() == nil {
			known = false // another publisher wrote the subject: read it
			continue
		}
		return Stored{}, fmt.Errorf("%w: %w: publish %s: %v", ErrUnavailable, publishOutcome(err), subject, err)
	}
}

// publishOutcome says what a failed publish is known to have done. Only an answer from
// JetStream (an API error such as a full stream), "no responders" (no stream received the
// message), or a failure before the message left (closed connection, bad message) means
// nothing was stored. After a timeout or a connection lost while waiting, the event may be
// stored and only its acknowledgement missing: the caller must not say it was not.
func publishOutcome(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrInvalidConnection), errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, nats.ErrBadSubject), errors.Is(err, jetstream.ErrInvalidOption):
		return ErrNotStored
	}
	return ErrUnknownOutcome
}

// subjectHead is the last event this process stored on a subject.
type subjectHead struct {
	seq       uint64
	notBefore time.Time
}

// heads remembers subjectHeads, up to a bound; past it, it forgets them all (a forgotten
// subject costs one read on its next write, nothing more).
type heads struct {
	mu sync.Mutex
	m  map[string]subjectHead
}

const maxHeads = 1 << 16

func (h *heads) get(subject string) (subjectHead, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[subject]
	return v, ok
}

func (h *heads) put(subject string, v subjectHead) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxHeads {
		h.m = make(map[string]subjectHead)
	}
	if old, ok := h.m[subject]; !ok || v.seq > old.seq {
		h.m[subject] = v
	}
}

func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Ping checks that the stream answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.stream.Info(ctx); err != nil {
		return fmt.Errorf("%w: stream info: %v", ErrUnavailable, err)
	}
	return nil
}

// ClockOffset estimates how far the NATS server's clock is ahead of this machine's (negative:
// behind), from the time stamp of a stream info answer. Watermarks are set from the
// publisher's clock and checked against each client's; an offset of more than a second
// means a clock needs fixing.
func (s *Store) ClockOffset(ctx context.Context) (time.Duration, error) {
	sent := s.now()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: stream info: %v", ErrUnavailable, err)
	}
	received := s.now()
	if info.TimeStamp.IsZero() {
		return 0, nil // an older server does not say
	}
	mid := sent.Add(received.Sub(sent) / 2)
	return info.TimeStamp.Sub(mid), nil
}

// Stream returns the revocation stream handle.
func (s *Store) Stream() jetstream.Stream { return s.stream }

func kvErr(op string, err error) error {
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return ErrNotFound
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return 0, kvErr("get "+key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("%w: decode %s/%s: %v", ErrUnavailable, kv.Bucket(), key, err)
	}
	return e.Revision(), nil
}

func listJSON[T any](ctx context.Context, kv jetstream.KeyValue) ([]T, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, kvErr("list", err)
	}
	var names []string
	for k := range lister.Keys() {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]T, 0, len(names))
	for _, k := range names {
		var v T
		if _, err := getJSON(ctx, kv, k, &v); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // deleted between list and get
			}
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// MaxClockSkew is how far ahead of the publisher's clock a not_before may lie. It equals
// the clients' default margin (client.DefaultClockSkew), past which they refuse an event.
const MaxClockSkew = 5 * time.Second

// Stored is an event as the stream holds it: not_before may have been raised (see
// [Store.Publish]).
type Stored struct {
	Event     events.Event
	Seq       uint64
	Duplicate bool // the event id was already stored; nothing new was written
}
