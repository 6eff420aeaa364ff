package events_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

type snapshotEntries struct {
	apps     map[string]int64
	users    map[int64]int64
	sessions map[int64]int64
}

func readSnapshot(t *testing.T, data []byte) (events.SnapshotHeader, snapshotEntries, error) {
	t.Helper()
	got := snapshotEntries{apps: map[string]int64{}, users: map[int64]int64{}, sessions: map[int64]int64{}}
	r, err := events.NewSnapshotReader(bytes.NewReader(data))
	if err != nil {
		return events.SnapshotHeader{}, got, err
	}
	err = r.Read(func(id string, nb int64) { got.apps[id] = nb }, func(id, nb int64) { got.users[id] = nb },
		func(d, nb int64) { got.sessions[d] = nb })
	return r.Header(), got, err
}

// goldenSessionID is the session in the version 2 golden snapshot.
const goldenSessionID = "s_Zm9vYmFyLWRldmljZS0x"

// goldenSnapshot is the snapshot frozen in testdata/table_v2.golden.snapshot.
func goldenSnapshot(t testing.TB) (events.SnapshotHeader, []byte) {
	t.Helper()
	h := events.SnapshotHeader{
		Seq:           42,
		StreamCreated: time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
		SeqStoredAt:   time.Date(2026, 11, 23, 9, 30, 14, 987654321, time.UTC),
		WrittenAt:     time.Date(2026, 11, 23, 9, 30, 15, 123456789, time.UTC),
		UsersHint:     2,
		SessionsHint:  1,
	}
	nb := time.Date(2026, 11, 23, 9, 30, 15, 123456789, time.UTC).UnixNano()
	var buf bytes.Buffer
	w := events.NewSnapshotWriter(&buf, h)
	if err := w.App("shop-prod", nb); err != nil {
		t.Fatal(err)
	}
	if err := w.User(7, nb); err != nil {
		t.Fatal(err)
	}
	if err := w.User(9223372036854775807, nb+1); err != nil {
		t.Fatal(err)
	}
	if err := w.Session(events.SessionDigest(goldenSessionID), nb+2); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return h, buf.Bytes()
}

// TestSnapshotGoldenV1: a snapshot of version 1 (written before sessions, frozen in
// testdata/table.golden.snapshot) is still read, with no sessions.
func TestSnapshotGoldenV1(t *testing.T) {
	h, _ := goldenSnapshot(t)
	old, err := os.ReadFile(filepath.Join("testdata", "table.golden.snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(old[8:]); v != 1 {
		t.Fatalf("golden v1 snapshot says version %d", v)
	}
	back, entries, err := readSnapshot(t, old)
	if err != nil {
		t.Fatalf("Read(golden v1): %v", err)
	}
	if back.Seq != h.Seq || !back.WrittenAt.Equal(h.WrittenAt) || back.UsersHint != h.UsersHint || back.SessionsHint != 0 {
		t.Fatalf("header = %+v, want %+v", back, h)
	}
	nb := h.WrittenAt.UnixNano()
	if len(entries.apps) != 1 || entries.apps["shop-prod"] != nb || len(entries.users) != 2 ||
		entries.users[9223372036854775807] != nb+1 || len(entries.sessions) != 0 {
		t.Fatalf("entries = %+v", entries)
	}
	// A version 1 snapshot ends after its users: a sessions section there is data too many.
	if _, _, err := readSnapshot(t, append(bytes.Clone(old), 0, 0, 0, 0)); !errors.Is(err, events.ErrSnapshot) {
		t.Fatalf("v1 with a sessions section: err = %v, want ErrSnapshot", err)
	}
}

// TestSnapshotGolden freezes the snapshot layout: clients in the field read it.
func TestSnapshotGolden(t *testing.T) {
	h, got := goldenSnapshot(t)
	path := filepath.Join("testdata", "table_v2.golden.snapshot")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded =\n%x\nwant\n%x", got, want)
	}
	back, entries, err := readSnapshot(t, want)
	if err != nil {
		t.Fatalf("Read(golden): %v", err)
	}
	if back.Seq != h.Seq || !back.StreamCreated.Equal(h.StreamCreated) || !back.SeqStoredAt.Equal(h.SeqStoredAt) ||
		!back.WrittenAt.Equal(h.WrittenAt) || back.UsersHint != h.UsersHint || back.SessionsHint != h.SessionsHint {
		t.Fatalf("header = %+v, want %+v", back, h)
	}
	nb := h.WrittenAt.UnixNano()
	if len(entries.apps) != 1 || entries.apps["shop-prod"] != nb {
		t.Fatalf("apps = %v", entries.apps)
	}
	if len(entries.users) != 2 || entries.users[7] != nb || entries.users[9223372036854775807] != nb+1 {
		t.Fatalf("users = %v", entries.users)
	}
	if len(entries.sessions) != 1 || entries.sessions[events.SessionDigest(goldenSessionID)] != nb+2 {
		t.Fatalf("sessions = %v", entries.sessions)
	}
}

// TestSnapshotRoundTrip writes more users than fit in one block, and no apps.
func TestSnapshotRoundTrip(t *testing.T) {
	const n = 10_000
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var buf bytes.Buffer
	w := events.NewSnapshotWriter(&buf, events.SnapshotHeader{Seq: n, StreamCreated: time.Now(), WrittenAt: time.Now(), UsersHint: n})
	for id := int64(1); id <= n; id++ {
		if err := w.User(id, base+id); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if max := 60 + 2 + n*16 + (n/4096+1)*4 + 4 + 4; buf.Len() > max {
		t.Fatalf("snapshot of %d users is %d bytes, want at most %d", n, buf.Len(), max)
	}
	_, got, err := readSnapshot(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.apps) != 0 || len(got.users) != n {
		t.Fatalf("apps = %d, users = %d, want 0, %d", len(got.apps), len(got.users), n)
	}
	for id := int64(1); id <= n; id++ {
		if got.users[id] != base+id {
			t.Fatalf("user %d = %d, want %d", id, got.users[id], base+id)
		}
	}
}

func TestSnapshotWriterRefusesBadEntries(t *testing.T) {
	nb := time.Now().UnixNano()
	for name, tc := range map[string]struct {
		write func(*events.SnapshotWriter) error
		want  error
	}{
		"ErrInvalidAppID":  {func(w *events.SnapshotWriter) error { return w.App("a.b", nb) }, events.ErrInvalidAppID},
		"ErrInvalidUserID": {func(w *events.SnapshotWriter) error { return w.User(0, nb) }, events.ErrInvalidUserID},
		"WatermarkTooOld":  {func(w *events.SnapshotWriter) error { return w.User(1, 0) }, events.ErrInvalidEvent},
		"WatermarkTooLate": {func(w *events.SnapshotWriter) error {
			return w.App("a", time.Date(2250, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		}, events.ErrInvalidEvent},
		"AppAfterFirstUser":  {func(w *events.SnapshotWriter) error { _ = w.User(1, nb); return w.App("a", nb) }, events.ErrSnapshot},
		"ErrorsAreSticky":    {func(w *events.SnapshotWriter) error { _ = w.User(1, nb); _ = w.App("a", nb); return w.Close() }, events.ErrSnapshot},
		"NegativeUserIDSent": {func(w *events.SnapshotWriter) error { return w.User(-5, nb) }, events.ErrInvalidUserID},
		"SessionDigestZero":  {func(w *events.SnapshotWriter) error { return w.Session(0, nb) }, events.ErrSnapshot},
		"UserAfterSession":   {func(w *events.SnapshotWriter) error { _ = w.Session(9, nb); return w.User(1, nb) }, events.ErrSnapshot},
	} {
		t.Run(name, func(t *testing.T) {
			w := events.NewSnapshotWriter(&bytes.Buffer{}, events.SnapshotHeader{})
			if err := tc.write(w); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSnapshotReaderRefusesDamage: every truncation and a set of corruptions of the golden
// snapshot are errors, never a panic and never a silent success.
func TestSnapshotReaderRefusesDamage(t *testing.T) {
	_, good := goldenSnapshot(t)
	for i := range len(good) {
		if _, _, err := readSnapshot(t, good[:i]); !errors.Is(err, events.ErrSnapshot) {
			t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrSnapshot", i, len(good), err)
		}
	}
	const apps = 60 // offset of the apps section
	users := apps + 2 + len("shop-prod") + 8 + 2
	sessions := users + 4 + 2*16 + 4
	corrupt := map[string]func(b []byte) []byte{
		"BadMagic":       func(b []byte) []byte { b[0] = 'x'; return b },
		"OtherVersion":   func(b []byte) []byte { b[8] = 3; return b },
		"VersionZero":    func(b []byte) []byte { b[8] = 0; return b },
		"TrailingData":   func(b []byte) []byte { return append(b, 0) },
		"AppIDTooLong":   func(b []byte) []byte { b[apps] = 200; return b },
		"AppIDWithDot":   func(b []byte) []byte { b[apps+2+4] = '.'; return b },
		"AppWatermark0":  func(b []byte) []byte { clear(b[apps+2+9 : apps+2+9+8]); return b },
		"BlockTooLarge":  func(b []byte) []byte { binary.LittleEndian.PutUint32(b[users:], 1<<20); return b },
		"UserIDZero":     func(b []byte) []byte { clear(b[users+4 : users+12]); return b },
		"UserIDNegative": func(b []byte) []byte { b[users+4+7] = 0x80; return b },
		"SessionDigest0": func(b []byte) []byte { clear(b[sessions+4 : sessions+12]); return b },
		"SessionBlockTooLarge": func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[sessions:], 1<<20)
			return b
		},
		"UserWatermarkInYear2300": func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[users+12:], uint64(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()))
			return b
		},
	}
	for name, damage := range corrupt {
		t.Run(name, func(t *testing.T) {
			if _, _, err := readSnapshot(t, damage(bytes.Clone(good))); !errors.Is(err, events.ErrSnapshot) {
				t.Fatalf("err = %v, want ErrSnapshot", err)
			}
		})
	}
}

// FuzzSnapshotReader: no input makes the reader panic or hand out an invalid entry.
func FuzzSnapshotReader(f *testing.F) {
	_, good := goldenSnapshot(f)
	f.Add(good)
	f.Add(good[:60])
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := events.NewSnapshotReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		_ = r.Read(func(id string, nb int64) {
			if events.ValidateAppID(id) != nil {
				t.Fatalf("invalid app id %q handed out", id)
			}
		}, func(id, nb int64) {
			if id <= 0 {
				t.Fatalf("invalid user id %d handed out", id)
			}
		}, func(d, nb int64) {
			if d == 0 {
				t.Fatal("session digest 0 handed out")
			}
		})
	})
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// TestSnapshotReaderKeepsTheCause: an error from the underlying reader stays reachable with
// errors.Is, so a caller can tell a stalled download (worth a retry) from a bad snapshot.
func TestSnapshotReaderKeepsTheCause(t *testing.T) {
	cause := errors.New("stalled")
	if _, err := events.NewSnapshotReader(failingReader{cause}); !errors.Is(err, cause) || !errors.Is(err, events.ErrSnapshot) {
		t.Fatalf("header: err = %v, want both ErrSnapshot and the cause", err)
	}
	_, good := goldenSnapshot(t)
	r, err := events.NewSnapshotReader(io.MultiReader(bytes.NewReader(good[:66]), failingReader{cause}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Read(func(string, int64) {}, func(int64, int64) {}, func(int64, int64) {}); !errors.Is(err, cause) {
		t.Fatalf("entries: err = %v, want the cause", err)
	}
}
