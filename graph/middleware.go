package graph

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	principalKey
	targetKey
)

// newRequestID returns a random GUID-shaped request id, as Graph sends.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// requestInfo is what the request log learns while a request is served:
// handlers refine the route (setRoute) and authenticate names the user.
type requestInfo struct {
	id    string
	route string
	user  string
}

// withRequestID gives every request an id: in the request-id and
// X-Request-Id response headers, in every error body, on the request's log
// line and on every log line of a job the request creates. An incoming
// X-Request-Id is kept only from a --trusted-proxies peer (a proxy that
// assigned it, so that its logs and Ferry's match) and only when it is a
// short plain token; anyone else's is replaced, so that a client cannot
// make its requests look like another's in the logs.
func withRequestID(urls *urlBuilder, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || !plainToken(id) || !urls.fromTrustedProxy(r) {
			id = newRequestID()
		}
		w.Header().Set("request-id", id)
		w.Header().Set("X-Request-Id", id)
		if c := r.Header.Get("client-request-id"); c != "" && len(c) <= 128 {
			w.Header().Set("client-request-id", c)
		}
		ctx := context.WithValue(r.Context(), requestIDKey, &requestInfo{id: id})
		next.ServeHTTP(w, r.WithContext(ferry.WithRequestID(ctx, id)))
	})
}

// plainToken reports whether s is 1 to 64 letters, digits, '-', '_', '.'
// or ':' — safe in a log line and a header.
func plainToken(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

func infoOf(r *http.Request) *requestInfo {
	info, _ := r.Context().Value(requestIDKey).(*requestInfo)
	return info
}

func requestID(r *http.Request) string {
	if info := infoOf(r); info != nil {
		return info.id
	}
	return ""
}

// setRoute names the request's route more precisely than its ServeMux
// pattern, for the request log and metrics. route must be a pattern built
// from constants, never from the request's path.
func setRoute(r *http.Request, route string) {
	if info := infoOf(r); info != nil {
		info.route = route
	}
}

// statusRecorder remembers the status a handler wrote and counts the body
// bytes, for the request log and for panic recovery (which must not write
// a second header).
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the server's sendfile path for downloads (io.Copy into
// the ResponseWriter) through the wrapper.
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{s.ResponseWriter}, src)
	}
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Metrics receives the API's measurements (*metrics.Metrics implements
// it). Deps.Metrics may be nil.
type Metrics interface {
	// HTTPRequest records an answered request by route pattern.
	HTTPRequest(route string, status int, took time.Duration)
	// SessionFragment counts an accepted upload-session fragment.
	SessionFragment()
	// SessionCommit counts a commit of an upload session by outcome
	// ("completed" or "failed").
	SessionCommit(outcome string)
	// BodyTimeout counts a request body cut off for idleness.
	BodyTimeout()
}

type noMetrics struct{}

func (noMetrics) HTTPRequest(string, int, time.Duration) {}
func (noMetrics) SessionFragment()                       {}
func (noMetrics) SessionCommit(string)                   {}
func (noMetrics) BodyTimeout()                           {}

// logRequests logs one info line per request, and records it in the
// metrics: method, route pattern (never a path: paths hold ids, names and
// capability tokens), status, bytes, duration, request id and user. The
// query string is never logged.
func logRequests(log *slog.Logger, m Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		took := time.Since(start)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		info := infoOf(r)
		route := r.Pattern // set by the ServeMux on this same request
		var id, user string
		if info != nil {
			if info.route != "" {
				route = info.route
			}
			id, user = info.id, info.user
		}
		if route == "" {
			route = "unmatched" // rejected before routing
		}
		m.HTTPRequest(route, status, took)
		countSessions(m, route, status)
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("took", took),
			slog.String("request_id", id),
			slog.String("user", user))
	})
}

// countSessions derives the upload-session counters from the answer: a
// fragment is accepted with 202, or with 200/201 when it was the last one
// and the file was committed; POST commits explicitly.
func countSessions(m Metrics, route string, status int) {
	switch route {
	case "PUT /upload/{id}":
		switch status {
		case http.StatusAccepted:
			m.SessionFragment()
		case http.StatusOK, http.StatusCreated:
			m.SessionFragment()
			m.SessionCommit("completed")
		}
	case "POST /upload/{id}":
		switch {
		case status == http.StatusOK || status == http.StatusCreated:
			m.SessionCommit("completed")
		case status >= 400:
			m.SessionCommit("failed")
		}
	}
}

func redactPath(p string) string {
	for _, prefix := range []string{"/download/", "/monitor/", "/upload/", "/s/", "/v1.0/shares/", "/v2.0/shares/"} {
		if strings.HasPrefix(p, prefix) {
			return prefix + "…"
		}
	}
	return p
}

// rejectUncleanPaths answers 400 for paths with "." or ".." segments or
// empty segments. ServeMux would otherwise redirect them to a cleaned path,
// and no name can be "." or ".." or empty anyway, so such a path is always
// a malformed request (often an attempt at traversal).
func rejectUncleanPaths(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimSuffix(r.URL.Path, "/")
		if p != "" && p[0] == '/' {
			for seg := range strings.SplitSeq(p[1:], "/") {
				if seg == "" || seg == "." || seg == ".." {
					writeError(w, r, log, ferry.Errorf(ferry.Invalid, "the path must not contain empty, '.' or '..' segments").WithCode("invalidPath"))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// showOnlyDurable has every response wait for durable (Deps.Durable)
// before its header is written, and every flush of a stream before its
// bytes go out: what the handler read before is then durable.
func showOnlyDurable(durable func(), next http.Handler) http.Handler {
	if durable == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&durableWriter{ResponseWriter: w, durable: durable}, r)
	})
}

// durableWriter calls durable before the header and before each flush.
type durableWriter struct {
	http.ResponseWriter
	durable func()
	started bool // the header is written
}

func (d *durableWriter) start() {
	if !d.started {
		d.started = true
		d.durable()
	}
}

func (d *durableWriter) WriteHeader(code int) {
	if code >= 200 {
		d.start()
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d *durableWriter) Write(p []byte) (int, error) {
	d.start()
	return d.ResponseWriter.Write(p)
}

// ReadFrom keeps the server's sendfile path (see statusRecorder).
func (d *durableWriter) ReadFrom(src io.Reader) (int64, error) {
	d.start()
	if rf, ok := d.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{d.ResponseWriter}, src)
}

// FlushError is what http.ResponseController.Flush calls: an event
// stream's flush sends the state it just read.
func (d *durableWriter) FlushError() error {
	d.started = true
	d.durable()
	return http.NewResponseController(d.ResponseWriter).Flush()
}

func (d *durableWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// recoverPanics turns a panicking handler into a Graph 500, logged once.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			err := fmt.Errorf("graph: panic serving %s %s: %v", r.Method, redactPath(r.URL.Path), v)
			if rec.status != 0 {
				log.Error("panic after the response started", "err", err, "request_id", requestID(r))
				return
			}
			writeError(rec, r, log, err)
		}()
		next.ServeHTTP(rec, r)
	})
}

// authenticate checks the bearer token and the scope the method needs, and
// puts the principal into the request's context. GET and HEAD need read
// access, every other method write access.
func authenticate(log *slog.Logger, accounts ferry.AccountStore, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, r, log, ferry.Errorf(ferry.Unauthenticated, "an access token is required"))
			return
		}
		p, err := accounts.Authenticate(r.Context(), token)
		if err != nil {
			if ferry.KindOf(err) == ferry.Unauthenticated {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			writeError(w, r, log, err)
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if !p.Scopes.CanRead() {
				writeError(w, r, log, ferry.Errorf(ferry.Forbidden, "the token does not allow reading files"))
				return
			}
		default:
			if !p.Scopes.CanWrite() {
				writeError(w, r, log, ferry.Errorf(ferry.Forbidden, "the token does not allow changing files (it needs %s)", ferry.ScopeReadWrite))
				return
			}
		}
		if info := infoOf(r); info != nil {
			info.user = p.User.Name
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
	})
}

// bearerToken extracts the token of an "Authorization: Bearer" header; the
// scheme is case-insensitive.
func bearerToken(r *http.Request) (string, bool) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// principal returns the caller authenticated by authenticate.
func principal(r *http.Request) *ferry.Principal {
	p, _ := r.Context().Value(principalKey).(*ferry.Principal)
	return p
}

// cutIdleBodies gives each read of a request body its own deadline: a
// client that stops sending for timeout gets a read error (the handler
// then fails the request and releases what it reserved, such as an upload
// session's fragment range) and its connection is closed. The deadline is
// per read, so a slow but steady upload of any size goes through.
func cutIdleBodies(timeout time.Duration, m Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b := &idleBody{body: r.Body, rc: http.NewResponseController(w), timeout: timeout, m: m}
		r.Body = b
		defer b.done()
		next.ServeHTTP(w, r)
	})
}

// idleBody is a request body whose every Read must make progress within
// timeout.
type idleBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	m       Metrics
	eof     bool // the body was read to its end
	noDeadl bool // the connection cannot take a read deadline
	cut     bool // the deadline fired
}

func (b *idleBody) Read(p []byte) (int, error) {
	if !b.noDeadl && !b.eof {
		if err := b.rc.SetReadDeadline(time.Now().Add(b.timeout)); err != nil {
			b.noDeadl = true // a test recorder, say: nothing to cut
		}
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF && !b.eof:
		b.eof = true
		b.clearDeadline()
	case err != nil && !b.cut && errors.Is(err, os.ErrDeadlineExceeded):
		b.cut = true
		b.m.BodyTimeout()
		err = fmt.Errorf("graph: the request body sent nothing for %v: %w", b.timeout, err)
	}
	return n, err
}

func (b *idleBody) Close() error { return b.body.Close() }

// clearDeadline lifts the read deadline once the body is complete: the
// server then reads the connection in the background to notice a client
// that goes away, and a deadline firing there would cancel the request's
// context while its handler still works.
func (b *idleBody) clearDeadline() {
	if !b.noDeadl {
		b.rc.SetReadDeadline(time.Time{})
	}
}

// done runs when the handler returns. A body left unread keeps a deadline
// one timeout away, so that the server's discarding of the rest cannot
// hang on a silent client either.
func (b *idleBody) done() {
	if b.noDeadl || b.eof || b.cut {
		return
	}
	b.rc.SetReadDeadline(time.Now().Add(b.timeout))
}
