package events_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

func goldenEvents() map[string]events.Event {
	nb := time.Date(2026, 11, 23, 9, 30, 15, 123456789, time.UTC)
	return map[string]events.Event{
		"app_flushed": {
			Version: events.Version, ID: "0123456789abcdef0123456789abcdef", Type: events.TypeAppFlushed,
			AppID: "shop-prod", NotBefore: nb, Actor: "rvcr_4f2a9c1b7e3d",
			Source: events.Source{RemoteAddr: "203.0.113.7", RequestID: "req-1", UserAgent: "curl/8.5.0"},
			Reason: "signing key leaked",
		},
		"user_reset": {
			Version: events.Version, ID: "fedcba9876543210fedcba9876543210", Type: events.TypeUserReset,
			UserID: 9223372036854775807, NotBefore: nb, Actor: "rvca_1a2b3c4d5e6f",
			Source: events.Source{RemoteAddr: "198.51.100.2", RequestID: "req-2", UserAgent: "python-requests/2.32"},
		},
		"session_revoked": {
			Version: events.Version, ID: "00112233445566778899aabbccddeeff", Type: events.TypeSessionRevoked,
			SessionID: "s_Zm9vYmFyLWRldmljZS0x", NotBefore: nb, Actor: "app:shop-prod",
			Source: events.Source{RemoteAddr: "192.0.2.10", RequestID: "req-3", UserAgent: "node-fetch/3.3"},
			Reason: "logout",
		},
	}
}

// TestGolden freezes the wire format: a change here breaks every reader in the field.
func TestGolden(t *testing.T) {
	for name, ev := range goldenEvents() {
		t.Run(name, func(t *testing.T) {
			got, err := events.Encode(ev)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if !bytes.Equal(got, bytes.TrimSpace(want)) {
				t.Fatalf("encoded =\n%s\nwant\n%s", got, want)
			}
			back, err := events.Decode(want)
			if err != nil {
				t.Fatalf("Decode(golden): %v", err)
			}
			if !back.NotBefore.Equal(ev.NotBefore) {
				t.Fatalf("not_before = %v, want %v", back.NotBefore, ev.NotBefore)
			}
			back.NotBefore = ev.NotBefore
			if back != ev {
				t.Fatalf("round trip = %+v, want %+v", back, ev)
			}
		})
	}
}

func TestSubject(t *testing.T) {
	ev := goldenEvents()
	if got, want := ev["app_flushed"].Subject(), "revocation.app.flushed.shop-prod"; got != want {
		t.Fatalf("subject = %q, want %q", got, want)
	}
	if got, want := ev["user_reset"].Subject(), "revocation.user.reset.9223372036854775807"; got != want {
		t.Fatalf("subject = %q, want %q", got, want)
	}
	for _, e := range ev {
		typ, key, err := events.ParseSubject(e.Subject())
		if err != nil || typ != e.Type || key == "" {
			t.Fatalf("ParseSubject(%q) = %q, %q, %v", e.Subject(), typ, key, err)
		}
	}
	if _, _, err := events.ParseSubject("revocation.app.flushed.a.b"); err == nil {
		t.Fatal("ParseSubject accepted a subject with an extra token")
	}
}

func TestValidateAppID(t *testing.T) {
	for _, id := range []string{"a", "shop-prod", "APP_1", strings.Repeat("x", events.MaxAppIDLen)} {
		if err := events.ValidateAppID(id); err != nil {
			t.Errorf("ValidateAppID(%q) = %v, want nil", id, err)
		}
	}
	bad := []string{"", "a.b", "a*", "a>", "a b", "..", "%2e%2e", "a/b", "é", "a\x00", "a\n",
		strings.Repeat("x", events.MaxAppIDLen+1), strings.Repeat("y", 300)}
	for _, id := range bad {
		if err := events.ValidateAppID(id); !errors.Is(err, events.ErrInvalidAppID) {
			t.Errorf("ValidateAppID(%q) = %v, want ErrInvalidAppID", id, err)
		}
	}
}

func TestParseUserID(t *testing.T) {
	good := map[string]int64{"1": 1, "42": 42, "9223372036854775807": 9223372036854775807}
	for s, want := range good {
		got, err := events.ParseUserID(s)
		if err != nil || got != want {
			t.Errorf("ParseUserID(%q) = %d, %v, want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "abc", "0", "-1", "1.5", "+1", "007", "1e3", " 1", "1 ",
		"9223372036854775808", "99999999999999999999", "0x10", "١"} {
		if _, err := events.ParseUserID(s); !errors.Is(err, events.ErrInvalidUserID) {
			t.Errorf("ParseUserID(%q) = %v, want ErrInvalidUserID", s, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := map[string]struct {
		json string
		want error
	}{
		"ErrVersion":          {`{"v":2,"id":"0123456789abcdef0123456789abcdef","type":"app.flushed","app_id":"a","not_before":"2026-01-01T00:00:00Z","actor":"x"}`, events.ErrVersion},
		"ErrUnknownType":      {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"app.deleted","app_id":"a","not_before":"2026-01-01T00:00:00Z","actor":"x"}`, events.ErrInvalidEvent},
		"ErrInvalidAppID":     {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"app.flushed","app_id":"a.>","not_before":"2026-01-01T00:00:00Z","actor":"x"}`, events.ErrInvalidAppID},
		"ErrInvalidUserID":    {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"-4","not_before":"2026-01-01T00:00:00Z","actor":"x"}`, events.ErrInvalidUserID},
		"ErrNumericUserID":    {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":4,"not_before":"2026-01-01T00:00:00Z","actor":"x"}`, events.ErrInvalidEvent},
		"ErrMissingNotBefore": {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"4","actor":"x"}`, events.ErrInvalidEvent},
		"ErrMissingActor":     {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"4","not_before":"2026-01-01T00:00:00Z"}`, events.ErrInvalidEvent},
		"ErrBadID":            {`{"v":1,"id":"nope","type":"user.reset","user_id":"4","not_before":"2026-01-01T00:00:00Z","actor":"x"}`, events.ErrInvalidEvent},
		"ErrBothKeys":         {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","app_id":"a","user_id":"4","not_before":"2026-01-01T00:00:00Z","actor":"x"}`, events.ErrInvalidEvent},
		"ErrTrailing":         {`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"4","not_before":"2026-01-01T00:00:00Z","actor":"x"} {}`, events.ErrInvalidEvent},
		"ErrNotJSON":          {`garbage`, events.ErrInvalidEvent},
		"ErrTooLarge":         {`{"v":1,"reason":"` + strings.Repeat("r", events.MaxEventSize) + `"}`, events.ErrInvalidEvent},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := events.Decode([]byte(tt.json)); !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewEvents(t *testing.T) {
	now := time.Now()
	a, err := events.NewAppFlushed("shop", now, "root:shop/rk_1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := events.NewAppFlushed("shop", now, "root:shop/rk_1")
	if a.ID == b.ID {
		t.Fatal("two events share an id")
	}
	if _, err := events.Encode(a); err != nil {
		t.Fatalf("Encode(new app event): %v", err)
	}
	if _, err := events.NewAppFlushed("a.b", now, "x"); !errors.Is(err, events.ErrInvalidAppID) {
		t.Fatalf("NewAppFlushed(a.b) = %v, want ErrInvalidAppID", err)
	}
	if _, err := events.NewUserReset(0, now, "x"); !errors.Is(err, events.ErrInvalidUserID) {
		t.Fatalf("NewUserReset(0) = %v, want ErrInvalidUserID", err)
	}
}

func TestNotBeforeOutOfRange(t *testing.T) {
	for _, nb := range []string{"1600-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "9999-01-01T00:00:00Z"} {
		js := `{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"user.reset","user_id":"4","not_before":"` + nb + `","actor":"x"}`
		if _, err := events.Decode([]byte(js)); !errors.Is(err, events.ErrInvalidEvent) {
			t.Errorf("not_before %s: Decode = %v, want ErrInvalidEvent", nb, err)
		}
	}
}

func TestValidateSessionID(t *testing.T) {
	for _, sid := range []string{"a", "s_Zm9vYmFy", "0b6e6c2e-5f0d-4f3e-9d2a-1c2b3d4e5f60", strings.Repeat("x", events.MaxSessionIDLen)} {
		if err := events.ValidateSessionID(sid); err != nil {
			t.Errorf("ValidateSessionID(%q) = %v, want nil", sid, err)
		}
	}
	bad := []string{"", ".", "a.b", "*", "a*", ">", "a>", "a b", " ", "é", "セッション", "a\x00", "a\n",
		strings.Repeat("x", events.MaxSessionIDLen+1), strings.Repeat("y", 10<<10)}
	for _, sid := range bad {
		if err := events.ValidateSessionID(sid); !errors.Is(err, events.ErrInvalidSessionID) {
			t.Errorf("ValidateSessionID(%q) = %v, want ErrInvalidSessionID", truncateForTest(sid), err)
		}
		if _, err := events.NewSessionRevoked(sid, time.Now(), "x"); !errors.Is(err, events.ErrInvalidSessionID) {
			t.Errorf("NewSessionRevoked(%q) = %v, want ErrInvalidSessionID", truncateForTest(sid), err)
		}
	}
	if _, err := events.Decode([]byte(`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"session.revoked","session_id":"a.>","not_before":"2026-01-01T00:00:00Z","actor":"x"}`)); !errors.Is(err, events.ErrInvalidSessionID) {
		t.Fatalf("Decode(session a.>) = %v, want ErrInvalidSessionID", err)
	}
	if _, err := events.Decode([]byte(`{"v":1,"id":"0123456789abcdef0123456789abcdef","type":"session.revoked","session_id":"s1","user_id":"4","not_before":"2026-01-01T00:00:00Z","actor":"x"}`)); !errors.Is(err, events.ErrInvalidEvent) {
		t.Fatalf("Decode(session with user id) = %v, want ErrInvalidEvent", err)
	}
	if _, _, err := events.ParseSubject("revocation.session.revoked.a.b"); err == nil {
		t.Fatal("ParseSubject accepted a session subject with an extra token")
	}
}

func TestSessionDigest(t *testing.T) {
	seen := map[int64]string{}
	for i := range 100_000 {
		sid := "s" + strconv.Itoa(i)
		d := events.SessionDigest(sid)
		if d == 0 {
			t.Fatalf("SessionDigest(%q) = 0", sid)
		}
		if prev, ok := seen[d]; ok {
			t.Fatalf("SessionDigest(%q) = SessionDigest(%q)", sid, prev)
		}
		seen[d] = sid
	}
	// Frozen: snapshots hold digests, so every reader must compute the same one.
	if got, want := events.SessionDigest("s_Zm9vYmFyLWRldmljZS0x"), int64(4336772985370939273); got != want {
		t.Fatalf("SessionDigest = %d, want %d", got, want)
	}
}

func truncateForTest(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
