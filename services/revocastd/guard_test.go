package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/events"
)

// rawConn is one TCP connection to the API that the test writes raw bytes on, to send what
// no well-behaved client sends.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, apiURL string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(apiURL, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Generous for a loaded machine; nothing below waits for a deadline to pass.
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes raw in one write, so that the server reads pipelined requests together.
func (c *rawConn) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatal(err)
	}
}

// response reads the next response and its body.
func (c *rawConn) response() (int, string, http.Header) {
	c.t.Helper()
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("reading a response body: %v", err)
	}
	return res.StatusCode, string(b), res.Header
}

// closed checks that the server closed the connection: the next read is EOF.
func (c *rawConn) closed() {
	c.t.Helper()
	if b, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		rest, _ := c.r.Peek(c.r.Buffered())
		c.t.Fatalf("read after the last answer = %q%q, %v; want EOF (connection closed)", b, rest, err)
	}
}

// userResets returns the ids of the users reset in the stream, in order.
func userResets(t *testing.T, srv *instance) []int64 {
	t.Helper()
	_, js := openStore(t, srv)
	evs, _ := readAll(t, js)
	var ids []int64
	for _, ev := range evs {
		if ev.Type == events.TypeUserReset {
			ids = append(ids, ev.UserID)
		}
	}
	return ids
}

func TestRawConnections(t *testing.T) {
	srv := start(t, nil)
	st, _ := openStore(t, srv)
	ctx := context.Background()
	if _, _, err := st.CreateApp(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	_, k, err := st.CreateKey(ctx, "oncall", nil)
	if err != nil {
		t.Fatal(err)
	}
	key := k.Reveal()
	reset := func(id int, header string) string {
		return fmt.Sprintf("POST /v2/users/reset/%d HTTP/1.1\r\nHost: revocast\r\nX-API-Key: %s\r\n%s\r\n", id, key, header)
	}
	// smuggled is a valid reset of user 7 hidden after a body, where a server that frames
	// the body otherwise than its proxy would read it as a request of its own.
	smuggled := reset(7, "Content-Length: 0\r\n")

	t.Run("AmbiguousFramingIsRefused", func(t *testing.T) {
		for name, framing := range map[string]string{
			"CLThenTE":             "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
			"TEThenCL":             "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
			"LowerCaseNames":       "content-length: 5\r\ntransfer-encoding: Chunked\r\n",
			"CLZero":               "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
			"TwoContentLengths":    "Content-Length: 5\r\nContent-Length: 0\r\n",
			"TwoEqualLengths":      "Content-Length: 5\r\nContent-Length: 5\r\n",
			"CommaContentLength":   "Content-Length: 5, 5\r\n",
			"SignedContentLength":  "Content-Length: +5\r\n",
			"TwoTransferEncodings": "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
			"CodingList":           "Transfer-Encoding: gzip, chunked\r\n",
			"UnknownCoding":        "Transfer-Encoding: identity\r\n",
			"SpaceBeforeColon":     "Transfer-Encoding : chunked\r\n",
			"FoldedHeader":         "Transfer-Encoding: \r\n chunked\r\n",
			"BareCR":               "X-A: 1\rTransfer-Encoding: chunked\r\n",
		} {
			t.Run(name, func(t *testing.T) {
				c := dialRaw(t, srv.api)
				c.send(reset(8, framing) + "0\r\n\r\n" + smuggled)
				if code, body, _ := c.response(); code != 400 {
					t.Fatalf("status = %d %s, want 400", code, body)
				}
				c.closed()
			})
		}
		t.Run("HTTP10WithTE", func(t *testing.T) {
			c := dialRaw(t, srv.api)
			c.send(strings.Replace(reset(8, "Transfer-Encoding: chunked\r\n"), "HTTP/1.1", "HTTP/1.0", 1) + "0\r\n\r\n" + smuggled)
			if code, body, _ := c.response(); code != 400 {
				t.Fatalf("status = %d %s, want 400", code, body)
			}
			c.closed()
		})
		t.Run("AfterAServedRequest", func(t *testing.T) {
			// The refusal comes in turn, after the answer to the request before it.
			c := dialRaw(t, srv.api)
			c.send(reset(9, "Content-Length: 0\r\n") + reset(8, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n" + smuggled)
			if code, body, _ := c.response(); code != 200 {
				t.Fatalf("first status = %d %s, want 200", code, body)
			}
			if code, body, _ := c.response(); code != 400 {
				t.Fatalf("second status = %d %s, want 400", code, body)
			}
			c.closed()
		})
		t.Run("BadChunkFraming", func(t *testing.T) {
			// A chunked body the guard cannot follow ends the connection before anything
			// after it is read as a request.
			for name, body := range map[string]string{
				"BareLF":       "5\n{\"a\":\n0\r\n\r\n",
				"SizeSpace":    "5 \r\n{}   \r\n0\r\n\r\n",
				"NoCRLFAfter":  "2\r\n{}XX0\r\n\r\n",
				"SignedSize":   "+2\r\n{}\r\n0\r\n\r\n",
				"HugeSizeLine": strings.Repeat("0", 5000) + "\r\n",
			} {
				t.Run(name, func(t *testing.T) {
					c := dialRaw(t, srv.api)
					c.send(reset(8, "Transfer-Encoding: chunked\r\n") + body + smuggled)
					if code, body, _ := c.response(); code == 200 {
						t.Fatalf("status = %d %s, want a refusal", code, body)
					}
					c.closed()
				})
			}
		})
		for _, id := range userResets(t, srv) {
			if id == 7 || id == 8 {
				t.Fatalf("user %d was reset by a refused or smuggled request", id)
			}
		}
	})

	t.Run("PipelinedRequestsAreServed", func(t *testing.T) {
		body := func(reason string) string { return `{"reason":"` + reason + `"}` }
		cl := func(b string) string {
			return fmt.Sprintf("Content-Length: %d\r\nContent-Type: application/json\r\n", len(b)) + "\r\n" + b
		}
		c := dialRaw(t, srv.api)
		c.send(reset(11, "")[:len(reset(11, ""))-2] + cl(body("one")) +
			reset(12, "")[:len(reset(12, ""))-2] + cl(body("two")) +
			reset(13, "Transfer-Encoding: chunked\r\n") +
			"a;ext=1\r\n{\"reason\":\r\n" + fmt.Sprintf("%x\r\n", len(`"three"}`)) + `"three"}` + "\r\n0\r\nX-Trailer: t\r\n\r\n")
		for i := range 3 {
			if code, body, h := c.response(); code != 200 || h.Get("Connection") == "close" {
				t.Fatalf("answer %d = %d %s (Connection: %q), want 200 on a kept connection", i+1, code, body, h.Get("Connection"))
			}
		}
		c.send("GET /healthz HTTP/1.1\r\nHost: revocast\r\n\r\n")
		if code, body, _ := c.response(); code != 200 {
			t.Fatalf("fourth answer = %d %s, want 200", code, body)
		}
		ids := userResets(t, srv)
		if got := fmt.Sprint(ids[len(ids)-3:]); got != "[11 12 13]" {
			t.Fatalf("last resets = %s, want [11 12 13]", got)
		}
	})

	t.Run("RepeatedCredentialHeaders", func(t *testing.T) {
		before := len(userResets(t, srv))
		c := dialRaw(t, srv.api)
		c.send(reset(21, "X-API-Key: "+key+"\r\nContent-Length: 0\r\n"))
		if code, body, _ := c.response(); code != 400 || !strings.Contains(body, "repeated X-API-Key header") {
			t.Fatalf("repeated X-API-Key = %d %s, want 400", code, body)
		}
		c.send("DELETE /root/shop/flush HTTP/1.1\r\nHost: revocast\r\nAuthorization: a\r\nauthorization: b\r\n\r\n")
		if code, body, _ := c.response(); code != 400 || !strings.Contains(body, "repeated Authorization header") {
			t.Fatalf("repeated Authorization = %d %s, want 400", code, body)
		}
		if after := len(userResets(t, srv)); after != before {
			t.Fatalf("resets went from %d to %d", before, after)
		}
	})

	t.Run("EmptyBearerIsNotAFailedGuess", func(t *testing.T) {
		c := dialRaw(t, srv.api)
		const burst = 10 // revocastd's default
		for i := range burst + 1 {
			c.send("DELETE /root/shop/flush HTTP/1.1\r\nHost: revocast\r\nAuthorization: Bearer \r\n\r\n")
			if code, body, _ := c.response(); code != 400 {
				t.Fatalf("empty bearer %d = %d %s, want 400", i+1, code, body)
			}
		}
		c.send("DELETE /root/shop/flush HTTP/1.1\r\nHost: revocast\r\nAuthorization: rvcr_000000000000_wrong\r\n\r\n")
		if code, body, _ := c.response(); code != 403 {
			t.Fatalf("wrong key after empty bearers = %d %s, want 403 (not 429)", code, body)
		}
	})
}
