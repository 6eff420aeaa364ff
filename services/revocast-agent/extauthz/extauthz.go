// Package extauthz is revocast-agent's front door for Envoy and Istio: the gRPC external
// authorization service envoy.service.auth.v3.Authorization/Check, on Envoy's own protos.
//
// It is a thin adapter. The decision (signature, claims, watermarks, freshness) belongs to a
// [Decider], which the agent builds on the client table, the same decision its HTTP /auth
// endpoint answers with. This package only turns a CheckRequest into the Authorization
// header value to decide on, and the [Decision] into a CheckResponse that Envoy applies as
// the other proxies apply the HTTP answer:
//   - allowed: OK, with X-Revocast-User, X-Revocast-App (and X-Revocast-Claims when enabled)
//     set on the upstream request with an explicit overwrite action, and every other
//     incoming X-Revocast-* header removed, so no value the client sent reaches the upstream;
//   - refused: Denied, 401 with the WWW-Authenticate challenge, or 503 with Retry-After
//     while the table cannot vouch for its watermarks.
package extauthz

import (
	"context"
	"encoding/base64"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// Names of the identity headers set on an allowed request, lowercase as Envoy keeps them.
const (
	HeaderUser   = "x-revocast-user"
	HeaderApp    = "x-revocast-app"
	HeaderClaims = "x-revocast-claims"
	// headerPrefix is what every revocast identity header starts with; the upstream trusts
	// these names, so no client-sent header with this prefix may reach it.
	headerPrefix = "x-revocast-"
)

// DefaultMaxAuthorizationSize caps the Authorization header value the server passes to its
// [Decider]: twice the client's default token size cap, so a legitimate token always fits.
const DefaultMaxAuthorizationSize = 16 << 10

// DefaultRealm is the realm of the challenges this package writes itself (for malformed
// Authorization headers); it matches the client's default.
const DefaultRealm = "revocast"

// Decision is the answer of a [Decider] for one request.
type Decision struct {
	// Allowed lets the request through to the upstream.
	Allowed bool
	// Status is the HTTP status of a refusal: 401 (missing, invalid or revoked token) or
	// 503 (the table is not ready or stale and fails closed). Ignored when Allowed; a
	// refusal with a status outside 400-599 is sent as 401.
	Status int
	// User and App identify the token's subject; they become X-Revocast-User and
	// X-Revocast-App. An empty App (no app claim configured) sets no app header.
	User, App string
	// ClaimsJSON holds the verified claims as JSON, sent base64url-encoded in
	// X-Revocast-Claims when the server was built [WithClaimsHeader]; optional.
	ClaimsJSON []byte
	// Challenge is the WWW-Authenticate value of a 401, e.g.
	// `Bearer realm="revocast", error="invalid_token", error_description="..."`.
	Challenge string
	// RetryAfter is the Retry-After of a 503, rounded up to whole seconds (at least 1).
	RetryAfter time.Duration
}

// Decider decides whether a request may pass, from the raw value of its Authorization
// header ("" when it has none). The agent implements it over the client table.
type Decider interface {
	Decide(ctx context.Context, authorization string) Decision
}

// Option configures a [Server].
type Option func(*Server)

// WithClaimsHeader makes allowed requests carry the verified claims in X-Revocast-Claims
// (base64url without padding, of [Decision.ClaimsJSON]). Off by default: claims can be
// large, and most upstreams need only the user and the app.
func WithClaimsHeader(enabled bool) Option {
	return func(s *Server) { s.claims = enabled }
}

// WithRealm sets the realm of the challenges the server writes itself, for Authorization
// headers it refuses before asking the [Decider]. Characters a quoted string cannot hold
// are dropped. Give it the realm the Decider uses.
func WithRealm(realm string) Option {
	return func(s *Server) {
		s.realm = strings.Map(func(r rune) rune {
			if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
				return -1
			}
			return r
		}, realm)
	}
}

// WithMaxAuthorizationSize sets the largest Authorization header value, in bytes, passed to
// the [Decider]; a larger one is refused with 401. Values below 1 keep the default,
// [DefaultMaxAuthorizationSize].
func WithMaxAuthorizationSize(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.maxAuth = n
		}
	}
}

// Server answers Envoy's ext_authz Check calls from a [Decider]. It is safe for concurrent
// use.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	d       Decider
	claims  bool
	realm   string
	maxAuth int
}

// NewServer returns a Server that asks d about every request.
func NewServer(d Decider, opts ...Option) *Server {
	s := &Server{d: d, realm: DefaultRealm, maxAuth: DefaultMaxAuthorizationSize}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register adds the Authorization service to g, to be served on the agent's gRPC port.
func (s *Server) Register(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, s)
}

// Check implements envoy.service.auth.v3.Authorization/Check. Refusals are CheckResponses
// with a non-OK status, never RPC errors: an RPC error is a failure of the authorization
// service to Envoy, answered by its status_on_error (403 by default) without the challenge.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	auth, n := authorization(h)
	switch {
	case n > 1 || strings.IndexByte(auth, ',') >= 0:
		// Envoy joins repeated headers with ","; a bearer token never holds one (RFC 6750
		// b64token), so a comma means more than one credential.
		return s.malformed("more than one Authorization header"), nil
	case len(auth) > s.maxAuth:
		return s.malformed("the Authorization header is too large"), nil
	case auth != "" && !isBearer(auth):
		// Another scheme carries no bearer credentials: the answer to a missing token.
		return s.denied(Decision{Status: 401, Challenge: `Bearer realm="` + s.realm + `"`}), nil
	}
	dec := s.d.Decide(ctx, auth)
	if !dec.Allowed {
		return s.denied(dec), nil
	}
	if !validValue(dec.User) || !validValue(dec.App) {
		// Unreachable with the client's validated ids; never send a header Envoy rejects.
		return s.malformed("the token's identity cannot be sent in a header"), nil
	}
	return s.ok(h, dec), nil
}

// authorization returns the Authorization value of a request and how many Authorization
// headers it carries. With encode_raw_headers, Envoy sends header_map (repeated headers as
// separate entries, values as bytes) instead of the headers map.
func authorization(h *authv3.AttributeContext_HttpRequest) (string, int) {
	if hm := h.GetHeaderMap().GetHeaders(); len(hm) > 0 {
		var v string
		n := 0
		for _, e := range hm {
			if strings.EqualFold(e.GetKey(), "authorization") {
				n++
				v = headerValue(e)
			}
		}
		return v, n
	}
	var v string
	n := 0
	for k, hv := range h.GetHeaders() {
		// Envoy lowercases header names; another client may not.
		if strings.EqualFold(k, "authorization") {
			n++
			v = hv
		}
	}
	return v, n
}

func headerValue(e *corev3.HeaderValue) string {
	if raw := e.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return e.GetValue()
}

// isBearer reports whether v is "Bearer <token>", the scheme in any case.
func isBearer(v string) bool {
	const scheme = "bearer "
	return len(v) > len(scheme) && strings.EqualFold(v[:len(scheme)], scheme)
}

// validValue reports whether v can be sent as a header value as is.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b == 0x7f {
			return false
		}
	}
	return true
}

func (s *Server) ok(h *authv3.AttributeContext_HttpRequest, dec Decision) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{}
	set := func(name, value string) {
		ok.Headers = append(ok.Headers, overwrite(name, value))
	}
	set(HeaderUser, dec.User)
	if dec.App != "" {
		set(HeaderApp, dec.App)
	}
	if s.claims && len(dec.ClaimsJSON) > 0 {
		set(HeaderClaims, base64.RawURLEncoding.EncodeToString(dec.ClaimsJSON))
	}
	// Envoy applies headers_to_remove after the headers it sets (ext_authz.cc, onComplete):
	// listing a header we set would remove our value too. Those are overwritten; every other
	// incoming X-Revocast-* header is removed.
	ok.HeadersToRemove = incoming(h, ok.Headers)
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

// incoming lists the names of the X-Revocast-* headers a request carries that set does not
// overwrite, lowercase and sorted.
func incoming(h *authv3.AttributeContext_HttpRequest, set []*corev3.HeaderValueOption) []string {
	seen := map[string]bool{}
	add := func(k string) {
		if len(k) >= len(headerPrefix) && strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
			seen[strings.ToLower(k)] = true
		}
	}
	for k := range h.GetHeaders() {
		add(k)
	}
	for _, e := range h.GetHeaderMap().GetHeaders() {
		add(e.GetKey())
	}
	for _, o := range set {
		delete(seen, o.GetHeader().GetKey())
	}
	names := make([]string, 0, len(seen))
	for k := range seen {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// overwrite is a header that replaces any value of the same name. The action is set
// explicitly: Envoy 1.37 appended headers whose action was left unset
// (envoyproxy/envoy#43310), which would let a client-sent value through beside ours.
func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func (s *Server) malformed(why string) *authv3.CheckResponse {
	return s.denied(Decision{Status: 401,
		Challenge: `Bearer realm="` + s.realm + `", error="invalid_request", error_description="` + why + `"`})
}

func (s *Server) denied(dec Decision) *authv3.CheckResponse {
	st := dec.Status
	if st < 400 || st > 599 {
		st = 401
	}
	headers := []*corev3.HeaderValueOption{overwrite("cache-control", "no-store")}
	body := "unauthorized"
	code := codes.PermissionDenied
	switch {
	case st == 401:
		code = codes.Unauthenticated
		challenge := dec.Challenge
		if challenge == "" || !validValue(challenge) {
			challenge = `Bearer realm="` + s.realm + `"`
		}
		headers = append(headers, overwrite("www-authenticate", challenge))
	case st >= 500:
		code = codes.Unavailable
		body = "revocation list unavailable"
		secs := int64((dec.RetryAfter + time.Second - 1) / time.Second)
		headers = append(headers, overwrite("retry-after", strconv.FormatInt(max(secs, 1), 10)))
	default:
		body = "forbidden"
	}
	headers = append(headers, overwrite("content-type", "text/plain; charset=utf-8"))
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: body},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(st)},
			Headers: headers,
			Body:    body + "\n",
		}},
	}
}
