package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// loadResult is what one run of [rawLoad] measured.
type loadResult struct {
	perSec   float64
	p50, p99 time.Duration
}

// rawLoad sends n "GET path" requests with the given Authorization header to addr over conns
// kept-alive HTTP/1.1 connections, one request in flight per connection, and checks that
// every answer has status want.
//
// It writes the request bytes and reads the answer with a few slices, so the load generator
// allocates next to nothing: net/http's client costs more than the agent's decision, and in
// the same process its garbage collections would land in the figures.
//
// With rate 0 each connection sends its next request as soon as it has the answer (closed
// loop: the figure is the most the server gives). With a rate, request k is due at
// start + k/rate and its latency is counted from then, not from when it was sent, so a stall
// counts for every request it delayed (no coordinated omission).
func rawLoad(tb testing.TB, addr, path, authorization string, n, conns int, rate float64, want int) loadResult {
	tb.Helper()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: " + authorization + "\r\n\r\n")
	wantStatus := []byte(" " + strconv.Itoa(want) + " ")
	lat := make([]time.Duration, n)
	errs := make(chan error, conns)
	dialed := make([]net.Conn, conns)
	for c := range dialed {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		dialed[c] = conn
	}
	var wg sync.WaitGroup
	start := time.Now()
	for c, conn := range dialed {
		wg.Go(func() {
			defer func() { conn.Close() }()
			r := bufio.NewReaderSize(conn, 4096)
			for k := c; k < n; k += conns {
				due := time.Now()
				if rate > 0 {
					due = start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
				if _, err := conn.Write(req); err != nil {
					errs <- err
					return
				}
				closing, err := readAnswer(r, wantStatus)
				if err != nil {
					errs <- fmt.Errorf("request %d: %w", k, err)
					return
				}
				lat[k] = time.Since(due)
				if closing { // nginx ends a connection after keepalive_requests (1,000)
					next, err := net.Dial("tcp", addr)
					if err != nil {
						errs <- err
						return
					}
					conn.Close()
					conn = next
					r.Reset(conn)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	slices.Sort(lat)
	return loadResult{perSec: float64(n) / elapsed.Seconds(), p50: lat[n/2], p99: lat[n*99/100]}
}

// readAnswer reads one HTTP/1.1 answer with a Content-Length body (what the agent, nginx and
// Go's server send for these requests), checks its status and says whether the server
// closes the connection after it.
func readAnswer(r *bufio.Reader, wantStatus []byte) (closing bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if len(line) < 13 || !bytes.Equal(line[8:13], wantStatus) {
		return false, fmt.Errorf("status line %q, want%s", bytes.TrimSpace(line), wantStatus)
	}
	length := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return false, fmt.Errorf("header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return false, fmt.Errorf("content length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return false, fmt.Errorf("a %s body: the load generator reads Content-Length bodies only", value)
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	_, err = r.Discard(length)
	return closing, err
}

// startBareHTTP serves what net/http alone does for a request, the engine under the agent:
// the same status and identity headers, no decision. The agent's figures sit beside it.
func startBareHTTP(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Revocast-App", "shop")
		w.Header().Set("X-Revocast-User", "42")
	}))
	tb.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestRawLoad: the load generator counts what it is sent, and refuses what it cannot read.
func TestRawLoad(t *testing.T) {
	addr := startBareHTTP(t)
	res := rawLoad(t, addr, "/", "Bearer x", 200, 4, 0, 200)
	if res.perSec <= 0 || res.p99 <= 0 || res.p50 > res.p99 {
		t.Fatalf("closed loop: %+v", res)
	}
	paced := rawLoad(t, addr, "/", "Bearer x", 200, 4, 2000, 200) // 100 ms at 2,000/s
	if paced.perSec > 2500 {
		t.Fatalf("paced at 2,000/s, measured %.0f/s", paced.perSec)
	}
	r := bufio.NewReader(bytes.NewReader([]byte("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")))
	if _, err := readAnswer(r, []byte(" 200 ")); err == nil {
		t.Fatal("a 401 read as a 200")
	}
	r = bufio.NewReader(bytes.NewReader([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")))
	if _, err := readAnswer(r, []byte(" 200 ")); err == nil {
		t.Fatal("a chunked body read as an empty one")
	}
	r = bufio.NewReader(bytes.NewReader([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")))
	if closing, err := readAnswer(r, []byte(" 200 ")); err != nil || !closing {
		t.Fatalf("an answer that closes the connection: closing %v, %v", closing, err)
	}
	if closing, err := readAnswer(r, []byte(" 200 ")); err != nil || closing {
		t.Fatalf("the next answer, after a 3-byte body: closing %v, %v", closing, err)
	}
}
