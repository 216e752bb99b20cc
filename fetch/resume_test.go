package fetch_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/fetch"
)

// resumeOrigin serves data with http.ServeContent, which honours Range and
// If-Range, under the given ETag, and records the request headers.
type resumeOrigin struct {
	mu      sync.Mutex
	etag    string
	headers []http.Header
}

func (o *resumeOrigin) setETag(e string) { o.mu.Lock(); o.etag = e; o.mu.Unlock() }

func (o *resumeOrigin) last() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.headers[len(o.headers)-1]
}

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newResumeOrigin(t *testing.T, data []byte) (*resumeOrigin, string) {
	o := &resumeOrigin{etag: `"v1"`}
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.headers = append(o.headers, r.Header.Clone())
		etag := o.etag
		o.mu.Unlock()
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		http.ServeContent(w, r, "", modTime, bytes.NewReader(data))
	})
	return o, srv.URL + "/file.bin"
}

func TestResumeHonoured(t *testing.T) {
	data := testData(100_000)
	o, u := newResumeOrigin(t, data)
	c := newClient(t, fetch.Options{Allow: allowLoopback})

	first, err := c.Open(t.Context(), fetch.Request{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	first.Body.Close()
	if first.ETag != `"v1"` || first.LastModified == "" {
		t.Fatalf("got ETag %q Last-Modified %q, want \"v1\" and a date", first.ETag, first.LastModified)
	}
	if h := o.last(); h.Get("Range") != "" || h.Get("If-Range") != "" {
		t.Errorf("a fresh download sent Range %q If-Range %q", h.Get("Range"), h.Get("If-Range"))
	}

	for _, tt := range []struct {
		name    string
		req     fetch.Request
		want    []byte
		wantRng string
	}{
		{"etag", fetch.Request{URL: u, Offset: 40_000, IfRange: first.ETag}, data[40_000:], "bytes=40000-"},
		{"last-modified", fetch.Request{URL: u, Offset: 99_999, IfRange: first.LastModified}, data[99_999:], "bytes=99999-"},
		{"bounded", fetch.Request{URL: u, Offset: 100, End: 199, IfRange: first.ETag}, data[100:200], "bytes=100-199"},
		{"no validator", fetch.Request{URL: u, Offset: 5}, data[5:], "bytes=5-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Open(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := readBody(resp)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != http.StatusPartialContent || resp.Offset != tt.req.Offset {
				t.Errorf("got status %d offset %d, want 206 %d", resp.Status, resp.Offset, tt.req.Offset)
			}
			if resp.Length != int64(len(tt.want)) || resp.Total != int64(len(data)) {
				t.Errorf("got length %d total %d, want %d %d", resp.Length, resp.Total, len(tt.want), len(data))
			}
			if !bytes.Equal(body, tt.want) {
				t.Errorf("got %d bytes, want %d matching bytes", len(body), len(tt.want))
			}
			h := o.last()
			if got := h.Get("Range"); got != tt.wantRng {
				t.Errorf("Range: got %q, want %q", got, tt.wantRng)
			}
			if got := h.Get("If-Range"); got != tt.req.IfRange {
				t.Errorf("If-Range: got %q, want %q", got, tt.req.IfRange)
			}
		})
	}
}

func TestResumeAfterChangeRestarts(t *testing.T) {
	data := testData(10_000)
	o, u := newResumeOrigin(t, data)
	o.setETag(`"v2"`)
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	resp, err := c.Open(t.Context(), fetch.Request{URL: u, Offset: 5000, IfRange: `"v1"`})
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.Offset != 0 || !bytes.Equal(body, data) || resp.ETag != `"v2"` {
		t.Errorf("got status %d offset %d, %d bytes, ETag %s; want 200 0, the whole file, \"v2\"", resp.Status, resp.Offset, len(body), resp.ETag)
	}
}

func TestResumeRangeIgnored(t *testing.T) {
	data := testData(10_000)
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL, Offset: 5000, IfRange: `"x"`})
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Offset != 0 || resp.Length != int64(len(data)) || !bytes.Equal(body, data) {
		t.Errorf("got offset %d length %d, %d bytes; want 0 and the whole file", resp.Offset, resp.Length, len(body))
	}
}

func TestResumeRangeNotSatisfiable(t *testing.T) {
	data := testData(1000)
	_, u := newResumeOrigin(t, data)
	c := newClient(t, fetch.Options{Allow: allowLoopback})

	t.Run("beyond the end", func(t *testing.T) {
		_, err := c.Open(t.Context(), fetch.Request{URL: u, Offset: 2000, IfRange: `"v1"`})
		fe := fetchError(t, err, fetch.CodeRangeNotSatisfiable, false)
		if !fe.Restart || fe.Status != 416 {
			t.Errorf("got Restart %v Status %d, want true 416", fe.Restart, fe.Status)
		}
	})
	t.Run("complete, validator matched", func(t *testing.T) {
		resp, err := c.Open(t.Context(), fetch.Request{URL: u, Offset: 1000, IfRange: `"v1"`})
		if err != nil {
			t.Fatal(err)
		}
		body, err := readBody(resp)
		if err != nil || len(body) != 0 {
			t.Fatalf("got %d bytes, %v; want an empty body", len(body), err)
		}
		if resp.Status != 416 || resp.Offset != 1000 || resp.Total != 1000 || resp.Length != 0 {
			t.Errorf("got status %d offset %d total %d length %d, want 416 1000 1000 0", resp.Status, resp.Offset, resp.Total, resp.Length)
		}
	})
	t.Run("complete, no validator", func(t *testing.T) {
		_, err := c.Open(t.Context(), fetch.Request{URL: u, Offset: 1000})
		fe := fetchError(t, err, fetch.CodeRangeNotSatisfiable, false)
		if !fe.Restart {
			t.Error("Restart not set")
		}
	})
}

func TestResumeWrongRange(t *testing.T) {
	for _, tt := range []struct {
		name, contentRange string
	}{
		{"other start", "bytes 0-9/100"},
		{"missing", ""},
		{"garbage", "bytes x-y/z"},
		{"end past total", "bytes 50-99/60"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.contentRange != "" {
					w.Header().Set("Content-Range", tt.contentRange)
				}
				w.WriteHeader(http.StatusPartialContent)
				fmt.Fprint(w, "0123456789")
			})
			c := newClient(t, fetch.Options{Allow: allowLoopback})
			_, err := c.Open(t.Context(), fetch.Request{URL: srv.URL, Offset: 50})
			fe := fetchError(t, err, fetch.CodeRangeMismatch, false)
			if !fe.Restart {
				t.Error("Restart not set")
			}
		})
	}
}

func TestWeakETagDropped(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `W/"weak"`)
		fmt.Fprint(w, "x")
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ETag != "" {
		t.Errorf("ETag: got %q, want \"\" for a weak validator", resp.ETag)
	}
}
