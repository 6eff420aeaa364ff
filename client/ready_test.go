package client

import (
	"testing"
	"time"
)

// A table that cannot follow the stream says so: Ready turns false once it is stale, as the
// middleware starts answering 503, and true again when it has caught up.
func TestNotReadyWhileStale(t *testing.T) {
	f := newFixture(t)
	tab := f.readyTable(t, WithMaxStaleness(300*time.Millisecond))
	if !tab.Ready() {
		t.Fatal("Ready() = false after WaitReady")
	}
	f.srv.Shutdown()
	eventually(t, "stale after the server stopped", func() bool { return tab.Staleness() > 300*time.Millisecond })
	if tab.Ready() || tab.Stats().Ready {
		t.Fatalf("Ready() = true while the table is stale (staleness %s): a readiness probe would keep it in service while it answers 503", tab.Staleness())
	}
	f.srv.Restart()
	eventually(t, "ready again after the server came back", tab.Ready)
}
