package graph

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
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

// withRequestID gives every request an id, in the request-id response
// header and in every error body.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newRequestID()
		w.Header().Set("request-id", id)
		if c := r.Header.Get("client-request-id"); c != "" && len(c) <= 128 {
			w.Header().Set("client-request-id", c)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

// statusRecorder remembers the status a handler wrote, for the request log
// and for panic recovery (which must not write a second header).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests logs one line per request. Capability paths (download,
// monitor and upload-session tokens) are shortened so that the logs never hold a usable URL.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		log.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("method", r.Method),
			slog.String("path", redactPath(r.URL.EscapedPath())),
			slog.Int("status", rec.status),
			slog.Duration("took", time.Since(start)),
			slog.String("request_id", requestID(r)))
	})
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
