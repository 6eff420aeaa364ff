package eventstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

func TestRunClusterSurvivesLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := eventstest.RunCluster(t)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.ConnectedClusterName() == "" {
		t.Fatalf("connected to a server without a cluster name")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: events.StreamName, Subjects: []string{events.StreamSubjects}, Replicas: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		ev, err := events.NewUserReset(42, time.Now(), "test")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := events.Encode(ev)
		// While a new stream leader is elected, a request can go unanswered: each attempt
		// gets its own timeout, and the message id makes a retry of a stored event a no-op.
		deadline := time.Now().Add(30 * time.Second)
		for {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(actx, ev.Subject(), data, jetstream.WithMsgID(ev.ID))
			acancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish: %v", err)
			}
		}
	}
	publish()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("cluster info = %+v, want a leader and 2 replicas", info.Cluster)
	}
	leader := c.Node(info.Cluster.Leader)
	if leader == nil {
		t.Fatalf("leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	leader.Shutdown()
	publish()
	leader.Restart()
	c.WaitReady()
	c.WaitStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, events.StreamName)

	// A client of the restarted node sees both events.
	js2, err := jetstream.New(leader.Connect())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st2, err := js2.Stream(ctx, events.StreamName)
		if err == nil {
			if info, err := st2.Info(ctx); err == nil && info.State.Msgs == 2 && info.Cluster != nil && info.Cluster.Leader != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node does not report 2 messages: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
