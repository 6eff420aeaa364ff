package events

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// A snapshot is the compacted revocation table at one stream sequence: the highest
// watermark of every app, every user and every session. The broadcaster writes one to a JetStream object
// store now and then, so that a new client reads a single object and then only the events
// after its sequence, instead of the latest event of each of a million subjects.
//
// A snapshot holds the same information as the stream up to its sequence, never more: a
// client that ignores it (or cannot read it) bootstraps from the stream and ends with the
// same table.
const (
	// SnapshotBucket is the object store bucket that holds the snapshot.
	SnapshotBucket = "revocast_snapshots"
	// SnapshotObject is the name of the latest snapshot in [SnapshotBucket].
	SnapshotObject = "table"
	// SnapshotVersion is the layout version that [SnapshotWriter] writes. Readers also read
	// every older version (version 1 has no sessions section) and refuse newer ones, and
	// their client falls back to the stream.
	SnapshotVersion = 2
)

// Binary layout, every integer little-endian:
//
//	header  magic "rvcsnap\x00" | u32 version | u64 seq | i64 stream created (Unix ns)
//	        | i64 seq stored at (Unix ns) | i64 written at (Unix ns) | u64 users hint
//	        | u64 sessions hint (version 2 and later)
//	apps    repeated: u16 id length (1..MaxAppIDLen) | id | i64 watermark; then u16 0
//	users   blocks: u32 n (1..snapshotBlock) | n * (i64 user id | i64 watermark); then u32 0
//	sessions (version 2 and later) blocks: u32 n (1..snapshotBlock)
//	        | n * (i64 session digest | i64 watermark); then u32 0
//	end     nothing after the last block
//
// Watermarks are Unix nanoseconds; a session is held by its [SessionDigest], never 0. An id
// may appear more than once; readers keep its highest watermark. Users come in blocks so that a writer need not know
// their number in advance: it reads the table while the table keeps changing.
const (
	snapshotMagic  = "rvcsnap\x00"
	snapshotHeader = 8 + 4 + 8 + 8 + 8 + 8 + 8 // version 1; version 2 adds 8
	snapshotBlock  = 4096
	userEntry      = 16
)

// ErrSnapshot means a snapshot is malformed, truncated, of another version, or holds an
// entry that no valid event could have produced.
var ErrSnapshot = errors.New("events: invalid snapshot")

// SnapshotHeader describes a snapshot.
type SnapshotHeader struct {
	// Seq is the stream sequence the snapshot was taken at: every event up to and including
	// it is reflected in the snapshot. Later events may be reflected too (watermarks only go
	// up, so applying them again changes nothing).
	Seq uint64
	// StreamCreated is the creation time of the stream that Seq belongs to, so that a
	// snapshot of a stream that was since deleted and created again is not used.
	StreamCreated time.Time
	// SeqStoredAt is when JetStream stored the event at Seq. A stream restored from a backup
	// keeps its creation time, but once it has grown past Seq again, the event there was
	// stored at another time.
	SeqStoredAt time.Time
	// WrittenAt is when the writer started the snapshot.
	WrittenAt time.Time
	// UsersHint is about how many users the snapshot holds, to size a table ahead.
	UsersHint uint64
	// SessionsHint is about how many sessions the snapshot holds; 0 in version 1.
	SessionsHint uint64
}

// SnapshotWriter encodes a snapshot: the header, then every app, then every user, then
// every session. The first error, including a refused entry, is returned by every later
// call and by Close.
type SnapshotWriter struct {
	w        *bufio.Writer
	err      error
	users    bool   // the apps section is closed
	sessions bool   // the users section is closed
	block    []byte // users or sessions waiting to be written as one block
	n        uint32 // entries in block
}

// NewSnapshotWriter writes the header to w and returns the writer for the entries.
func NewSnapshotWriter(w io.Writer, h SnapshotHeader) *SnapshotWriter {
	s := &SnapshotWriter{w: bufio.NewWriterSize(w, 64<<10), block: make([]byte, 4, 4+snapshotBlock*userEntry)}
	b := make([]byte, 0, snapshotHeader+8)
	b = append(b, snapshotMagic...)
	b = binary.LittleEndian.AppendUint32(b, SnapshotVersion)
	b = binary.LittleEndian.AppendUint64(b, h.Seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.StreamCreated.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.SeqStoredAt.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.WrittenAt.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, h.UsersHint)
	b = binary.LittleEndian.AppendUint64(b, h.SessionsHint)
	_, s.err = s.w.Write(b)
	return s
}

// App adds the watermark of an app. Every app comes before the first user.
func (s *SnapshotWriter) App(id string, notBefore int64) error {
	if s.err != nil {
		return s.err
	}
	if s.users {
		return s.fail(fmt.Errorf("%w: app %q after the first user", ErrSnapshot, id))
	}
	if err := ValidateAppID(id); err != nil {
		return s.fail(err)
	}
	if err := checkWatermark(notBefore); err != nil {
		return s.fail(err)
	}
	b := binary.LittleEndian.AppendUint16(make([]byte, 0, 2+len(id)+8), uint16(len(id)))
	b = append(b, id...)
	b = binary.LittleEndian.AppendUint64(b, uint64(notBefore))
	_, s.err = s.w.Write(b)
	return s.err
}

// User adds the watermark of a user.
func (s *SnapshotWriter) User(id, notBefore int64) error {
	if s.err != nil {
		return s.err
	}
	if id <= 0 {
		return s.fail(fmt.Errorf("%w: %d is not a positive integer", ErrInvalidUserID, id))
	}
	if s.sessions {
		return s.fail(fmt.Errorf("%w: user %d after the first session", ErrSnapshot, id))
	}
	if err := checkWatermark(notBefore); err != nil {
		return s.fail(err)
	}
	s.endApps()
	return s.entry(id, notBefore)
}

// Session adds the watermark of a session, by its [SessionDigest]. Every user comes before
// the first session.
func (s *SnapshotWriter) Session(digest, notBefore int64) error {
	if s.err != nil {
		return s.err
	}
	if digest == 0 {
		return s.fail(fmt.Errorf("%w: session digest 0", ErrSnapshot))
	}
	if err := checkWatermark(notBefore); err != nil {
		return s.fail(err)
	}
	s.endUsers()
	return s.entry(digest, notBefore)
}

// entry adds a (key, watermark) pair of the users or the sessions section to the current
// block, and writes the block when it is full.
func (s *SnapshotWriter) entry(key, notBefore int64) error {
	s.block = binary.LittleEndian.AppendUint64(s.block, uint64(key))
	s.block = binary.LittleEndian.AppendUint64(s.block, uint64(notBefore))
	if s.n++; s.n == snapshotBlock {
		s.flushBlock()
	}
	return s.err
}

// Close writes what is buffered and the end markers. It does not close the underlying
// writer.
func (s *SnapshotWriter) Close() error {
	s.endUsers()
	s.flushBlock()
	if s.err == nil {
		_, s.err = s.w.Write([]byte{0, 0, 0, 0})
	}
	if s.err == nil {
		s.err = s.w.Flush()
	}
	return s.err
}

// fail makes err the writer's error: a snapshot that misses an entry must not end as if it
// were complete, so Close returns it too.
func (s *SnapshotWriter) fail(err error) error {
	s.err = err
	return err
}

func (s *SnapshotWriter) endApps() {
	if !s.users && s.err == nil {
		s.users = true
		_, s.err = s.w.Write([]byte{0, 0})
	}
}

func (s *SnapshotWriter) endUsers() {
	s.endApps()
	if !s.sessions && s.err == nil {
		s.flushBlock()
		s.sessions = true
		if s.err == nil {
			_, s.err = s.w.Write([]byte{0, 0, 0, 0})
		}
	}
}

func (s *SnapshotWriter) flushBlock() {
	if s.n == 0 || s.err != nil {
		return
	}
	binary.LittleEndian.PutUint32(s.block, s.n)
	_, s.err = s.w.Write(s.block)
	s.block, s.n = s.block[:4], 0
}

// SnapshotReader decodes a snapshot written by [SnapshotWriter].
type SnapshotReader struct {
	r       *bufio.Reader
	header  SnapshotHeader
	version uint32
}

// NewSnapshotReader reads and checks the header.
func NewSnapshotReader(r io.Reader) (*SnapshotReader, error) {
	s := &SnapshotReader{r: bufio.NewReaderSize(r, 64<<10)}
	b := make([]byte, snapshotHeader)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return nil, truncated("header", err)
	}
	if string(b[:8]) != snapshotMagic {
		return nil, fmt.Errorf("%w: not a revocast snapshot", ErrSnapshot)
	}
	s.version = binary.LittleEndian.Uint32(b[8:])
	if s.version < 1 || s.version > SnapshotVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads 1 to %d", ErrSnapshot, s.version, SnapshotVersion)
	}
	s.header = SnapshotHeader{
		Seq:           binary.LittleEndian.Uint64(b[12:]),
		StreamCreated: time.Unix(0, int64(binary.LittleEndian.Uint64(b[20:]))),
		SeqStoredAt:   time.Unix(0, int64(binary.LittleEndian.Uint64(b[28:]))),
		WrittenAt:     time.Unix(0, int64(binary.LittleEndian.Uint64(b[36:]))),
		UsersHint:     binary.LittleEndian.Uint64(b[44:]),
	}
	if s.version >= 2 {
		if _, err := io.ReadFull(s.r, b[:8]); err != nil {
			return nil, truncated("header", err)
		}
		s.header.SessionsHint = binary.LittleEndian.Uint64(b)
	}
	return s, nil
}

// Header returns the header read by [NewSnapshotReader].
func (s *SnapshotReader) Header() SnapshotHeader { return s.header }

// Read calls app for every app, user for every user and then session for every session
// (by its [SessionDigest]; a version 1 snapshot has none), with watermarks in Unix
// nanoseconds, and checks that nothing follows the last block. It stops at the first
// malformed entry with an error wrapping [ErrSnapshot] (or a validation error such as
// [ErrInvalidAppID]); entries already passed to the callbacks are valid, but the caller
// should drop the whole snapshot, since it is not known to be complete.
func (s *SnapshotReader) Read(app func(id string, notBefore int64), user, session func(id, notBefore int64)) error {
	var buf [2 + MaxAppIDLen + 8]byte
	for {
		if _, err := io.ReadFull(s.r, buf[:2]); err != nil {
			return truncated("apps", err)
		}
		n := int(binary.LittleEndian.Uint16(buf[:]))
		if n == 0 {
			break
		}
		if n > MaxAppIDLen {
			return fmt.Errorf("%w: app id of %d bytes", ErrSnapshot, n)
		}
		if _, err := io.ReadFull(s.r, buf[:n+8]); err != nil {
			return truncated("apps", err)
		}
		id := string(buf[:n])
		if err := ValidateAppID(id); err != nil {
			return fmt.Errorf("%w: %w", ErrSnapshot, err)
		}
		nb := int64(binary.LittleEndian.Uint64(buf[n:]))
		if err := checkWatermark(nb); err != nil {
			return fmt.Errorf("%w: app %s: %w", ErrSnapshot, id, err)
		}
		app(id, nb)
	}
	block := make([]byte, snapshotBlock*userEntry)
	if err := s.readBlocks(block, "users", user); err != nil {
		return err
	}
	if s.version >= 2 {
		if err := s.readBlocks(block, "sessions", session); err != nil {
			return err
		}
	}
	// Reading to the end also lets a reader that checks a digest at EOF (the object
	// store's) report a mismatch.
	switch n, err := s.r.Read(buf[:1]); {
	case n > 0:
		return fmt.Errorf("%w: data after the last block", ErrSnapshot)
	case err != io.EOF:
		return fmt.Errorf("%w: after the last block: %w", ErrSnapshot, err)
	}
	return nil
}

// readBlocks reads one section of 16-byte entries: users, or sessions by digest.
func (s *SnapshotReader) readBlocks(block []byte, section string, f func(id, notBefore int64)) error {
	var buf [4]byte
	for {
		if _, err := io.ReadFull(s.r, buf[:]); err != nil {
			return truncated(section, err)
		}
		n := binary.LittleEndian.Uint32(buf[:])
		if n == 0 {
			return nil
		}
		if n > snapshotBlock {
			return fmt.Errorf("%w: block of %d %s, at most %d", ErrSnapshot, n, section, snapshotBlock)
		}
		b := block[:n*userEntry]
		if _, err := io.ReadFull(s.r, b); err != nil {
			return truncated(section, err)
		}
		for ; len(b) > 0; b = b[userEntry:] {
			id, nb := int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))
			switch {
			case section == "users" && id <= 0:
				return fmt.Errorf("%w: user id %d", ErrSnapshot, id)
			case id == 0:
				return fmt.Errorf("%w: session digest 0", ErrSnapshot)
			}
			if err := checkWatermark(nb); err != nil {
				return fmt.Errorf("%w: %s entry %d: %w", ErrSnapshot, section, id, err)
			}
			f(id, nb)
		}
	}
}

func truncated(section string, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %s: %w", ErrSnapshot, section, err)
}

// checkWatermark refuses what [Event.Validate] refuses for not_before.
func checkWatermark(nb int64) error {
	if nb < minNotBefore.UnixNano() || nb >= maxNotBefore.UnixNano() {
		return fmt.Errorf("%w: watermark %d ns is not between 2000 and 2200", ErrInvalidEvent, nb)
	}
	return nil
}
