package main

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/revocast/revocast/client"
	"github.com/revocast/revocast/services/revocast-agent/extauthz"
)

// envoyDecider answers Envoy's gRPC ext_authz with the same decision as /auth: the table's.
// The claims are encoded only when they are sent (-send-claims): not on every decision.
type envoyDecider struct {
	table      *client.Table
	sendClaims bool
}

func (d envoyDecider) Decide(ctx context.Context, authorization string) extauthz.Decision {
	dec := d.table.Decide(ctx, authorization)
	if dec.Outcome == client.Allow {
		out := extauthz.Decision{Allowed: true, User: strconv.FormatInt(dec.Claims.UserID, 10), App: dec.Claims.AppID}
		if d.sendClaims {
			if b, err := json.Marshal(dec.Claims.All); err == nil {
				out.ClaimsJSON = b
			}
		}
		return out
	}
	out := extauthz.Decision{Status: dec.Status, Challenge: dec.Challenge}
	if s, err := strconv.Atoi(dec.RetryAfter); err == nil && s > 0 {
		out.RetryAfter = time.Duration(s) * time.Second
	}
	return out
}
