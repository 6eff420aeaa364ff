package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/testkit"
)

// bin holds the revocastd binary, built once: the agent runs beside a real broadcaster.
var bin string

func TestMain(m *testing.M) { testkit.RunWithBinaries(m, &bin, "../revocastd") }

// syncBuffer lets the test read what a running process or goroutine wrote so far.
type syncBuffer = testkit.SyncBuffer

// waitFor polls cond every 10 ms for up to 20 s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(10 * time.Millisecond) // a bounded poll
	}
}

// stack is a revocastd on its embedded default with one app, "shop".
type stack struct {
	api, nats, dataDir string
	rootKey, appCred   string
}

var servingLine = regexp.MustCompile(`revocastd: serving (http://\S+) \(NATS (\S+)\)`)

func startRevocastd(tb testing.TB) *stack {
	tb.Helper()
	dir := tb.TempDir()
	s := &stack{dataDir: filepath.Join(dir, "revocast-data")}
	cmd := exec.Command(filepath.Join(bin, "revocastd"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REVOCAST_HTTP_ADDR=127.0.0.1:0", "REVOCAST_NATS_LISTEN=127.0.0.1:0",
		"REVOCAST_DATA_DIR="+s.dataDir, "REVOCAST_LOG_LEVEL=warn")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitFor(tb, "revocastd serving", func() bool {
		select {
		case <-exited:
			tb.Fatalf("revocastd exited:\n%s", stderr.String())
		default:
		}
		m := servingLine.FindStringSubmatch(stdout.String())
		if m != nil {
			s.api, s.nats = m[1], m[2]
		}
		return m != nil
	})
	waitFor(tb, "revocastd ready", func() bool { code, _, _ := call(tb, "GET", s.api+"/readyz", nil); return code == 200 })

	st, done := s.store(tb)
	defer done()
	ctx := context.Background()
	_, root, err := st.CreateApp(ctx, "shop")
	if err != nil {
		tb.Fatal(err)
	}
	_, cred, err := st.SetAppCredential(ctx, "shop")
	if err != nil {
		tb.Fatal(err)
	}
	s.rootKey, s.appCred = root.Reveal(), cred.Reveal()
	return s
}

// store opens revocastd's store as the CLI does (the broadcaster's credentials); done
// closes the connection.
func (s *stack) store(tb testing.TB) (st *store.Store, done func()) {
	tb.Helper()
	nc, err := nats.Connect(s.nats, nats.UserCredentials(natsutil.CredentialsFile(s.dataDir, natsutil.Broadcaster)), natsutil.PrivateInbox())
	if err != nil {
		tb.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		tb.Fatal(err)
	}
	if st, err = store.Open(context.Background(), js); err != nil {
		nc.Close()
		tb.Fatal(err)
	}
	return st, nc.Close
}

// apiKey creates an admin API key with the given scopes and returns its secret.
func (s *stack) apiKey(tb testing.TB, scopes ...string) string {
	tb.Helper()
	st, done := s.store(tb)
	defer done()
	_, secret, err := st.CreateKey(context.Background(), fmt.Sprintf("test-%d", time.Now().UnixNano()), scopes)
	if err != nil {
		tb.Fatal(err)
	}
	return secret.Reveal()
}

// login mints an access token for a user of shop, as the app's backend does.
func (s *stack) login(tb testing.TB, user int) string {
	tb.Helper()
	code, _, body := callBody(tb, "POST", s.api+"/v1/apps/shop/tokens", map[string]string{"Authorization": "Bearer " + s.appCred},
		fmt.Sprintf(`{"user_id":"%d"}`, user))
	if code != 200 {
		tb.Fatalf("mint = %d %s", code, body)
	}
	var p struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Data.AccessToken == "" {
		tb.Fatalf("mint answer %q: %v", body, err)
	}
	return p.Data.AccessToken
}

// flush logs every user of shop out.
func (s *stack) flush(tb testing.TB) {
	tb.Helper()
	if code, _, body := call(tb, "DELETE", s.api+"/root/shop/flush", map[string]string{"Authorization": s.rootKey}); code != 200 {
		tb.Fatalf("flush = %d %s", code, body)
	}
}

// agent is a revocast-agent started through run, as main would.
type agent struct {
	url, addr string
	logs      *syncBuffer
	stdout    *syncBuffer
	stop      func() error
}

// startAgent runs the agent beside s (its credentials found in the data directory, as on
// the revocastd machine) with env on top, and waits until it is ready.
func startAgent(tb testing.TB, s *stack, env map[string]string) *agent {
	tb.Helper()
	a := startAgentUnready(tb, s, env)
	waitFor(tb, "agent ready", func() bool { code, _, _ := call(tb, "GET", a.url+"/readyz", nil); return code == 200 })
	return a
}

// startAgentUnready is startAgent, returning once it serves, ready or not.
func startAgentUnready(tb testing.TB, s *stack, env map[string]string) *agent {
	tb.Helper()
	full := map[string]string{
		"REVOCAST_AGENT_ADDR": "127.0.0.1:0",
		"NATS_URL":            s.nats,
		"REVOCAST_DATA_DIR":   s.dataDir,
	}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout, logs := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"revocast-agent"}, func(k string) string { return full[k] }, stdout, logs)
	}()
	var once sync.Once
	var runErr error
	stop := func() error { once.Do(func() { cancel(); runErr = <-done }); return runErr }
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("agent run = %v", err)
		}
	})
	re := regexp.MustCompile(`serving (http://(\S+))`)
	a := &agent{logs: logs, stdout: stdout, stop: stop}
	waitFor(tb, "agent serving", func() bool {
		select {
		case err := <-done:
			done <- err
			tb.Fatalf("agent exited: %v\n%s", err, logs)
		default:
		}
		m := re.FindStringSubmatch(stdout.String())
		if m != nil {
			a.url, a.addr = m[1], m[2]
		}
		return m != nil
	})
	return a
}

func call(tb testing.TB, method, url string, header map[string]string) (int, http.Header, string) {
	tb.Helper()
	return callBody(tb, method, url, header, "")
}

func callBody(tb testing.TB, method, url string, header map[string]string, body string) (int, http.Header, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// freePort picks a loopback port for a proxy to listen on, below the kernel's ephemeral
// range so that no outgoing connection takes it before the proxy binds it.
func freePort(tb testing.TB) int {
	tb.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			ln.Close()
			return port
		}
	}
	tb.Fatal("no free port")
	return 0
}

func itoa(n int) string { return strconv.Itoa(n) }
