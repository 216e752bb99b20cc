package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry/web"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	for _, tt := range []struct {
		method, path string
		status       int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<label for="token">Token</label>`},
		{"GET", "/favicon.ico", 200, "image/svg+xml", "<svg"},
		{"GET", "/web/app.js", 200, "text/javascript; charset=utf-8", "text/event-stream"},
		{"GET", "/web/app.css", 200, "text/css; charset=utf-8", "@media"},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/web/nope.js", 404, "", ""},
		{"GET", "/index.html", 404, "", ""},
		{"POST", "/", 404, "", ""},
	} {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 200 {
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not hold %q", tt.contains)
			}
			if resp.Header.Get("ETag") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v: want an ETag and nosniff", resp.Header)
			}
			if tt.path == "/" && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("the page has no same-origin policy: %q", resp.Header.Get("Content-Security-Policy"))
			}
		})
	}
	// A revalidation with the ETag costs no body.
	resp, _ := http.Get(srv.URL + "/web/app.js")
	resp.Body.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/web/app.js", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation answered %d, want 304", again.StatusCode)
	}
}
