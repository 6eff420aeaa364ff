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
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/logging"
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

// usageError is a mistake on the command line; main exits 2 for it. cmd is the command
// whose help says how to do it right.
type usageError struct{ msg, cmd string }

func (e usageError) Error() string {
	cmd := e.cmd
	if cmd == "" {
		cmd = "revocast"
	}
	return e.msg + "\n(run '" + cmd + " -h' for usage)"
}

func usagef(format string, a ...any) error { return usageError{msg: fmt.Sprintf(format, a...)} }

// inCommand names cmd in a usage error that does not name one yet.
func inCommand(cmd *cobra.Command, err error) error {
	var ue usageError
	if errors.As(err, &ue) && ue.cmd == "" {
		ue.cmd = cmd.CommandPath()
		return ue
	}
	return err
}

// runner holds the flags every command takes and what run was given.
type runner struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	natsURL        string
	creds          string
	timeout        time.Duration
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c := &runner{getenv: getenv, stdout: stdout, stderr: stderr}
	root := c.commands()
	root.SetArgs(args[1:])
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

const rootLong = `revocast manages the apps and admin API keys of revocast and publishes revocations, talking
to NATS directly: NATS_URL (default ` + natsutil.DefaultURL + `, the embedded NATS of revocastd)
with the credentials revocastd writes to its data directory.

Commands that create or rotate a secret print it alone on the last line of stdout, once:
only its hash is stored. Exit status: 0 done, 1 failed, 2 usage error (nothing changed).`

const rootExample = `  ROOT_KEY=$(revocast apps create shop | tail -n1)
  APP_CRED=$(revocast apps credential create shop | tail -n1)
  API_KEY=$(revocast keys create oncall | tail -n1)
  revocast flush shop --reason "incident 7"
  revocast audit --app shop --since 24h
  revocast help keys`

func (c *runner) commands() *cobra.Command {
	root := &cobra.Command{
		Use:           "revocast",
		Short:         "Manage revocast apps and keys, publish revocations, replay the audit log",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRun,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{msg: err.Error(), cmd: cmd.CommandPath()}
	})
	def := c.getenv("NATS_URL")
	if def == "" {
		def = natsutil.DefaultURL
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.natsURL, "nats-url", def, "NATS server (NATS_URL)")
	pf.StringVar(&c.creds, "nats-creds", "", "NATS credentials file (NATS_CREDS; default the embedded default's\nbroadcaster.creds, auditor.creds for audit, in REVOCAST_DATA_DIR,\ndefault ./revocast-data/credentials/)")
	pf.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for NATS")
	root.AddCommand(c.appsCommand(), c.keysCommand(), c.signingCommand(), c.flushCommand(), c.resetCommand(), c.sessionsCommand(), c.auditCommand(), c.fleetCommand())
	return root
}

// groupRun is the action of a command that only groups others: without a subcommand it
// prints its help and exits 2, as for any other usage error.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		cmd.SetOut(cmd.ErrOrStderr())
		_ = cmd.Help()
		return usageError{msg: "'" + cmd.CommandPath() + "' needs a command", cmd: cmd.CommandPath()}
	}
	msg := fmt.Sprintf("unknown command %q for '%s'", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if cmd.Name() == "credential" && cmd.HasParent() && events.ValidateAppID(args[0]) == nil {
		msg += fmt.Sprintf("; to create the app credential of %s, run 'revocast apps credential create %s' (or rotate, to replace the one it has)", args[0], args[0])
	} else if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{msg: msg, cmd: cmd.CommandPath()}
}

// group is a command that holds others.
func group(use, short, example string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Example: example, Args: cobra.ArbitraryArgs, RunE: groupRun}
	g.AddCommand(subs...)
	return g
}

// exactArgs wants the arguments named in names, and gives a usage error otherwise.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			want := "no arguments"
			if len(names) > 0 {
				want = strings.Join(names, " ")
			}
			return usageError{msg: fmt.Sprintf("'%s' takes %s; got %d argument(s)", cmd.CommandPath(), want, len(args)), cmd: cmd.CommandPath()}
		}
		return nil
	}
}

// leaf is a command that does something: args are checked before it touches NATS.
func leaf(use, short, long, example string, args cobra.PositionalArgs, run func(cmd *cobra.Command, args []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Long: long, Example: example, Args: args,
		RunE: func(cmd *cobra.Command, a []string) error { return inCommand(cmd, run(cmd, a)) }}
}

func validApp(id string) error {
	if err := events.ValidateAppID(id); err != nil {
		return usagef("%v", err)
	}
	return nil
}

func (c *runner) appsCommand() *cobra.Command {
	create := leaf("create APP_ID", "Register an app; prints its root key on the last line",
		`Register an app and print its root key alone on the last line of stdout. The root key
authorizes DELETE /root/APP_ID/flush. It is shown once: only its hash is stored.
Fails if the app exists (rotate its key with 'revocast apps rotate APP_ID').`,
		`  ROOT_KEY=$(revocast apps create shop | tail -n1)`,
		exactArgs("APP_ID"), func(cmd *cobra.Command, args []string) error {
			if err := validApp(args[0]); err != nil {
				return err
			}
			return c.withStore(cmd.Context(), func(ctx context.Context, st *store.Store, _ jetstream.JetStream) error {
				app, key, err := st.CreateApp(ctx, args[0])
				if err != nil {
					return err
				}
				return printSecret(c.stdout, fmt.Sprintf("created app %s (root key id %s)", app.ID, app.KeyID), key)
			})
		})
	list := leaf("list", "List apps (ids and public key ids, never secrets)", "", `  revocast apps list`,
		exactArgs(), func(cmd *cobra.Command, _ []string) error {
			return c.withStore(cmd.Context(), func(ctx context.Context, st *store.Store, _ jetstream.JetStream) error {
				apps, err := st.ListApps(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "APP\tROOT KEY ID\tCREDENTIAL ID\tCREATED\tROTATED")
				for _, a := range apps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.KeyID, dash(a.CredID), stamp(a.CreatedAt), stamp(a.RotatedAt))
				}
				return tw.Flush()
			})
		})
	rotate := leaf("rotate APP_ID", "Replace an app's root key; the old one stops working",
		`Give an app a new root key, printed alone on the last line of stdout (shown once). The
old root key stops working at once.`,
		`  ROOT_KEY=$(revocast apps rotate shop | tail -n1)`,
		exactArgs("APP_ID"), func(cmd *cobra.Command, args []string) error {
			if err := validApp(args[0]); err != nil {
				return err
			}
			return c.withStore(cmd.Context(), func(ctx context.Context, st *store.Store, _ jetstream.JetStream) error {
				app, key, err := st.RotateApp(ctx, args[0])
				if err != nil {
					return err
				}
				return printSecret(c.stdout, fmt.Sprintf("rotated the root key of app %s (key id %s); the old key no longer works", app.ID, app.KeyID), key)
			})
		})
	return group("apps", "Register apps, rotate their root keys and app credentials",
		"  revocast apps create shop\n  revocast apps list\n  revocast apps rotate shop\n  revocast apps credential create shop",
		create, list, rotate, c.credentialCommand())
}

func (c *runner) credentialCommand() *cobra.Command {
	set := func(rotate bool) func(cmd *cobra.Command, args []string) error {
		return func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := validApp(id); err != nil {
				return err
			}
			return c.withStore(cmd.Context(), func(ctx context.Context, st *store.Store, _ jetstream.JetStream) error {
				app, found, err := findApp(ctx, st, id)
				switch {
				case err != nil:
					return err
				case !found:
					return fmt.Errorf("%w: app %q (create it with 'revocast apps create %s')", store.ErrNotFound, id, id)
				case !rotate && app.CredID != "":
					return fmt.Errorf("%w: app %s has an app credential (id %s); it is shown only once, when made: to replace it, run 'revocast apps credential rotate %s' (the old one stops working)",
						store.ErrExists, id, app.CredID, id)
				case rotate && app.CredID == "":
					return fmt.Errorf("%w: app %s has no app credential to rotate (create it with 'revocast apps credential create %s')", store.ErrNotFound, id, id)
				}
				app, key, err := st.SetAppCredential(ctx, id)
				if err != nil {
					return err
				}
				note := fmt.Sprintf("app %s: app credential %s for POST /v1/apps/%s/tokens", app.ID, app.CredID, app.ID)
				if rotate {
					note += "; the previous one no longer works"
				}
				return printSecret(c.stdout, note, key)
			})
		}
	}
	create := leaf("create APP_ID", "Create the credential the app's backend mints tokens with",
		`Create the app credential that the app's backend presents to POST /v1/apps/APP_ID/tokens
(Authorization: Bearer <app credential>) and print it alone on the last line of stdout.
It is shown once: only its hash is stored. Fails if the app has one already: the existing
one keeps working; 'revocast apps credential rotate APP_ID' replaces it.`,
		`  APP_CRED=$(revocast apps credential create shop | tail -n1)`,
		exactArgs("APP_ID"), set(false))
	rotate := leaf("rotate APP_ID", "Replace the app credential; the old one stops working",
		`Replace the app credential and print the new one alone on the last line of stdout (shown
once). The old credential stops working at once: deploy the new one to the app's backend.`,
		`  APP_CRED=$(revocast apps credential rotate shop | tail -n1)`,
		exactArgs("APP_ID"), set(true))
	return group("credential", "Create or rotate the credential an app's backend mints tokens with",
		"  revocast apps credential create shop\n  revocast apps credential rotate shop", create, rotate)
}

// findApp looks an app up by id.
func findApp(ctx context.Context, st *store.Store, id string) (store.App, bool, error) {
	apps, err := st.ListApps(ctx)
	if err != nil {
		return store.App{}, false, err
	}
	for _, a := range apps {
		if a.ID == id {
			return a, true, nil
		}
	}
	return store.App{}, false, nil
}

func (c *runner) keysCommand() *cobra.Command {
	var scopes string
	create := leaf("create NAME", "Create an admin API key; prints it on the last line",
		`Create an admin API key for the X-API-Key header and print it alone on the last line of
stdout. It is shown once: only its hash is stored.

Scopes (--scopes, comma-separated; default: all of them, `+strings.Join(store.AllScopes, ",")+`):
  users:reset   POST /v2/users/reset/{id}
  audit:read    GET /v1/audit`,
		`  API_KEY=$(revocast keys create oncall | tail -n1)
  revocast keys create auditor --scopes audit:read`,
		exactArgs("NAME"), func(cmd *cobra.Command, args []string) error {
			sc, err := store.ParseScopes(scopes)
			if err != nil {
				return usagef("--scopes: %v", err)
			}
			return c.withStore(cmd.Context(), func(ctx context.Context, st *store.Store, _ jetstream.JetStream) error {
				k, key, err := st.CreateKey(ctx, args[0], sc)
				if err != nil {
					return err
				}
				return printSecret(c.stdout, fmt.Sprintf("created API key %s (id %s, scopes %s)", k.Name, k.ID, strings.Join(k.Scopes, ",")), key)
			})
		})
	create.Flags().StringVar(&scopes, "scopes", "", "comma-separated scopes (default all: "+strings.Join(store.AllScopes, ",")+")")
	list := leaf("list", "List admin API keys (names, ids, scopes; never secrets)", "", "  revocast keys list",
		exactArgs(), func(cmd *cobra.Command, _ []string) error {
			return c.withStore(cmd.Context(), func(ctx context.Context, st *store.Store, _ jetstream.JetStream) error {
				keys, err := st.ListKeys(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKEY ID\tSCOPES\tCREATED\tROTATED")
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Name, k.ID, strings.Join(k.Scopes, ","), stamp(k.CreatedAt), stamp(k.RotatedAt))
				}
				return tw.Flush()
			})
		})
	rotate := leaf("rotate NAME|KEY_ID", "Give a key a new secret; the old one stops working",
		`Give an admin API key a new secret, printed alone on the last line of stdout (shown once).
The public id and the scopes stay; the old secret stops working at once.`,
		"  API_KEY=$(revocast keys rotate oncall | tail -n1)",
		exactArgs("NAME|KEY_ID"), func(cmd *cobra.Command, args []string) error {
			return c.withStore(cmd.Context(), func(ctx context.Context, st *store.Store, _ jetstream.JetStream) error {
				k, key, err := st.RotateKey(ctx, args[0])
				if err != nil {
					return err
				}
				return printSecret(c.stdout, fmt.Sprintf("rotated API key %s (id %s); the old secret no longer works", k.Name, k.ID), key)
			})
		})
	return group("keys", "Create, list and rotate admin API keys",
		"  revocast keys create oncall\n  revocast keys create auditor --scopes audit:read\n  revocast keys list\n  revocast keys rotate oncall",
		create, list, rotate)
}

func (c *runner) signingCommand() *cobra.Command {
	var keep time.Duration
	rotate := leaf("rotate", "New token signing key; the old one stays published",
		`Make a new signing key for the tokens revocast mints. The old key stays published in the
JWKS until the tokens it signed have expired (--keep).`,
		"  revocast signing rotate\n  revocast signing rotate --keep 48h",
		exactArgs(), func(cmd *cobra.Command, _ []string) error {
			return c.withStore(cmd.Context(), func(ctx context.Context, _ *store.Store, js jetstream.JetStream) error {
				oldKid, newKid, err := tokens.Rotate(ctx, js, keep)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "new signing key %s; %s stays published for %s\n", newKid, dash(oldKid), keep)
				return nil
			})
		})
	rotate.Flags().DurationVar(&keep, "keep", 30*24*time.Hour, "how long the old key stays published (the refresh-token lifetime)")
	list := leaf("list", "List the published public signing keys", "", "  revocast signing list",
		exactArgs(), func(cmd *cobra.Command, _ []string) error {
			return c.withStore(cmd.Context(), func(ctx context.Context, _ *store.Store, js jetstream.JetStream) error {
				ring, err := tokens.OpenPublic(ctx, js)
				if err != nil {
					return err
				}
				keys, err := ring.PublicKeys(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "KID\tALG\tCREATED\tRETIRED")
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.JWK.Kid, k.JWK.Alg, stamp(k.CreatedAt), stamp(k.RetiredAt))
				}
				return tw.Flush()
			})
		})
	return group("signing", "Rotate and list the keys revocast signs tokens with",
		"  revocast signing rotate\n  revocast signing list", rotate, list)
}

func (c *runner) sessionsCommand() *cobra.Command {
	var reason string
	revoke := leaf("revoke SID", "Revoke every token of one login session (one device)",
		`Publish session.revoked for SID (the sid of a mint or refresh answer): every access and
refresh token of that login session issued until now is refused by every resource server;
the user's other sessions keep working.`,
		`  revocast sessions revoke s_8J1kq3cVZ2fO0Qm2mJ4bkw
  revocast sessions revoke s_8J1kq3cVZ2fO0Qm2mJ4bkw --reason "stolen laptop"`,
		exactArgs("SID"), func(cmd *cobra.Command, args []string) error {
			sid := args[0]
			if err := events.ValidateSessionID(sid); err != nil {
				return usagef("%v", err)
			}
			if err := checkReason(reason); err != nil {
				return err
			}
			return c.withConn(cmd.Context(), 0, func(ctx context.Context, nc *nats.Conn, st *store.Store, _ jetstream.JetStream) error {
				return c.publish(ctx, nc, st, reason, 0, func(now time.Time) (events.Event, error) {
					return events.NewSessionRevoked(sid, now, cliActor())
				})
			})
		})
	revoke.Flags().StringVar(&reason, "reason", "", "why, recorded in the event (one line of plain text, at most 512 bytes)")
	return group("sessions", "Revoke login sessions (one device)",
		"  revocast sessions revoke s_8J1kq3cVZ2fO0Qm2mJ4bkw", revoke)
}

// checkReason applies the API's rule for reasons.
func checkReason(reason string) error {
	if len(reason) > events.MaxReasonLen {
		return usagef("--reason is longer than %d bytes", events.MaxReasonLen)
	}
	if err := events.ValidateReason(reason); err != nil {
		return usagef("--reason: %v: write one line of plain text", err)
	}
	return nil
}

func (c *runner) flushCommand() *cobra.Command {
	var reason string
	var allowUnknown bool
	var wait time.Duration
	cmd := leaf("flush APP_ID", "Revoke every token of an app issued until now",
		`Publish app.flushed for APP_ID: every access and refresh token of the app issued until now
is refused by every resource server. The event is permanent (the stream denies delete), so
an app this revocast does not know is refused, as the API refuses it (403); for an app
registered on another revocast of the same stream, pass --allow-unknown-app.`,
		`  revocast flush shop
  revocast flush shop --reason "incident 7"
  revocast flush shop --wait 5s`,
		exactArgs("APP_ID"), func(cmd *cobra.Command, args []string) error {
			if err := validApp(args[0]); err != nil {
				return err
			}
			if err := checkReason(reason); err != nil {
				return err
			}
			return c.withConn(cmd.Context(), wait, func(ctx context.Context, nc *nats.Conn, st *store.Store, js jetstream.JetStream) error {
				if !allowUnknown {
					_, found, err := findApp(ctx, st, args[0])
					if err != nil {
						return err
					}
					if !found {
						return fmt.Errorf("%w: app %q is not registered here (see 'revocast apps list'); nothing was revoked. A flush is stored for good: for an app registered elsewhere, pass --allow-unknown-app", store.ErrNotFound, args[0])
					}
				}
				return c.publish(ctx, nc, st, reason, wait, func(now time.Time) (events.Event, error) {
					return events.NewAppFlushed(args[0], now, cliActor())
				})
			})
		})
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the event (one line of plain text, at most 512 bytes)")
	cmd.Flags().BoolVar(&allowUnknown, "allow-unknown-app", false, "flush an app that is not registered on this revocast")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long until every live table has applied it, and print who did and how fast (e.g. 5s)")
	return cmd
}

func (c *runner) resetCommand() *cobra.Command {
	var reason string
	var wait time.Duration
	cmd := leaf("reset USER_ID", "Revoke every token of a user, in every app, issued until now",
		`Publish user.reset for USER_ID (a positive integer, the JWT sub): every token of the user,
in every app, issued until now is refused by every resource server.`,
		`  revocast reset 42
  revocast reset 42 --reason "phished"
  revocast reset 42 --wait 5s`,
		exactArgs("USER_ID"), func(cmd *cobra.Command, args []string) error {
			id, err := events.ParseUserID(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			if err := checkReason(reason); err != nil {
				return err
			}
			return c.withConn(cmd.Context(), wait, func(ctx context.Context, nc *nats.Conn, st *store.Store, js jetstream.JetStream) error {
				return c.publish(ctx, nc, st, reason, wait, func(now time.Time) (events.Event, error) {
					return events.NewUserReset(id, now, cliActor())
				})
			})
		})
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the event (one line of plain text, at most 512 bytes)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long until every live table has applied it, and print who did and how fast (e.g. 5s)")
	return cmd
}

func (c *runner) fleetCommand() *cobra.Command {
	var format string
	cmd := leaf("fleet", "The live fleet of revocation tables, from their reports",
		`Every table (resource servers, agents, any service on the client) reports itself every few
seconds on NATS. fleet listens to the reports for a little over one interval (about 2.5 s)
and prints each live instance: service, host, version, the last stream sequence it
applied, its lag in events and milliseconds, its staleness, and whether it is ready.`,
		`  revocast fleet
  revocast fleet --format json`,
		exactArgs(), func(cmd *cobra.Command, _ []string) error {
			return c.withConn(cmd.Context(), fleetListen, func(ctx context.Context, nc *nats.Conn, _ *store.Store, js jetstream.JetStream) error {
				return runFleet(ctx, nc, js, format, c.stdout)
			})
		})
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

// publish stores the event that build makes, after checking this machine's clock.
//
// With wait, it listens to the fleet's reports before publishing, and afterwards waits up to
// wait until every table it heard from has applied the event, printing who did and how fast.
func (c *runner) publish(ctx context.Context, nc *nats.Conn, st *store.Store, reason string, wait time.Duration, build func(time.Time) (events.Event, error)) error {
	// The watermark comes from this machine's clock: refuse to publish with a clock that
	// disagrees with the NATS server's, rather than revoke too little or lock users out.
	off, err := st.ClockOffset(ctx)
	if err != nil {
		return err
	}
	if err := checkClock(off); err != nil {
		return err
	}
	ev, err := build(time.Now())
	if err != nil {
		return err
	}
	ev.Reason = reason
	ev.Source.UserAgent = "revocast-cli"
	var conf *confirmer
	if wait > 0 {
		if conf, err = startConfirm(nc); err != nil {
			return err
		}
	}
	stored, err := st.Publish(ctx, ev)
	switch {
	case errors.Is(err, store.ErrUnknownOutcome):
		return fmt.Errorf("%w; the revocation may or may not be stored (no acknowledgement came in time): run the same command again, repeating it is safe", err)
	case err != nil:
		return fmt.Errorf("%w; nothing was revoked, retry", err)
	}
	fmt.Fprintf(c.stdout, "stored %s on %s (seq %d, not_before %s)\n", ev.Type, ev.Subject(), stored.Seq, stored.Event.NotBefore.Format(time.RFC3339Nano))
	if conf != nil {
		return conf.wait(ctx, stored.Seq, wait, c.stdout)
	}
	return nil
}

func (c *runner) auditCommand() *cobra.Command {
	var f auditFlags
	cmd := leaf("audit", "Replay the revocation stream (read-only)",
		`Replay the revocation stream, the audit log, read-only: an aligned table on a terminal,
JSON lines when piped (--format), one line per event with its stream sequence and stored
time, and a summary on stderr. --since/--until take a duration back from now (24h), an
RFC 3339 time or a date. --verify checks that the stream still denies delete and purge,
has no gaps and holds only valid events; exit status 1 if not.`,
		`  revocast audit
  revocast audit --app shop --since 24h
  revocast audit --user 42 --since 2026-11-01 --until 2026-11-08T12:00:00Z
  revocast audit --session s_8J1kq3cVZ2fO0Qm2mJ4bkw
  revocast audit --type user.reset --actor rvca_8d36218f069e --format jsonl
  revocast audit --follow
  revocast audit --verify`,
		exactArgs(), func(cmd *cobra.Command, _ []string) error {
			aq, err := parseAudit(f, time.Now(), c.stdout)
			if err != nil {
				return err
			}
			// Auditors may only read the stream: audit needs nothing else. A replay of a long
			// stream may take longer than --timeout; each of its requests is bounded by
			// JetStream's own timeout instead (and Ctrl-C ends it).
			nc, err := c.connect(natsutil.Auditor)
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			return runAudit(cmd.Context(), js, aq, c.stdout, c.stderr)
		})
	fl := cmd.Flags()
	fl.StringVar(&f.app, "app", "", "only this app's flushes")
	fl.StringVar(&f.user, "user", "", "only this user's resets")
	fl.StringVar(&f.session, "session", "", "only this session's revocations")
	fl.StringVar(&f.typ, "type", "", "only events of this type (app.flushed, user.reset)")
	fl.StringVar(&f.actor, "actor", "", "only events of this actor (a key id, or cli:user@host)")
	fl.StringVar(&f.since, "since", "", "from this time: a duration back from now (24h), an RFC 3339 time or a date")
	fl.StringVar(&f.until, "until", "", "until this time (same forms as --since)")
	fl.StringVar(&f.format, "format", "", "table or jsonl (default: table on a terminal, jsonl otherwise)")
	fl.BoolVar(&f.follow, "follow", false, "keep printing new events")
	fl.BoolVar(&f.verify, "verify", false, "check the integrity of the stream; exit status 1 if broken")
	return cmd
}

// auditFlags are the flags of 'revocast audit'.
type auditFlags struct {
	app, user, session, typ, actor, since, until, format string
	follow, verify                                       bool
}

// connect opens a NATS connection as role. Without --nats-creds or NATS_CREDS, the
// credentials of the embedded default are used when they are there (REVOCAST_DATA_DIR,
// default ./revocast-data).
func (c *runner) connect(role natsutil.Role) (*nats.Conn, error) {
	creds := c.creds
	if creds == "" {
		creds = natsutil.DefaultCredentials(c.getenv, c.natsURL, role)
	}
	// NATS errors that come later (a permission refused, a slow consumer) go through the
	// same log format as revocastd's, not as raw lines.
	opts := []nats.Option{client.LogNATSErrors(cliLogger(c.stderr))}
	if role == natsutil.Broadcaster {
		// Admin commands read secrets (hashes, signing keys) and get their replies on the
		// broadcaster's private inbox; audit runs as an auditor, on the shared one.
		opts = append(opts, natsutil.PrivateInbox())
	}
	nc, err := natsutil.Connect(c.natsURL, "revocast-cli", creds, opts...)
	if err != nil {
		if natsutil.CredentialsHint(err, creds) != "" {
			return nil, err
		}
		return nil, fmt.Errorf("%w (is revocastd running? set NATS_URL or --nats-url)", err)
	}
	return nc, nil
}

// withConn connects as the broadcaster, opens the store and runs f within --timeout and
// extra (the time a command waits on purpose, e.g. --wait).
func (c *runner) withConn(ctx context.Context, extra time.Duration, f func(context.Context, *nats.Conn, *store.Store, jetstream.JetStream) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout+extra)
	defer cancel()
	nc, err := c.connect(natsutil.Broadcaster)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, js)
	if err != nil {
		return err
	}
	return f(ctx, nc, st, js)
}

// withStore is [runner.withConn] for commands that need only the store and JetStream.
func (c *runner) withStore(ctx context.Context, f func(context.Context, *store.Store, jetstream.JetStream) error) error {
	return c.withConn(ctx, 0, func(ctx context.Context, _ *nats.Conn, st *store.Store, js jetstream.JetStream) error {
		return f(ctx, st, js)
	})
}

// cliLogger writes warnings to stderr in revocastd's time format, for a person to read.
func cliLogger(w io.Writer) *zap.Logger {
	log, _ := logging.New("warn", "console", w) // constant settings: no error
	return log
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
