package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/revocast/revocast/services/internal/api"
)

// doHeader is [fixture.do] with a header that may repeat a name.
func (f *fixture) doHeader(t *testing.T, method, path string, header http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if p := documentedPath(loadOpenAPI(t), req.URL.Path); p != "" {
		observe(method, p, res.StatusCode)
	}
	r := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// message is the error message of either envelope.
func (r response) message() string {
	if m, ok := r.body["message"].(string); ok {
		return m
	}
	m, _ := r.body["error"].(string)
	return m
}

// Which of two credentials would be meant is ambiguous (a proxy may have added one): a
// repeated credential header is a 400 that names it, on every route that takes one, and it
// is not a failed guess.
func TestRepeatedCredentialHeaderIsRefused(t *testing.T) {
	const burst = 2
	f := newFixture(t, api.Config{AuthFailureBurst: burst})
	tests := []struct {
		name, method, path, header string
		values                     []string
		body                       string
	}{
		{"Flush", "DELETE", "/root/shop/flush", "Authorization", []string{f.rootKey, "wrong"}, ""},
		{"FlushSameTwice", "DELETE", "/root/shop/flush", "Authorization", []string{f.rootKey, f.rootKey}, ""},
		{"FlushSecondEmpty", "DELETE", "/root/shop/flush", "Authorization", []string{f.rootKey, ""}, ""},
		{"Reset", "POST", "/v2/users/reset/7", "X-API-Key", []string{f.adminKey, "wrong"}, ""},
		{"ResetSameTwice", "POST", "/v2/users/reset/7", "X-API-Key", []string{f.adminKey, f.adminKey}, ""},
		{"Audit", "GET", "/v1/audit", "X-API-Key", []string{f.readOnly, f.readOnly}, ""},
		{"Tokens", "POST", "/v1/apps/shop/tokens", "Authorization", []string{"Bearer " + f.appCred, "Bearer " + f.appCred}, `{"user_id":"42"}`},
	}
	for _, tt := range tests {
		t.Run("Err"+tt.name, func(t *testing.T) {
			before := f.msgs(t)
			for range burst + 1 {
				r := f.doHeader(t, tt.method, tt.path, http.Header{tt.header: tt.values}, tt.body)
				if r.status != 400 || !strings.Contains(r.message(), "repeated "+tt.header+" header") {
					t.Fatalf("status = %d (%s), want 400 naming the repeated %s header", r.status, r.raw, tt.header)
				}
			}
			if after := f.msgs(t); after != before {
				t.Fatalf("stream went from %d to %d events", before, after)
			}
		})
	}
	// None of those spent the failure budget: a wrong key is still only wrong.
	r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": "rvcr_000000000000_wrong"}, "")
	if r.status != 403 {
		t.Fatalf("wrong key after repeated headers: status = %d (%s), want 403", r.status, r.raw)
	}
}

// "Authorization: Bearer" with nothing after it sends no credential: 400, as a missing
// header is, and not a failed guess.
func TestEmptyBearerIsABadRequest(t *testing.T) {
	const burst = 2
	f := newFixture(t, api.Config{AuthFailureBurst: burst})
	tests := []struct {
		name, method, path, value, body string
	}{
		{"FlushBearerSpace", "DELETE", "/root/shop/flush", "Bearer ", ""},
		{"FlushBearer", "DELETE", "/root/shop/flush", "Bearer", ""},
		{"FlushBearerSpaces", "DELETE", "/root/shop/flush", "Bearer   \t ", ""},
		{"FlushWhitespace", "DELETE", "/root/shop/flush", "  ", ""},
		{"TokensBearerSpace", "POST", "/v1/apps/shop/tokens", "Bearer ", `{"user_id":"42"}`},
		{"TokensBearer", "POST", "/v1/apps/shop/tokens", "Bearer", `{"user_id":"42"}`},
	}
	for _, tt := range tests {
		t.Run("Err"+tt.name, func(t *testing.T) {
			before := f.msgs(t)
			for range burst + 1 {
				r := f.doHeader(t, tt.method, tt.path, http.Header{"Authorization": {tt.value}}, tt.body)
				if r.status != 400 || !strings.Contains(r.message(), "missing") {
					t.Fatalf("status = %d (%s), want 400 saying the credential is missing", r.status, r.raw)
				}
			}
			if after := f.msgs(t); after != before {
				t.Fatalf("stream went from %d to %d events", before, after)
			}
		})
	}
	r := f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": "rvcr_000000000000_wrong"}, "")
	if r.status != 403 {
		t.Fatalf("wrong key after empty bearers: status = %d (%s), want 403", r.status, r.raw)
	}
	r = f.doHeader(t, "POST", "/v1/apps/shop/tokens", http.Header{}, `{"user_id":"42"}`)
	if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("tokens without Authorization: status = %d (%s), want 401 with a challenge", r.status, r.raw)
	}
	r = f.do(t, "DELETE", "/root/shop/flush", map[string]string{"Authorization": "bearer " + f.rootKey}, "")
	if r.status != 200 {
		t.Fatalf("lower-case bearer scheme: status = %d (%s), want 200", r.status, r.raw)
	}
}
