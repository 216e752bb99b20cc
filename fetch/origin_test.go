package fetch_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/fetch"
)

func TestIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("0123456789"))
		w.(http.Flusher).Flush()
		select { // stall
		case <-r.Context().Done():
		case <-release:
		}
	})
	releaseAtCleanup(t, release)
	c := newClient(t, fetch.Options{Allow: allowLoopback, IdleTimeout: 50 * time.Millisecond})
	resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	fetchError(t, err, fetch.CodeIdleTimeout, false)
	if string(body) != "0123456789" {
		t.Errorf("got %q before the stall, want the 10 bytes sent", body)
	}
}

// TestSlowDripIsNotIdle sends bytes more often than the idle timeout, for
// longer than it in total: the timer must be reset by progress.
func TestSlowDripIsNotIdle(t *testing.T) {
	const chunks = 40
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		for range chunks {
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback, IdleTimeout: 200 * time.Millisecond})
	resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	if err != nil || len(body) != chunks {
		t.Fatalf("got %d bytes, %v; want %d bytes", len(body), err, chunks)
	}
	if resp.Length != -1 || resp.Total != -1 {
		t.Errorf("got length %d total %d for a chunked body, want -1 -1", resp.Length, resp.Total)
	}
}

func TestHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	releaseAtCleanup(t, release)
	c := newClient(t, fetch.Options{Allow: allowLoopback, HeaderTimeout: 50 * time.Millisecond})
	_, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	fetchError(t, err, fetch.CodeTimeout, false)
}

// hijack answers with raw headers and part of the body, then ends the
// connection: gracefully (FIN) or with a reset (RST).
func hijack(t *testing.T, reset bool) string {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
		buf.Write(testData(1000))
		buf.Flush()
		if reset {
			// Wait until the client has the bytes, so the RST does not
			// discard them, then abort.
			time.Sleep(20 * time.Millisecond)
			conn.(*net.TCPConn).SetLinger(0)
		}
		conn.Close()
	})
	return srv.URL
}

func TestShortBody(t *testing.T) {
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	resp, err := c.Open(t.Context(), fetch.Request{URL: hijack(t, false)})
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	fetchError(t, err, fetch.CodeShortBody, false)
	if len(body) != 1000 || resp.Length != 100000 {
		t.Errorf("got %d bytes of length %d, want 1000 of 100000", len(body), resp.Length)
	}
}

func TestResetMidBody(t *testing.T) {
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	resp, err := c.Open(t.Context(), fetch.Request{URL: hijack(t, true)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = readBody(resp)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want an error", err)
	}
	// A reset is seen as a reset where the kernel reports ECONNRESET; some
	// network stacks report the same abort as an early end of stream.
	var fe *fetch.Error
	if !errors.As(err, &fe) || fe.Permanent || (fe.Code != fetch.CodeReset && fe.Code != fetch.CodeShortBody) {
		t.Fatalf("got %#v, want a transient reset or shortBody *fetch.Error", err)
	}
}

func TestResetBeforeHeaders(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	_, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	fetchError(t, err, fetch.CodeReset, false)
}

func TestStatuses(t *testing.T) {
	for _, tt := range []struct {
		status     int
		retryAfter string
		code       string
		permanent  bool
		wantRetry  time.Duration
	}{
		{503, "7", fetch.CodeHTTPStatus, false, 7 * time.Second},
		{503, "", fetch.CodeHTTPStatus, false, 0},
		{500, "garbage", fetch.CodeHTTPStatus, false, 0},
		{502, "-3", fetch.CodeHTTPStatus, false, 0},
		{429, "120", fetch.CodeHTTPStatus, false, 2 * time.Minute},
		{408, "", fetch.CodeHTTPStatus, false, 0},
		{404, "", fetch.CodeNotFound, true, 0},
		{410, "", fetch.CodeNotFound, true, 0},
		{403, "", fetch.CodeHTTPStatus, true, 0},
		{401, "", fetch.CodeHTTPStatus, true, 0},
		{400, "", fetch.CodeHTTPStatus, true, 0},
		{204, "", fetch.CodeHTTPStatus, true, 0},
	} {
		t.Run(fmt.Sprint(tt.status, " ", tt.retryAfter), func(t *testing.T) {
			srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				fmt.Fprint(w, "error page")
			})
			c := newClient(t, fetch.Options{Allow: allowLoopback})
			_, err := c.Open(t.Context(), fetch.Request{URL: srv.URL + "/x?sig=SECRET"})
			fe := fetchError(t, err, tt.code, tt.permanent)
			if fe.Status != tt.status || fe.RetryAfter != tt.wantRetry {
				t.Errorf("got status %d retry %v, want %d %v", fe.Status, fe.RetryAfter, tt.status, tt.wantRetry)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error shows the URL: %q", err)
			}
		})
	}
}

func TestRetryAfterDate(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	_, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	fe := fetchError(t, err, fetch.CodeHTTPStatus, false)
	if fe.RetryAfter < 58*time.Minute || fe.RetryAfter > time.Hour {
		t.Errorf("got RetryAfter %v, want about an hour", fe.RetryAfter)
	}
}

// TestStoredBytesAsSent checks that a gzip-encoded body arrives as the
// compressed bytes, and what the request asked for.
func TestStoredBytesAsSent(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("compressible "), 1000))
	zw.Close()
	var got http.Header
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(gz.Bytes())
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, gz.Bytes()) || resp.Length != int64(gz.Len()) {
		t.Errorf("got %d bytes (length %d), want the %d gzip bytes as sent", len(body), resp.Length, gz.Len())
	}
	if resp.ContentType != "text/plain" {
		t.Errorf("ContentType: got %q", resp.ContentType)
	}
	if got.Get("Accept-Encoding") != "identity" || got.Get("User-Agent") != "Ferry/1.0" {
		t.Errorf("request headers: Accept-Encoding %q User-Agent %q, want identity, Ferry/1.0", got.Get("Accept-Encoding"), got.Get("User-Agent"))
	}
}

func TestContentDispositionFilename(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if cd := r.URL.Query().Get("cd"); cd != "" {
			w.Header().Set("Content-Disposition", cd)
		}
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	for _, tt := range []struct{ header, want string }{
		{``, ""},
		{`inline`, ""},
		{`attachment`, ""},
		{`attachment; filename="report.pdf"`, "report.pdf"},
		{`attachment; filename=report.pdf`, "report.pdf"},
		{`attachment;filename=report.pdf;size=3`, "report.pdf"},
		{`attachment; FILENAME="Upper.txt"`, "Upper.txt"},
		{`attachment; filename=my file.txt`, "my file.txt"},
		{`attachment; filename="a;b.txt"; x=1`, "a;b.txt"},
		{`attachment; filename="say \"hi\".txt"`, `say "hi".txt`},
		{`attachment; filename="../../etc/passwd"`, "passwd"},
		{`attachment; filename="/etc/passwd"`, "passwd"},
		{`attachment; filename="C:\\Windows\\evil.exe"`, "evil.exe"},
		{`attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd`, "passwd"},
		{`attachment; filename=".."`, ""},
		{`attachment; filename="dir/"`, ""},
		{`attachment; filename="  spaced.txt  "`, "spaced.txt"},
		{`attachment; filename*=UTF-8''%E2%82%AC%20rates.txt`, "€ rates.txt"},
		{`attachment; filename*=utf-8'en'r%C3%A9sum%C3%A9.pdf`, "résumé.pdf"},
		{`attachment; filename="fallback.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`, "résumé.pdf"},
		{`attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; filename="fallback.txt"`, "résumé.pdf"},
		{`attachment; filename*=iso-8859-1'en'%A3%20rates.txt`, "£ rates.txt"},
		{`attachment; filename*=UTF-8''bad%ZZ.txt; filename="ok.txt"`, "ok.txt"},
		{`attachment; filename*=UTF-8''%FF%FE.txt; filename="ok.txt"`, "ok.txt"},
		{`attachment; filename*=koi8-r''%C1.txt; filename="ok.txt"`, "ok.txt"},
		{`attachment; filename*=UTF-8''line%0Abreak.txt`, "linebreak.txt"},
		{`attachment; filename*=UTF-8''evil%E2%80%AEtxt.exe`, "eviltxt.exe"},
		{`attachment; filename="unterminated.txt`, "unterminated.txt"},
	} {
		t.Run(tt.header, func(t *testing.T) {
			resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL + "/?cd=" + url.QueryEscape(tt.header)})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Filename != tt.want {
				t.Errorf("got %q, want %q", resp.Filename, tt.want)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	u := srv.URL
	srv.Close()
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	_, err := c.Open(t.Context(), fetch.Request{URL: u})
	fetchError(t, err, fetch.CodeConnectionRefused, false)
}

func TestCanceled(t *testing.T) {
	release := make(chan struct{})
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("abc"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	releaseAtCleanup(t, release)
	c := newClient(t, fetch.Options{Allow: allowLoopback})

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Open(ctx, fetch.Request{URL: srv.URL})
	fetchError(t, err, fetch.CodeCanceled, false)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	resp, err := c.Open(ctx, fetch.Request{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if b, _ := r.ReadByte(); b != 'a' {
		t.Fatalf("got first byte %q, want 'a'", b)
	}
	cancel()
	_, err = io.ReadAll(r)
	fetchError(t, err, fetch.CodeCanceled, false)
}

func TestUntrustedCertificate(t *testing.T) {
	tls := newTLSOrigin(t)
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	_, err := c.Open(t.Context(), fetch.Request{URL: tls})
	fetchError(t, err, fetch.CodeTLSCertificate, true)
}

// TestConnectionReused checks that a body read to its length hands the
// connection back for reuse: two downloads, one dial. The origin answers a
// range with a chunked 206, so the length comes from Content-Range and the
// transport sees the end only if fetch reads past the last byte.
func TestConnectionReused(t *testing.T) {
	data := testData(50_000)
	proceed := make(chan struct{})
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 1-%d/%d", len(data)-1, len(data)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[1:])
		w.(http.Flusher).Flush() // forces chunked encoding
		// Hold the final chunk back until the client has all the data, so
		// it cannot arrive in the same read.
		select {
		case <-proceed:
		case <-r.Context().Done():
		}
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	dials := watchDials(c)
	for range 2 {
		resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL, Offset: 1})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Length != int64(len(data)-1) {
			t.Fatalf("got Length %d, want %d", resp.Length, len(data)-1)
		}
		// Read exactly Length bytes, as a caller that trusts Length would.
		buf := make([]byte, resp.Length)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		proceed <- struct{}{}
		if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("after Length bytes: got %d, %v; want 0, io.EOF", n, err)
		}
		resp.Body.Close()
	}
	if allowed, _ := dials.snapshot(); len(allowed) != 1 {
		t.Errorf("got %d dials (%v), want 1", len(allowed), allowed)
	}
}

// TestErrorBodyNeverSent: an error status whose announced body never comes
// must not hold Open until the caller's context ends; the drain of the
// unwanted body is bounded.
func TestErrorBodyNeverSent(t *testing.T) {
	release := make(chan struct{})
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusNotFound} {
		srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(status)
			w.(http.Flusher).Flush()
			<-release
		})
		c := newClient(t, fetch.Options{Allow: allowLoopback, IdleTimeout: time.Minute})
		// The context is a guard ten times the 1 s drain bound: Open must
		// return on its own, long before the guard would end it.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := c.Open(ctx, fetch.Request{URL: srv.URL + "/x"})
		guardHit := ctx.Err() != nil
		cancel()
		if guardHit {
			t.Fatalf("status %d: Open returned only when its context ended (%v)", status, err)
		}
		var fe *fetch.Error
		if !errors.As(err, &fe) || fe.Status != status {
			t.Fatalf("status %d: Open = %v, want the origin's %d as a fetch error", status, err, status)
		}
	}
	releaseAtCleanup(t, release)
}
