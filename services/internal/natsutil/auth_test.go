package natsutil_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/services/internal/natsutil"
)

func startEmbedded(t *testing.T, dir string) *natsutil.Embedded {
	t.Helper()
	e, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func TestEmbeddedRefusesAnonymousConnections(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	nc, err := nats.Connect(e.ClientURL(), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted, want an authorization error")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connection: %v, want nats.ErrAuthorization", err)
	}
	// A user name and password are no way in either.
	if nc, err := nats.Connect(e.ClientURL(), nats.UserInfo("broadcaster", "broadcaster")); err == nil {
		nc.Close()
		t.Fatal("user/password connection accepted")
	}
}

func TestCredentialsFilesSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	e, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(natsutil.CredentialsDir(dir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("credentials directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	before := map[natsutil.Role][]byte{}
	for _, role := range natsutil.Roles {
		path := e.Credentials(role)
		if path != natsutil.CredentialsFile(dir, role) || filepath.Base(path) != string(role)+".creds" {
			t.Fatalf("%s credentials at %s", role, path)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", path, err, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(path)
		if !bytes.Contains(b, []byte("-----BEGIN NATS USER JWT-----")) || !bytes.Contains(b, []byte("-----BEGIN USER NKEY SEED-----")) {
			t.Fatalf("%s is not a NATS credentials file:\n%s", path, b)
		}
		before[role] = b
		nc, err := nats.Connect(e.ClientURL(), nats.UserCredentials(path))
		if err != nil {
			t.Fatalf("connect as %s: %v", role, err)
		}
		nc.Close()
	}
	keys, _ := os.ReadDir(filepath.Join(natsutil.CredentialsDir(dir), "keys"))
	for _, k := range keys {
		if fi, _ := k.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("signing seed %s has mode %v, want 0600", k.Name(), fi.Mode().Perm())
		}
	}
	e.Shutdown()

	// Same directory, new process: the files are kept as they are, and still let one in.
	e2 := startEmbedded(t, dir)
	for _, role := range natsutil.Roles {
		b, _ := os.ReadFile(e2.Credentials(role))
		if !bytes.Equal(b, before[role]) {
			t.Errorf("%s credentials changed across a restart", role)
		}
		nc, err := nats.Connect(e2.ClientURL(), nats.UserCredentials(e2.Credentials(role)))
		if err != nil {
			t.Fatalf("connect as %s after a restart: %v", role, err)
		}
		nc.Close()
	}
}

func TestCredentialsOfAnotherServerAreRefused(t *testing.T) {
	a, b := startEmbedded(t, t.TempDir()), startEmbedded(t, t.TempDir())
	nc, err := nats.Connect(a.ClientURL(), nats.UserCredentials(b.Credentials(natsutil.Broadcaster)))
	if err == nil {
		nc.Close()
		t.Fatal("another server's credentials accepted")
	}
	if hint := natsutil.CredentialsHint(err, "x.creds"); !strings.Contains(hint, "refused the credentials") {
		t.Errorf("hint = %q", hint)
	}
}

func TestDataDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	first, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = natsutil.StartEmbedded(natsutil.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err == nil {
		t.Fatal("a second embedded server started on a data directory in use")
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "REVOCAST_DATA_DIR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	first.Shutdown()
	// Released with the server: the directory can be used again at once.
	startEmbedded(t, dir)
}

// TestAdoptsTheStoreOfAnUnauthenticatedServer upgrades a data directory written by an
// embedded server without credentials: its revocations are still there.
func TestAdoptsTheStoreOfAnUnauthenticatedServer(t *testing.T) {
	dir := t.TempDir()
	old, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(dir, "jetstream"), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go old.Start()
	if !old.ReadyForConnections(10 * time.Second) {
		t.Fatal("old server not ready")
	}
	nc, err := nats.Connect(old.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "REVOCATIONS", Subjects: []string{"revocation.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "revocation.user.reset.42", []byte(`{"kept":true}`)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	e := startEmbedded(t, dir)
	if !e.Adopted {
		t.Error("Adopted = false, want true")
	}
	nc, err = nats.Connect(e.ClientURL(), nats.UserCredentials(e.Credentials(natsutil.Auditor)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	s, err := js.Stream(t.Context(), "REVOCATIONS")
	if err != nil {
		t.Fatalf("the stream of the old server: %v", err)
	}
	m, err := s.GetLastMsgForSubject(t.Context(), "revocation.user.reset.42")
	if err != nil || string(m.Data) != `{"kept":true}` {
		t.Fatalf("the old event: %v, %v", m, err)
	}
}

// TestRolesMatchAccountsConf: the embedded default and the cluster configuration give each
// role the same permissions.
func TestRolesMatchAccountsConf(t *testing.T) {
	for _, v := range []string{"REVOCAST_BROADCASTER_PASSWORD", "REVOCAST_RESOURCE_PASSWORD", "REVOCAST_AUDITOR_PASSWORD", "NATS_SYSTEM_PASSWORD"} {
		t.Setenv(v, "test-password")
	}
	o, err := server.ProcessConfigFile("../../../deployments/nats/nats-1.conf")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[natsutil.Role]bool{}
	for _, u := range o.Users {
		if u.Account == nil || u.Account.Name != "REVOCAST" {
			continue
		}
		role := natsutil.Role(u.Username)
		seen[role] = true
		want := role.Permissions()
		p := u.Permissions
		if p == nil || p.Publish == nil || p.Subscribe == nil {
			t.Fatalf("%s: accounts.conf gives no publish or subscribe permissions", role)
		}
		got := map[string][]string{"pub.allow": p.Publish.Allow, "pub.deny": p.Publish.Deny,
			"sub.allow": p.Subscribe.Allow, "sub.deny": p.Subscribe.Deny}
		mine := map[string][]string{"pub.allow": want.Pub.Allow, "pub.deny": want.Pub.Deny,
			"sub.allow": want.Sub.Allow, "sub.deny": want.Sub.Deny}
		for k := range got {
			g, _ := json.Marshal(got[k])
			m, _ := json.Marshal(mine[k])
			if len(got[k]) == 0 && len(mine[k]) == 0 {
				continue
			}
			if !bytes.Equal(g, m) {
				t.Errorf("%s %s:\naccounts.conf %s\nembedded      %s", role, k, g, m)
			}
		}
	}
	for _, role := range natsutil.Roles {
		if !seen[role] {
			t.Errorf("accounts.conf has no user %s", role)
		}
	}
}
