package httpguard_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/revocast/revocast/services/internal/httpguard"
)

const maxHeaderBytes = 16 << 10

// serve runs an http.Server behind the guard on a loopback port. Its handler answers
// "METHOD PATH BODY" or "body error: ..." when the body cannot be read.
func serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		MaxHeaderBytes: maxHeaderBytes,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "body error: "+err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
		}),
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(httpguard.Listener(ln, maxHeaderBytes)) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) answer() (int, string) {
	c.t.Helper()
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("reading an answer: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (c *client) closed() {
	c.t.Helper()
	if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("read = %v, want EOF", err)
	}
}

// Requests arriving a byte at a time, with every framing the guard follows, are served
// as net/http alone would serve them, on one connection.
func TestFramingIsFollowedAcrossReads(t *testing.T) {
	c := dial(t, serve(t))
	reqs := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none" +
		"GET /b HTTP/1.1\nHost: x\n\n" + // bare LF ends header lines, as net/http allows
		"POST /c HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\n\r\n" +
		"3;name=value\r\ntwo\r\n1\r\n!\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n" +
		"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n" +
		"PUT /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	for i := 0; i < len(reqs); i++ {
		c.send(reqs[i : i+1])
	}
	for _, want := range []string{"POST /a one", "GET /b ", "POST /c two!", "POST /d ", "PUT /e "} {
		if code, body := c.answer(); code != 200 || body != want {
			t.Fatalf("answer = %d %q, want 200 %q", code, body, want)
		}
	}
}

func TestAmbiguousRequestIsAnsweredInTurn(t *testing.T) {
	c := dial(t, serve(t))
	c.send("POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok" +
		"POST /ambiguous HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, body := c.answer(); code != 200 || body != "POST /first ok" {
		t.Fatalf("first answer = %d %q", code, body)
	}
	if code, body := c.answer(); code != 400 || strings.Contains(body, "smuggled") {
		t.Fatalf("second answer = %d %q, want 400", code, body)
	}
	c.closed()
}

// A chunked body the guard cannot follow fails the handler's read; nothing after it is
// read as a request.
func TestBrokenChunkedBodyFailsTheRead(t *testing.T) {
	c := dial(t, serve(t))
	c.send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, body := c.answer(); code != 400 || !strings.Contains(body, "body error") {
		t.Fatalf("answer = %d %q, want 400 body error", code, body)
	}
	c.closed()
}

// Headers too large still get net/http's own 431.
func TestHeaderTooLargeIs431(t *testing.T) {
	c := dial(t, serve(t))
	c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("x", 2*maxHeaderBytes) + "\r\n\r\n")
	if code, _ := c.answer(); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status = %d, want 431", code)
	}
}

func TestEmptyLineBeforeRequestIsRefused(t *testing.T) {
	c := dial(t, serve(t))
	c.send("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, _ := c.answer(); code != 400 {
		t.Fatalf("status = %d, want 400 (net/http refuses it too)", code)
	}
	c.closed()
}

// Malformed lines where the guard reads chunk sizes and trailers: a bare LF (which once
// made the guard slice out of range and panic) and a CR inside a line. Each fails the
// handler's read, is answered, and ends the connection.
func TestMalformedChunkLinesFailTheRead(t *testing.T) {
	addr := serve(t)
	for name, body := range map[string]string{
		"ErrBareLFChunkSize": "\n",
		"ErrBareLFTrailer":   "0\r\n\n",
		"ErrCRInSize":        "1\r2\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			c.send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
			if code, resp := c.answer(); code != 400 {
				t.Fatalf("answer = %d %q, want 400", code, resp)
			}
			c.closed()
		})
	}
}

// A coding that only Unicode case folding calls "chunked" (a Kelvin sign for the k) is not
// chunked for net/http, and so not for the guard either.
func TestUnicodeFoldedCodingIsNotChunked(t *testing.T) {
	c := dial(t, serve(t))
	c.send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chun\u212Aed\r\n\r\n0\r\n\r\n")
	if code, _ := c.answer(); code != 400 {
		t.Fatalf("status = %d, want 400", code)
	}
	c.closed()
}
