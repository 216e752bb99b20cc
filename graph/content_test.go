package graph_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/graph"
)

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// blobCount reports how many published blobs exist.
func (e *env) blobCount() int {
	e.t.Helper()
	list, err := e.blobs.List(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(list)
}

// download follows an item's /content redirect and returns the bytes.
func (e *env) download(path string, opts ...reqOpt) *resp {
	e.t.Helper()
	r := e.do("GET", path+"/content", nil).must(e.t, http.StatusFound)
	return e.do("GET", r.Header.Get("Location"), nil, append([]reqOpt{noAuth()}, opts...)...)
}

func TestPutContent(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	r := e.do("PUT", "/v1.0/me/drive/root:/d/a.txt:/content", "one").must(t, http.StatusCreated).json(t)
	id := r["id"].(string)
	if r["size"].(float64) != 3 || r["file"].(map[string]any)["mimeType"] != "text/plain" {
		t.Errorf("created: %v", r)
	}
	// Same path again: replaced, same id, new cTag.
	r2 := e.do("PUT", "/v1.0/me/drive/root:/d/A.TXT:/content", "second").must(t, http.StatusOK).json(t)
	if r2["id"] != id || r2["cTag"] == r["cTag"] || r2["size"].(float64) != 6 {
		t.Errorf("replaced: %v (first %v)", r2, r)
	}
	// By id.
	r3 := e.do("PUT", "/v1.0/me/drive/items/"+id+"/content", "third!!").must(t, http.StatusOK).json(t)
	if r3["id"] != id || r3["size"].(float64) != 7 {
		t.Errorf("by id: %v", r3)
	}
	if got := string(e.download("/v1.0/me/drive/items/"+id).must(t, http.StatusOK).body); got != "third!!" {
		t.Errorf("content = %q", got)
	}
	// Conflict behaviour from the query.
	e.do("PUT", "/v1.0/me/drive/root:/d/a.txt:/content?@microsoft.graph.conflictBehavior=fail", "x").wantError(t, http.StatusConflict, "nameAlreadyExists")
	rn := e.do("PUT", "/v1.0/me/drive/root:/d/a.txt:/content?@microsoft.graph.conflictBehavior=rename", "x").must(t, http.StatusCreated).json(t)
	if rn["name"] != "a 1.txt" {
		t.Errorf("rename: name = %v", rn["name"])
	}
	e.do("PUT", "/v1.0/me/drive/root:/d/a.txt:/content?@microsoft.graph.conflictBehavior=sideways", "x").wantError(t, http.StatusBadRequest, "invalidRequest")
	// Under items/{parent}:/name:.
	dID := e.do("GET", "/v1.0/me/drive/root:/d", nil).must(t, http.StatusOK).json(t)["id"].(string)
	e.do("PUT", "/v1.0/me/drive/items/"+dID+":/b.json:/content", `{"a":1}`).must(t, http.StatusCreated)
	// Empty file.
	z := e.do("PUT", "/v1.0/me/drive/root:/d/empty.bin:/content", "").must(t, http.StatusCreated).json(t)
	if z["size"].(float64) != 0 {
		t.Errorf("empty: %v", z)
	}
	// Missing parent, parent that is a file, folder as target, bad names.
	e.do("PUT", "/v1.0/me/drive/root:/nope/a.txt:/content", "x").wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("PUT", "/v1.0/me/drive/root:/d/a.txt/x.txt:/content", "x").wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("PUT", "/v1.0/me/drive/items/"+dID+"/content", "x").wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("PUT", "/v1.0/me/drive/root/content", "x").wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("PUT", "/v1.0/me/drive/root:/d/a%7Cb.txt:/content", "x").wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("PUT", "/v1.0/me/drive/items/NOPE/content", "x").wantError(t, http.StatusNotFound, "itemNotFound")

	// If-Match.
	cur := e.do("GET", "/v1.0/me/drive/items/"+id, nil).must(t, http.StatusOK).json(t)
	e.do("PUT", "/v1.0/me/drive/items/"+id+"/content", "x", header("If-Match", `"{old},1"`)).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	e.do("PUT", "/v1.0/me/drive/root:/d/a.txt:/content", "x", header("If-Match", `"{old},1"`)).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	e.do("PUT", "/v1.0/me/drive/root:/d/new.txt:/content", "x", header("If-Match", cur["eTag"].(string))).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	e.do("PUT", "/v1.0/me/drive/root:/d/a.txt:/content", "ok", header("If-Match", cur["cTag"].(string))).must(t, http.StatusOK)
	before := e.blobCount()
	e.do("PUT", "/v1.0/me/drive/items/"+id+"/content", "x", header("If-Match", cur["cTag"].(string))).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	if after := e.blobCount(); after != before {
		t.Errorf("a refused upload left blobs behind: %d before, %d after", before, after)
	}
}

func TestPutContentGzip(t *testing.T) {
	e := newEnv(t)
	body := strings.Repeat("compressible text ", 1000)
	r := e.do("PUT", "/v1.0/me/drive/root:/g.txt:/content", gzipped(t, body), header("Content-Encoding", "gzip")).must(t, http.StatusCreated).json(t)
	if r["size"].(float64) != float64(len(body)) {
		t.Errorf("size = %v, want %d", r["size"], len(body))
	}
	if got := string(e.download("/v1.0/me/drive/root:/g.txt:").must(t, http.StatusOK).body); got != body {
		t.Errorf("content differs (%d bytes)", len(got))
	}
	before := e.blobCount()
	e.do("PUT", "/v1.0/me/drive/root:/bad.txt:/content", "not gzip at all", header("Content-Encoding", "gzip")).wantError(t, http.StatusBadRequest, "invalidRequest")
	trunc := gzipped(t, body)
	e.do("PUT", "/v1.0/me/drive/root:/bad.txt:/content", trunc[:len(trunc)/2], header("Content-Encoding", "gzip")).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("PUT", "/v1.0/me/drive/root:/bad.txt:/content", "x", header("Content-Encoding", "br")).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root:/bad.txt", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	if after := e.blobCount(); after != before {
		t.Errorf("bad gzip left blobs: %d before, %d after", before, after)
	}
}

func TestPutContentTooLarge(t *testing.T) {
	e := newEnv(t, func(c *graph.Config) { c.MaxUploadSize = 1000 })
	e.do("PUT", "/v1.0/me/drive/root:/ok.bin:/content", strings.Repeat("a", 1000)).must(t, http.StatusCreated)
	check := func(r *resp) {
		t.Helper()
		r.wantError(t, http.StatusRequestEntityTooLarge, "invalidRequest")
		inner := r.json(t)["error"].(map[string]any)["innerError"].(map[string]any)
		if inner["code"] != "maxFileSizeExceeded" {
			t.Errorf("innerError = %v", inner)
		}
	}
	// Declared too large: refused before reading.
	check(e.do("PUT", "/v1.0/me/drive/root:/big.bin:/content", strings.Repeat("a", 1001)))
	// Streamed without a length: the limit holds while reading.
	check(e.do("PUT", "/v1.0/me/drive/root:/big.bin:/content", io.MultiReader(strings.NewReader(strings.Repeat("a", 5000)))))
	// A small gzip body that expands past the limit.
	check(e.do("PUT", "/v1.0/me/drive/root:/bomb.bin:/content", gzipped(t, strings.Repeat("a", 100000)), header("Content-Encoding", "gzip")))
	e.do("GET", "/v1.0/me/drive/root:/big.bin", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	if n := e.blobCount(); n != 1 {
		t.Errorf("%d blobs, want 1", n)
	}
}

func TestGetContentRedirect(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	f := e.put("/d/a.txt", "abc")
	for _, p := range []string{
		"/v1.0/me/drive/items/" + f["id"].(string) + "/content",
		"/v1.0/me/drive/root:/d/a.txt:/content",
		"/v1.0/me/drive/root%3A%2Fd%2Fa.txt%3A%2Fcontent",
	} {
		r := e.do("GET", p, nil).must(t, http.StatusFound)
		loc := r.Header.Get("Location")
		if !strings.HasPrefix(loc, e.srv.URL+"/download/") {
			t.Errorf("%s: Location = %q", p, loc)
		}
		e.do("HEAD", p, nil).must(t, http.StatusFound)
	}
	e.do("GET", "/v1.0/me/drive/root:/d:/content", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root:/nope:/content", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}

func TestDownloadURL(t *testing.T) {
	e := newEnv(t)
	const data = "0123456789abcdefghij" // 20 bytes
	f := e.put("/r\u00e9sum\u00e9 ;1.txt", data)
	u := f["@microsoft.graph.downloadUrl"].(string)

	r := e.do("GET", u, nil, noAuth()).must(t, http.StatusOK)
	if string(r.body) != data {
		t.Errorf("body %q", r.body)
	}
	for k, want := range map[string]string{
		"Content-Length":      "20",
		"Content-Type":        "text/plain",
		"ETag":                f["cTag"].(string),
		"Accept-Ranges":       "bytes",
		"Content-Disposition": `attachment; filename="r_sum_ ;1.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%3B1.txt`,
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// An Authorization header, even a bad one, is ignored.
	e.do("GET", u, nil, header("Authorization", "Bearer garbage")).must(t, http.StatusOK)
	h := e.do("HEAD", u, nil, noAuth()).must(t, http.StatusOK)
	if len(h.body) != 0 || h.Header.Get("Content-Length") != "20" {
		t.Errorf("HEAD: %d body bytes, Content-Length %q", len(h.body), h.Header.Get("Content-Length"))
	}

	for _, tt := range []struct {
		rng, body, contentRange string
		status                  int
	}{
		{"bytes=0-4", "01234", "bytes 0-4/20", http.StatusPartialContent},
		{"bytes=15-", "fghij", "bytes 15-19/20", http.StatusPartialContent},
		{"bytes=-3", "hij", "bytes 17-19/20", http.StatusPartialContent},
		{"bytes=18-100", "ij", "bytes 18-19/20", http.StatusPartialContent},
		{"bytes=20-", "", "bytes */20", http.StatusRequestedRangeNotSatisfiable},
		{"bytes=-0", "", "bytes */20", http.StatusRequestedRangeNotSatisfiable},
		{"bytes=0-1,4-5", data, "", http.StatusOK},
		{"bytes=5-2", data, "", http.StatusOK},
		{"lines=1-2", data, "", http.StatusOK},
	} {
		t.Run(tt.rng, func(t *testing.T) {
			r := e.do("GET", u, nil, noAuth(), header("Range", tt.rng)).must(t, tt.status)
			if got := r.Header.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range = %q, want %q", got, tt.contentRange)
			}
			if tt.status == http.StatusRequestedRangeNotSatisfiable {
				r.wantError(t, tt.status, "invalidRange")
				return
			}
			if string(r.body) != tt.body {
				t.Errorf("body = %q, want %q", r.body, tt.body)
			}
			if r.Header.Get("Content-Length") != strconv.Itoa(len(tt.body)) {
				t.Errorf("Content-Length = %q, want %d", r.Header.Get("Content-Length"), len(tt.body))
			}
		})
	}
	// If-Range with the current tag keeps the range; a stale one gets it all.
	e.do("GET", u, nil, noAuth(), header("Range", "bytes=0-0"), header("If-Range", f["cTag"].(string))).must(t, http.StatusPartialContent)
	e.do("GET", u, nil, noAuth(), header("Range", "bytes=0-0"), header("If-Range", `"c:{old},0"`)).must(t, http.StatusOK)
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	e.do("GET", u, nil, noAuth(), header("Range", "bytes=0-0"), header("If-Range", future)).must(t, http.StatusPartialContent)
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	e.do("GET", u, nil, noAuth(), header("Range", "bytes=0-0"), header("If-Range", past)).must(t, http.StatusOK)
	// If-None-Match.
	e.do("GET", u, nil, noAuth(), header("If-None-Match", f["cTag"].(string))).must(t, http.StatusNotModified)
	e.do("GET", u, nil, noAuth(), header("If-None-Match", `"c:{old},0"`)).must(t, http.StatusOK)

	// The URL serves the current bytes after a replace.
	e.do("PUT", "/v1.0/me/drive/items/"+f["id"].(string)+"/content", "new").must(t, http.StatusOK)
	if got := string(e.do("GET", u, nil, noAuth()).must(t, http.StatusOK).body); got != "new" {
		t.Errorf("after replace: %q", got)
	}
	// Methods other than GET and HEAD.
	e.do("DELETE", u, nil, noAuth()).wantError(t, http.StatusMethodNotAllowed, "notAllowed")

	// Forged and tampered tokens.
	tok := u[strings.LastIndex(u, "/")+1:]
	flipped := []byte(tok)
	flipped[len(flipped)/2] ^= 0x01
	for _, bad := range []string{"AAAA", string(flipped), tok + "A", strings.Repeat("x", 200)} {
		e.do("GET", e.srv.URL+"/download/"+bad, nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
	}
	// Expiry: one hour by default.
	e.clock.advance(59 * time.Minute)
	e.do("GET", u, nil, noAuth()).must(t, http.StatusOK)
	e.clock.advance(2 * time.Minute)
	e.do("GET", u, nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")

	// A deleted item's URL is dead.
	g := e.put("/g.txt", "g")
	e.do("DELETE", "/v1.0/me/drive/items/"+g["id"].(string), nil).must(t, http.StatusNoContent)
	e.do("GET", g["@microsoft.graph.downloadUrl"].(string), nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
}

func TestDownloadURLTTLAndPublicURL(t *testing.T) {
	e := newEnv(t, func(c *graph.Config) {
		c.DownloadURLTTL = time.Minute
	})
	f := e.put("/a.txt", "a")
	u := f["@microsoft.graph.downloadUrl"].(string)
	e.clock.advance(61 * time.Second)
	e.do("GET", u, nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
}

func TestQuota(t *testing.T) {
	e := newEnv(t)
	u, _, err := e.store.EnsureUser(t.Context(), "small", 100)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.store.CreateToken(t.Context(), u.ID, ferry.Scopes{ferry.ScopeReadWrite})
	if err != nil {
		t.Fatal(err)
	}
	as := bearer(tok)
	state := func() string {
		t.Helper()
		d := e.do("GET", "/v1.0/me/drive", nil, as).must(t, http.StatusOK).json(t)
		return d["quota"].(map[string]any)["state"].(string)
	}
	if s := state(); s != "normal" {
		t.Errorf("empty drive: state %q", s)
	}
	e.do("PUT", "/v1.0/me/drive/root:/a.bin:/content", strings.Repeat("a", 95), as).must(t, http.StatusCreated)
	if s := state(); s != "nearing" {
		t.Errorf("95 of 100 bytes: state %q, want nearing", s)
	}
	before := e.blobCount()
	e.do("PUT", "/v1.0/me/drive/root:/b.bin:/content", strings.Repeat("b", 10), as).wantError(t, http.StatusInsufficientStorage, "quotaLimitReached")
	if after := e.blobCount(); after != before {
		t.Errorf("an upload over quota left its blob: %d before, %d after", before, after)
	}
	e.do("PUT", "/v1.0/me/drive/root:/b.bin:/content", strings.Repeat("b", 5), as).must(t, http.StatusCreated)
	if s := state(); s != "critical" {
		t.Errorf("100 of 100 bytes: state %q, want critical", s)
	}
	// A name conflict at commit frees the blob too.
	before = e.blobCount()
	e.do("PUT", "/v1.0/me/drive/root:/b.bin:/content?@microsoft.graph.conflictBehavior=fail", "", as).wantError(t, http.StatusConflict, "nameAlreadyExists")
	if after := e.blobCount(); after != before {
		t.Errorf("a refused upload left its blob: %d before, %d after", before, after)
	}
}

// TestPutContentBadBody sends bodies the server cannot read: broken
// chunked encoding and a body cut short are the client's fault (400), and
// leave no blob behind.
func TestPutContentBadBody(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct{ name, head, body string }{
		{"bad chunk size", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\nzz\r\n"},
		{"bad chunk end", "Transfer-Encoding: chunked\r\n", "5\r\nhelloXX"},
		{"cut short", "Content-Length: 100\r\n", "only a few bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "PUT /v1.0/me/drive/root:/x.txt:/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n%s", e.token, tt.head, tt.body)
			conn.(*net.TCPConn).CloseWrite()
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalidRequest"`) {
				t.Errorf("status %d, want 400 invalidRequest\n%s", res.StatusCode, body)
			}
			if n := e.blobCount(); n != 0 {
				t.Errorf("%d blobs left", n)
			}
		})
	}
	e.do("GET", "/v1.0/me/drive/root:/x.txt", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}

// cancellingBody is a request body whose client goes away: the first Read
// cancels the request's context and fails, as a closed connection does.
type cancellingBody struct{ cancel context.CancelFunc }

func (b cancellingBody) Read([]byte) (int, error) {
	b.cancel()
	return 0, errors.New("read tcp: connection reset by peer")
}

// TestPutContentClientGone abandons an upload halfway: no 500, nothing
// logged above debug but the request line, no blob.
func TestPutContentClientGone(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	h := graph.NewHandler(e.cfg, graph.Deps{Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Accounts: e.store, Items: e.store, Blobs: e.blobs, Jobs: e.jobs, Sessions: e.store})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "PUT", "/v1.0/me/drive/root:/gone.txt:/content", io.NopCloser(cancellingBody{cancel}))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.ContentLength = 1000
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 || rec.Code < 400 {
		t.Errorf("status %d, want a 4xx\n%s", rec.Code, rec.Body)
	}
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "msg=request ") {
			t.Errorf("logged above debug level:\n%s", line)
		}
	}
	if n := e.blobCount(); n != 0 {
		t.Errorf("%d blobs left", n)
	}
}

// TestPutContentOutcomeUnknown loses the store's answer after the file was
// written: the error is reported, but the blob the file uses stays (the
// sweep removes blobs no item uses). A refusal still frees the blob.
func TestPutContentOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	items := &faultyItems{ItemStore: e.store}
	e.serve(func(d *graph.Deps) { d.Items = items })
	items.lostWrite.Store(true)
	e.do("PUT", "/v1.0/me/drive/root:/maybe.txt:/content", "kept bytes").wantError(t, http.StatusInternalServerError, "generalException")
	if got := e.download("/v1.0/me/drive/root:/maybe.txt:").must(t, http.StatusOK).body; string(got) != "kept bytes" {
		t.Errorf("downloaded %q, want the uploaded bytes", got)
	}
	items.lostWrite.Store(false)
	e.do("PUT", "/v1.0/me/drive/root:/maybe.txt:/content", "new bytes").must(t, http.StatusOK)
	before := e.blobCount()
	e.do("PUT", "/v1.0/me/drive/root:/maybe.txt:/content?@microsoft.graph.conflictBehavior=fail", "refused").
		wantError(t, http.StatusConflict, "nameAlreadyExists")
	if after := e.blobCount(); after != before {
		t.Errorf("a refused upload left its blob: %d before, %d after", before, after)
	}
}
