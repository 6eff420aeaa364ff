// Package e2e runs revocast as a user does: the revocastd, revocast and resourced binaries,
// built once, as separate processes on loopback ports, talking HTTP and NATS.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/services/internal/testkit"
)

// bin holds the built binaries.
var bin string

func TestMain(m *testing.M) {
	testkit.RunWithBinaries(m, &bin, "../revocastd", "../revocast", "../resourced")
}

// process is a running binary whose output the test can read.
type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func (p *process) out() string  { p.mu.Lock(); defer p.mu.Unlock(); return p.stdout.String() }
func (p *process) logs() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// start runs a binary with env until the test ends and returns it once its stdout matches
// ready; the first submatch is returned too.
func start(t *testing.T, name, dir string, env []string, ready *regexp.Regexp) (*process, []string) {
	t.Helper()
	p, exited := launch(t, name, dir, env)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := ready.FindStringSubmatch(p.out()); m != nil {
			return p, m
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready:\n%s", name, p.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 30s:\n%s", name, p.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launch runs a binary in dir with env until the test ends; exited is closed when it exits.
func launch(t *testing.T, name, dir string, env []string) (p *process, exited chan struct{}) {
	t.Helper()
	p = &process{cmd: exec.Command(filepath.Join(bin, name))}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = lockedWriter{&p.mu, &p.stdout}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Errorf("%s did not stop on SIGINT within 15s", name)
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, p.logs())
		}
	})
	return p, exited
}

// cli runs the admin CLI in the stack's directory, as a user on the revocastd machine
// would (it finds the credentials there by itself), and returns the last line of stdout.
func cli(t *testing.T, s stack, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "revocast"), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "NATS_URL="+s.nats)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("revocast %v: %v\n%s", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// stack is a revocastd on its embedded default, run in dir with the default data
// directory (dir/revocast-data), as the README's walk-through does.
type stack struct {
	api, nats, dir string
}

func startRevocastd(t *testing.T) stack {
	t.Helper()
	return startRevocastdIn(t, t.TempDir())
}

func startRevocastdIn(t *testing.T, dir string) stack {
	t.Helper()
	_, m := start(t, "revocastd", dir, []string{"REVOCAST_HTTP_ADDR=127.0.0.1:0", "REVOCAST_NATS_LISTEN=127.0.0.1:0"},
		regexp.MustCompile(`serving (http://\S+) \(NATS (\S+)\)`))
	st := stack{api: m[1], nats: m[2], dir: dir}
	waitFor(t, "revocastd ready", func() bool { code, _, _ := call(t, "GET", st.api+"/readyz", nil, ""); return code == 200 })
	return st
}

// startResourced starts the sample resource server beside s, in its directory: it finds
// its credentials (revocast-data/credentials/resource.creds) with no configuration.
func startResourced(t *testing.T, s stack) string {
	t.Helper()
	_, m := start(t, "resourced", s.dir, []string{"RESOURCED_HTTP_ADDR=127.0.0.1:0", "NATS_URL=" + s.nats},
		regexp.MustCompile(`serving (http://\S+)`))
	url := m[1]
	waitFor(t, "resourced ready", func() bool { code, _, _ := call(t, "GET", url+"/readyz", nil, ""); return code == 200 })
	return url
}

func call(t *testing.T, method, url string, header map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type pair struct {
	Data struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		SessionID    string `json:"sid"`
	} `json:"data"`
	Message string `json:"message"`
}

func mint(t *testing.T, api, app, cred string, user int) pair {
	t.Helper()
	code, _, body := call(t, "POST", api+"/v1/apps/"+app+"/tokens", map[string]string{"Authorization": "Bearer " + cred},
		fmt.Sprintf(`{"user_id":"%d"}`, user))
	if code != 200 {
		t.Fatalf("mint = %d %s", code, body)
	}
	var p pair
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func refresh(t *testing.T, api, token string) (int, pair) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"refresh_token": token})
	code, _, body := call(t, "POST", api+"/v1/tokens/refresh", nil, string(b))
	var p pair
	_ = json.Unmarshal([]byte(body), &p)
	return code, p
}

func hello(t *testing.T, rs, token string) (int, http.Header, string) {
	t.Helper()
	return call(t, "GET", rs+"/hello", map[string]string{"Authorization": "Bearer " + token}, "")
}

// TestLoginRevokeLoginAgain is the whole story of the README: log in, use, revoke, refused,
// log in again, use.
func TestLoginRevokeLoginAgain(t *testing.T) {
	s := startRevocastd(t)
	rootKey := cli(t, s, "apps", "create", "shop")
	cred := cli(t, s, "apps", "credential", "create", "shop")
	apiKey := cli(t, s, "keys", "create", "oncall")
	rs := startResourced(t, s)

	p := mint(t, s.api, "shop", cred, 42)
	code, _, body := hello(t, rs, p.Data.AccessToken)
	if code != 200 || !strings.Contains(body, `"user":42`) || !strings.Contains(body, `"app":"shop"`) {
		t.Fatalf("hello with a fresh token = %d %s", code, body)
	}

	code, _, body = call(t, "DELETE", s.api+"/root/shop/flush", map[string]string{"Authorization": rootKey}, "")
	if code != 200 {
		t.Fatalf("flush = %d %s", code, body)
	}
	var hdr http.Header
	waitFor(t, "old token refused after the flush", func() bool {
		code, hdr, _ = hello(t, rs, p.Data.AccessToken)
		return code == 401
	})
	if wa := hdr.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate = %q", wa)
	}
	if code, r := refresh(t, s.api, p.Data.RefreshToken); code != 401 || !strings.Contains(r.Message, "revoked") {
		t.Fatalf("refresh with the old refresh token = %d %q, want 401 revoked", code, r.Message)
	}
	p2 := mint(t, s.api, "shop", cred, 42)
	if code, _, body := hello(t, rs, p2.Data.AccessToken); code != 200 {
		t.Fatalf("hello after logging in again = %d %s", code, body)
	}

	// A user reset works the same way, and only for that user.
	other := mint(t, s.api, "shop", cred, 7)
	code, _, _ = call(t, "POST", s.api+"/v2/users/reset/42", map[string]string{"X-API-Key": apiKey}, "")
	if code != 200 {
		t.Fatalf("reset = %d", code)
	}
	waitFor(t, "user 42 refused after the reset", func() bool { code, _, _ := hello(t, rs, p2.Data.AccessToken); return code == 401 })
	if code, _, _ := hello(t, rs, other.Data.AccessToken); code != 200 {
		t.Fatalf("user 7 after user 42's reset = %d, want 200", code)
	}
	code, next := refresh(t, s.api, other.Data.RefreshToken)
	if code != 200 {
		t.Fatalf("user 7 refresh = %d %q", code, next.Message)
	}
	if code, _, _ := hello(t, rs, next.Data.AccessToken); code != 200 {
		t.Fatalf("refreshed access token = %d", code)
	}
}

// TestKeyRotation: tokens signed with the old key keep working until they expire, new tokens
// use the new key, and a resource server started after the rotation verifies both.
func TestKeyRotation(t *testing.T) {
	s := startRevocastd(t)
	cli(t, s, "apps", "create", "shop")
	cred := cli(t, s, "apps", "credential", "create", "shop")
	early := startResourced(t, s)

	before := mint(t, s.api, "shop", cred, 1)
	out := cli(t, s, "signing", "rotate")
	if !strings.Contains(out, "new signing key") {
		t.Fatalf("signing rotate printed %q", out)
	}
	var after pair
	waitFor(t, "revocastd signs with the new key", func() bool {
		after = mint(t, s.api, "shop", cred, 1)
		return kid(t, after.Data.AccessToken) != kid(t, before.Data.AccessToken)
	})
	late := startResourced(t, s)
	for _, rs := range []string{early, late} {
		for name, tok := range map[string]string{"old key": before.Data.AccessToken, "new key": after.Data.AccessToken} {
			var code int
			waitFor(t, name+" accepted by "+rs, func() bool { code, _, _ = hello(t, rs, tok); return code == 200 })
		}
	}
	code, _, body := call(t, "GET", s.api+"/.well-known/jwks.json", nil, "")
	if code != 200 || strings.Count(body, `"kid"`) != 2 {
		t.Fatalf("JWKS after rotation = %d %s, want both keys", code, body)
	}

	// A resource server that takes its keys from the JWKS URL instead of NATS verifies both.
	nc, err := nats.Connect(s.nats, nats.UserCredentials(filepath.Join(s.dir, "revocast-data", "credentials", "resource.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	table, err := client.New(nc, client.WithJWKS(client.NewJWKS(s.api+"/.well-known/jwks.json", nil)), client.WithIssuer("revocast"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = table.Run(ctx) }()
	if err := table.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"old key": before.Data.AccessToken, "new key": after.Data.AccessToken} {
		if c, err := table.Verify(ctx, tok); err != nil || c.UserID != 1 {
			t.Fatalf("%s through the JWKS URL: %v", name, err)
		}
	}
}

// kid reads the key id from a token's header.
func kid(t *testing.T, token string) string {
	t.Helper()
	seg, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	_ = json.Unmarshal(b, &h)
	return h.Kid
}

// TestResourcedStartedFirst: a resource server started before revocastd's first start, when
// no credentials exist yet, waits for the file and becomes ready once revocastd writes it.
func TestResourcedStartedFirst(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	creds := filepath.Join(dir, "revocast-data", "credentials", "resource.creds")
	rs, exited := launch(t, "resourced", dir, []string{"RESOURCED_HTTP_ADDR=127.0.0.1:0",
		"NATS_URL=nats://" + natsAddr, "NATS_CREDS=" + creds})
	waitFor(t, "resourced waiting for its credentials", func() bool {
		select {
		case <-exited:
			t.Fatalf("resourced exited:\n%s", rs.logs())
		default:
		}
		return strings.Contains(rs.logs(), "waiting for the NATS credentials file")
	})
	start(t, "revocastd", dir, []string{"REVOCAST_HTTP_ADDR=127.0.0.1:0", "REVOCAST_NATS_LISTEN=" + natsAddr},
		regexp.MustCompile(`serving (http://\S+)`))
	var url string
	waitFor(t, "resourced serving", func() bool {
		m := regexp.MustCompile(`serving (http://\S+)`).FindStringSubmatch(rs.out())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	waitFor(t, "resourced ready", func() bool { code, _, _ := call(t, "GET", url+"/readyz", nil, ""); return code == 200 })
}
