package e2e

import (
	"net/url"
	"strings"
	"testing"
)

// TestLogoutOneDevice: through the real processes, two logins of one user are two
// sessions; the app's RFC 7009 logout of one refuses it at resourced and at the refresh
// endpoint, the other keeps working, and an admin revocation of the other by its sid
// refuses it too.
func TestLogoutOneDevice(t *testing.T) {
	s := startRevocastd(t)
	cli(t, s, "apps", "create", "shop")
	cred := cli(t, s, "apps", "credential", "create", "shop")
	apiKey := cli(t, s, "keys", "create", "oncall")
	rs := startResourced(t, s)

	laptop, phone := mint(t, s.api, "shop", cred, 42), mint(t, s.api, "shop", cred, 42)
	if laptop.Data.SessionID == "" || laptop.Data.SessionID == phone.Data.SessionID {
		t.Fatalf("sessions %q and %q: want two", laptop.Data.SessionID, phone.Data.SessionID)
	}
	code, _, body := call(t, "POST", s.api+"/v1/tokens/revoke", map[string]string{"Authorization": "Bearer " + cred,
		"Content-Type": "application/x-www-form-urlencoded"}, "token="+url.QueryEscape(laptop.Data.RefreshToken))
	if code != 200 || body != "" {
		t.Fatalf("revoke = %d %q, want 200 with an empty body", code, body)
	}
	waitFor(t, "the logged-out session refused", func() bool { code, _, _ := hello(t, rs, laptop.Data.AccessToken); return code == 401 })
	if code, r := refresh(t, s.api, laptop.Data.RefreshToken); code != 401 || !strings.Contains(r.Message, "revoked") {
		t.Fatalf("refresh of the logged-out session = %d %q", code, r.Message)
	}
	if code, _, body := hello(t, rs, phone.Data.AccessToken); code != 200 {
		t.Fatalf("the other session = %d %s", code, body)
	}

	code, _, body = call(t, "POST", s.api+"/v2/sessions/revoke/"+phone.Data.SessionID, map[string]string{"X-API-Key": apiKey}, "")
	if code != 200 || body != `{"success":true,"data":true}` {
		t.Fatalf("admin revoke = %d %s", code, body)
	}
	waitFor(t, "the admin-revoked session refused", func() bool { code, _, _ := hello(t, rs, phone.Data.AccessToken); return code == 401 })
	if out := cli(t, s, "audit", "--session", phone.Data.SessionID, "--format", "jsonl"); !strings.Contains(out, phone.Data.SessionID) {
		t.Fatalf("audit --session = %q", out)
	}
}
