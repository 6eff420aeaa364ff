package api_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/api"
)

// resourceTable is what a resource server runs: revocast's own keys, no configuration.
func (f *fixture) resourceTable(t *testing.T) *client.Table {
	t.Helper()
	tab, err := client.New(f.nats.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tab.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := tab.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	return tab
}

// caughtUp waits until tab holds every event stored so far.
func (f *fixture) caughtUp(t *testing.T, tab *client.Table) {
	t.Helper()
	info, err := f.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tab.WaitApplied(ctx, info.State.LastSeq); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) revokeToken(t *testing.T, cred, body string) response {
	t.Helper()
	return f.do(t, "POST", "/v1/tokens/revoke", map[string]string{"Authorization": "Bearer " + cred,
		"Content-Type": "application/x-www-form-urlencoded"}, body)
}

func (f *fixture) login(t *testing.T, user string) pairBody {
	t.Helper()
	status, p := f.mint(t, "shop", f.appCred, `{"user_id":"`+user+`"}`)
	if status != 200 || events.ValidateSessionID(p.Data.SessionID) != nil {
		t.Fatalf("mint = %d %+v, want 200 with a sid", status, p)
	}
	return p
}

func verifies(t *testing.T, tab *client.Table, token string) error {
	t.Helper()
	_, err := tab.Verify(t.Context(), token)
	if err != nil && !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Verify = %v, want nil or ErrRevoked", err)
	}
	return err
}

// TestLogoutOneSession: two logins of one user are two sessions; an RFC 7009 logout of one
// refuses its access and refresh tokens at a resource server and at the refresh endpoint,
// and the other keeps working; a user reset and an app flush still refuse both.
func TestLogoutOneSession(t *testing.T) {
	f := newFixture(t, api.Config{})
	rs := f.resourceTable(t)
	laptop, phone := f.login(t, "42"), f.login(t, "42")
	if laptop.Data.SessionID == phone.Data.SessionID {
		t.Fatal("two logins share a session")
	}

	before := f.msgs(t)
	r := f.revokeToken(t, f.appCred, "token="+url.QueryEscape(laptop.Data.RefreshToken)+"&token_type_hint=refresh_token")
	if r.status != 200 || r.raw != "" {
		t.Fatalf("revoke = %d %q, want 200 with an empty body", r.status, r.raw)
	}
	ev, subject := f.lastEvent(t)
	if f.msgs(t) != before+1 || ev.Type != events.TypeSessionRevoked || ev.SessionID != laptop.Data.SessionID ||
		subject != events.SessionRevokedPrefix+laptop.Data.SessionID {
		t.Fatalf("stored %+v on %s, want session.revoked of %s", ev, subject, laptop.Data.SessionID)
	}
	f.caughtUp(t, rs)
	if err := verifies(t, rs, laptop.Data.AccessToken); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("access token of the logged-out session: err = %v, want ErrRevoked", err)
	}
	if status, body := f.refresh(t, laptop.Data.RefreshToken); status != 401 || !strings.Contains(body.Message, "session logged out") {
		t.Fatalf("refresh of the logged-out session = %d %q, want 401 that names the session", status, body.Message)
	}
	if err := verifies(t, rs, phone.Data.AccessToken); err != nil {
		t.Fatalf("access token of the other session: err = %v", err)
	}
	status, phone2 := f.refresh(t, phone.Data.RefreshToken)
	if status != 200 || phone2.Data.SessionID != phone.Data.SessionID {
		t.Fatalf("refresh of the other session = %d %+v, want 200 with the same sid", status, phone2)
	}

	// Already revoked, unknown, expired-looking garbage: 200, and nothing stored.
	before = f.msgs(t)
	for name, body := range map[string]string{"AlreadyRevoked": "token=" + url.QueryEscape(laptop.Data.AccessToken),
		"Garbage": "token=not.a.token", "Unknown": "token=abc"} {
		if r := f.revokeToken(t, f.appCred, body); r.status != 200 || r.raw != "" {
			t.Fatalf("%s: revoke = %d %q, want 200 empty", name, r.status, r.raw)
		}
	}
	if f.msgs(t) != before {
		t.Fatal("a no-op revocation stored an event")
	}
	if r := f.revokeToken(t, f.appCred, "token_type_hint=access_token"); r.status != 400 {
		t.Fatalf("revoke without a token = %d, want 400", r.status)
	}
	if r := f.revokeToken(t, f.appCred+"x", "token="+url.QueryEscape(phone2.Data.AccessToken)); r.status != 401 ||
		r.header.Get("WWW-Authenticate") != `Bearer realm="revocast"` {
		t.Fatalf("revoke with a bad credential = %d %v, want 401", r.status, r.header)
	}
	if r := f.do(t, "POST", "/v1/tokens/revoke", nil, "token=x"); r.status != 401 {
		t.Fatalf("revoke without a credential = %d, want 401", r.status)
	}

	// A user reset refuses the other session too; an app flush refuses a new login.
	if r := f.do(t, "POST", "/v2/users/reset/42", map[string]string{"X-API-Key": f.adminKey}, ""); r.status != 200 {
		t.Fatalf("reset = %d", r.status)
	}
	f.caughtUp(t, rs)
	if err := verifies(t, rs, phone2.Data.AccessToken); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("after a user reset: err = %v, want ErrRevoked", err)
	}
	if status, _ := f.refresh(t, phone2.Data.RefreshToken); status != 401 {
		t.Fatalf("refresh after a user reset = %d, want 401", status)
	}
	a, b := f.login(t, "42"), f.login(t, "42")
	if r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": f.rootKey}, ""); r.status != 200 {
		t.Fatalf("flush = %d", r.status)
	}
	f.caughtUp(t, rs)
	for _, p := range []pairBody{a, b} {
		if err := verifies(t, rs, p.Data.AccessToken); !errors.Is(err, client.ErrRevoked) {
			t.Fatalf("after a flush: err = %v, want ErrRevoked", err)
		}
		if status, _ := f.refresh(t, p.Data.RefreshToken); status != 401 {
			t.Fatalf("refresh after a flush = %d, want 401", status)
		}
	}
	if m := f.do(t, "GET", "/metrics", nil, ""); !strings.Contains(m.raw, `revocast_sessions_revoked_total{via="oauth_revoke"} 1`) ||
		!strings.Contains(m.raw, `revocast_revocations_stored_total{type="session.revoked"} 1`) {
		t.Fatal("the session revocation is not counted in /metrics")
	}
}

// TestRefreshReuseRevokesSession: a spent refresh token used again revokes its session,
// for the thief and the victim alike; the user's other session keeps working.
func TestRefreshReuseRevokesSession(t *testing.T) {
	f := newFixture(t, api.Config{})
	rs := f.resourceTable(t)
	stolen, other := f.login(t, "7"), f.login(t, "7")
	status, victim := f.refresh(t, stolen.Data.RefreshToken)
	if status != 200 {
		t.Fatalf("first refresh = %d", status)
	}
	if status, body := f.refresh(t, stolen.Data.RefreshToken); status != 401 || !strings.Contains(body.Message, "session is revoked") {
		t.Fatalf("reuse = %d %q, want 401 session revoked", status, body.Message)
	}
	ev, _ := f.lastEvent(t)
	if ev.Type != events.TypeSessionRevoked || ev.SessionID != stolen.Data.SessionID || ev.Reason != "refresh token reused" {
		t.Fatalf("stored %+v, want the session revoked for reuse", ev)
	}
	f.caughtUp(t, rs)
	if err := verifies(t, rs, victim.Data.AccessToken); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("victim's new access token: err = %v, want ErrRevoked", err)
	}
	if status, _ := f.refresh(t, victim.Data.RefreshToken); status != 401 {
		t.Fatalf("victim's new refresh token = %d, want 401", status)
	}
	if err := verifies(t, rs, other.Data.AccessToken); err != nil {
		t.Fatalf("other session: err = %v", err)
	}
	if status, _ := f.refresh(t, other.Data.RefreshToken); status != 200 {
		t.Fatalf("other session's refresh = %d, want 200", status)
	}
}

// TestSessionRevokeAdmin: POST /v2/sessions/revoke/{sid} with the sessions:revoke scope,
// the user reset's envelope; bad session ids are 400 and store nothing.
func TestSessionRevokeAdmin(t *testing.T) {
	f := newFixture(t, api.Config{})
	key := func(k string) map[string]string { return map[string]string{"X-API-Key": k} }
	before := f.msgs(t)
	bad := []string{"a.b", ".", "*", "%2A", "%3E", "a%20b", "%20", "s%C3%A9ance", "%E2%80%AE", strings.Repeat("s", events.MaxSessionIDLen+1), strings.Repeat("s", 10<<10)}
	for _, sid := range bad {
		r := f.do(t, "POST", "/v2/sessions/revoke/"+sid, key(f.adminKey), "")
		if r.status != 400 || r.body["success"] != false {
			t.Fatalf("sid %.40q: %d %s, want 400", sid, r.status, r.raw)
		}
	}
	if r := f.do(t, "POST", "/v2/sessions/revoke/", key(f.adminKey), ""); r.status != 404 && r.status != 400 {
		t.Fatalf("empty sid: %d, want 400 or 404", r.status)
	}
	if r := f.do(t, "POST", "/v2/sessions/revoke/s_1", key(f.readOnly), ""); r.status != 403 {
		t.Fatalf("key without sessions:revoke: %d, want 403", r.status)
	}
	if r := f.do(t, "POST", "/v2/sessions/revoke/s_1", key("rvca_nope"), ""); r.status != 401 {
		t.Fatalf("unknown key: %d, want 401", r.status)
	}
	if f.msgs(t) != before {
		t.Fatal("a refused call stored an event")
	}
	r := f.do(t, "POST", "/v2/sessions/revoke/s_1", key(f.adminKey), `{"reason":"stolen laptop"}`)
	if r.status != 200 || r.raw != `{"success":true,"data":true}` {
		t.Fatalf("revoke = %d %s", r.status, r.raw)
	}
	ev, _ := f.lastEvent(t)
	if ev.Type != events.TypeSessionRevoked || ev.SessionID != "s_1" || ev.Reason != "stolen laptop" || !strings.HasPrefix(ev.Actor, "rvca_") {
		t.Fatalf("stored %+v", ev)
	}
	a := f.do(t, "GET", "/v1/audit?session=s_1", key(f.adminKey), "")
	if a.status != 200 || !strings.Contains(a.raw, `"session_id":"s_1"`) || strings.Count(a.raw, `"seq":`) != 1 {
		t.Fatalf("audit?session = %d %s", a.status, a.raw)
	}
	if a := f.do(t, "GET", "/v1/audit?session=a.b", key(f.adminKey), ""); a.status != 400 {
		t.Fatalf("audit?session=a.b = %d, want 400", a.status)
	}
}
