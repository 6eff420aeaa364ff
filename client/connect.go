package client

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// Reconnect timing of [Connect]. nats.go waits 2 s between attempts to the same server by
// default, so a revocation sent right after a NATS restart could wait that long to reach a
// table; these waits keep that under a few hundred milliseconds. The jitter spreads a fleet
// of resource servers that lost the same server, so they do not all come back at once.
const (
	ReconnectWait      = 100 * time.Millisecond
	ReconnectJitter    = 100 * time.Millisecond
	ReconnectJitterTLS = 250 * time.Millisecond
)

// ReconnectOptions are the NATS options a table's connection should have: retry the first
// connect while NATS is not up yet, reconnect forever, and wait [ReconnectWait] plus up to
// [ReconnectJitter] ([ReconnectJitterTLS] with TLS) between attempts. [Connect] applies
// them; pass them to nats.Connect yourself to combine them with a connection of your own.
func ReconnectOptions() []nats.Option {
	return []nats.Option{
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(ReconnectWait),
		nats.ReconnectJitter(ReconnectJitter, ReconnectJitterTLS),
	}
}

// Connect opens the NATS connection for a [Table] with [ReconnectOptions], then opts (a
// name, credentials, handlers; a later option overrides an earlier one). With NATS not up
// yet it returns a connection that keeps trying (nc.IsConnected() is false until then), so
// resource servers and NATS may start in any order; the table is not ready until it has
// caught up.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append(ReconnectOptions(), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// LogNATSErrors is the option that sends the connection's asynchronous errors (a slow
// consumer, a permission violation, a consumer that went away during a restart) to log as
// warnings. Without it nats.go prints them to stderr as plain text, between the lines of a
// structured log.
func LogNATSErrors(log *zap.Logger) nats.Option {
	return nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		fields := []zap.Field{zap.Error(err)}
		if nc != nil {
			fields = append(fields, zap.String("connection", nc.Opts.Name))
		}
		if sub != nil {
			fields = append(fields, zap.String("subject", sub.Subject))
		}
		log.Warn("NATS asynchronous error", fields...)
	})
}
