package e2e

import (
	"regexp"
	"testing"
)

// TestConfirmedFlushWithResourcedProcesses: two resource servers run as processes; a flush
// sent with Prefer: wait=5 answers once both have applied it, so the old token is refused
// by each of them the moment the answer arrives, without waiting for anything.
func TestConfirmedFlushWithResourcedProcesses(t *testing.T) {
	s := startRevocastd(t)
	rootKey := cli(t, s, "apps", "create", "shop")
	cred := cli(t, s, "apps", "credential", "create", "shop")
	apiKey := cli(t, s, "keys", "create", "oncall")
	var servers []string
	for range 2 {
		_, m := start(t, "resourced", s.dir, []string{"RESOURCED_HTTP_ADDR=127.0.0.1:0", "NATS_URL=" + s.nats, "RESOURCED_REPORT_INTERVAL=200ms"},
			regexp.MustCompile(`serving (http://\S+)`))
		url := m[1]
		waitFor(t, "resourced ready", func() bool { code, _, _ := call(t, "GET", url+"/readyz", nil, ""); return code == 200 })
		servers = append(servers, url)
	}
	waitFor(t, "2 instances in the fleet", func() bool {
		code, _, body := call(t, "GET", s.api+"/v1/fleet", map[string]string{"X-API-Key": apiKey}, "")
		return code == 200 && regexp.MustCompile(`"live":2\b`).MatchString(body)
	})
	p := mint(t, s.api, "shop", cred, 42)
	for _, rs := range servers {
		if code, _, body := hello(t, rs, p.Data.AccessToken); code != 200 {
			t.Fatalf("hello before the flush = %d %s", code, body)
		}
	}
	code, hdr, body := call(t, "DELETE", s.api+"/root/shop/flush", map[string]string{"Authorization": rootKey, "Prefer": "wait=5"}, "")
	if code != 200 || body != `{"status":"ok"}` || hdr.Get("Revocast-Applied") != "2/2" || hdr.Get("Preference-Applied") != "wait=5" {
		t.Fatalf("flush with Prefer: wait=5 = %d %s %v", code, body, hdr)
	}
	for _, rs := range servers {
		if code, _, _ := hello(t, rs, p.Data.AccessToken); code != 401 {
			t.Fatalf("the old token at %s right after the confirmed flush = %d, want 401", rs, code)
		}
	}
}
