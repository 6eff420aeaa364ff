package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// TestGRPCExtAuthz: with REVOCAST_AGENT_GRPC_ADDR set, the agent answers Envoy's gRPC
// Check with the same decision as /auth: OK with the identity headers for a valid token,
// Denied 401 for garbage, and Denied 401 for the same token once its app is flushed.
func TestGRPCExtAuthz(t *testing.T) {
	s := startRevocastd(t)
	a := startAgent(t, s, map[string]string{"REVOCAST_AGENT_GRPC_ADDR": "127.0.0.1:0"})
	var addr string
	waitFor(t, "gRPC ext_authz serving", func() bool {
		m := regexp.MustCompile(`gRPC ext_authz on (\S+)`).FindStringSubmatch(a.stdout.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := authv3.NewAuthorizationClient(conn)
	check := func(authorization string) *authv3.CheckResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		headers := map[string]string{"x-revocast-user": "1"} // forged: must never pass as is
		if authorization != "" {
			headers["authorization"] = authorization
		}
		res, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/hello", Headers: headers}}}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return res
	}

	token := s.login(t, 42)
	res := check("Bearer " + token)
	if codes.Code(res.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("valid token: status %v, want OK", res.GetStatus())
	}
	got := map[string]string{}
	for _, h := range res.GetOkResponse().GetHeaders() {
		got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if got["x-revocast-user"] != "42" || got["x-revocast-app"] != "shop" {
		t.Fatalf("identity headers %v, want user 42 of shop", got)
	}
	if res := check("Bearer garbage"); codes.Code(res.GetStatus().GetCode()) == codes.OK || res.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("garbage token: %v", res)
	}
	s.flush(t)
	waitFor(t, "the flushed token refused over gRPC", func() bool {
		res := check("Bearer " + token)
		return codes.Code(res.GetStatus().GetCode()) != codes.OK && res.GetDeniedResponse().GetStatus().GetCode() == 401
	})
}
