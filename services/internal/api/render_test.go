package api_test

import (
	"strings"
	"testing"

	"github.com/revocast/revocast/services/internal/api"
)

// TestBodiesAreNotHTMLEscaped: error messages quote placeholders such as <app credential>
// and JSON such as {"user_id": ...}; a body shows them as written, not as \u003c or \u0026.
func TestBodiesAreNotHTMLEscaped(t *testing.T) {
	f := newFixture(t, api.Config{})
	tests := []struct {
		name, method, path, body, want string
	}{
		{"ErrMissingCredential", "POST", "/v1/apps/shop/tokens", `{"user_id":"42"}`, "Bearer <app credential>"},
		{"ErrBadRefreshBody", "POST", "/v1/tokens/refresh", `{}`, `{"refresh_token": "<token>"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.doHeader(t, tt.method, tt.path, nil, tt.body)
			if strings.Contains(r.raw, `\u003c`) || strings.Contains(r.raw, `\u003e`) || strings.Contains(r.raw, `\u0026`) {
				t.Fatalf("body = %s, want no HTML escapes", r.raw)
			}
			if !strings.Contains(r.message(), tt.want) {
				t.Fatalf("message = %q, want it to contain %q", r.message(), tt.want)
			}
		})
	}
}
