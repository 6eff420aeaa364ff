package eventstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// BuildNATSServer builds the nats-server command of the version go.mod pins (the module's
// main package) into a directory of the test, and returns its path. Nothing is downloaded
// beyond what the module already requires; with a warm build cache this takes a few seconds.
func BuildNATSServer(tb testing.TB) string {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("eventstest: the go command is needed to build nats-server: %v", err)
	}
	bin := filepath.Join(tb.TempDir(), "nats-server")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("eventstest: build nats-server: %v\n%s", err, out)
	}
	return bin
}

// ProcCluster is a JetStream cluster of nats-server processes on loopback, booted from the
// deployment's configuration files. Unlike [Cluster], a node can be killed with SIGKILL:
// it stops the way a crashed machine does, without handing its leaderships over and
// without telling its peers it is going.
type ProcCluster struct {
	tb    testing.TB
	Nodes []*Proc
}

// Proc is one nats-server process of a [ProcCluster].
type Proc struct {
	tb                          testing.TB
	bin, dir, conf, logPath     string
	name                        string
	port, clusterPort, httpPort int
	cmd                         *exec.Cmd
	exited                      chan struct{}
}

// RunProcCluster starts one nats-server process (bin, see [BuildNATSServer]) per
// configuration file, as [WithConfigFiles] does in-process: only the client, cluster and
// monitoring listeners (moved to free loopback ports), the routes (to those cluster ports)
// and the JetStream store (moved to a temporary directory) are rewritten; the rewritten
// file is checked with nats-server's own loader. The processes read the passwords from the
// test's environment, as the configuration says. It waits until every node reports
// itself healthy and kills every process at the end of the test.
func RunProcCluster(tb testing.TB, bin string, files ...string) *ProcCluster {
	tb.Helper()
	c := &ProcCluster{tb: tb}
	routes := make([]string, len(files))
	for i, f := range files {
		o, err := server.ProcessConfigFile(f)
		if err != nil {
			tb.Fatalf("eventstest: load %s: %v", f, err)
		}
		p := &Proc{tb: tb, bin: bin, dir: tb.TempDir(), name: o.ServerName,
			port: freePort(tb), clusterPort: freePort(tb), httpPort: freePort(tb)}
		u := &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.clusterPort))}
		if len(o.Routes) > 0 && o.Routes[0].User != nil {
			u.User = o.Routes[0].User
		}
		routes[i] = u.String()
		c.Nodes = append(c.Nodes, p)
	}
	// Registered after the temporary directories, so it runs before they are removed.
	tb.Cleanup(c.kill)
	for i, p := range c.Nodes {
		p.conf = p.rewrite(files[i], routes)
	}
	for _, p := range c.Nodes {
		p.Start()
	}
	c.WaitHealthy()
	return c
}

var (
	topListen     = regexp.MustCompile(`(?m)^listen:.*$`)
	topHTTP       = regexp.MustCompile(`(?m)^http:.*$`)
	nestedListen  = regexp.MustCompile(`(?m)^(\s+)listen:.*$`)
	storeDir      = regexp.MustCompile(`(?m)^(\s*)store_dir:.*$`)
	routesList    = regexp.MustCompile(`(?s)routes:\s*\[.*?\]`)
	includedFiles = regexp.MustCompile(`(?m)^\s*include\s+["']?([^"'\s]+)["']?`)
)

// rewrite writes the node's configuration file for loopback and returns its path.
func (p *Proc) rewrite(path string, routes []string) string {
	p.tb.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		p.tb.Fatal(err)
	}
	text := string(src)
	text = topListen.ReplaceAllString(text, "listen: 127.0.0.1:"+strconv.Itoa(p.port))
	text = topHTTP.ReplaceAllString(text, "http: 127.0.0.1:"+strconv.Itoa(p.httpPort))
	text = nestedListen.ReplaceAllString(text, "${1}listen: 127.0.0.1:"+strconv.Itoa(p.clusterPort))
	store := filepath.Join(p.dir, "jetstream")
	text = storeDir.ReplaceAllString(text, "${1}store_dir: "+strconv.Quote(store))
	text = routesList.ReplaceAllString(text, "routes: [\n    "+strings.Join(routes, "\n    ")+"\n  ]")
	// Included files (accounts.conf) go beside the rewritten file, as they are beside the original.
	for _, m := range includedFiles.FindAllStringSubmatch(text, -1) {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(path), m[1]))
		if err != nil {
			p.tb.Fatalf("eventstest: %s includes %s: %v", path, m[1], err)
		}
		if err := os.WriteFile(filepath.Join(p.dir, m[1]), b, 0o600); err != nil {
			p.tb.Fatal(err)
		}
	}
	conf := filepath.Join(p.dir, filepath.Base(path))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		p.tb.Fatal(err)
	}
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		p.tb.Fatalf("eventstest: rewritten %s: %v", path, err)
	}
	// The rewrite works on the text; make sure it moved everything a shared machine needs moved.
	if o.Host != "127.0.0.1" || o.Port != p.port || o.HTTPHost != "127.0.0.1" || o.HTTPPort != p.httpPort ||
		o.Cluster.Host != "127.0.0.1" || o.Cluster.Port != p.clusterPort || o.StoreDir != store || len(o.Routes) != len(routes) {
		p.tb.Fatalf("eventstest: %s no longer has the shape the rewrite expects: host %s:%d, monitor %s:%d, cluster %s:%d, store %q, %d routes",
			path, o.Host, o.Port, o.HTTPHost, o.HTTPPort, o.Cluster.Host, o.Cluster.Port, o.StoreDir, len(o.Routes))
	}
	return conf
}

// Start starts the node's process (again, after [Proc.Kill]) on the same ports and store.
func (p *Proc) Start() {
	p.tb.Helper()
	if p.Running() {
		return
	}
	p.logPath = filepath.Join(p.dir, "nats-server.log")
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.tb.Fatal(err)
	}
	cmd := exec.Command(p.bin, "--config", p.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.tb.Fatalf("eventstest: start nats-server %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
}

// Kill sends SIGKILL to the process and waits until it is gone. It is safe on a stopped node.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL) }

// Terminate sends SIGTERM and waits until the process is gone.
func (p *Proc) Terminate() { p.signal(syscall.SIGTERM) }

func (p *Proc) signal(sig os.Signal) {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	<-p.exited
	p.cmd = nil
}

// Running reports whether the process has been started and has not exited.
func (p *Proc) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Name is the server name of the configuration file.
func (p *Proc) Name() string { return p.name }

// URL is the node's client URL.
func (p *Proc) URL() string { return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// UserURL is [Proc.URL] with a user and password in it.
func (p *Proc) UserURL(user, password string) string {
	u := &url.URL{Scheme: "nats", User: url.UserPassword(user, password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))}
	return u.String()
}

// MonitorURL is the node's monitoring endpoint (/healthz, /jsz).
func (p *Proc) MonitorURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.httpPort))
}

// Healthy reports whether the node answers 200 on /healthz: JetStream is up, knows its meta
// leader and is current with it and with its streams and consumers.
func (p *Proc) Healthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.MonitorURL()+"/healthz", nil)
	if err != nil {
		return false
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// LogTail is the end of the node's log, for failure messages.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.Join(lines[max(len(lines)-n, 0):], []byte("\n")))
}

// Node returns the node with the given server name, or nil.
func (c *ProcCluster) Node(name string) *Proc {
	for _, p := range c.Nodes {
		if p.name == name {
			return p
		}
	}
	return nil
}

// UserURLs is the comma-separated list of every node's URL with a user and password.
func (c *ProcCluster) UserURLs(user, password string) string {
	urls := make([]string, len(c.Nodes))
	for i, p := range c.Nodes {
		urls[i] = p.UserURL(user, password)
	}
	return strings.Join(urls, ",")
}

// WaitHealthy waits (up to 60s) until every running node answers 200 on /healthz.
func (c *ProcCluster) WaitHealthy() {
	c.tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		healthy := true
		for _, p := range c.Nodes {
			if p.cmd != nil && !p.Running() {
				c.tb.Fatalf("eventstest: nats-server %s exited:\n%s", p.name, p.LogTail(20))
			}
			healthy = healthy && (!p.Running() || p.Healthy())
		}
		if healthy {
			return
		}
		if time.Now().After(deadline) {
			var tails []string
			for _, p := range c.Nodes {
				tails = append(tails, fmt.Sprintf("%s:\n%s", p.name, p.LogTail(10)))
			}
			c.tb.Fatalf("eventstest: cluster not healthy after 60s\n%s", strings.Join(tails, "\n"))
		}
		time.Sleep(50 * time.Millisecond) // bounded poll
	}
}

// kill stops every process; on a failed test it shows the end of each log first.
func (c *ProcCluster) kill() {
	for _, p := range c.Nodes {
		if c.tb.Failed() && p.logPath != "" {
			c.tb.Logf("nats-server %s log (end):\n%s", p.name, p.LogTail(15))
		}
		p.Kill()
	}
}
