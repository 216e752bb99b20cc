package graph

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/ferrydrive/ferry"
)

// Limits of a JSON batch.
const (
	maxBatchRequests = 20      // as Graph
	maxBatchBody     = 4 << 20 // the whole batch, after gzip decoding
	maxBatchAnswer   = 1 << 20 // one response's JSON body kept for the answer
)

// batchRequest is one request of POST $batch. Header values are strings;
// a body is JSON, or for other content types a base64 string.
type batchRequest struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Body      rawJSON           `json:"body"`
	DependsOn []string          `json:"dependsOn"`
}

type batchBody struct {
	Requests *[]batchRequest `json:"requests"`
}

// batchResponse is one answer in the batch's response. headers is an
// object of strings and body a JSON object or absent, which is what the
// SDKs can parse.
type batchResponse struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    rawJSON           `json:"body,omitempty"`
}

type batchAnswer struct {
	Responses []batchResponse `json:"responses"`
}

// handleBatch answers POST /v1.0/$batch (and /v2.0): up to 20 requests,
// each run as an ordinary request through api (the same routes, checks and
// handlers), with the batch's own token, and each answered with its id,
// status, headers and JSON body. Requests run one at a time, every one
// after those it depends on; one whose dependency failed (status 400 or
// more, or itself not run) answers 424 without running. A batch that
// cannot be understood (not JSON, more than 20 requests, a repeated or
// empty id, an unknown or circular dependency, an absolute or nested
// $batch URL) is 400 as a whole.
func handleBatch(log *slog.Logger, accounts ferry.AccountStore, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Any valid token may send a batch; each request is checked
		// against the token's scopes on its own.
		token, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, r, log, ferry.Errorf(ferry.Unauthenticated, "an access token is required"))
			return
		}
		if _, err := accounts.Authenticate(r.Context(), token); err != nil {
			writeError(w, r, log, err)
			return
		}
		body, err := decodeMax[batchBody](r, maxBatchBody)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		order, err := batchOrder(body.Requests)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		reqs := *body.Requests
		answers := make([]batchResponse, len(reqs))
		failed := map[string]bool{}
		for _, i := range order {
			br := reqs[i]
			if slices.ContainsFunc(br.DependsOn, func(id string) bool { return failed[id] }) {
				answers[i] = failedDependency(r, log, br.ID)
				failed[br.ID] = true
				continue
			}
			answers[i] = runBatched(r, log, api, br)
			failed[br.ID] = answers[i].Status >= 400
		}
		encode(w, http.StatusOK, batchAnswer{Responses: answers})
	})
}

func errBadBatch(format string, args ...any) error {
	return ferry.Errorf(ferry.Invalid, "bad batch: "+format, args...).WithCode("invalidRequest")
}

// batchOrder checks the requests and returns the order to run them in:
// the given order, except that a request waits for those it depends on.
func batchOrder(p *[]batchRequest) ([]int, error) {
	if p == nil || len(*p) == 0 {
		return nil, errBadBatch("the body needs a non-empty \"requests\" array")
	}
	reqs := *p
	if len(reqs) > maxBatchRequests {
		return nil, errBadBatch("a batch holds at most %d requests, not %d", maxBatchRequests, len(reqs))
	}
	index := map[string]int{}
	for i, br := range reqs {
		switch {
		case strings.TrimSpace(br.ID) == "":
			return nil, errBadBatch("request %d has no id", i+1)
		case index[br.ID] != 0:
			return nil, errBadBatch("the id %q is used twice", br.ID)
		}
		index[br.ID] = i + 1
		switch strings.ToUpper(br.Method) {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			return nil, errBadBatch("request %q has the method %q (use GET, POST, PUT, PATCH or DELETE)", br.ID, br.Method)
		}
		if _, err := batchPath(br.URL); err != nil {
			return nil, err
		}
	}
	for _, br := range reqs {
		for _, dep := range br.DependsOn {
			if index[dep] == 0 {
				return nil, errBadBatch("request %q depends on %q, which is not in the batch", br.ID, dep)
			}
		}
	}
	// Kahn's algorithm, taking the first ready request each time.
	done := make([]bool, len(reqs))
	order := make([]int, 0, len(reqs))
	for len(order) < len(reqs) {
		next := -1
		for i, br := range reqs {
			if !done[i] && !slices.ContainsFunc(br.DependsOn, func(dep string) bool { return !done[index[dep]-1] }) {
				next = i
				break
			}
		}
		if next < 0 {
			return nil, errBadBatch("the dependencies form a cycle")
		}
		done[next] = true
		order = append(order, next)
	}
	return order, nil
}

// batchPath turns a request's relative URL ("/me/drive/root",
// "me/drive/root" or "/v1.0/me/drive/root", with a query) into the path
// and query to serve, under /v1.0 unless it names a version.
func batchPath(u string) (string, error) {
	switch {
	case u == "":
		return "", errBadBatch("a request has no url")
	case strings.Contains(u, "://") || strings.HasPrefix(u, "//"):
		return "", errBadBatch("the url %q must be relative, such as /me/drive/root", u)
	}
	if !strings.HasPrefix(u, "/") {
		u = "/" + u
	}
	if !strings.HasPrefix(u, "/v1.0/") && !strings.HasPrefix(u, "/v2.0/") {
		u = "/v1.0" + u
	}
	p, _, _ := strings.Cut(u, "?")
	if strings.HasSuffix(p, "/$batch") {
		return "", errBadBatch("a batch cannot hold another batch")
	}
	return u, nil
}

// runBatched serves one request of the batch through api.
func runBatched(outer *http.Request, log *slog.Logger, api http.Handler, br batchRequest) batchResponse {
	path, _ := batchPath(br.URL) // checked by batchOrder
	body, contentType, err := batchRequestBody(br)
	if err != nil {
		rec := newBatchRecorder()
		writeError(rec, outer, log, err)
		return rec.answer(br.ID)
	}
	var rd io.Reader // a nil *bytes.Reader must not become a non-nil io.Reader
	if body != nil {
		rd = body
	}
	req, err := http.NewRequestWithContext(outer.Context(), strings.ToUpper(br.Method), path, rd)
	if err != nil {
		rec := newBatchRecorder()
		writeError(rec, outer, log, errBadBatch("request %q has a url that cannot be parsed", br.ID))
		return rec.answer(br.ID)
	}
	for k, v := range br.Headers {
		req.Header.Set(k, v)
	}
	if contentType != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", contentType)
	}
	// The batch's own token, address and host stand for every request, so
	// that the same checks apply and absolute URLs come out the same.
	req.Header.Del("Authorization")
	for _, k := range []string{"Authorization", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id"} {
		if v := outer.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Host, req.RemoteAddr, req.TLS, req.RequestURI = outer.Host, outer.RemoteAddr, outer.TLS, path
	rec := newBatchRecorder()
	api.ServeHTTP(rec, req)
	return rec.answer(br.ID)
}

// batchRequestBody is the body of one request: JSON as given (the
// default content type then is application/json), or, for another
// content type, the bytes of a base64 string.
func batchRequestBody(br batchRequest) (*bytes.Reader, string, error) {
	raw := bytes.TrimSpace(br.Body)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, "", nil
	}
	ct := ""
	for k, v := range br.Headers {
		if strings.EqualFold(k, "Content-Type") {
			ct = v
		}
	}
	if ct == "" || strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return bytes.NewReader(raw), "application/json", nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return nil, "", ferry.Errorf(ferry.Invalid, "request %q: a body of type %s must be a base64 string", br.ID, ct)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, "", ferry.Errorf(ferry.Invalid, "request %q: the body is not valid base64", br.ID)
	}
	return bytes.NewReader(b), "", nil
}

// failedDependency is the answer of a request that did not run because
// one it depends on failed.
func failedDependency(r *http.Request, log *slog.Logger, id string) batchResponse {
	rec := newBatchRecorder()
	writeError(rec, r, log, errFailedDependency)
	return rec.answer(id)
}

// batchRecorder is the http.ResponseWriter one batched request writes to.
// It keeps at most maxBatchAnswer bytes of body; more (a download) is
// dropped, as only JSON bodies go into the answer.
type batchRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	over   bool
}

func newBatchRecorder() *batchRecorder { return &batchRecorder{header: http.Header{}} }

func (b *batchRecorder) Header() http.Header { return b.header }

func (b *batchRecorder) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *batchRecorder) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	if b.over || b.body.Len()+len(p) > maxBatchAnswer {
		b.over = true
		return len(p), nil
	}
	return b.body.Write(p)
}

// ReadFrom keeps io.Copy from looking for a faster path.
func (b *batchRecorder) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{b}, r)
}

// answer turns what was written into the request's entry of the batch
// answer: headers as single strings (Content-Type spelled exactly so,
// which the SDKs look for), and the body only when it is a JSON object.
func (b *batchRecorder) answer(id string) batchResponse {
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	res := batchResponse{ID: id, Status: status, Headers: map[string]string{}}
	for k, vs := range b.header {
		if k == "Content-Length" {
			continue
		}
		res.Headers[http.CanonicalHeaderKey(k)] = strings.Join(vs, ", ")
	}
	if !b.over && strings.HasPrefix(b.header.Get("Content-Type"), "application/json") && isJSONObject(b.body.Bytes()) {
		res.Body = bytes.TrimSpace(b.body.Bytes())
	}
	return res
}

// errFailedDependency marks the answer of a request whose dependency
// failed: 424, which only the batch produces.
var errFailedDependency = &ferry.Error{Kind: ferry.Invalid, Message: "a request this one depends on failed, so it did not run"}
