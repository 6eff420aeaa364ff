package extauthz_test

import (
	"context"
	"encoding/base64"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revocast/revocast/services/revocast-agent/extauthz"
)

// serve starts s on a real gRPC server on a loopback port and returns a client of it on
// Envoy's protos; both stop at the end of the test.
func serve(tb testing.TB, s *extauthz.Server) authv3.AuthorizationClient {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Close()
		g.GracefulStop()
		if err := <-done; err != nil {
			tb.Errorf("Serve = %v", err)
		}
	})
	return authv3.NewAuthorizationClient(conn)
}

// fakeDecider allows one authorization value and records what it was asked.
type fakeDecider struct {
	allow string
	deny  extauthz.Decision // the answer to anything else

	mu    sync.Mutex
	asked []string
}

func (f *fakeDecider) Decide(_ context.Context, authorization string) extauthz.Decision {
	f.mu.Lock()
	f.asked = append(f.asked, authorization)
	f.mu.Unlock()
	if f.allow != "" && authorization == f.allow {
		return extauthz.Decision{Allowed: true, User: "42", App: "shop", ClaimsJSON: []byte(`{"app":"shop","sub":"42"}`)}
	}
	return f.deny
}

func (f *fakeDecider) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

var invalidToken = extauthz.Decision{Status: 401,
	Challenge: `Bearer realm="revocast", error="invalid_token", error_description="the token is invalid"`}

func check(tb testing.TB, c authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.CheckResponse {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		tb.Fatalf("Check = %v", err)
	}
	return resp
}

// request is a CheckRequest as Envoy sends it without encode_raw_headers: one map entry per
// header name, lowercase, repeated headers joined with ",".
func request(headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/hello", Headers: headers}}}}
}

// rawRequest is a CheckRequest as Envoy sends it with encode_raw_headers: header_map, one
// entry per header line, values as bytes.
func rawRequest(kv ...string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/hello", HeaderMap: hm}}}}
}

// upstream applies an OK response to the request headers in the order Envoy's ext_authz
// filter does (source/extensions/filters/http/ext_authz/ext_authz.cc, onComplete): headers
// to set (overwrite), to add, to append, and only then headers_to_remove. A header whose
// append action is left unset is appended, as Envoy 1.37 did (envoyproxy/envoy#43310).
func upstream(tb testing.TB, in map[string]string, ok *authv3.OkHttpResponse) map[string][]string {
	tb.Helper()
	h := map[string][]string{}
	for k, v := range in {
		h[k] = []string{v}
	}
	for _, o := range ok.GetHeaders() {
		k, v := strings.ToLower(o.GetHeader().GetKey()), o.GetHeader().GetValue()
		if o.GetAppend() != nil {
			tb.Errorf("header %s sets the deprecated append field", k)
		}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h[k] = []string{v}
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if len(h[k]) == 0 {
				h[k] = []string{v}
			}
		default:
			h[k] = append(h[k], v)
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		delete(h, strings.ToLower(k))
	}
	return h
}

func header(hs []*corev3.HeaderValueOption, name string) (string, bool) {
	for _, o := range hs {
		if strings.EqualFold(o.GetHeader().GetKey(), name) {
			return o.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// wantDenied checks a refusal: rpc status, HTTP status, and that it carries no identity.
func wantDenied(tb testing.TB, resp *authv3.CheckResponse, code codes.Code, httpStatus int) *authv3.DeniedHttpResponse {
	tb.Helper()
	if resp.GetOkResponse() != nil {
		tb.Fatalf("response is OK, want denied %d: %v", httpStatus, resp)
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != code {
		tb.Errorf("rpc status = %s, want %s", got, code)
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		tb.Fatalf("no denied_response: %v", resp)
	}
	if got := int(d.GetStatus().GetCode()); got != httpStatus {
		tb.Errorf("HTTP status = %d, want %d", got, httpStatus)
	}
	for _, o := range d.GetHeaders() {
		if strings.HasPrefix(strings.ToLower(o.GetHeader().GetKey()), "x-revocast-") {
			tb.Errorf("denied response carries %s", o.GetHeader().GetKey())
		}
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			tb.Errorf("denied header %s: append action %s", o.GetHeader().GetKey(), o.GetAppendAction())
		}
	}
	return d
}

func TestCheckAllowed(t *testing.T) {
	d := &fakeDecider{allow: "Bearer good", deny: invalidToken}
	c := serve(t, extauthz.NewServer(d))
	in := map[string]string{
		"authorization":     "Bearer good",
		"x-revocast-user":   "1",       // forged: replaced by the verified user
		"x-revocast-claims": "e30",     // forged: claims are not enabled, so removed
		"x-revocast-admin":  "true",    // forged: no such header, removed
		"x-request-id":      "abc-123", // not ours: untouched
	}
	resp := check(t, c, request(in))
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK {
		t.Fatalf("rpc status = %s, want OK: %v", got, resp)
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("no ok_response: %v", resp)
	}
	for _, o := range ok.GetHeaders() {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: append action %s, want OVERWRITE_IF_EXISTS_OR_ADD", o.GetHeader().GetKey(), o.GetAppendAction())
		}
	}
	if _, ok := header(ok.GetHeaders(), extauthz.HeaderClaims); ok {
		t.Errorf("claims header sent without WithClaimsHeader")
	}
	up := upstream(t, in, ok)
	want := map[string][]string{
		"authorization":   {"Bearer good"},
		"x-revocast-user": {"42"},
		"x-revocast-app":  {"shop"},
		"x-request-id":    {"abc-123"},
	}
	if len(up) != len(want) {
		t.Errorf("upstream headers %v, want %v", up, want)
	}
	for k, v := range want {
		if !slices.Equal(up[k], v) {
			t.Errorf("upstream %s = %q, want %q", k, up[k], v)
		}
	}
	if got := d.calls(); !slices.Equal(got, []string{"Bearer good"}) {
		t.Errorf("decider asked %q", got)
	}
}

func TestCheckClaimsHeader(t *testing.T) {
	d := &fakeDecider{allow: "Bearer good", deny: invalidToken}
	c := serve(t, extauthz.NewServer(d, extauthz.WithClaimsHeader(true)))
	in := map[string]string{"authorization": "Bearer good", "x-revocast-claims": "forged"}
	ok := check(t, c, request(in)).GetOkResponse()
	up := upstream(t, in, ok)
	if len(up[extauthz.HeaderClaims]) != 1 {
		t.Fatalf("upstream claims %q, want one value", up[extauthz.HeaderClaims])
	}
	b, err := base64.RawURLEncoding.DecodeString(up[extauthz.HeaderClaims][0])
	if err != nil || string(b) != `{"app":"shop","sub":"42"}` {
		t.Fatalf("claims = %q, %v", b, err)
	}
}

func TestCheckRawHeaderMap(t *testing.T) {
	d := &fakeDecider{allow: "Bearer good", deny: invalidToken}
	c := serve(t, extauthz.NewServer(d))
	resp := check(t, c, rawRequest("authorization", "Bearer good", "x-revocast-app", "evil"))
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not OK: %v", resp)
	}
	if v, _ := header(ok.GetHeaders(), extauthz.HeaderApp); v != "shop" {
		t.Errorf("app header %q, want shop", v)
	}

	t.Run("RepeatedAuthorization", func(t *testing.T) {
		resp := check(t, c, rawRequest("authorization", "Bearer good", "authorization", "Bearer good"))
		wantDenied(t, resp, codes.Unauthenticated, 401)
	})
}

func TestCheckRefused(t *testing.T) {
	notReady := extauthz.Decision{Status: 503, RetryAfter: 1500 * time.Millisecond}
	tests := []struct {
		name      string
		req       *authv3.CheckRequest
		deny      extauthz.Decision
		asked     []string // what the decider must have been asked; nil: nothing
		code      codes.Code
		status    int
		challenge string // substring of WWW-Authenticate
	}{
		{"NoAttributes", &authv3.CheckRequest{}, invalidToken, []string{""}, codes.Unauthenticated, 401, "invalid_token"},
		{"NoHTTPAttribute", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
			invalidToken, []string{""}, codes.Unauthenticated, 401, "invalid_token"},
		{"InvalidToken", request(map[string]string{"authorization": "Bearer bad"}), invalidToken, []string{"Bearer bad"},
			codes.Unauthenticated, 401, `error_description="the token is invalid"`},
		{"NotReady", request(map[string]string{"authorization": "Bearer good-but-unknown"}), notReady,
			[]string{"Bearer good-but-unknown"}, codes.Unavailable, 503, ""},
		{"JoinedAuthorization", request(map[string]string{"authorization": "Bearer good,Bearer good"}), invalidToken, nil,
			codes.Unauthenticated, 401, `error="invalid_request"`},
		{"Oversized", request(map[string]string{"authorization": "Bearer " + strings.Repeat("a", extauthz.DefaultMaxAuthorizationSize)}),
			invalidToken, nil, codes.Unauthenticated, 401, `error="invalid_request"`},
		{"BasicScheme", request(map[string]string{"authorization": "Basic Z29vZDpnb29k"}), invalidToken, nil,
			codes.Unauthenticated, 401, `Bearer realm="revocast"`},
		{"SchemeOnly", request(map[string]string{"authorization": "Bearer"}), invalidToken, nil,
			codes.Unauthenticated, 401, `Bearer realm="revocast"`},
		{"MixedCaseNames", request(map[string]string{"Authorization": "Bearer good", "authorization": "Bearer good"}), invalidToken, nil,
			codes.Unauthenticated, 401, `error="invalid_request"`},
		{"StatusOutOfRange", request(map[string]string{"authorization": "Bearer bad"}), extauthz.Decision{Status: 200},
			[]string{"Bearer bad"}, codes.Unauthenticated, 401, `Bearer realm="revocast"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDecider{allow: "Bearer good", deny: tt.deny}
			c := serve(t, extauthz.NewServer(d))
			den := wantDenied(t, check(t, c, tt.req), tt.code, tt.status)
			if got := d.calls(); !slices.Equal(got, tt.asked) {
				t.Errorf("decider asked %q, want %q", got, tt.asked)
			}
			wa, hasWA := header(den.GetHeaders(), "www-authenticate")
			ra, hasRA := header(den.GetHeaders(), "retry-after")
			if tt.status == 401 && (!hasWA || !strings.Contains(wa, tt.challenge) || hasRA) {
				t.Errorf("WWW-Authenticate %q (%v), want it to contain %q; Retry-After %q", wa, hasWA, tt.challenge, ra)
			}
			if tt.status == 503 && (ra != "2" || hasWA) {
				t.Errorf("Retry-After %q, want 2 (1.5s rounded up); WWW-Authenticate %q", ra, wa)
			}
		})
	}
}

// FuzzCheck: whatever the headers, a request passes only with the one allowed credential,
// and no client-sent X-Revocast-* value reaches the upstream.
func FuzzCheck(f *testing.F) {
	f.Add("Bearer good", "x-revocast-user", "1")
	f.Add("Bearer good", "X-Revocast-User", "1")
	f.Add("bearer good", "x-revocast-claims", "e30")
	f.Add("Bearer good,Bearer good", "x-revocast-app", "a")
	f.Add("Bearer  good", "x-revocast-", "")
	f.Add("", "x-revocast-user", "42")
	d := &fakeDecider{allow: "Bearer good", deny: invalidToken}
	s := extauthz.NewServer(d)
	f.Fuzz(func(t *testing.T, auth, name, value string) {
		in := map[string]string{"authorization": auth, strings.ToLower(name): value}
		resp, err := s.Check(context.Background(), request(in))
		if err != nil {
			t.Fatal(err)
		}
		ok := resp.GetOkResponse()
		if ok == nil {
			return
		}
		if auth != "Bearer good" || strings.EqualFold(name, "authorization") {
			t.Fatalf("allowed with authorization %q", in["authorization"])
		}
		for k, v := range upstream(t, in, ok) {
			if strings.HasPrefix(k, "x-revocast-") && slices.Contains(v, value) && v[0] != "42" && v[0] != "shop" {
				t.Fatalf("client-sent %s %q reached the upstream: %q", k, value, v)
			}
			if strings.HasPrefix(k, "x-revocast-") && len(v) != 1 {
				t.Fatalf("upstream %s = %q, want one value", k, v)
			}
		}
	})
}
