package eventstest

import (
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster is a JetStream cluster of embedded nats-servers on loopback, connected by cluster
// routes as real nodes are. Nodes can be killed and restarted on the same ports and store
// directories to test failover and catch-up.
type Cluster struct {
	tb    testing.TB
	Nodes []*Node
}

// Node is one server of a [Cluster].
type Node struct {
	tb                          testing.TB
	name                        string
	options                     func() *server.Options // fresh options each start: accounts must not be shared
	storeDir                    string
	port, clusterPort, httpPort int
	routes                      []*url.URL
	srv                         *server.Server
}

type clusterConfig struct {
	files []string
	size  int
}

// ClusterOption configures [RunCluster].
type ClusterOption func(*clusterConfig)

// WithConfigFiles boots one node from each nats-server configuration file, loaded with the
// server's own parser (includes, variables and environment references resolved). Only what
// cannot work on a shared test machine is rewritten: the client, cluster and monitoring
// ports become free loopback ports chosen by the OS, the routes point at the other nodes'
// actual cluster ports (keeping any credentials written in the file's routes), and the
// JetStream store moves to tb.TempDir(). Accounts, users, permissions, JetStream limits and
// sync policy stay exactly as in the file.
func WithConfigFiles(paths ...string) ClusterOption {
	return func(c *clusterConfig) { c.files = paths }
}

// RunCluster starts a 3-node JetStream cluster on 127.0.0.1 (or one node per file with
// [WithConfigFiles]), waits until JetStream has a meta leader that sees every node, and
// shuts it down at the end of the test. Without configuration files the nodes have no
// authentication and use the global account.
func RunCluster(tb testing.TB, opts ...ClusterOption) *Cluster {
	tb.Helper()
	cfg := clusterConfig{size: 3}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Cluster{tb: tb}
	if len(cfg.files) > 0 {
		cfg.size = len(cfg.files)
	}
	for i := range cfg.size {
		n := &Node{tb: tb, storeDir: tb.TempDir(), port: server.RANDOM_PORT}
		if len(cfg.files) > 0 {
			path := cfg.files[i]
			if _, err := server.ProcessConfigFile(path); err != nil {
				tb.Fatalf("eventstest: load %s: %v", path, err)
			}
			n.options = func() *server.Options {
				o, err := server.ProcessConfigFile(path)
				if err != nil {
					tb.Fatalf("eventstest: load %s: %v", path, err)
				}
				return o
			}
		} else {
			name := fmt.Sprintf("eventstest-%d", i+1)
			n.options = func() *server.Options {
				return &server.Options{ServerName: name, JetStream: true,
					Cluster: server.ClusterOpts{Name: "eventstest"}}
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	tb.Cleanup(c.Shutdown)
	// JetStream clustering needs every node to know the others' route addresses when it
	// starts, so the cluster ports are picked by the OS now and bound by the nodes a moment
	// later. Client and monitoring ports are bound with port -1 and read back.
	routes := make([]*url.URL, len(c.Nodes))
	for i, n := range c.Nodes {
		n.clusterPort = freePort(tb)
		routes[i] = n.routeURL(n.clusterPort)
	}
	for _, n := range c.Nodes {
		n.routes = routes
		n.start()
		// Restarts come back on the same ports, where clients and routes reconnect.
		n.port = n.srv.Addr().(*net.TCPAddr).Port
		if a := n.srv.MonitorAddr(); a != nil {
			n.httpPort = a.Port
		}
	}
	c.WaitReady()
	return c
}

// freePort picks a loopback port for a listener that is bound a while later (nodes need
// each other's route addresses before any of them starts). It picks below the kernel's
// ephemeral range: a port from that range (what listening on port 0 gives) can be handed to
// an outgoing connection of this or another process in the meantime, and on a busy machine
// running two test suites it was (a node then never became ready).
func freePort(tb testing.TB) int {
	tb.Helper()
	low := ephemeralLow()
	for range 100 {
		port := 10000 + mathrand.IntN(low-10000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	tb.Fatalf("eventstest: no free port found below %d", low)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 when unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
			return n
		}
	}
	return 32768
}

func (n *Node) routeURL(port int) *url.URL {
	u := &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	// Keep route credentials from the configuration file, if it has any.
	if o := n.options(); len(o.Routes) > 0 && o.Routes[0].User != nil {
		u.User = o.Routes[0].User
	}
	return u
}

func (n *Node) start() {
	n.tb.Helper()
	o := n.options()
	o.Host, o.Port = "127.0.0.1", n.port
	o.Cluster.Host, o.Cluster.Port = "127.0.0.1", n.clusterPort
	o.Routes = n.routes
	if o.HTTPPort != 0 || o.HTTPSPort != 0 {
		o.HTTPHost = "127.0.0.1"
		o.HTTPPort, o.HTTPSPort = server.RANDOM_PORT, 0
		if n.httpPort != 0 {
			o.HTTPPort = n.httpPort
		}
	}
	o.StoreDir = n.storeDir
	o.NoLog, o.NoSigs = true, true
	srv, err := server.NewServer(o)
	if err != nil {
		n.tb.Fatalf("eventstest: new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		n.tb.Fatalf("eventstest: server %s not ready in 20s", o.ServerName)
	}
	n.name = srv.Name()
	n.srv = srv
}

// Name is the server name, as JetStream reports it (e.g. in the stream's cluster leader).
func (n *Node) Name() string { return n.name }

// URL is the client URL of the node, e.g. nats://127.0.0.1:41234.
func (n *Node) URL() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
}

// UserURL is [Node.URL] with a user and password in it.
func (n *Node) UserURL(user, password string) string {
	u := &url.URL{Scheme: "nats", User: url.UserPassword(user, password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))}
	return u.String()
}

// MonitorURL is the node's monitoring endpoint, or "" when its configuration has none.
func (n *Node) MonitorURL() string {
	if n.httpPort == 0 {
		return ""
	}
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.httpPort))
}

// NATS returns the running server, or nil while the node is down.
func (n *Node) NATS() *server.Server { return n.srv }

// Running reports whether the node is up.
func (n *Node) Running() bool { return n.srv != nil }

// Shutdown stops the node abruptly (no lame duck mode), as a crash or a killed pod would,
// and waits until it is down. It is safe to call on a stopped node.
func (n *Node) Shutdown() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// Restart starts a stopped node (or stops and starts a running one) on the same ports and
// store, from a fresh load of its configuration.
func (n *Node) Restart() {
	n.tb.Helper()
	n.Shutdown()
	n.start()
}

// Connect opens a client connection to this node only, closed at the end of the test.
func (n *Node) Connect(opts ...nats.Option) *nats.Conn {
	n.tb.Helper()
	nc, err := nats.Connect(n.URL(), opts...)
	if err != nil {
		n.tb.Fatalf("eventstest: connect to %s: %v", n.name, err)
	}
	n.tb.Cleanup(nc.Close)
	return nc
}

// URLs is the comma-separated list of every node's client URL, the form NATS_URL takes.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// UserURLs is [Cluster.URLs] with a user and password in every URL.
func (c *Cluster) UserURLs(user, password string) string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.UserURL(user, password)
	}
	return strings.Join(urls, ",")
}

// Node returns the node with the given server name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for _, n := range c.Nodes {
		n.Shutdown()
	}
}

// WaitReady waits until the running nodes have elected a JetStream meta leader that sees
// every node of the cluster as a peer, and every running node is current with it.
func (c *Cluster) WaitReady() {
	c.tb.Helper()
	c.waitFor(30*time.Second, "JetStream meta leader with every peer", func() bool {
		current := true
		var leader *server.Server
		for _, n := range c.Nodes {
			if n.srv == nil {
				continue
			}
			if n.srv.JetStreamIsLeader() {
				leader = n.srv
			}
			current = current && n.srv.JetStreamIsCurrent()
		}
		return current && leader != nil && len(leader.JetStreamClusterPeers()) == len(c.Nodes)
	})
}

// WaitStreamCurrent waits until the stream in the account (server.DEFAULT_GLOBAL_ACCOUNT
// without configuration files) has a leader and every running node holds a current replica
// of it, as after a restarted node caught up. It is meant for streams with a replica on
// every node (3 replicas on 3 nodes).
func (c *Cluster) WaitStreamCurrent(account, stream string) {
	c.tb.Helper()
	c.waitFor(30*time.Second, "stream "+stream+" current on every node", func() bool {
		leader := false
		for _, n := range c.Nodes {
			if n.srv == nil {
				continue
			}
			if n.srv.JetStreamIsStreamLeader(account, stream) {
				leader = true
			}
			if !n.srv.JetStreamIsStreamCurrent(account, stream) {
				return false
			}
		}
		return leader
	})
}

func (c *Cluster) waitFor(timeout time.Duration, what string, cond func() bool) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.tb.Fatalf("eventstest: no %s after %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
