// Package eventstest starts real, embedded NATS JetStream servers for tests of code that
// reads or writes revocation events. Nothing here is a mock: every helper runs nats-server
// in-process on a loopback port chosen by the OS, with its store in tb.TempDir().
package eventstest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
)

// Server is an embedded nats-server with JetStream that a test can stop and restart on the
// same port and store directory, as a real server restart would.
type Server struct {
	tb   testing.TB
	opts server.Options
	srv  *server.Server
}

// RunJetStream starts a single JetStream server on 127.0.0.1 and stops it at the end of the test.
func RunJetStream(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, opts: server.Options{
		ServerName: "eventstest",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}}
	s.start()
	// Later restarts must come back on the same port, as clients reconnect to one URL.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	tb.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.tb.Fatalf("eventstest: new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.tb.Fatalf("eventstest: server not ready in 10s")
	}
	s.srv = srv
}

// URL is the client URL of the server, e.g. nats://127.0.0.1:41234.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// NATS returns the underlying server, for tests that inspect it.
func (s *Server) NATS() *server.Server { return s.srv }

// Shutdown stops the server and waits until it is down. It is safe to call twice.
func (s *Server) Shutdown() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart stops the server (if running) and starts it again on the same port and store.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Shutdown()
	s.start()
}

// Connect opens a client connection that is closed at the end of the test.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.tb.Helper()
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		s.tb.Fatalf("eventstest: connect: %v", err)
	}
	s.tb.Cleanup(nc.Close)
	return nc
}

// CreateStream creates the revocation stream with the essentials of its production
// configuration (file storage, per-key subjects), for tests that do not boot revocastd.
func (s *Server) CreateStream() jetstream.Stream {
	s.tb.Helper()
	js, err := jetstream.New(s.Connect())
	if err != nil {
		s.tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       events.StreamName,
		Subjects:   []string{events.StreamSubjects},
		Storage:    jetstream.FileStorage,
		Discard:    jetstream.DiscardNew,
		DenyDelete: true,
		DenyPurge:  true,
	})
	if err != nil {
		s.tb.Fatalf("eventstest: create stream: %v", err)
	}
	return st
}

// Publish stores one event in the stream, as revocastd would, and fails the test otherwise.
func Publish(tb testing.TB, js jetstream.JetStream, ev events.Event) *jetstream.PubAck {
	tb.Helper()
	data, err := events.Encode(ev)
	if err != nil {
		tb.Fatalf("eventstest: encode: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A stream without a leader (just created in a cluster, or electing one) has no
	// responders: keep trying until the timeout; the message id makes a retry of a stored
	// event a no-op.
	ack, err := js.Publish(ctx, ev.Subject(), data, jetstream.WithMsgID(ev.ID),
		jetstream.WithRetryWait(100*time.Millisecond), jetstream.WithRetryAttempts(100))
	if err != nil {
		tb.Fatalf("eventstest: publish %s: %v", ev.Subject(), err)
	}
	return ack
}
