package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
)

// TestEmbeddedDefaultCredentials: against the embedded default, which lets no one in without
// credentials, the CLI finds the right credentials file in the data directory by itself:
// the broadcaster's for admin commands, the auditor's for audit.
func TestEmbeddedDefaultCredentials(t *testing.T) {
	dir := t.TempDir()
	e, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := nats.Connect(e.ClientURL(), nats.UserCredentials(e.Credentials(natsutil.Broadcaster)), natsutil.PrivateInbox())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := store.Setup(t.Context(), js, store.Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	cmd := func(env map[string]string, args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"revocast"}, args...), func(k string) string { return env[k] }, &stdout, &stderr)
		return stdout.String(), stderr.String(), err
	}
	env := map[string]string{"NATS_URL": e.ClientURL(), "REVOCAST_DATA_DIR": dir}
	for _, args := range [][]string{{"apps", "create", "shop"}, {"flush", "shop"}, {"reset", "42"}, {"audit", "--format", "jsonl"}} {
		out, errOut, err := cmd(env, args...)
		if err != nil {
			t.Fatalf("revocast %v = %v\n%s", args, err, errOut)
		}
		if args[0] == "audit" && strings.Count(out, "\n") != 2 {
			t.Fatalf("audit printed %q, want the 2 events", out)
		}
	}

	// The auditor's file is what audit uses: with it named explicitly, admin commands fail.
	env["NATS_CREDS"] = e.Credentials(natsutil.Auditor)
	if _, _, err := cmd(env, "audit"); err != nil {
		t.Fatalf("audit as auditor: %v", err)
	}
	if _, _, err := cmd(env, "--timeout", "2s", "reset", "43"); err == nil {
		t.Fatal("reset as auditor succeeded")
	}

	// No credentials where they should be: the error says where they come from.
	_, _, err = cmd(map[string]string{"NATS_URL": natsutil.DefaultURL, "REVOCAST_DATA_DIR": t.TempDir()}, "apps", "list")
	if err == nil || !strings.Contains(err.Error(), "broadcaster.creds") || !strings.Contains(err.Error(), "NATS_CREDS") {
		t.Fatalf("without credentials: %v, want the missing file and NATS_CREDS named", err)
	}
}
