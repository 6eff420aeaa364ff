package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/revocast/revocast/services/internal/store"
)

// TestFlushUnknownAppIsRefused: a flush is stored for good, so a typo must not become a
// permanent event: an app this revocast does not know is refused (exit 1, not a usage
// error: the line was well formed) unless --allow-unknown-app says it is meant.
func TestFlushUnknownAppIsRefused(t *testing.T) {
	c := newCLI(t)
	_, _, err := c.run("flush", "nosuchapp")
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "--allow-unknown-app") || !strings.Contains(err.Error(), "nothing was revoked") {
		t.Fatalf("flush of an unknown app = %v, want a refusal naming --allow-unknown-app", err)
	}
	if n := c.msgs(); n != 0 {
		t.Fatalf("stream holds %d events after refusing an unknown app", n)
	}
	if _, _, err := c.run("flush", "elsewhere", "--allow-unknown-app"); err != nil {
		t.Fatalf("flush --allow-unknown-app = %v", err)
	}
	if n := c.msgs(); n != 1 {
		t.Fatalf("stream holds %d events, want 1", n)
	}
}

// TestAppCredentialCreateAndRotate: creating a credential never replaces one silently;
// replacing it is its own command.
func TestAppCredentialCreateAndRotate(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	if _, _, err := c.run("apps", "create", "shop"); err != nil {
		t.Fatal(err)
	}
	out, _, err := c.run("apps", "credential", "create", "shop")
	if err != nil {
		t.Fatalf("credential create: %v", err)
	}
	first := lastLine(out)
	if _, err := c.store.AuthenticateAppCredential(ctx, "shop", first); err != nil {
		t.Fatalf("the last line %q is not a working credential: %v", first, err)
	}

	out, _, err = c.run("apps", "credential", "create", "shop")
	if !errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), "revocast apps credential rotate shop") {
		t.Fatalf("second credential create = %v, want ErrExists naming the rotate command", err)
	}
	if strings.Contains(out, "rvc") {
		t.Fatalf("a refused create printed %q", out)
	}
	if _, err := c.store.AuthenticateAppCredential(ctx, "shop", first); err != nil {
		t.Fatalf("the credential stopped working after a refused create: %v", err)
	}

	out, _, err = c.run("apps", "credential", "rotate", "shop")
	if err != nil {
		t.Fatalf("credential rotate: %v", err)
	}
	second := lastLine(out)
	if _, err := c.store.AuthenticateAppCredential(ctx, "shop", second); err != nil {
		t.Fatalf("rotated credential: %v", err)
	}
	if _, err := c.store.AuthenticateAppCredential(ctx, "shop", first); err == nil {
		t.Fatal("the old credential still works after rotate")
	}

	if _, _, err := c.run("apps", "create", "bare"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.run("apps", "credential", "rotate", "bare"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotate without a credential = %v, want ErrNotFound", err)
	}
	if _, _, err := c.run("apps", "credential", "create", "nosuchapp"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("credential for an unknown app = %v, want ErrNotFound", err)
	}
	// The old form is a usage error that names both commands, not a silent replacement.
	var ue usageError
	if _, _, err := c.run("apps", "credential", "shop"); !errors.As(err, &ue) {
		t.Fatalf("apps credential shop = %v, want a usage error", err)
	}
	if _, err := c.store.AuthenticateAppCredential(ctx, "shop", second); err != nil {
		t.Fatalf("the credential changed: %v", err)
	}
}

// TestHelp: every command and group has its own help, with examples; help exits 0 and a
// group without a command prints its help and exits 2. A NATS that is not there proves
// that help reads nothing.
func TestHelp(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		usage   bool     // exit 2
		want    []string // in the output
		notWant []string
	}{
		{"FlushH", []string{"flush", "-h"}, false, []string{"revocast flush APP_ID", "--allow-unknown-app", "--reason", "Examples:", "revocast flush shop"}, []string{"keys create", "--scopes"}},
		{"AppsH", []string{"apps", "-h"}, false, []string{"revocast apps", "credential", "rotate", "Examples:"}, []string{"--reason", "--allow-unknown-app"}},
		{"HelpKeys", []string{"help", "keys"}, false, []string{"revocast keys create oncall", "--scopes audit:read"}, []string{"--reason"}},
		{"KeysCreateH", []string{"keys", "create", "--help"}, false, []string{"default: all of them, users:reset,audit:read", "audit:read    GET /v1/audit"}, nil},
		{"CredentialH", []string{"help", "apps", "credential", "create"}, false, []string{"shown once", "apps credential rotate APP_ID"}, nil},
		{"Help", []string{"help"}, false, []string{"Available Commands:", "apps", "keys", "flush", "reset", "audit", "completion"}, nil},
		{"RootH", []string{"-h"}, false, []string{"Available Commands:", "Exit status: 0 done, 1 failed, 2 usage error"}, nil},
		{"Completion", []string{"completion", "bash"}, false, []string{"bash completion"}, nil},
		{"AppsAlone", []string{"apps"}, true, []string{"revocast apps [command]", "needs a command"}, nil},
		{"Nothing", []string{}, true, []string{"Available Commands:", "needs a command"}, nil},
		{"UnknownCommand", []string{"flsuh", "shop"}, true, []string{`unknown command "flsuh"`, "did you mean flush?"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			err := run(context.Background(), append([]string{"revocast", "--nats-url", "nats://127.0.0.1:1"}, tt.args...),
				func(string) string { return "" }, &stdout, &stderr)
			var ue usageError
			if tt.usage != errors.As(err, &ue) || (!tt.usage && err != nil) {
				t.Fatalf("err = %v, want usage error %v", err, tt.usage)
			}
			out := stdout.String() + stderr.String()
			if err != nil {
				out += err.Error()
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q, which belongs to another command:\n%s", w, out)
				}
			}
		})
	}
}
