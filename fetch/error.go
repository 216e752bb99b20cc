package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// Codes of *Error, by meaning. Permanent codes mean the same request will
// fail again; transient ones are worth retrying, resuming from the bytes
// already stored.
//
// Permanent:
//
//	badURL            the URL does not parse, has no host, or spells an IP address in a non-standard form
//	badScheme         the scheme (of the URL or of a redirect) is not http or https
//	credentialsInURL  the URL (or a redirect) carries user:password
//	addressRefused    the guard refused every address of the host (private, loopback, reserved, or a port other than 80/443)
//	dnsNotFound       the host name does not exist
//	tooManyRedirects  more than MaxRedirects redirects, including redirect loops
//	notFound          the origin answered 404 or 410
//	httpStatus        any other unexpected status; transient for 408, 429 and 5xx
//	tlsCertificate    the origin's certificate did not verify
//
// Transient:
//
//	rangeNotSatisfiable  416 to a range request; Restart is set
//	rangeMismatch        206 for a range other than the one asked for; Restart is set
//	timeout              connect, TLS handshake or response headers took too long
//	idleTimeout          no body bytes arrived for IdleTimeout
//	reset                the connection was reset or closed before the response
//	shortBody            the body ended before Response.Length bytes
//	connectionRefused    nothing listens at the origin's address
//	dns                  DNS lookup failed for a reason other than "no such host"
//	network              any other network or TLS failure
//	canceled             the caller's context ended (errors.Is(err, context.Canceled) holds)
//	hostBusy             Request.NoWait was set and the host had no free connection slot
const (
	CodeBadURL              = "badURL"
	CodeBadScheme           = "badScheme"
	CodeCredentialsInURL    = "credentialsInURL"
	CodeAddressRefused      = "addressRefused"
	CodeDNSNotFound         = "dnsNotFound"
	CodeTooManyRedirects    = "tooManyRedirects"
	CodeNotFound            = "notFound"
	CodeHTTPStatus          = "httpStatus"
	CodeTLSCertificate      = "tlsCertificate"
	CodeRangeNotSatisfiable = "rangeNotSatisfiable"
	CodeRangeMismatch       = "rangeMismatch"
	CodeTimeout             = "timeout"
	CodeIdleTimeout         = "idleTimeout"
	CodeReset               = "reset"
	CodeShortBody           = "shortBody"
	CodeConnectionRefused   = "connectionRefused"
	CodeDNS                 = "dns"
	CodeNetwork             = "network"
	CodeCanceled            = "canceled"
	CodeHostBusy            = "hostBusy"
)

// Error is the error returned by Open and by reads of Response.Body.
// Message is safe to show to users: it names at most the host, never the
// full URL (which may carry a signature) nor resolved internal addresses.
// Err is the cause, for logs.
type Error struct {
	Permanent  bool   // false: worth retrying, from the bytes already fetched
	Code       string // one of the Code constants
	Status     int    // the origin's HTTP status, when the error comes from one
	RetryAfter time.Duration
	// Restart is set when the bytes already fetched cannot be continued
	// (416 to a resume, or a 206 for another range): retry from offset 0.
	Restart bool
	Message string
	Err     error
}

// Error returns the message and, for logs, the cause.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is an *Error that retrying cannot fix.
// Other errors, including context cancellation, are not permanent.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

func permanent(code, msg string, cause error) *Error {
	return &Error{Permanent: true, Code: code, Message: msg, Err: cause}
}

func transient(code, msg string, cause error) *Error {
	return &Error{Code: code, Message: msg, Err: cause}
}

// refusedError is what the dial guard returns. It carries the address for
// logs; messages shown to users never include it.
type refusedError struct {
	addr   string
	reason error // one of ssrf's ErrProhibited* errors
}

func (e *refusedError) Error() string {
	return "fetch: refused to dial " + e.addr + ": " + e.reason.Error()
}
func (e *refusedError) Unwrap() error { return e.reason }

// refusedMessage explains a refusal naming only the host.
func refusedMessage(host string, reason error) string {
	if errors.Is(reason, ssrf.ErrProhibitedPort) {
		return "the source URL's port on " + host + " is not allowed (only 80 and 443)"
	}
	return "the address of " + host + " is not allowed (private, loopback, link-local or reserved)"
}

// classify translates an error from http.Client.Do (or dialing) into an
// *Error. ctx is the caller's context; host names the hop for messages.
func classify(ctx context.Context, err error, host string) *Error {
	var fe *Error
	if errors.As(err, &fe) { // from CheckRedirect, already translated
		return fe
	}
	// Drop the *url.Error layer: its text holds the full URL.
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
		err = ue.Err
	}
	var re *refusedError
	if errors.As(err, &re) {
		return permanent(CodeAddressRefused, refusedMessage(host, re.reason), err)
	}
	if ctx.Err() != nil {
		return transient(CodeCanceled, "the download was cancelled", context.Cause(ctx))
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return permanent(CodeDNSNotFound, "the host "+host+" does not exist", err)
		}
		return transient(CodeDNS, "could not resolve "+host, err)
	}
	var (
		certErr     *tls.CertificateVerificationError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) {
		return permanent(CodeTLSCertificate, "the TLS certificate of "+host+" is not valid", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return transient(CodeTimeout, host+" did not answer in time", err)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return transient(CodeConnectionRefused, host+" refused the connection", err)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return transient(CodeReset, "the connection to "+host+" was closed before the response", err)
	}
	return transient(CodeNetwork, "could not reach "+host, err)
}

// statusError translates an unwanted HTTP status. 408, 429 and 5xx are
// transient and carry Retry-After; other statuses are permanent.
func statusError(resp *http.Response, host string, now time.Time) *Error {
	code, st := CodeHTTPStatus, resp.StatusCode
	msg := host + " answered " + strconv.Itoa(st) + " " + http.StatusText(st)
	switch {
	case st == http.StatusNotFound || st == http.StatusGone:
		code = CodeNotFound
	case st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500:
		e := transient(code, msg, nil)
		e.Status = st
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
		return e
	}
	e := permanent(code, msg, nil)
	e.Status = st
	return e
}

// retryAfter parses a Retry-After value: whole seconds or an HTTP date.
// Unparsable or past values give 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour).Round(time.Second)
	}
	return 0
}
