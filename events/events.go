// Package events is the wire contract of revocast: the revocation events that the
// broadcaster publishes to JetStream and that every client applies, the subjects they are
// stored on, and the validation that keeps ids from injecting subject tokens.
//
// It uses the standard library only, so anything that reads the stream (resource servers,
// auditors, other languages through the golden files in testdata/) can depend on it cheaply.
package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is the schema version written in every event's "v" field. Decode refuses any
// other version rather than guess at fields it does not know.
const Version = 1

// Stream layout. Every event is stored on a subject per key, so the latest event per subject
// is the compacted view a subscriber bootstraps from.
const (
	// StreamName is the JetStream stream that holds every revocation event.
	StreamName = "REVOCATIONS"
	// SubjectPrefix starts every revocation subject.
	SubjectPrefix = "revocation."
	// StreamSubjects is the subject filter of the stream.
	StreamSubjects = SubjectPrefix + ">"
	// AppFlushedPrefix is followed by the app id.
	AppFlushedPrefix = SubjectPrefix + "app.flushed."
	// UserResetPrefix is followed by the decimal user id.
	UserResetPrefix = SubjectPrefix + "user.reset."
	// SessionRevokedPrefix is followed by the session id.
	SessionRevokedPrefix = SubjectPrefix + "session.revoked."
	// AppFlushedSubjects matches every app.flushed event.
	AppFlushedSubjects = AppFlushedPrefix + "*"
	// UserResetSubjects matches every user.reset event.
	UserResetSubjects = UserResetPrefix + "*"
	// SessionRevokedSubjects matches every session.revoked event.
	SessionRevokedSubjects = SessionRevokedPrefix + "*"
)

// Type names what an event revokes.
type Type string

const (
	// TypeAppFlushed invalidates every token of one app issued before NotBefore.
	TypeAppFlushed Type = "app.flushed"
	// TypeUserReset invalidates every token of one user, in every app, issued before NotBefore.
	TypeUserReset Type = "user.reset"
	// TypeSessionRevoked invalidates every token of one login session (one device) issued
	// before NotBefore; the user's other sessions are untouched (OpenID CAEP's
	// session-revoked).
	TypeSessionRevoked Type = "session.revoked"
)

// Limits on the free-text fields, so an event stays small whatever a caller sends.
const (
	MaxAppIDLen     = 64
	MaxSessionIDLen = 128
	MaxReasonLen    = 512
	MaxActorLen     = 128
	MaxSourceLen    = 256
	MaxEventSize    = 4096
	maxUserIDDigits = 19
)

var (
	minNotBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxNotBefore = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Errors returned by validation and decoding; wrapped with detail, test with errors.Is.
var (
	ErrInvalidAppID     = errors.New("events: invalid app id")
	ErrInvalidUserID    = errors.New("events: invalid user id")
	ErrInvalidSessionID = errors.New("events: invalid session id")
	ErrInvalidEvent     = errors.New("events: invalid event")
	ErrVersion          = errors.New("events: unsupported event version")
)

// Event is one revocation. Its JSON form is frozen by testdata/*.golden.json.
type Event struct {
	// Version is the schema version, always [Version] when written by this package.
	Version int `json:"v"`
	// ID is unique per event; it is also the Nats-Msg-Id, so a retried publish is stored once.
	ID string `json:"id"`
	// Type says which of AppID, UserID or SessionID is set.
	Type Type `json:"type"`
	// AppID is set for [TypeAppFlushed].
	AppID string `json:"app_id,omitempty"`
	// UserID is set for [TypeUserReset]; it is a string on the wire so that readers in
	// languages with 53-bit numbers keep every digit.
	UserID int64 `json:"user_id,omitempty,string"`
	// SessionID is set for [TypeSessionRevoked]: the token's "sid" claim, an opaque string
	// (see [ValidateSessionID]).
	SessionID string `json:"session_id,omitempty"`
	// NotBefore is the watermark: tokens issued before it (the same second included, for
	// whole-second iat) are revoked.
	NotBefore time.Time `json:"not_before"`
	// Actor is the public name of the credential that asked for the revocation, never a secret.
	Actor string `json:"actor"`
	// Source tells where the request came from.
	Source Source `json:"source"`
	// Reason is an optional note from the caller.
	Reason string `json:"reason,omitempty"`
}

// Source records where a revocation was asked from, for the audit trail.
type Source struct {
	RemoteAddr string `json:"remote_addr,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
}

// NewAppFlushed returns an app.flushed event with a fresh id. It validates appID.
func NewAppFlushed(appID string, notBefore time.Time, actor string) (Event, error) {
	if err := ValidateAppID(appID); err != nil {
		return Event{}, err
	}
	return Event{Version: Version, ID: NewID(), Type: TypeAppFlushed, AppID: appID,
		NotBefore: notBefore.UTC(), Actor: actor}, nil
}

// NewUserReset returns a user.reset event with a fresh id. It validates userID.
func NewUserReset(userID int64, notBefore time.Time, actor string) (Event, error) {
	if userID <= 0 {
		return Event{}, fmt.Errorf("%w: %d is not a positive integer", ErrInvalidUserID, userID)
	}
	return Event{Version: Version, ID: NewID(), Type: TypeUserReset, UserID: userID,
		NotBefore: notBefore.UTC(), Actor: actor}, nil
}

// NewSessionRevoked returns a session.revoked event with a fresh id. It validates sid.
func NewSessionRevoked(sid string, notBefore time.Time, actor string) (Event, error) {
	if err := ValidateSessionID(sid); err != nil {
		return Event{}, err
	}
	return Event{Version: Version, ID: NewID(), Type: TypeSessionRevoked, SessionID: sid,
		NotBefore: notBefore.UTC(), Actor: actor}, nil
}

// NewID returns a random 128-bit event id as 32 hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

// Subject is the JetStream subject the event is stored on.
func (e Event) Subject() string {
	switch e.Type {
	case TypeAppFlushed:
		return AppFlushedPrefix + e.AppID
	case TypeUserReset:
		return UserResetPrefix + strconv.FormatInt(e.UserID, 10)
	case TypeSessionRevoked:
		return SessionRevokedPrefix + e.SessionID
	}
	return ""
}

// Validate checks every field, so that nothing malformed is ever published or applied.
func (e Event) Validate() error {
	if e.Version != Version {
		return fmt.Errorf("%w: v=%d, this build reads v=%d", ErrVersion, e.Version, Version)
	}
	if !validID(e.ID) {
		return fmt.Errorf("%w: id %q is not 32 hex digits", ErrInvalidEvent, e.ID)
	}
	switch e.Type {
	case TypeAppFlushed:
		if err := ValidateAppID(e.AppID); err != nil {
			return err
		}
		if e.UserID != 0 || e.SessionID != "" {
			return fmt.Errorf("%w: app.flushed carries a user or session id", ErrInvalidEvent)
		}
	case TypeUserReset:
		if e.UserID <= 0 {
			return fmt.Errorf("%w: %d is not a positive integer", ErrInvalidUserID, e.UserID)
		}
		if e.AppID != "" || e.SessionID != "" {
			return fmt.Errorf("%w: user.reset carries an app or session id", ErrInvalidEvent)
		}
	case TypeSessionRevoked:
		if err := ValidateSessionID(e.SessionID); err != nil {
			return err
		}
		if e.AppID != "" || e.UserID != 0 {
			return fmt.Errorf("%w: session.revoked carries an app or user id", ErrInvalidEvent)
		}
	default:
		return fmt.Errorf("%w: unknown type %q", ErrInvalidEvent, e.Type)
	}
	if e.NotBefore.IsZero() {
		return fmt.Errorf("%w: not_before is missing", ErrInvalidEvent)
	}
	// Outside these years a nanosecond Unix time overflows, and a watermark far off either
	// way can only be a broken clock.
	if e.NotBefore.Before(minNotBefore) || !e.NotBefore.Before(maxNotBefore) {
		return fmt.Errorf("%w: not_before %s is not between 2000 and 2200", ErrInvalidEvent, e.NotBefore.Format(time.RFC3339))
	}
	if len(e.Actor) == 0 || len(e.Actor) > MaxActorLen {
		return fmt.Errorf("%w: actor must be 1 to %d bytes", ErrInvalidEvent, MaxActorLen)
	}
	if len(e.Reason) > MaxReasonLen {
		return fmt.Errorf("%w: reason is longer than %d bytes", ErrInvalidEvent, MaxReasonLen)
	}
	for _, s := range []string{e.Source.RemoteAddr, e.Source.RequestID, e.Source.UserAgent} {
		if len(s) > MaxSourceLen {
			return fmt.Errorf("%w: source field longer than %d bytes", ErrInvalidEvent, MaxSourceLen)
		}
	}
	return nil
}

// Encode validates the event and returns its JSON form.
func Encode(e Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if len(b) > MaxEventSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrInvalidEvent, len(b), MaxEventSize)
	}
	return b, nil
}

// Decode parses and validates one event. Unknown fields are ignored so that a newer writer
// can add optional fields without breaking older readers; a new version number cannot.
func Decode(data []byte) (Event, error) {
	// Unmarshal, unlike a Decoder, also refuses trailing data after the object.
	return DecodeWith(data, json.Unmarshal)
}

// DecodeWith is [Decode] with another JSON unmarshaler that is compatible with
// encoding/json (same struct tags, same errors for trailing data), for readers that decode
// millions of events, such as an audit replay.
func DecodeWith(data []byte, unmarshal func([]byte, any) error) (Event, error) {
	var e Event
	if len(data) > MaxEventSize {
		return e, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidEvent, len(data), MaxEventSize)
	}
	if err := unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// ValidateAppID accepts 1 to [MaxAppIDLen] ASCII letters, digits, '-' and '_'. Anything else
// (dots, wildcards, spaces, percent signs) could change the meaning of a subject.
func ValidateAppID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidAppID)
	}
	if len(id) > MaxAppIDLen {
		return fmt.Errorf("%w: %d characters, at most %d", ErrInvalidAppID, len(id), MaxAppIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return fmt.Errorf("%w: %q: only letters, digits, '-' and '_' are allowed", ErrInvalidAppID, id)
		}
	}
	return nil
}

// ValidateSessionID accepts 1 to [MaxSessionIDLen] ASCII letters, digits, '-' and '_', the
// alphabet of base64url and of UUIDs. Anything else (dots, wildcards, spaces, non-ASCII)
// could change the meaning of a subject, and a session id needs none of it.
func ValidateSessionID(sid string) error {
	if sid == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSessionID)
	}
	if len(sid) > MaxSessionIDLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidSessionID, len(sid), MaxSessionIDLen)
	}
	for i := 0; i < len(sid); i++ {
		if !isIDChar(sid[i]) {
			return fmt.Errorf("%w: %q: only letters, digits, '-' and '_' are allowed", ErrInvalidSessionID, truncate(sid, 32))
		}
	}
	return nil
}

// SessionDigest is the fixed-size key under which tables and snapshots hold the watermark
// of session sid: 64 bits of FNV-1a, mixed, never 0. It is part of the snapshot contract.
// Two sessions with one digest share a watermark; that can only refuse a token of the
// other session (about once in 2^64 per pair), never accept a revoked one.
func SessionDigest(sid string) int64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(sid); i++ {
		h ^= uint64(sid[i])
		h *= 1099511628211
	}
	// The murmur3 finalizer: FNV-1a alone leaves the low and high bits poorly mixed.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	if h == 0 {
		h = 1
	}
	return int64(h)
}

// ParseUserID parses a user id as written in a URL or a JWT sub claim: decimal digits only,
// no sign, no leading zero, in 1..2^63-1. "+1", "007", "1.5" and "1e3" are all refused, so
// every user has exactly one spelling.
func ParseUserID(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrInvalidUserID)
	}
	if len(s) > maxUserIDDigits {
		return 0, fmt.Errorf("%w: %q: must be a positive integer below 2^63", ErrInvalidUserID, truncate(s, 32))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %q: must be a positive integer", ErrInvalidUserID, truncate(s, 32))
		}
	}
	if s[0] == '0' {
		return 0, fmt.Errorf("%w: %q: must be a positive integer without leading zeros", ErrInvalidUserID, s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q: must be a positive integer below 2^63", ErrInvalidUserID, s)
	}
	return n, nil
}

// ParseSubject returns the type and key of a revocation subject, the inverse of
// [Event.Subject]. Readers use it to check that an event sits on the subject it names.
func ParseSubject(subject string) (Type, string, error) {
	switch {
	case strings.HasPrefix(subject, AppFlushedPrefix):
		id := subject[len(AppFlushedPrefix):]
		return TypeAppFlushed, id, ValidateAppID(id)
	case strings.HasPrefix(subject, UserResetPrefix):
		id := subject[len(UserResetPrefix):]
		_, err := ParseUserID(id)
		return TypeUserReset, id, err
	case strings.HasPrefix(subject, SessionRevokedPrefix):
		id := subject[len(SessionRevokedPrefix):]
		return TypeSessionRevoked, id, ValidateSessionID(id)
	}
	return "", "", fmt.Errorf("%w: subject %q is not a revocation subject", ErrInvalidEvent, subject)
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
