// Package httpguard keeps HTTP/1 requests whose framing is ambiguous away from net/http.
//
// A request that carries both Content-Length and Transfer-Encoding (or two lengths, or a
// transfer coding other than chunked) may be framed one way by a proxy in front and
// another way by this server: the bytes one of them takes for a body the other takes for a
// request of its own (request smuggling). net/http obeys Transfer-Encoding and deletes
// Content-Length before any handler runs, so no handler can tell. [Listener] wraps the
// listener instead: its connections read each request's header block before net/http
// does, follow the body's framing to find the next header block, and stop at the first
// thing they cannot follow with certainty. The guard is stricter than net/http, never
// laxer: whatever it passes, net/http frames the same way.
//
// A refusal is answered by net/http, never by the guard: net/http may at that moment still
// be writing the answer to an earlier, pipelined request on the same connection. At a
// request boundary the guard hands net/http, in place of the refused header block, a
// request line that no server accepts; net/http answers it, after any earlier answer, with
// "400 Bad Request" and "Connection: close", and closes the connection. Inside a body the
// guard fails the read, so the handler sees a broken body and net/http closes the
// connection after its answer. Either way the refused bytes and everything after them never
// reach net/http.
//
// The guard is for a listener that carries plain HTTP/1 to a server that never hijacks a
// connection (no WebSocket, no h2c).
package httpguard

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// readSize is how much the guard reads from the peer at once.
	readSize = 4 << 10
	// slop is how much of a header block net/http may read beyond MaxHeaderBytes: its own
	// 4 KiB allowance plus a 4 KiB read buffer that may already hold the block's start.
	slop = 8 << 10
	// maxLine bounds a chunk-size or trailer line; real ones are a few bytes long.
	maxLine = 1 << 10
	// maxTrailer bounds a chunked body's trailer section (net/http takes 4 KiB at most).
	maxTrailer = 4 << 10
	// lingerTime and lingerBytes bound how long a refused connection is drained before it
	// is closed (net/http waits 500ms in the same situation).
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// refusal takes the place of a refused header block: a request line with no method,
// target or version, which net/http answers with 400 Bad Request and Connection: close.
const refusal = "REFUSED\r\n\r\n"

// errRefused fails a body read when the body's framing cannot be followed.
var errRefused = errors.New("httpguard: malformed chunked body")

// Listener returns ln with every accepted connection guarded. maxHeaderBytes is the
// MaxHeaderBytes of the http.Server that serves it.
func Listener(ln net.Listener, maxHeaderBytes int) net.Listener {
	return &listener{Listener: ln, maxBlock: maxHeaderBytes + slop}
}

type listener struct {
	net.Listener
	maxBlock int
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, maxBlock: l.maxBlock}, nil
}

// state is where in the request stream the next unchecked byte is.
type state int

const (
	atHeader    state = iota // a request's header block
	inBody                   // the rest of a Content-Length body
	atChunkSize              // a chunk-size line
	inChunk                  // the rest of a chunk's data
	atChunkEnd               // the CRLF after a chunk's data
	atTrailer                // a trailer line, or the empty line that ends a chunked body
	stopped                  // nothing more is read from the peer
)

// conn hands net/http only bytes it has checked. Its fields other than refused belong to
// the one goroutine that reads (net/http never reads a connection from two at once).
type conn struct {
	net.Conn
	maxBlock int

	buf     []byte // read from the peer, not yet handed to net/http
	checked int    // buf[:checked] may be handed to net/http
	state   state
	left    uint64 // bytes left in the body or the chunk
	trailer int    // trailer bytes so far
	err     error  // what Read returns once stopped and buf[:checked] is handed over
	tmp     [readSize]byte

	refused atomic.Bool // read by Close, which may run on another goroutine
}

// Read hands net/http checked bytes, reading from the peer until it has some. It keeps a
// header block until the whole block has arrived. That cannot stretch net/http's
// ReadHeaderTimeout: net/http applies it to the first request of a connection, and before
// each later one waits for data under IdleTimeout, which a silent peer gets anyway.
func (c *conn) Read(p []byte) (int, error) {
	for {
		if c.checked > 0 {
			n := copy(p, c.buf[:c.checked])
			c.buf = c.buf[n:]
			c.checked -= n
			return n, nil
		}
		if c.state == stopped {
			return 0, c.err
		}
		if c.advance() {
			continue
		}
		// A timeout (net/http aborts its background read with one) keeps what was read:
		// the next Read carries on from there.
		n, err := c.Conn.Read(c.tmp[:])
		c.buf = append(c.buf, c.tmp[:n]...)
		if n == 0 && err != nil {
			return 0, err
		}
	}
}

// advance checks what it can of buf[checked:] and reports whether it got anywhere; false
// means it needs more bytes from the peer.
func (c *conn) advance() bool {
	in := c.buf[c.checked:]
	switch c.state {
	case atHeader:
		n := blockLen(in)
		if n == 0 {
			if len(in) <= c.maxBlock {
				return false
			}
			// Too long for net/http, which answers 431 once it has read MaxHeaderBytes
			// of it. The part handed over has no end of block, so no request comes of it.
			c.checked += c.maxBlock
			c.buf = c.buf[:c.checked]
			return c.stop(io.EOF)
		}
		f, err := parseHeader(in[:n])
		if err != nil {
			c.buf = append(c.buf[:c.checked], refusal...)
			c.checked = len(c.buf)
			return c.stop(io.EOF)
		}
		c.checked += n
		switch {
		case f.chunked:
			c.state, c.trailer = atChunkSize, 0
		case f.length > 0:
			c.state, c.left = inBody, f.length
		}
		return true

	case inBody, inChunk:
		n := min(uint64(len(in)), c.left)
		if n == 0 {
			return false
		}
		c.checked += int(n)
		c.left -= n
		if c.left == 0 && c.state == inChunk {
			c.state = atChunkEnd
		} else if c.left == 0 {
			c.state = atHeader
		}
		return true

	case atChunkEnd:
		if len(in) < 2 {
			return false
		}
		if in[0] != '\r' || in[1] != '\n' {
			return c.refuseBody()
		}
		c.checked += 2
		c.state = atChunkSize
		return true

	case atChunkSize:
		line, ok := crlfLine(in)
		if !ok {
			return c.refuseBody()
		}
		if line == nil {
			return false
		}
		size, ok := chunkSize(line)
		if !ok {
			return c.refuseBody()
		}
		c.checked += len(line)
		c.state, c.left = inChunk, size
		if size == 0 {
			c.state = atTrailer
		}
		return true

	case atTrailer:
		line, ok := crlfLine(in)
		if !ok {
			return c.refuseBody()
		}
		if line == nil {
			return false
		}
		if len(line) == 2 {
			c.checked += 2
			c.state = atHeader
			return true
		}
		c.trailer += len(line)
		if name, _, ok := bytes.Cut(line, []byte(":")); !ok || !isToken(name) || c.trailer > maxTrailer {
			return c.refuseBody()
		}
		c.checked += len(line)
		return true
	}
	return false
}

// refuseBody stops inside a body: net/http's next read of it fails.
func (c *conn) refuseBody() bool {
	c.buf = c.buf[:c.checked]
	return c.stop(errRefused)
}

func (c *conn) stop(err error) bool {
	c.state, c.err = stopped, err
	c.refused.Store(true)
	return true
}

// Close closes the connection. After a refusal it first ends its own sending and drains
// what the peer still sends, for a moment: closing with unread bytes would reset the
// connection, and a reset can destroy the answer before the peer reads it.
//
// The drain runs on its own goroutine: http.Server.Close closes connections one by one
// under a lock, and must not wait a moment for each refused one.
func (c *conn) Close() error {
	if c.refused.Load() && c.CloseWrite() == nil {
		go func() {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, lingerBytes))
			_ = c.Conn.Close()
		}()
		return nil
	}
	return c.Conn.Close()
}

// CloseWrite shuts down the sending side, as net/http does before closing a connection
// whose request was too large.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// blockLen returns the length of the header block at the start of b, through the empty
// line that ends it, or 0 while b holds no complete block. Like net/http it ends lines at
// LF, with or without CR before it. An empty first line does not end a block (it is no
// request line; parseHeader refuses it).
func blockLen(b []byte) int {
	for off, first := 0, true; ; first = false {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return 0
		}
		line := b[off : off+i]
		off += i + 1
		if !first && (len(line) == 0 || len(line) == 1 && line[0] == '\r') {
			return off
		}
	}
}

// framing is how a request's body is delimited: chunked, or length bytes (0: no body).
type framing struct {
	chunked bool
	length  uint64
}

// parseHeader reads a header block as net/http will and returns its body's framing. It
// refuses what net/http might frame otherwise or that is ambiguous: both Content-Length
// and Transfer-Encoding, Content-Length repeated or not a plain number, a transfer coding
// other than a single "chunked", Transfer-Encoding in HTTP/1.0 (net/http ignores it there;
// a proxy may not). It also refuses, as net/http does, lines it could read two ways: a CR
// inside a line, a folded line, a header name that is not a token (such as one with a
// space before the colon), a request line that is not "METHOD TARGET HTTP/1.x".
func parseHeader(block []byte) (framing, error) {
	var f framing
	var proto string
	var lengths, codings []string
	for rest, first := block, true; ; first = false {
		i := bytes.IndexByte(rest, '\n')
		line := bytes.TrimSuffix(rest[:i], []byte("\r"))
		rest = rest[i+1:]
		if bytes.IndexByte(line, '\r') >= 0 {
			return f, errors.New("CR inside a line")
		}
		if first {
			method, target, _ := strings.Cut(string(line), " ")
			target, proto, _ = strings.Cut(target, " ")
			if method == "" || target == "" || proto != "HTTP/1.1" && proto != "HTTP/1.0" {
				return f, errors.New("malformed request line")
			}
			continue
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) {
			return f, errors.New("malformed header line")
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			lengths = append(lengths, string(value))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			codings = append(codings, string(value))
		}
	}
	switch {
	case len(codings) > 0 && len(lengths) > 0:
		return f, errors.New("both Content-Length and Transfer-Encoding")
	case len(codings) > 0:
		if proto != "HTTP/1.1" || len(codings) > 1 || !asciiEqualFold(codings[0], "chunked") {
			return f, errors.New("unsupported Transfer-Encoding")
		}
		f.chunked = true
	case len(lengths) > 1:
		return f, errors.New("repeated Content-Length")
	case len(lengths) == 1:
		n, err := strconv.ParseUint(lengths[0], 10, 63)
		if err != nil {
			return f, errors.New("malformed Content-Length")
		}
		f.length = n
	}
	return f, nil
}

// crlfLine returns the line at the start of in through its CRLF, or nil while it is
// incomplete. ok is false for a line the guard does not follow: a bare LF, a CR elsewhere,
// or one longer than maxLine.
func crlfLine(in []byte) (line []byte, ok bool) {
	i := bytes.IndexByte(in, '\n')
	if i < 0 {
		return nil, len(in) < maxLine
	}
	// A line ends in CR LF and holds no other CR; a bare LF (i == 0) is no line at all.
	if i < 1 || i+1 > maxLine || bytes.IndexByte(in[:i+1], '\r') != i-1 {
		return nil, false
	}
	return in[:i+1], true
}

// chunkSize parses a chunk-size line: 1 to 16 hex digits, then optionally ";" and
// extensions, which net/http ignores.
func chunkSize(line []byte) (uint64, bool) {
	if len(line) < 2 {
		return 0, false
	}
	digits, _, _ := bytes.Cut(line[:len(line)-2], []byte(";"))
	if len(digits) == 0 || len(digits) > 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(digits), 16, 64)
	return n, err == nil
}

// asciiEqualFold compares as net/http does: ASCII letters only fold, so "chun\u212Aed" (a
// Kelvin sign) is not "chunked" (strings.EqualFold would say it is).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isToken reports whether b is an RFC 9110 token, what net/http accepts as a header name.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
