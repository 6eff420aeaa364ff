package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// needTool skips the test when a proxy binary is missing, unless
// REVOCAST_REQUIRE_EXAMPLE_TOOLS is set (as CI does, after installing it).
func needTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} { // nginx lives in sbin, often off a user's PATH
			if p := filepath.Join(dir, name); fileExists(p) {
				return p
			}
		}
		if os.Getenv("REVOCAST_REQUIRE_EXAMPLE_TOOLS") != "" {
			tb.Fatalf("%s is not installed", name)
		}
		tb.Skipf("%s is not installed (install the %s package to run this test)", name, name)
	}
	return path
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// upstream is the plain service behind the proxy: it records what reached it.
type upstream struct {
	url  string
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	u := &upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.mu.Unlock()
		fmt.Fprintf(w, "hello user %s of %s\n", r.Header.Get("X-Revocast-User"), r.Header.Get("X-Revocast-App"))
	}))
	tb.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// proc runs a proxy binary until the test ends.
func proc(tb testing.TB, dir string, env []string, name string, args ...string) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			tb.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
}

// nginxConf is nginx with auth_request to the agent, as in the README: the identity
// headers of the agent's answer replace whatever the client sent under those names.
const nginxConf = `%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;

    upstream revocast_agent { server %[3]s; keepalive 32; }
    upstream app { server %[4]s; keepalive 32; }

    server {
        listen 127.0.0.1:%[5]d;

        location = /_revocast_auth {
            internal;
            proxy_pass http://revocast_agent/auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }

        location / {
            auth_request /_revocast_auth;
            auth_request_set $revocast_user $upstream_http_x_revocast_user;
            auth_request_set $revocast_app $upstream_http_x_revocast_app;
            auth_request_set $revocast_challenge $upstream_http_www_authenticate;
            add_header WWW-Authenticate $revocast_challenge always;
            proxy_set_header X-Revocast-User $revocast_user;
            proxy_set_header X-Revocast-App $revocast_app;
            proxy_set_header X-Revocast-Claims "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }

        # The same upstream without the agent: the baseline of the benchmarks.
        location /_direct/ {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
    }
}
`

// startNginx runs nginx in front of up, asking the agent at agentAddr, and returns its URL.
func startNginx(tb testing.TB, agentAddr, upstreamURL string) string {
	tb.Helper()
	nginx := needTool(tb, "nginx")
	dir := tb.TempDir()
	userLine := ""
	if os.Geteuid() == 0 {
		// As root, nginx would switch its workers to nobody, who cannot read the test's
		// directory: keep them as the current user.
		if u, err := user.Current(); err == nil {
			userLine = "user " + u.Username + ";"
		}
	}
	port := freePort(tb)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, userLine, dir, agentAddr, strings.TrimPrefix(upstreamURL, "http://"), port), 0o600); err != nil {
		tb.Fatal(err)
	}
	proc(tb, dir, nil, nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitProxy(tb, "nginx", url, filepath.Join(dir, "error.log"))
	return url
}

// caddyfile is Caddy with forward_auth to the agent. The route runs in the order written:
// the client's X-Revocast-* headers go first, then forward_auth copies the agent's.
const caddyfile = `{
	admin off
	auto_https off
}
http://127.0.0.1:%d {
	route {
		request_header -X-Revocast-User
		request_header -X-Revocast-App
		request_header -X-Revocast-Claims
		forward_auth %s {
			uri /auth
			copy_headers X-Revocast-User X-Revocast-App
		}
		reverse_proxy %s
	}
}
`

func startCaddy(tb testing.TB, agentAddr, upstreamURL string) string {
	tb.Helper()
	caddy := needTool(tb, "caddy")
	dir := tb.TempDir()
	port := freePort(tb)
	conf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(conf, fmt.Appendf(nil, caddyfile, port, agentAddr, strings.TrimPrefix(upstreamURL, "http://")), 0o600); err != nil {
		tb.Fatal(err)
	}
	proc(tb, dir, []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir},
		caddy, "run", "--config", conf, "--adapter", "caddyfile")
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitProxy(tb, "caddy", url, "")
	return url
}

// waitProxy waits until the proxy answers anything at all.
func waitProxy(tb testing.TB, name, url, logFile string) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(url + "/")
		if err == nil {
			res.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			tb.Fatalf("%s not answering after 20s: %v\n%s", name, err, b)
		}
		time.Sleep(20 * time.Millisecond) // a bounded poll
	}
}

func TestNginx(t *testing.T) { testProxy(t, startNginx) }
func TestCaddy(t *testing.T) { testProxy(t, startCaddy) }

// testProxy: a token passes with the identity headers reaching the upstream, forged
// identity headers never do, a flush refuses the token, and with the agent stopped the
// proxy answers an error and never the upstream.
func testProxy(t *testing.T, start func(testing.TB, string, string) string) {
	up := startUpstream(t)
	s := startRevocastd(t)
	a := startAgent(t, s, nil)
	proxy := start(t, a.addr, up.url)

	tok := s.login(t, 42)
	forged := map[string]string{"Authorization": "Bearer " + tok, "X-Revocast-User": "1", "X-Revocast-App": "admin", "X-Revocast-Claims": "e30"}
	code, _, body := call(t, "GET", proxy+"/orders", forged)
	if code != 200 || !strings.Contains(body, "hello user 42 of shop") {
		t.Fatalf("with a token = %d %q, want 200 from the upstream for user 42 of shop", code, body)
	}
	if h := up.lastHeader(); len(h.Values("X-Revocast-User")) != 1 || h.Get("X-Revocast-App") != "shop" || h.Get("X-Revocast-Claims") != "" {
		t.Fatalf("upstream saw X-Revocast-User %q, X-Revocast-App %q, X-Revocast-Claims %q", h.Values("X-Revocast-User"), h.Values("X-Revocast-App"), h.Get("X-Revocast-Claims"))
	}

	hits := up.hits.Load()
	for name, hdr := range map[string]map[string]string{
		"no token, forged user": {"X-Revocast-User": "42", "X-Revocast-App": "shop"},
		"bad token":             {"Authorization": "Bearer " + tok[:len(tok)-3] + "AAA", "X-Revocast-User": "42"},
		"basic":                 {"Authorization": "Basic dTpw", "X-Revocast-User": "42"},
	} {
		code, h, _ := call(t, "GET", proxy+"/orders", hdr)
		if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer ") {
			t.Fatalf("%s = %d WWW-Authenticate %q, want 401 with a Bearer challenge", name, code, h.Get("WWW-Authenticate"))
		}
	}
	if n := up.hits.Load(); n != hits {
		t.Fatalf("refused requests reached the upstream (%d hits)", n-hits)
	}

	s.flush(t)
	var h http.Header
	waitFor(t, "the token refused through the proxy after the flush", func() bool {
		code, h, _ = call(t, "GET", proxy+"/orders", map[string]string{"Authorization": "Bearer " + tok})
		return code != 200
	})
	if code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "revoked") {
		t.Fatalf("after the flush = %d %q, want 401 revoked", code, h.Get("WWW-Authenticate"))
	}
	again := s.login(t, 42)
	if code, _, _ := call(t, "GET", proxy+"/orders", map[string]string{"Authorization": "Bearer " + again}); code != 200 {
		t.Fatalf("after logging in again = %d, want 200", code)
	}

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	hits = up.hits.Load()
	code, _, body = call(t, "GET", proxy+"/orders", map[string]string{"Authorization": "Bearer " + again})
	if code < 500 || up.hits.Load() != hits {
		t.Fatalf("with the agent stopped = %d %q (upstream hits +%d), want a 5xx and no upstream call", code, body, up.hits.Load()-hits)
	}
}
