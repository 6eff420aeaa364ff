package api_test

import (
	"context"
	"testing"

	"github.com/revocast/revocast/services/internal/api"
	"github.com/revocast/revocast/services/internal/fleet"
)

// blockedFleet has one live instance that never applies anything.
type blockedFleet struct{ waiting chan struct{} }

func (b blockedFleet) Wait(ctx context.Context, seq uint64) fleet.Confirmation {
	close(b.waiting)
	<-ctx.Done()
	return fleet.Confirmation{Seq: seq, Live: 1, Pending: []string{"stuck"}}
}

func (blockedFleet) Instances() []fleet.Instance { return nil }

// TestConfirmationIsNotARevocationInFlight: audit reads step aside for revocations in
// flight; a call that waits for the fleet (up to 10s) has stored its event already and must
// not hold them back while it waits.
func TestConfirmationIsNotARevocationInFlight(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, header string
	}{
		{"Flush", "DELETE", "/root/shop/flush", "Authorization"},
		{"Reset", "POST", "/v2/users/reset/42", "X-API-Key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bf := blockedFleet{waiting: make(chan struct{})}
			r := new(api.Revocations)
			f := newFixture(t, api.Config{Fleet: bf, Revocations: r})
			key := f.rootKey
			if tc.header == "X-API-Key" {
				key = f.adminKey
			}
			done := make(chan response, 1)
			go func() { done <- f.do(t, tc.method, tc.path, map[string]string{tc.header: key, "Prefer": "wait=1"}, "") }()
			<-bf.waiting
			if n := r.InFlight(); n != 0 {
				t.Errorf("while waiting for the fleet: %d revocations in flight, want 0", n)
			}
			res := <-done
			if res.status != 200 || res.header.Get("Revocast-Applied") != "0/1" || res.header.Get("Revocast-Pending") != "stuck" {
				t.Fatalf("answer %d %v", res.status, res.header)
			}
		})
	}
}
