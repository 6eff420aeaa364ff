// Package natsutil starts the embedded nats-server of revocast's single-machine default and
// opens the client connections the services use, with the reconnect behaviour they need.
package natsutil

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultListen is where the embedded server listens, and where the CLI looks by default.
const DefaultListen = "127.0.0.1:4222"

// DefaultURL is the client URL of the embedded server at [DefaultListen].
const DefaultURL = "nats://" + DefaultListen

// InboxPrefix is where revocastd and the admin CLI receive replies, instead of the shared
// "_INBOX". Replies carry secrets (the signing keys read from KV among them), and the
// cluster configuration lets only the broadcaster user subscribe here, so a resource server
// or an auditor in the same account cannot read them.
const InboxPrefix = "_INBOX_revocast"

// PrivateInbox is the option that makes a connection use [InboxPrefix].
func PrivateInbox() nats.Option { return nats.CustomInboxPrefix(InboxPrefix) }

// EmbeddedConfig configures the embedded JetStream server.
type EmbeddedConfig struct {
	// Listen is host:port for client connections; port 0 picks a free one.
	Listen string
	// DataDir holds the JetStream store (in DataDir/jetstream).
	DataDir string
	// SyncInterval is how often JetStream fsyncs its files. Zero means fsync every write
	// before it is acknowledged, the durable default: an acknowledged revocation survives
	// a power loss, not only a crash of the process.
	SyncInterval time.Duration
}

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a JetStream-enabled nats-server and waits until it accepts clients.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: %w (want host:port, e.g. %s)", cfg.Listen, err, DefaultListen)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded NATS listen address %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if cfg.DataDir == "" {
		return nil, errors.New("embedded NATS needs a data directory")
	}
	// Fail with a clear message before nats-server would log-and-exit on a busy port.
	if port != server.RANDOM_PORT {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s: %w (another revocastd or nats-server may be running; set REVOCAST_NATS_LISTEN to another address, or NATS_URL to use that server)", cfg.Listen, err)
		}
		ln.Close()
	}
	opts := &server.Options{
		ServerName:   "revocast-embedded",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     filepath.Join(cfg.DataDir, "jetstream"),
		SyncAlways:   cfg.SyncInterval == 0,
		SyncInterval: cfg.SyncInterval,
		NoLog:        true,
		NoSigs:       true,
		// The embedded server is for loopback clients; cap what one client can send.
		MaxPayload: 1 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 30s")
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL is the URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits until its store is closed.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect opens a connection that reconnects forever: revocastd and its clients must ride
// out a NATS restart by themselves. creds is an optional NATS credentials file.
func Connect(url, name, creds string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}
