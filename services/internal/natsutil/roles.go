package natsutil

import (
	"fmt"

	"github.com/nats-io/jwt/v2"

	"github.com/revocast/revocast/events"
)

// Role is one of the three kinds of NATS user revocast has. The embedded default gives
// each a credentials file; a cluster defines them in deployments/nats/accounts.conf. The
// permissions are the same in both places (a test compares them).
type Role string

// The roles.
const (
	// Broadcaster is revocastd and the admin CLI: publishes revocations, creates and
	// keeps the stream and the buckets.
	Broadcaster Role = "broadcaster"
	// Resource is a resource server or agent: reads the stream, the snapshot and the
	// public signing keys; publishes nothing that changes state, only its fleet reports
	// (core NATS, stored nowhere).
	Resource Role = "resource"
	// Auditor replays the stream and nothing else.
	Auditor Role = "auditor"
)

// Roles lists every role.
var Roles = []Role{Broadcaster, Resource, Auditor}

// kvBuckets are the KV buckets revocastd keeps (stream KV_<name>, subjects $KV.<name>.>).
var kvBuckets = []string{"revocast_apps", "revocast_keys", "revocast_signing_keys", "revocast_public_keys", "revocast_refresh_used"}

// Permissions returns what the role may publish and subscribe to. Permissions are allow
// lists; the deny lists repeat the destructive subjects so that widening an allow list by
// mistake does not reopen them (deny wins over allow).
func (r Role) Permissions() jwt.Permissions {
	var p jwt.Permissions
	switch r {
	case Broadcaster:
		p.Pub.Allow = broadcasterPublish()
		p.Pub.Deny = []string{"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.REVOCATIONS"}
		for _, b := range kvBuckets {
			p.Pub.Deny = append(p.Pub.Deny, "$JS.API.STREAM.PURGE.KV_"+b)
		}
		p.Pub.Deny = append(p.Pub.Deny, "$JS.API.STREAM.MSG.DELETE.>")
		// The fleet reports of the tables: revocastd keeps the live fleet from them.
		p.Sub.Allow = []string{InboxPrefix + ".>", events.FleetSubjects}
	case Resource:
		p.Pub.Allow = append(streamReader(),
			"$JS.ACK.REVOCATIONS.>",
			"$JS.API.STREAM.INFO.KV_revocast_public_keys",
			"$JS.API.STREAM.MSG.GET.KV_revocast_public_keys",
			"$JS.API.DIRECT.GET.KV_revocast_public_keys.>",
			"$JS.API.CONSUMER.CREATE.KV_revocast_public_keys.>",
			"$JS.FC.KV_revocast_public_keys.>",
			"$JS.API.STREAM.INFO.OBJ_revocast_snapshots",
			"$JS.API.STREAM.MSG.GET.OBJ_revocast_snapshots",
			"$JS.API.DIRECT.GET.OBJ_revocast_snapshots.>",
			"$JS.API.CONSUMER.CREATE.OBJ_revocast_snapshots.>",
			"$JS.API.CONSUMER.MSG.NEXT.OBJ_revocast_snapshots.>",
			// Fleet reports. NATS cannot tie a subject to the user's identity within one
			// account: a resource server could report in another instance's name, which
			// revocastd cannot tell apart (it ignores malformed reports).
			events.ReportSubjects,
			events.AppliedSubjects,
		)
		p.Pub.Deny = readerDeny()
		p.Sub.Allow = []string{"_INBOX.>"}
	case Auditor:
		p.Pub.Allow = streamReader()
		p.Pub.Deny = readerDeny()
		p.Sub.Allow = []string{"_INBOX.>"}
	}
	return p
}

// streamReader is what reading the revocation stream takes: its info, direct gets, and
// consumers of one's own.
func streamReader() []string {
	return []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.REVOCATIONS",
		"$JS.API.STREAM.MSG.GET.REVOCATIONS",
		"$JS.API.DIRECT.GET.REVOCATIONS",
		"$JS.API.DIRECT.GET.REVOCATIONS.>",
		"$JS.API.CONSUMER.CREATE.REVOCATIONS.>",
		"$JS.API.CONSUMER.INFO.REVOCATIONS.>",
		"$JS.API.CONSUMER.MSG.NEXT.REVOCATIONS.>",
		"$JS.FC.REVOCATIONS.>",
	}
}

// readerDeny keeps the readers from every write, whatever their allow list says.
func readerDeny() []string {
	return []string{
		"revocation.>",
		"$KV.>",
		"$O.>",
		"$JS.API.STREAM.CREATE.>",
		"$JS.API.STREAM.UPDATE.>",
		"$JS.API.STREAM.DELETE.>",
		"$JS.API.STREAM.PURGE.>",
		"$JS.API.STREAM.MSG.DELETE.>",
		"$JS.API.CONSUMER.DELETE.>",
		"$JS.API.CONSUMER.DURABLE.CREATE.>",
	}
}

func broadcasterPublish() []string {
	p := []string{
		"revocation.>",
		"$JS.API.INFO",
		"$JS.API.STREAM.CREATE.REVOCATIONS",
		"$JS.API.STREAM.UPDATE.REVOCATIONS",
		"$JS.API.STREAM.INFO.REVOCATIONS",
		"$JS.API.STREAM.MSG.GET.REVOCATIONS",
		"$JS.API.DIRECT.GET.REVOCATIONS",
		"$JS.API.DIRECT.GET.REVOCATIONS.>",
		"$JS.API.CONSUMER.CREATE.REVOCATIONS.>",
		"$JS.API.CONSUMER.INFO.REVOCATIONS.>",
		"$JS.API.CONSUMER.MSG.NEXT.REVOCATIONS.>",
		"$JS.API.CONSUMER.DELETE.REVOCATIONS.>",
		"$JS.FC.REVOCATIONS.>",
	}
	// The KV buckets, one verb at a time in the order of accounts.conf.
	for _, prefix := range []string{"$KV.%s.>", "$JS.API.STREAM.CREATE.KV_%s", "$JS.API.STREAM.UPDATE.KV_%s",
		"$JS.API.STREAM.INFO.KV_%s", "$JS.API.STREAM.MSG.GET.KV_%s", "$JS.API.DIRECT.GET.KV_%s.>",
		"$JS.API.CONSUMER.CREATE.KV_%s.>", "$JS.API.CONSUMER.DELETE.KV_%s.>", "$JS.FC.KV_%s.>"} {
		for _, b := range kvBuckets {
			p = append(p, fmt.Sprintf(prefix, b))
		}
	}
	return append(p,
		"$O.revocast_snapshots.>",
		"$JS.API.STREAM.CREATE.OBJ_revocast_snapshots",
		"$JS.API.STREAM.UPDATE.OBJ_revocast_snapshots",
		"$JS.API.STREAM.INFO.OBJ_revocast_snapshots",
		"$JS.API.STREAM.PURGE.OBJ_revocast_snapshots",
		"$JS.API.STREAM.MSG.GET.OBJ_revocast_snapshots",
		"$JS.API.DIRECT.GET.OBJ_revocast_snapshots.>",
		"$JS.API.CONSUMER.CREATE.OBJ_revocast_snapshots.>",
		"$JS.API.CONSUMER.DELETE.OBJ_revocast_snapshots.>",
		"$JS.API.CONSUMER.MSG.NEXT.OBJ_revocast_snapshots.>",
	)
}
