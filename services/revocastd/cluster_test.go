package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
	"github.com/revocast/revocast/services/internal/audit"
	"github.com/revocast/revocast/services/internal/natsutil"
	"github.com/revocast/revocast/services/internal/store"
	"github.com/revocast/revocast/services/internal/tokens"
)

// The cluster tests boot the very NATS configuration files of deployments/nats: three nodes
// with accounts and permissions, revocastd as the broadcaster user, resource servers as the
// resource user, an auditor as the auditor user.
var clusterConfigs = []string{
	"../../deployments/nats/nats-1.conf",
	"../../deployments/nats/nats-2.conf",
	"../../deployments/nats/nats-3.conf",
}

const account = "REVOCAST" // the account of accounts.conf

// clusterPasswords sets the passwords the configuration files read from the environment.
func clusterPasswords(t *testing.T) map[string]string {
	t.Helper()
	pw := map[string]string{"broadcaster": "bc-pw-1", "resource": "rs-pw-2", "auditor": "au-pw-3", "system": "sys-pw-4"}
	t.Setenv("REVOCAST_BROADCASTER_PASSWORD", pw["broadcaster"])
	t.Setenv("REVOCAST_RESOURCE_PASSWORD", pw["resource"])
	t.Setenv("REVOCAST_AUDITOR_PASSWORD", pw["auditor"])
	t.Setenv("NATS_SYSTEM_PASSWORD", pw["system"])
	return pw
}

// roleConn connects as a role, preferring the given node first (then the others), and
// reports permission violations on errs when it is not nil.
func roleConn(t *testing.T, c *eventstest.Cluster, first int, user, password string, errs chan<- error) *nats.Conn {
	t.Helper()
	urls := make([]string, 0, len(c.Nodes))
	for i := range c.Nodes {
		urls = append(urls, c.Nodes[(first+i)%len(c.Nodes)].URL())
	}
	opts := []nats.Option{nats.UserInfo(user, password), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), nats.Name(user)}
	if user == "broadcaster" {
		opts = append(opts, natsutil.PrivateInbox()) // as revocastd and the admin CLI do
	}
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// follower is a resource server's revocation table, following the stream.
type follower struct {
	name  string
	table *client.Table
}

func startFollower(t *testing.T, name string, nc *nats.Conn) *follower {
	t.Helper()
	tbl, err := client.New(nc, client.WithLogger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))), client.WithKeyfunc(func(*jwt.Token) (any, error) {
		return nil, errors.New("no tokens in this test")
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tbl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	})
	return &follower{name: name, table: tbl}
}

// waitApplied waits until every follower has handled the stream up to lastSeq and holds a
// watermark for every user.
func waitApplied(t *testing.T, fs []*follower, lastSeq uint64, users []int64) {
	t.Helper()
	for _, f := range fs {
		deadline := time.Now().Add(60 * time.Second)
		for f.table.Stats().LastSequence < lastSeq {
			if time.Now().After(deadline) {
				t.Fatalf("%s handled up to seq %d after 60s, want %d", f.name, f.table.Stats().LastSequence, lastSeq)
			}
			time.Sleep(20 * time.Millisecond)
		}
		missing := 0
		for _, id := range users {
			if f.table.NotBefore("", id).IsZero() {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("%s: %d of %d users have no watermark", f.name, missing, len(users))
		}
	}
}

func streamState(t *testing.T, js jetstream.JetStream) jetstream.StreamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		s, err := js.Stream(ctx, events.StreamName)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(ctx); err == nil {
				return info.State
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("stream info: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storedUsers reads the whole stream (as an auditor would, through audit.Replay) and
// returns how often each user was reset.
func storedUsers(t *testing.T, js jetstream.JetStream) map[int64]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[int64]int{}
	sum, err := audit.Replay(ctx, js, audit.Query{}, func(r audit.Record) error {
		if r.Err != nil {
			return fmt.Errorf("seq %d: %w", r.Seq, r.Err)
		}
		if r.Event.Type == events.TypeUserReset {
			got[r.Event.UserID]++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if len(sum.Gaps) > 0 {
		t.Fatalf("replay found gaps: %+v", sum.Gaps)
	}
	return got
}

func post(hc *http.Client, url, apiKey string) (int, error) {
	req, err := http.NewRequest("POST", url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", apiKey)
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

func TestClusterEmbeddedDefaultHasOneReplica(t *testing.T) {
	srv := start(t, nil)
	js := newJS(t, srv.connect(t, natsutil.Broadcaster))
	for _, name := range []string{events.StreamName, "KV_" + store.AppsBucket, "KV_" + store.KeysBucket} {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 1 {
			t.Errorf("%s: %d replicas on the embedded default, want 1", name, r)
		}
	}
}

// TestCluster runs two revocastd replicas on a 3-node cluster booted from the deployment
// files, with a resource server following the stream on every node, then kills the stream
// leader during 2,000 revocations, restarts it, and checks each role's permissions.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	pw := clusterPasswords(t)
	c := eventstest.RunCluster(t, eventstest.WithConfigFiles(clusterConfigs...))
	env := map[string]string{
		"NATS_URL":                   c.UserURLs("broadcaster", pw["broadcaster"]),
		"REVOCAST_PUBLISH_TIMEOUT":   "2s",
		"REVOCAST_LOG_LEVEL":         "error",
		"REVOCAST_SNAPSHOT_INTERVAL": "200ms",
	}
	replicas := []*instance{start(t, env), start(t, env)}

	bc := roleConn(t, c, 0, "broadcaster", pw["broadcaster"], nil)
	bjs := newJS(t, bc)
	ctx := t.Context()

	t.Run("ThreeReplicas", func(t *testing.T) {
		for _, name := range []string{events.StreamName, "KV_" + store.AppsBucket, "KV_" + store.KeysBucket, "OBJ_" + events.SnapshotBucket} {
			// The snapshot writer creates its bucket on its own goroutine, at start.
			s, err := bjs.Stream(ctx, name)
			for deadline := time.Now().Add(10 * time.Second); errors.Is(err, jetstream.ErrStreamNotFound) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond) // bounded poll
				s, err = bjs.Stream(ctx, name)
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			info := s.CachedInfo()
			if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				t.Errorf("%s: replicas %d, cluster %+v; want a leader and 2 replicas", name, info.Config.Replicas, info.Cluster)
			}
		}
	})

	st, err := store.Open(ctx, bjs)
	if err != nil {
		t.Fatal(err)
	}
	_, rootKey, err := st.CreateApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	_, apiKey, err := st.CreateKey(ctx, "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}

	// One resource server per node, as the resource user.
	var followers []*follower
	for i := range c.Nodes {
		nc := roleConn(t, c, i, "resource", pw["resource"], nil)
		followers = append(followers, startFollower(t, fmt.Sprintf("resource server on %s", c.Nodes[i].Name()), nc))
	}

	t.Run("BothReplicasServe", func(t *testing.T) {
		code, body := call(t, "DELETE", replicas[0].api+"/root/shop/flush", map[string]string{"Authorization": rootKey.Reveal()})
		if code != 200 {
			t.Fatalf("flush on replica 1 = %d %s", code, body)
		}
		code, body = call(t, "POST", replicas[1].api+"/v2/users/reset/42", map[string]string{"X-API-Key": apiKey.Reveal()})
		if code != 200 {
			t.Fatalf("reset on replica 2 = %d %s", code, body)
		}
		code, body = call(t, "DELETE", replicas[1].api+"/root/shop/flush", map[string]string{"Authorization": rootKey.Reveal()})
		if code != 200 {
			t.Fatalf("flush on replica 2 = %d %s", code, body)
		}
		state := streamState(t, bjs)
		if state.Msgs != 3 {
			t.Fatalf("stream holds %d events, want 3", state.Msgs)
		}
		waitApplied(t, followers, state.LastSeq, []int64{42})
		for _, f := range followers {
			if f.table.NotBefore("shop", 1).IsZero() {
				t.Fatalf("%s did not apply the flush of shop", f.name)
			}
		}
	})

	var killed *eventstest.Node
	var ok200 []int64
	t.Run("Failover", func(t *testing.T) {
		const total, callers = 2000, 8
		type result struct {
			user    int64
			code    int
			latency time.Duration
			done    time.Time
		}
		results := make([]result, total)
		var next atomic.Int64
		var completed atomic.Int64
		hc := &http.Client{Timeout: 30 * time.Second}
		started := time.Now()
		var wg sync.WaitGroup
		for w := range callers {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= total {
						return
					}
					user := 100000 + i
					api := replicas[(int(i)+w)%len(replicas)].api
					t0 := time.Now()
					code, err := post(hc, api+"/v2/users/reset/"+strconv.FormatInt(user, 10), apiKey.Reveal())
					if err != nil {
						code = -1
					}
					results[i] = result{user: user, code: code, latency: time.Since(t0), done: time.Now()}
					completed.Add(1)
				}
			})
		}
		// Kill the stream leader once a quarter of the calls are through.
		for completed.Load() < total/4 {
			time.Sleep(5 * time.Millisecond)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := bjs.Stream(sctx, events.StreamName)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(sctx)
		}
		cancel()
		if err != nil || info.Cluster == nil {
			t.Fatalf("stream info before the kill: %v", err)
		}
		killed = c.Node(info.Cluster.Leader)
		if killed == nil {
			t.Fatalf("stream leader %q is not a node", info.Cluster.Leader)
		}
		killedAt := time.Now()
		killed.Shutdown()
		t.Logf("killed %s, the stream leader, after %d of %d calls", killed.Name(), completed.Load(), total)
		wg.Wait()
		elapsed := time.Since(started)

		var n500, nOther, after200 int
		var longest time.Duration
		var dones []time.Time
		for _, r := range results {
			switch r.code {
			case 200:
				ok200 = append(ok200, r.user)
				dones = append(dones, r.done)
				if r.done.After(killedAt) {
					after200++
				}
			case 500:
				n500++
			default:
				nOther++
			}
			longest = max(longest, r.latency)
		}
		// The longest stall: the longest time without any call answering 200.
		slices.SortFunc(dones, func(a, b time.Time) int { return a.Compare(b) })
		var stall time.Duration
		prev := started
		for _, d := range dones {
			stall = max(stall, d.Sub(prev))
			prev = d
		}
		if nOther > 0 {
			t.Errorf("%d calls answered neither 200 nor 500", nOther)
		}
		if after200 == 0 {
			t.Fatalf("no call succeeded after the leader was killed: the API did not recover")
		}
		code, err := post(hc, replicas[0].api+"/v2/users/reset/99", apiKey.Reveal())
		if err != nil || code != 200 {
			t.Fatalf("reset after the failover = %d, %v", code, err)
		}
		ok200 = append(ok200, 99)

		stored := storedUsers(t, bjs)
		lost, stored500 := 0, 0
		for _, r := range results {
			switch {
			case r.code == 200 && stored[r.user] == 0:
				lost++
			case r.code != 200 && stored[r.user] > 0:
				stored500++
			}
			if stored[r.user] > 1 {
				t.Errorf("user %d stored %d times", r.user, stored[r.user])
			}
		}
		t.Logf("failover: %d calls by %d callers in %s; 200: %d (%d after the kill), 500: %d (%d of them stored anyway), lost 200s: %d, longest stall without a 200: %s, slowest call: %s",
			total, callers, elapsed.Round(time.Millisecond), len(ok200)-1, after200, n500, stored500, lost, stall.Round(time.Millisecond), longest.Round(time.Millisecond))
		if lost > 0 {
			t.Fatalf("%d revocations answered 200 are not in the stream", lost)
		}
		waitApplied(t, followers, streamState(t, bjs).LastSeq, ok200)
	})
	if killed == nil {
		t.FailNow()
	}

	t.Run("RestartedNodeCatchesUp", func(t *testing.T) {
		killed.Restart()
		c.WaitReady()
		c.WaitStreamCurrent(account, events.StreamName)
		if !killed.NATS().JetStreamIsStreamCurrent(account, events.StreamName) {
			t.Fatalf("%s is not current with the stream", killed.Name())
		}
		i := slices.Index(c.Nodes, killed)
		nc := roleConn(t, c, i, "resource", pw["resource"], nil)
		if got := nc.ConnectedServerName(); got != killed.Name() {
			t.Fatalf("new resource server connected to %s, want the restarted %s", got, killed.Name())
		}
		f := startFollower(t, "resource server on the restarted "+killed.Name(), nc)
		waitApplied(t, []*follower{f}, streamState(t, bjs).LastSeq, ok200)
	})

	t.Run("SnapshotOnTheCluster", func(t *testing.T) {
		// The replicas write the snapshot as the broadcaster user; a resource server that
		// starts now reads it as the resource user and follows on from it.
		last := streamState(t, bjs).LastSeq
		obs, err := bjs.ObjectStore(ctx, events.SnapshotBucket)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			info, err := obs.GetInfo(ctx, events.SnapshotObject)
			if err == nil && info.Metadata["seq"] == fmt.Sprint(last) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no snapshot at seq %d after 30s: %+v, %v", last, info, err)
			}
			time.Sleep(50 * time.Millisecond) // bounded poll
		}
		f := startFollower(t, "resource server started from the snapshot", roleConn(t, c, 2, "resource", pw["resource"], nil))
		waitApplied(t, []*follower{f}, last, ok200)
		// Two replicas write; the one further behind may finish last. Any snapshot of
		// this stream will do: the events after it follow.
		if got := f.table.Stats().SnapshotSequence; got == 0 || got > last {
			t.Fatalf("resource server started from snapshot %d, want one in 1..%d", got, last)
		}
	})

	t.Run("Permissions", func(t *testing.T) {
		before := streamState(t, bjs)
		errs := make(chan error, 16)
		rc := roleConn(t, c, 1, "resource", pw["resource"], errs)
		rjs := newJS(t, rc)
		denied := func(what string, err error) {
			t.Helper()
			if err == nil {
				t.Errorf("resource user could %s", what)
			}
		}
		// A denied request gets no answer: each waits a second and must fail.
		short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, time.Second) }

		// The broadcaster's replies (the app records with their key hashes, the signing keys)
		// must not reach a resource user: it may subscribe to the shared inbox, but
		// revocastd's replies go to its own prefix, which the resource user may not read.
		sniff, err := rc.SubscribeSync("_INBOX.>")
		if err != nil {
			t.Fatal(err)
		}
		if code, body := call(t, "DELETE", replicas[0].api+"/root/shop/flush", map[string]string{"Authorization": rootKey.Reveal()}); code != 200 {
			t.Fatalf("flush = %d %s", code, body)
		}
		// Other resource servers' deliveries (the stream itself) are fine to see; KV replies
		// with key hashes or signing seeds are not.
		for {
			m, err := sniff.NextMsg(500 * time.Millisecond)
			if err != nil {
				break
			}
			if bytes.Contains(m.Data, []byte(`"key_hash"`)) || bytes.Contains(m.Data, []byte(`"seed"`)) {
				t.Errorf("a resource user received a reply meant for revocastd on %s: %.80q", m.Subject, m.Data)
			}
		}
		_ = sniff.Unsubscribe()
		before = streamState(t, bjs) // the flush above is the last legitimate change
		if _, err := rc.SubscribeSync(natsutil.InboxPrefix + ".>"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("subscribe to the broadcaster's inbox: %v, want a permissions violation", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("a resource user subscribed to the broadcaster's inbox without a permissions violation")
		}

		ev, _ := events.NewUserReset(777, time.Now(), "intruder")
		data, _ := events.Encode(ev)
		if err := rc.Publish(ev.Subject(), data); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("publish a revocation: %v, want a permissions violation", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("publishing a revocation raised no permissions violation")
		}
		pctx, cancel := short()
		_, err = rjs.Publish(pctx, ev.Subject(), data)
		cancel()
		denied("publish a revocation through JetStream", err)

		rs, err := rjs.Stream(ctx, events.StreamName)
		if err != nil {
			t.Fatalf("resource user cannot read stream info: %v", err)
		}
		pctx, cancel = short()
		denied("purge the stream", rs.Purge(pctx))
		cancel()
		pctx, cancel = short()
		denied("delete a message", rs.DeleteMsg(pctx, before.FirstSeq))
		cancel()
		pctx, cancel = short()
		denied("delete the stream", rjs.DeleteStream(pctx, events.StreamName))
		cancel()
		pctx, cancel = short()
		_, err = rjs.UpdateStream(pctx, store.StreamConfig(1))
		cancel()
		denied("reconfigure the stream", err)
		pctx, cancel = short()
		_, err = rjs.KeyValue(pctx, store.AppsBucket)
		cancel()
		denied("open the apps bucket", err)

		// The snapshot is read-only for a resource server: a forged one could drop
		// revocations for every server that starts from it.
		bobs, err := bjs.ObjectStore(ctx, events.SnapshotBucket)
		if err != nil {
			t.Fatal(err)
		}
		robs, err := rjs.ObjectStore(ctx, events.SnapshotBucket)
		if err != nil {
			t.Fatalf("resource user cannot open the snapshot bucket: %v", err)
		}
		pctx, cancel = short()
		_, err = robs.PutBytes(pctx, events.SnapshotObject, []byte("forged"))
		cancel()
		denied("write the snapshot", err)
		pctx, cancel = short()
		denied("delete the snapshot", robs.Delete(pctx, events.SnapshotObject))
		cancel()
		// revocastd may have written a newer snapshot meanwhile; it must still be one.
		snap, err := bobs.GetBytes(ctx, events.SnapshotObject)
		if err != nil {
			t.Fatalf("snapshot after a resource user's attempts: %v", err)
		}
		if _, err := events.NewSnapshotReader(bytes.NewReader(snap)); err != nil {
			t.Fatalf("snapshot after a resource user's attempts: %v", err)
		}

		// Deliver subjects of push consumers are not checked against publish permissions;
		// the server must still not turn deliveries into bucket writes or API calls.
		snapshotMeta := "$O." + events.SnapshotBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(events.SnapshotObject))
		for _, subj := range []string{"$KV." + store.AppsBucket + ".evil", "$JS.API.STREAM.DELETE." + events.StreamName, snapshotMeta} {
			pctx, cancel = short()
			_, _ = rjs.CreatePushConsumer(pctx, events.StreamName, jetstream.ConsumerConfig{
				DeliverSubject: subj, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckNonePolicy,
				InactiveThreshold: 5 * time.Second})
			cancel()
		}
		apps, err := bjs.KeyValue(ctx, store.AppsBucket)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, err := apps.Get(ctx, "evil"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("a push consumer's deliveries reached the apps bucket: %v", err)
			}
		}

		after := streamState(t, bjs)
		if after.Msgs != before.Msgs || after.LastSeq != before.LastSeq || after.FirstSeq != before.FirstSeq {
			t.Fatalf("stream changed: %+v -> %+v", before, after)
		}

		// The auditor replays every event and can change nothing.
		ac := roleConn(t, c, 2, "auditor", pw["auditor"], nil)
		ajs := newJS(t, ac)
		stored := storedUsers(t, ajs)
		for _, id := range ok200 {
			if stored[id] == 0 {
				t.Fatalf("auditor replay lacks user %d", id)
			}
		}
		pctx, cancel = short()
		_, err = ajs.Publish(pctx, ev.Subject(), data)
		cancel()
		if err == nil {
			t.Errorf("auditor could publish a revocation")
		}
		as, err := ajs.Stream(ctx, events.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		pctx, cancel = short()
		if err := as.Purge(pctx); err == nil {
			t.Errorf("auditor could purge the stream")
		}
		cancel()
		if after := streamState(t, bjs); after.Msgs != before.Msgs {
			t.Fatalf("stream changed: %d -> %d messages", before.Msgs, after.Msgs)
		}

		// The broadcaster may purge the snapshot bucket's old chunks, and nothing else:
		// purging the used refresh token ids would let a refresh token be replayed.
		for _, name := range []string{events.StreamName, "KV_" + store.AppsBucket, "KV_" + store.KeysBucket,
			"KV_" + tokens.PrivateBucket, "KV_" + tokens.PublicBucket, "KV_" + tokens.UsedRefreshBucket} {
			s, err := bjs.Stream(ctx, name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			n := s.CachedInfo().State.Msgs
			pctx, cancel = short()
			if err := s.Purge(pctx); err == nil {
				t.Errorf("broadcaster could purge %s", name)
			}
			cancel()
			if info, err := s.Info(ctx); err != nil || info.State.Msgs != n {
				t.Errorf("%s: %d messages before the purge attempt, %+v after (%v)", name, n, info, err)
			}
		}
	})
}
