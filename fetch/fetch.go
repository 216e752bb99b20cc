// Package fetch downloads user-supplied URLs safely. It is the only code in
// Ferry that sends requests to addresses chosen by users; a test in this
// package fails if any other package builds an HTTP client or uses the
// default one.
//
// # Security model
//
// A source URL is attacker-controlled: without care it reaches the server's
// own loopback services, the cloud metadata endpoint (169.254.169.254), or
// the private network behind it (server-side request forgery). The defence
// has two layers:
//
//  1. Before any request, and again for every redirect hop, the URL must be
//     http or https, name a host, carry no user:password, and not spell an IP
//     address in a legacy form (127.1, 2130706433, 0x7f000001, 0177.0.0.1)
//     that Go would send to DNS while browsers and curl read it as an address.
//  2. Every address the transport actually dials is checked in
//     net.Dialer.Control, after DNS resolution and before connect(): on every
//     connection, every redirect hop and every reconnect. A name that resolves
//     (or re-resolves, as in DNS rebinding) to a refused address is refused,
//     and no packet reaches it. The policy is code.dny.dev/ssrf's default:
//     TCP only, ports 80 and 443 only, and no IANA special-purpose IPv4 range
//     (loopback, private, link-local and metadata, CGNAT, unspecified,
//     multicast…), no IPv6 outside 2000::/3 or in its special ranges; the
//     IPv4-mapped and NAT64 IPv6 forms of any IPv4 address are refused too.
//
// Options.Allow (the --fetch-allow flag) names networks that are reachable
// despite this, on any port: for tests and intranets. The guard is never
// turned off; tests allow 127.0.0.1/32 and nothing more.
//
// The transport never uses a proxy from the environment (a proxy would make
// the dial check meaningless), asks for identity encoding and never decodes
// bodies, so the bytes stored are the bytes the origin sent. Error messages
// name at most the host: the full URL may carry a signature, and resolved
// internal addresses are not shown to users.
package fetch

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options configures a Client. Zero fields take the defaults.
type Options struct {
	Allow          []netip.Prefix // extra networks reachable despite the guard, on any port (from --fetch-allow)
	ConnectTimeout time.Duration  // TCP connect and TLS handshake; default 10s
	HeaderTimeout  time.Duration  // from request sent to response headers; default 30s
	IdleTimeout    time.Duration  // no body bytes for this long fails the read; default 20s
	MaxRedirects   int            // default 10; negative means none are followed
	UserAgent      string         // default "Ferry/1.0"
	// HostConns bounds the responses open at once to one origin host
	// across every request of the Client (--fetch-host-connections);
	// default 16. Open waits for a free slot, or fails at once with
	// CodeHostBusy when Request.NoWait is set.
	HostConns int
	// Refusals, when set, counts every connection the SSRF guard refuses
	// (*metrics.Metrics implements it).
	Refusals interface{ SSRFRefused() }
}

// Client fetches URLs. It is safe for concurrent use; Close it when done to
// release idle connections.
type Client struct {
	guard    *guard
	tr       *http.Transport
	hc       *http.Client
	idle     time.Duration
	maxRedir int
	ua       string
	slots    *hostSlots
}

// New returns a Client with the given options.
func New(opts Options) *Client {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = 30 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 20 * time.Second
	}
	switch {
	case opts.MaxRedirects == 0:
		opts.MaxRedirects = 10
	case opts.MaxRedirects < 0:
		opts.MaxRedirects = 0
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "Ferry/1.0"
	}
	if opts.HostConns <= 0 {
		opts.HostConns = 16
	}
	c := &Client{
		slots:    newHostSlots(opts.HostConns),
		guard:    newGuard(append([]netip.Prefix(nil), opts.Allow...), opts.Refusals),
		idle:     opts.IdleTimeout,
		maxRedir: opts.MaxRedirects,
		ua:       opts.UserAgent,
	}
	d := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second, Control: c.guard.control}
	c.tr = &http.Transport{
		Proxy:                 nil, // never from the environment: the dial guard must see the origin
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   opts.ConnectTimeout,
		ResponseHeaderTimeout: opts.HeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // store the bytes the origin sends
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   opts.HostConns,
		IdleConnTimeout:       90 * time.Second,
		ReadBufferSize:        64 << 10, // reads at least this large bypass the buffer
	}
	c.hc = &http.Client{Transport: c.tr, CheckRedirect: c.checkRedirect}
	return c
}

// Close closes idle connections. Responses still open keep working.
func (c *Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > c.maxRedir {
		return permanent(CodeTooManyRedirects, "the source URL redirected more than "+strconv.Itoa(c.maxRedir)+" times", nil)
	}
	if e := c.guard.checkURL(req.URL); e != nil {
		e.Message = "redirected: " + e.Message
		return e
	}
	return nil
}

// Request names what to fetch.
type Request struct {
	URL     string
	Offset  int64  // >0: ask for bytes from Offset ("Range: bytes=Offset-" or "Offset-End")
	End     int64  // optional inclusive end for a bounded range; 0 = open-ended
	IfRange string // ETag (strong only) or Last-Modified value the resumed bytes came from; sent as If-Range
	// Probe asks for "Range: bytes=0-" when Offset and End are 0, so that
	// a 206 tells the caller the origin serves ranges (and its total).
	Probe bool
	// NoWait makes Open fail at once with a transient CodeHostBusy
	// *Error instead of waiting when the host has no free slot
	// (Options.HostConns): for a connection that is only worth opening
	// now.
	NoWait bool
}

// HostConnections reports the responses open now to rawURL's host
// (counted against Options.HostConns).
func (c *Client) HostConnections(rawURL string) int {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0
	}
	return c.slots.inUse(hostKey(u))
}

// Response is an open download. The caller must Close Body.
type Response struct {
	// Body delivers exactly Length bytes when Length is known: if the
	// connection ends early, reads fail with a transient shortBody *Error, not
	// io.EOF. Reads fail with a transient idleTimeout *Error when no bytes
	// arrive for IdleTimeout.
	Body   io.ReadCloser
	Status int
	// Offset is where Body starts in the file: the requested offset when the
	// origin honoured the range (206 with a matching Content-Range), 0 when it
	// sent the whole file (200): then the caller must start over.
	Offset       int64
	Total        int64  // whole-file size if known (Content-Range total or Content-Length), else -1
	Length       int64  // bytes Body delivers, -1 if unknown
	ETag         string // strong ETag, "" if none or weak
	LastModified string
	ContentType  string
	Filename     string   // from Content-Disposition, reduced to a bare name; "" if none
	FinalURL     *url.URL // after redirects; may carry secrets, never show it
}

// Open requests the resource, optionally from an offset (resume) or a byte
// range, and returns once the response headers arrived.
//
// A range request is answered in one of three ways. 206 with a Content-Range
// that starts at Offset: Response.Offset is Offset. 200 (the origin ignores
// ranges, or If-Range did not match because the file changed): Offset is 0
// and the caller restarts. 416: if Request.IfRange was given (or the
// request was a Probe of an empty file), the range is open-ended and the
// origin reports the file's size as exactly Offset, the file is already
// complete and Open returns a Response with Status 416, Offset and Total
// equal to Request.Offset and an empty Body; otherwise Open
// fails with a transient rangeNotSatisfiable *Error with Restart set. A 206
// for another range fails the same way with code rangeMismatch.
//
// Every response holds one of the host's Options.HostConns slots until
// its Body is closed.
//
// Errors are *Error; see the Code constants for the list.
func (c *Client) Open(ctx context.Context, req Request) (*Response, error) {
	u, err := url.Parse(req.URL)
	if err != nil {
		return nil, permanent(CodeBadURL, "the source URL is not a valid URL", nil)
	}
	if e := c.guard.checkURL(u); e != nil {
		return nil, e
	}
	if req.Offset < 0 || req.End < 0 || (req.End > 0 && req.End < req.Offset) {
		return nil, permanent(CodeBadURL, "invalid byte range requested", nil)
	}
	host := u.Hostname()
	slot := hostKey(u)
	ok, err := c.slots.acquire(ctx, slot, !req.NoWait)
	if err != nil {
		return nil, transient(CodeCanceled, "the download was cancelled", context.Cause(ctx))
	}
	if !ok {
		return nil, transient(CodeHostBusy, host+" has as many connections open as allowed", nil)
	}
	resp, err := c.open(ctx, req, u, host)
	if err != nil {
		c.slots.release(slot)
		return nil, err
	}
	b, ok := resp.Body.(*body)
	if !ok { // no body to hold the slot (416 of a complete file)
		c.slots.release(slot)
		return resp, nil
	}
	resp.Body = &releaser{body: b, free: func() { c.slots.release(slot) }}
	return resp, nil
}

// open sends the request of Open once the host slot is taken.
func (c *Client) open(ctx context.Context, req Request, u *url.URL, host string) (*Response, error) {
	rctx, cancel := context.WithCancel(ctx)
	hr, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, permanent(CodeBadURL, "the source URL is not a valid URL", nil)
	}
	hr.Header.Set("User-Agent", c.ua)
	hr.Header.Set("Accept-Encoding", "identity")
	ranged := req.Offset > 0 || req.End > 0 || req.Probe
	if ranged {
		r := "bytes=" + strconv.FormatInt(req.Offset, 10) + "-"
		if req.End > 0 {
			r += strconv.FormatInt(req.End, 10)
		}
		hr.Header.Set("Range", r)
		if req.IfRange != "" {
			hr.Header.Set("If-Range", req.IfRange)
		}
	}

	resp, err := c.hc.Do(hr)
	if err != nil {
		cancel()
		return nil, classify(ctx, err, host)
	}
	final := resp.Request.URL
	host = final.Hostname()
	out := &Response{
		Status:       resp.StatusCode,
		Total:        -1,
		Length:       -1,
		ETag:         strongETag(resp.Header.Get("ETag")),
		LastModified: resp.Header.Get("Last-Modified"),
		ContentType:  resp.Header.Get("Content-Type"),
		Filename:     dispositionFilename(resp.Header.Get("Content-Disposition")),
		FinalURL:     final,
	}
	fail := func(e *Error) (*Response, error) {
		drain(resp.Body, cancel, c.idle)
		return nil, e
	}
	switch resp.StatusCode {
	case http.StatusOK:
		out.Length = resp.ContentLength
		out.Total = resp.ContentLength
	case http.StatusPartialContent:
		start, end, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ranged || !ok || start != req.Offset || (req.End > 0 && end > req.End) ||
			(resp.ContentLength >= 0 && resp.ContentLength != end-start+1) {
			e := transient(CodeRangeMismatch, host+" sent a different byte range than asked for", nil)
			e.Status, e.Restart = resp.StatusCode, true
			return fail(e)
		}
		out.Offset, out.Length, out.Total = start, end-start+1, total
	case http.StatusRequestedRangeNotSatisfiable:
		if !ranged {
			return fail(statusError(resp, host, time.Now()))
		}
		size, ok := unsatisfiedSize(resp.Header.Get("Content-Range"))
		if ok && req.End == 0 && size == req.Offset && (req.IfRange != "" || size == 0) {
			// Resumed at the very end, or a probe of an empty file.
			drain(resp.Body, cancel, c.idle)
			out.Body, out.Offset, out.Total, out.Length = http.NoBody, size, size, 0
			return out, nil
		}
		e := transient(CodeRangeNotSatisfiable, host+" cannot resume the download; it must start over", nil)
		e.Status, e.Restart = resp.StatusCode, true
		return fail(e)
	default:
		return fail(statusError(resp, host, time.Now()))
	}
	out.Body = newBody(ctx, resp.Body, cancel, host, out.Length, c.idle)
	return out, nil
}

// drainTime bounds how long drain waits for an unwanted body.
const drainTime = time.Second

// drain reads a little of an unwanted body so the connection can be reused,
// then closes it and ends the request through cancel. An origin that
// announces a body and never sends it must not hold the caller: after
// drainTime (or the idle timeout, if shorter) cancel cuts the read short.
func drain(rc io.ReadCloser, cancel context.CancelFunc, idle time.Duration) {
	t := time.AfterFunc(min(drainTime, idle), cancel)
	_, _ = io.CopyN(io.Discard, rc, 4<<10)
	t.Stop()
	_ = rc.Close()
	cancel()
}

// strongETag returns v unless it is a weak validator, which If-Range cannot
// use.
func strongETag(v string) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "W/") {
		return ""
	}
	return v
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*", then
// total is -1).
func parseContentRange(v string) (start, end, total int64, ok bool) {
	unit, rest, found := strings.Cut(strings.TrimSpace(v), " ")
	if !found || !strings.EqualFold(unit, "bytes") {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(strings.TrimSpace(rest), "/")
	if !found {
		return 0, 0, 0, false
	}
	s, e, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	end, err2 := strconv.ParseInt(e, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t <= end {
			return 0, 0, 0, false
		}
		total = t
	}
	return start, end, total, true
}

// unsatisfiedSize parses a 416's "bytes */SIZE".
func unsatisfiedSize(v string) (int64, bool) {
	unit, rest, found := strings.Cut(strings.TrimSpace(v), " ")
	if !found || !strings.EqualFold(unit, "bytes") {
		return 0, false
	}
	s, found := strings.CutPrefix(strings.TrimSpace(rest), "*/")
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// Check applies, without connecting anywhere, every rule that can be
// judged from the URL alone: http or https, a host, no user:password, no
// legacy numeric host spelling, and, when the host is an IP address
// literal, the same address and port policy the dialer enforces. A host
// name passes: what it resolves to is judged at dial time, on every
// connection. Check lets a caller refuse an obviously forbidden URL when
// the request arrives rather than later. Errors are permanent *Error.
func (c *Client) Check(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return permanent(CodeBadURL, "the source URL is not a valid URL", nil)
	}
	if e := c.guard.checkURL(u); e != nil {
		return e
	}
	a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]"))
	if err != nil {
		return nil // a name
	}
	port, perr := urlPort(u)
	if perr != nil {
		return perr
	}
	network := "tcp4"
	if a.Is6() {
		network = "tcp6"
	}
	if err := c.guard.check(network, netip.AddrPortFrom(a, port).String()); err != nil {
		return permanent(CodeAddressRefused, refusedMessage(u.Hostname(), err.(*refusedError).reason), err)
	}
	return nil
}
