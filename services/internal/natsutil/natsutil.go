// Package natsutil starts the embedded nats-server of revocast's single-machine default and
// opens the client connections the services use, with the reconnect behaviour they need.
package natsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
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
	srv     *server.Server
	dataDir string
	unlock  func()
	// Adopted says that this start moved the data of an embedded server that ran without
	// authentication (before credentials existed) into the revocast account.
	Adopted bool
}

// StartEmbedded starts a JetStream-enabled nats-server and waits until it accepts clients.
// It locks the data directory, so a second one on the same directory fails at once, and
// requires credentials from every client: it writes them to [CredentialsDir] on first start.
func StartEmbedded(cfg EmbeddedConfig) (e *Embedded, err error) {
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
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS data directory: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	// Fail with a clear message before nats-server would log-and-exit on a busy port.
	if port != server.RANDOM_PORT {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s: %w (another revocastd or nats-server may be running; to run a second revocastd, set REVOCAST_NATS_LISTEN to another address and REVOCAST_DATA_DIR to a data directory of its own, or set NATS_URL to use the running server)", cfg.Listen, err)
		}
		ln.Close()
	}
	auth, err := setupAuth(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS credentials: %w", err)
	}
	storeDir := filepath.Join(cfg.DataDir, "jetstream")
	adopted, err := adoptAnonymousStore(storeDir, auth.account)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:   "revocast-embedded",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     storeDir,
		SyncAlways:   cfg.SyncInterval == 0,
		SyncInterval: cfg.SyncInterval,
		NoLog:        true,
		NoSigs:       true,
		// The embedded server is for loopback clients; cap what one client can send.
		MaxPayload: 1 << 20,
		// A client's CONNECT carries its user JWT, and the broadcaster's lists every
		// subject it may use: more than the default 4 KiB control line.
		MaxControlLine: 32 << 10,
	}
	auth.apply(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 30s")
	}
	return &Embedded{srv: srv, dataDir: cfg.DataDir, unlock: unlock, Adopted: adopted}, nil
}

// Credentials is the credentials file of role, for clients of this server.
func (e *Embedded) Credentials(role Role) string { return CredentialsFile(e.dataDir, role) }

// ClientURL is the URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits until its store is closed.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.unlock()
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
		return nil, fmt.Errorf("connect to NATS at %s: %w%s", url, err, CredentialsHint(err, creds))
	}
	return nc, nil
}

// CredentialsHint says what to do when a connection failed for want of credentials, or ""
// when err is about something else.
func CredentialsHint(err error, creds string) string {
	switch {
	case creds != "" && errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf(" (no credentials file %s: revocastd writes it on its first start in <data dir>/credentials/; on another host, set NATS_CREDS to a copy of it)", creds)
	case errors.Is(err, nats.ErrAuthorization):
		if creds == "" {
			return " (this NATS requires credentials: set NATS_CREDS to a credentials file, e.g. revocast-data/credentials/<role>.creds)"
		}
		return fmt.Sprintf(" (NATS refused the credentials in %s: are they of this server? the embedded default's are in <data dir>/credentials/)", creds)
	}
	return ""
}
