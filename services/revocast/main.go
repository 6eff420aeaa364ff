// Command revocast is the admin CLI: it manages apps and API keys and publishes revocations,
// talking to NATS directly (NATS_URL, default the embedded server of revocastd).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/tokens"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	fmt.Fprintf(os.Stderr, "revocast: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

const usage = `usage: revocast [flags] COMMAND [ARGS]

Commands:
  apps create APP_ID        register an app; prints its root key on the last line
  apps list                 list apps (ids and public key ids, never secrets)
  apps rotate APP_ID        replace an app's root key; the old one stops working
  apps credential APP_ID    create or replace the app credential its backend mints tokens
                            with; prints it on the last line
  keys create NAME [--scopes users:reset,audit:read]
                            create an admin API key; prints it on the last line
  keys list                 list admin API keys
  keys rotate NAME|KEY_ID   give a key a new secret; the old one stops working
  signing rotate            new token signing key; the old one stays published until the
                            tokens it signed have expired (--keep, default 720h)
  signing list              the published public keys
  flush APP_ID [--reason R] revoke every token of an app issued until now
  reset USER_ID [--reason R]
                            revoke every token of a user, in every app, until now
` + sessionsUsage + `  audit [--app ID] [--user ID] [--session SID] [--type T] [--actor KEY_ID] [--since S] [--until S]
        [--format table|jsonl] [--follow]
                            replay the revocation stream (read-only); --since/--until take
                            a duration back from now (24h), an RFC 3339 time or a date
  audit --verify            check that the stream still denies delete and purge, has no
                            gaps and holds only valid events; exit status 1 if not

Flags (anywhere on the line):
  --nats-url URL     NATS server (NATS_URL; default ` + natsutil.DefaultURL + `)
  --nats-creds FILE  NATS credentials file (NATS_CREDS; default the embedded default's
                     broadcaster.creds, auditor.creds for audit, in REVOCAST_DATA_DIR,
                     default ./revocast-data/credentials/)
  --timeout D        how long to wait for NATS (default 10s)
`

// usageError is a mistake on the command line; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + "\n(run 'revocast -h' for usage)" }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// globals are the flags every command takes.
type globals struct {
	natsURL string
	creds   string
	timeout time.Duration
	keep    time.Duration
	scopes  string
	reason  string
	audit   auditFlags
	set     []string // names of the flags given on the line
}

// commandFlags lists the flags each command takes besides the connection flags.
var commandFlags = map[string][]string{
	"keys create":     {"scopes"},
	"flush":           {"reason"},
	"reset":           {"reason"},
	"sessions revoke": {"reason"},
	"signing rotate":  {"keep"},
	"audit":           {"app", "user", "session", "type", "actor", "since", "until", "format", "follow", "verify"},
}

// checkFlags refuses a flag the command does not take, instead of ignoring it silently.
func checkFlags(cmd string, set []string) error {
	for _, name := range set {
		switch name {
		case "nats-url", "nats-creds", "timeout":
			continue
		}
		if !slices.Contains(commandFlags[cmd], name) {
			return usagef("--%s does not apply to '%s'", name, cmd)
		}
	}
	return nil
}

// auditFlags are the flags of 'revocast audit'.
type auditFlags struct {
	app, user, session, typ, actor, since, until, format string
	follow, verify                                       bool
}

// parse reads flags wherever they are on the line and returns the positional arguments.
func parse(args []string, getenv func(string) string, stderr io.Writer) (globals, []string, error) {
	g := globals{natsURL: getenv("NATS_URL")}
	if g.natsURL == "" {
		g.natsURL = natsutil.DefaultURL
	}
	fs := flag.NewFlagSet("revocast", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.natsURL, "nats-url", g.natsURL, "")
	fs.StringVar(&g.creds, "nats-creds", g.creds, "")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "")
	fs.DurationVar(&g.keep, "keep", 30*24*time.Hour, "")
	fs.StringVar(&g.scopes, "scopes", "", "")
	fs.StringVar(&g.reason, "reason", "", "")
	fs.StringVar(&g.audit.app, "app", "", "")
	fs.StringVar(&g.audit.user, "user", "", "")
	fs.StringVar(&g.audit.session, "session", "", "")
	fs.StringVar(&g.audit.typ, "type", "", "")
	fs.StringVar(&g.audit.actor, "actor", "", "")
	fs.StringVar(&g.audit.since, "since", "", "")
	fs.StringVar(&g.audit.until, "until", "", "")
	fs.StringVar(&g.audit.format, "format", "", "")
	fs.BoolVar(&g.audit.follow, "follow", false, "")
	fs.BoolVar(&g.audit.verify, "verify", false, "")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stderr, usage)
				return g, nil, err
			}
			return g, nil, usagef("%v", err)
		}
		if fs.NArg() == 0 {
			fs.Visit(func(f *flag.Flag) { g.set = append(g.set, f.Name) })
			return g, pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	g, pos, err := parse(args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	cmd, want := strings.Join(pos[:min(2, len(pos))], " "), 0
	switch pos[0] {
	case "flush", "reset":
		cmd, want = pos[0], 2
	case "audit":
		cmd, want = "audit", 1
	case "apps", "keys", "signing", "sessions":
		want = map[string]int{"sessions revoke": 3, "apps create": 3, "apps rotate": 3, "apps list": 2, "apps credential": 3,
			"keys create": 3, "keys rotate": 3, "keys list": 2, "signing rotate": 2, "signing list": 2}[cmd]
	}
	if want == 0 {
		return usagef("unknown command %q", cmd)
	}
	if len(pos) != want {
		return usagef("%s: wrong number of arguments", cmd)
	}
	if err := checkFlags(cmd, g.set); err != nil {
		return err
	}
	var aq auditQuery
	if cmd == "audit" {
		if aq, err = parseAudit(g.audit, time.Now(), stdout); err != nil {
			return err
		}
	}
	// Check arguments before touching NATS: bad input changes nothing.
	var userID int64
	switch cmd {
	case "apps create", "apps rotate", "apps credential", "flush":
		if err := events.ValidateAppID(pos[len(pos)-1]); err != nil {
			return usagef("%v", err)
		}
	case "reset":
		if userID, err = events.ParseUserID(pos[1]); err != nil {
			return usagef("%v", err)
		}
	case "sessions revoke":
		if err := checkSessionsArgs(pos[1:]); err != nil {
			return err
		}
	}
	var scopes []string
	if cmd == "keys create" {
		if scopes, err = store.ParseScopes(g.scopes); err != nil {
			return usagef("%v", err)
		}
	}
	if len(g.reason) > events.MaxReasonLen {
		return usagef("--reason is longer than %d bytes", events.MaxReasonLen)
	}
	if err := events.ValidateReason(g.reason); err != nil {
		return usagef("--reason: %v: write one line of plain text", err)
	}

	if cmd != "audit" {
		// A replay of a long stream may take longer than --timeout; each of its requests is
		// bounded by JetStream's own timeout instead (and Ctrl-C ends it).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	// Admin commands read secrets (hashes, signing keys) and get their replies on the
	// broadcaster's private inbox; audit runs as an auditor, on the shared one.
	// Without --nats-creds or NATS_CREDS, the credentials of the embedded default are used
	// when they are there (REVOCAST_DATA_DIR, default ./revocast-data).
	var inbox []nats.Option
	role := natsutil.Auditor
	if cmd != "audit" {
		inbox = append(inbox, natsutil.PrivateInbox())
		role = natsutil.Broadcaster
	}
	if g.creds == "" {
		g.creds = natsutil.DefaultCredentials(getenv, g.natsURL, role)
	}
	nc, err := natsutil.Connect(g.natsURL, "revocast-cli", g.creds, inbox...)
	if err != nil {
		if natsutil.CredentialsHint(err, g.creds) != "" {
			return err
		}
		return fmt.Errorf("%w (is revocastd running? set NATS_URL or --nats-url)", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if cmd == "audit" {
		// Auditors may only read the stream: audit needs nothing else.
		return runAudit(ctx, js, aq, stdout, stderr)
	}
	st, err := store.Open(ctx, js)
	if err != nil {
		return err
	}
	switch cmd {
	case "sessions revoke":
		return runSessions(ctx, st, pos[1:], g.reason, stdout)
	case "apps create":
		app, key, err := st.CreateApp(ctx, pos[2])
		if err != nil {
			return err
		}
		return printSecret(stdout, fmt.Sprintf("created app %s (root key id %s)", app.ID, app.KeyID), key)
	case "apps rotate":
		app, key, err := st.RotateApp(ctx, pos[2])
		if err != nil {
			return err
		}
		return printSecret(stdout, fmt.Sprintf("rotated the root key of app %s (key id %s); the old key no longer works", app.ID, app.KeyID), key)
	case "apps credential":
		app, key, err := st.SetAppCredential(ctx, pos[2])
		if err != nil {
			return err
		}
		return printSecret(stdout, fmt.Sprintf("app %s: new app credential %s for POST /v1/apps/%s/tokens; any previous one no longer works", app.ID, app.CredID, app.ID), key)
	case "signing rotate":
		oldKid, newKid, err := tokens.Rotate(ctx, js, g.keep)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new signing key %s; %s stays published for %s\n", newKid, dash(oldKid), g.keep)
		return nil
	case "signing list":
		ring, err := tokens.OpenPublic(ctx, js)
		if err != nil {
			return err
		}
		keys, err := ring.PublicKeys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tALG\tCREATED\tRETIRED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.JWK.Kid, k.JWK.Alg, stamp(k.CreatedAt), stamp(k.RetiredAt))
		}
		return tw.Flush()
	case "apps list":
		apps, err := st.ListApps(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "APP\tROOT KEY ID\tCREATED\tROTATED")
		for _, a := range apps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, a.KeyID, stamp(a.CreatedAt), stamp(a.RotatedAt))
		}
		return tw.Flush()
	case "keys create":
		k, key, err := st.CreateKey(ctx, pos[2], scopes)
		if err != nil {
			return err
		}
		return printSecret(stdout, fmt.Sprintf("created API key %s (id %s, scopes %s)", k.Name, k.ID, strings.Join(k.Scopes, ",")), key)
	case "keys rotate":
		k, key, err := st.RotateKey(ctx, pos[2])
		if err != nil {
			return err
		}
		return printSecret(stdout, fmt.Sprintf("rotated API key %s (id %s); the old secret no longer works", k.Name, k.ID), key)
	case "keys list":
		keys, err := st.ListKeys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKEY ID\tSCOPES\tCREATED\tROTATED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Name, k.ID, strings.Join(k.Scopes, ","), stamp(k.CreatedAt), stamp(k.RotatedAt))
		}
		return tw.Flush()
	case "flush", "reset":
		// The watermark comes from this machine's clock: refuse to publish with a clock that
		// disagrees with the NATS server's, rather than revoke too little or lock users out.
		off, err := st.ClockOffset(ctx)
		if err != nil {
			return err
		}
		if err := checkClock(off); err != nil {
			return err
		}
		var ev events.Event
		if cmd == "flush" {
			ev, err = events.NewAppFlushed(pos[1], time.Now(), cliActor())
		} else {
			ev, err = events.NewUserReset(userID, time.Now(), cliActor())
		}
		if err != nil {
			return err
		}
		ev.Reason = g.reason
		ev.Source.UserAgent = "revocast-cli"
		stored, err := st.Publish(ctx, ev)
		switch {
		case errors.Is(err, store.ErrUnknownOutcome):
			return fmt.Errorf("%w; the revocation may or may not be stored (no acknowledgement came in time): run the same command again, repeating it is safe", err)
		case err != nil:
			return fmt.Errorf("%w; nothing was revoked, retry", err)
		}
		fmt.Fprintf(stdout, "stored %s on %s (seq %d, not_before %s)\n", ev.Type, ev.Subject(), stored.Seq, stored.Event.NotBefore.Format(time.RFC3339Nano))
		return nil
	}
	return usagef("unknown command %q", cmd)
}

// maxCLIClockOffset is how far this machine's clock may be from the NATS server's for the
// CLI to publish a revocation.
const maxCLIClockOffset = time.Second

func checkClock(serverAhead time.Duration) error {
	if serverAhead > maxCLIClockOffset || serverAhead < -maxCLIClockOffset {
		return fmt.Errorf("this machine's clock is %s off the NATS server's (limit %s): fix the clock (NTP), or revoke through the API; nothing was revoked",
			serverAhead.Round(time.Millisecond), maxCLIClockOffset)
	}
	return nil
}

// printSecret prints a note and then the key alone on the last line, so scripts can take it
// with `tail -n1`.
func printSecret(w io.Writer, note string, key store.Secret) error {
	_, err := fmt.Fprintf(w, "%s\nstore this key now; it is not shown again:\n%s\n", note, key.Reveal())
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// cliActor names who published from the CLI, for the audit trail.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	a := "cli:" + name + "@" + host
	if len(a) > events.MaxActorLen {
		a = a[:events.MaxActorLen]
	}
	return a
}
