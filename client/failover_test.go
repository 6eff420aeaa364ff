package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

// The deployment's node files, booted as nats-server processes.
var natsConfigs = []string{
	"../deployments/nats/nats-1.conf",
	"../deployments/nats/nats-2.conf",
	"../deployments/nats/nats-3.conf",
}

// TestFollowSurvivesLeaderCrash kills the stream leader of a 3-node cluster with SIGKILL
// while a table follows the stream on every node, the killed one included. Every table
// must apply a revocation stored after the crash, and the tables on the surviving nodes
// must never turn stale (fail closed) while the cluster elects new leaders.
func TestFollowSurvivesLeaderCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster of nats-server processes")
	}
	for k, v := range map[string]string{"REVOCAST_BROADCASTER_PASSWORD": "bc-pw", "REVOCAST_RESOURCE_PASSWORD": "rs-pw",
		"REVOCAST_AUDITOR_PASSWORD": "au-pw", "NATS_SYSTEM_PASSWORD": "sys-pw"} {
		t.Setenv(k, v)
	}
	c := eventstest.RunProcCluster(t, eventstest.BuildNATSServer(t), natsConfigs...)

	bc, err := nats.Connect(c.UserURLs("broadcaster", "bc-pw"), nats.CustomInboxPrefix("_INBOX_revocast"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bc.Close)
	js, err := jetstream.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamName, Subjects: []string{events.StreamSubjects},
		Storage: jetstream.FileStorage, Replicas: 3, Discard: jetstream.DiscardNew, DenyDelete: true, DenyPurge: true})
	if err != nil {
		t.Fatal(err)
	}
	nb := time.Now().Add(-time.Minute).Truncate(time.Second)
	eventstest.Publish(t, js, mustUser(t, 1, nb))

	// One table per node, as the resource user, preferring that node.
	tables := make([]*Table, len(c.Nodes))
	for i := range c.Nodes {
		urls := make([]string, 0, len(c.Nodes))
		for j := range c.Nodes {
			urls = append(urls, c.Nodes[(i+j)%len(c.Nodes)].UserURL("resource", "rs-pw"))
		}
		nc, err := nats.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1),
			nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		tab, err := New(nc, WithLogger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))),
			WithKeyfunc(func(*jwt.Token) (any, error) { return nil, errors.New("no tokens in this test") }))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tab.Run(runCtx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
		tables[i] = tab
	}
	for i, tab := range tables {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := tab.WaitReady(wctx)
		cancel()
		if err != nil {
			t.Fatalf("table on %s: %v", c.Nodes[i].Name(), err)
		}
		waitWatermark(t, tab, "", 1, nb)
	}

	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || c.Node(info.Cluster.Leader) == nil {
		t.Fatalf("stream info %+v, %v: want a leader among the nodes", info, err)
	}
	killed := c.Node(info.Cluster.Leader)
	killedAt := time.Now()
	killed.Kill()
	t.Logf("killed %s, the stream leader, with SIGKILL", killed.Name())

	// A revocation stored after the crash, as soon as the cluster takes writes again.
	ev := mustUser(t, 2, nb)
	data, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	var ackAt time.Time
	for deadline := killedAt.Add(60 * time.Second); ; {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.Publish(pctx, ev.Subject(), data, jetstream.WithMsgID(ev.ID))
		cancel()
		if err == nil {
			ackAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted within 60s of the crash: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // bounded retry while the cluster elects a leader
	}
	t.Logf("first write acknowledged %s after the crash", ackAt.Sub(killedAt).Round(time.Millisecond))

	// Watch every table until it has applied the revocation and JetStream confirmed it
	// after the new leader took over, keeping the highest staleness seen.
	applied := make([]time.Duration, len(tables))
	worst := make([]time.Duration, len(tables))
	for deadline := ackAt.Add(30 * time.Second); ; {
		done := true
		for i, tab := range tables {
			worst[i] = max(worst[i], tab.Staleness())
			if applied[i] == 0 && tab.NotBefore("", 2).Equal(nb) {
				applied[i] = time.Since(ackAt)
			}
			done = done && applied[i] > 0 && tab.Staleness() < time.Since(ackAt)
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // bounded poll
	}
	for i, tab := range tables {
		where := c.Nodes[i].Name()
		if c.Nodes[i] == killed {
			where += " (killed)"
		}
		t.Logf("table on %s: applied %s after the write, %s after the crash; highest staleness %s",
			where, applied[i].Round(time.Millisecond), (applied[i] + ackAt.Sub(killedAt)).Round(time.Millisecond), worst[i].Round(time.Millisecond))
		if applied[i] == 0 {
			t.Errorf("table on %s did not apply the revocation stored after the crash within 30s", where)
		}
		if c.Nodes[i] != killed && worst[i] > DefaultMaxStaleness {
			t.Errorf("table on %s was stale (fail closed) during the failover: staleness %s > %s", where, worst[i], DefaultMaxStaleness)
		}
		if applied[i] > 0 && !tab.Ready() {
			t.Errorf("table on %s: Ready() = false after it caught up again", where)
		}
	}
	if t.Failed() {
		return
	}

	// The killed node comes back and catches up; a table can start on it.
	killed.Start()
	c.WaitHealthy()
	ev3 := mustUser(t, 3, nb)
	eventstest.Publish(t, js, ev3)
	for i, tab := range tables {
		eventually(t, fmt.Sprintf("table on %s applies user 3", c.Nodes[i].Name()), func() bool {
			return tab.NotBefore("", 3).Equal(nb)
		})
	}
}
