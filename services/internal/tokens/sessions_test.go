package tokens_test

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/services/internal/tokens"
)

func claimsOf(t *testing.T, raw string) jwt.MapClaims {
	t.Helper()
	mc := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, mc); err != nil {
		t.Fatal(err)
	}
	return mc
}

// TestSessions: every token carries sid and jti; a login starts a session, a refresh keeps
// it; a session watermark refuses the session's refresh tokens and no other session's.
func TestSessions(t *testing.T) {
	_, _, iss, wm := setup(t)
	ctx := t.Context()
	laptop, err := iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	phone, err := iss.Mint("shop", 42)
	if err != nil {
		t.Fatal(err)
	}
	if events.ValidateSessionID(laptop.SessionID) != nil || laptop.SessionID == phone.SessionID {
		t.Fatalf("sessions %q and %q: want two valid, different ids", laptop.SessionID, phone.SessionID)
	}
	for _, raw := range []string{laptop.AccessToken, laptop.RefreshToken} {
		mc := claimsOf(t, raw)
		if mc["sid"] != laptop.SessionID || len(mc["jti"].(string)) != 32 {
			t.Fatalf("claims = %v, want sid %q and a jti", mc, laptop.SessionID)
		}
	}
	next, c, err := iss.Refresh(ctx, laptop.RefreshToken)
	if err != nil || c.Session != laptop.SessionID || next.SessionID != laptop.SessionID ||
		claimsOf(t, next.AccessToken)["sid"] != laptop.SessionID {
		t.Fatalf("Refresh = %+v, %+v, %v: want the session kept", next, c, err)
	}

	wm.mu.Lock()
	wm.session[laptop.SessionID] = time.Now().Add(time.Millisecond)
	wm.mu.Unlock()
	if _, _, err := iss.Refresh(ctx, next.RefreshToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("refresh of a revoked session = %v, want ErrRevoked", err)
	}
	if _, _, err := iss.Refresh(ctx, phone.RefreshToken); err != nil {
		t.Fatalf("refresh of the other session = %v", err)
	}
	rc, revoked, err := iss.Revocable(ctx, next.AccessToken)
	if err != nil || !revoked || rc.Session != laptop.SessionID {
		t.Fatalf("Revocable(revoked access token) = %+v, %v, %v", rc, revoked, err)
	}
	if _, _, err := iss.Revocable(ctx, "not.a.token"); !errors.Is(err, tokens.ErrInvalidRefresh) {
		t.Fatalf("Revocable(garbage) = %v", err)
	}
}
