package graph_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry/graph"
)

func TestBadRequestBodies(t *testing.T) {
	e := newEnv(t)
	post := "/v1.0/me/drive/root/children"
	for _, tt := range []struct {
		name   string
		body   any
		opts   []reqOpt
		status int
		code   string
	}{
		{"malformed JSON", `{"name": "x", "folder": {}`, nil, 400, "invalidRequest"},
		{"not an object", `["x"]`, nil, 400, "invalidRequest"},
		{"a string", `"x"`, nil, 400, "invalidRequest"},
		{"trailing garbage", `{"name":"x","folder":{}} {}`, nil, 400, "invalidRequest"},
		{"empty body", "", nil, 400, "invalidRequest"},
		{"whitespace body", "  \n ", nil, 400, "invalidRequest"},
		{"name of the wrong type", `{"name": 12, "folder": {}}`, nil, 400, "invalidRequest"},
		{"folder of the wrong type", `{"name": "x", "folder": "yes"}`, nil, 400, "invalidRequest"},
		{"huge body", `{"name":"x","folder":{},"pad":"` + strings.Repeat("a", 2<<20) + `"}`, nil, 413, "invalidRequest"},
		{"bad gzip JSON", "not gzip", []reqOpt{header("Content-Encoding", "gzip")}, 400, "invalidRequest"},
		{"null", `null`, nil, 400, "invalidRequest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", post, tt.body, tt.opts...).wantError(t, tt.status, tt.code)
		})
	}
	// Unknown fields are fine; gzip JSON is decoded.
	e.do("POST", post, `{"name":"u","folder":{"childCount":3},"color":"blue","@odata.type":"#microsoft.graph.driveItem"}`).must(t, http.StatusCreated)
	e.do("POST", post, gzipped(t, `{"name":"gz","folder":{}}`), header("Content-Encoding", "gzip")).must(t, http.StatusCreated)
	// A wrong type names the field.
	r := e.do("POST", post, `{"name": 12, "folder": {}}`)
	if msg := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, `"name"`) {
		t.Errorf("message %q does not name the field", msg)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/", "/v1.0", "/v1.0/me", "/v3.0/me/drive", "/v1.0/me/drive/bogus", "/v1.0/me/drive/items", "/v1.0/me/drive/root/children/x"} {
		e.do("GET", p, nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	}
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/v1.0/me/drive"},
		{"POST", "/v1.0/me/drive/root"},
		{"PUT", "/v1.0/me/drive/root/children"},
		{"POST", "/v1.0/me/drive/root/content"},
		{"PATCH", "/v1.0/me/drive/root/content"},
	} {
		r := e.do(c.method, c.path, "{}")
		r.wantError(t, http.StatusMethodNotAllowed, "notAllowed")
		if r.Header.Get("Allow") == "" {
			t.Errorf("%s %s: no Allow header", c.method, c.path)
		}
	}
	for _, p := range []string{"/v1.0/me/drive/root:/a/../../b", "/v1.0/me/drive//root", "/v1.0/me/drive/root:/a/./b"} {
		r := e.do("GET", p, nil)
		r.wantError(t, http.StatusBadRequest, "invalidRequest")
	}
	golden(t, "error", e.do("GET", "/v1.0/me/drive/items/NOPE", nil).body)
}

func TestPanicsBecomeGraph500(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t)
	e.jobs.panicky = true
	h := graph.NewHandler(graph.Config{SigningKey: []byte("k")}, graph.Deps{
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Accounts: e.store, Items: e.store, Blobs: e.blobs, Jobs: e.jobs,
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	r := e.do("POST", srv.URL+"/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "https://example.org/x"}, async)
	r.wantError(t, http.StatusInternalServerError, "generalException")
	if strings.Contains(string(r.body), "exploded") {
		t.Errorf("the panic reached the client: %s", r.body)
	}
	if msg := r.json(t)["error"].(map[string]any)["message"]; msg != "An internal error occurred." {
		t.Errorf("message = %v", msg)
	}
	if !strings.Contains(logs.String(), "exploded") {
		t.Errorf("the panic was not logged: %s", logs.String())
	}
}

func TestAbsoluteURLs(t *testing.T) {
	src := map[string]any{"@microsoft.graph.sourceUrl": "https://example.org/x"}
	t.Run("public URL", func(t *testing.T) {
		pub, _ := url.Parse("https://files.example.com/ferry/")
		e := newEnv(t, func(c *graph.Config) { c.PublicURL = pub })
		r := e.do("POST", "/v1.0/me/drive/root/children", src, async, header("X-Forwarded-Host", "evil.example")).must(t, http.StatusAccepted)
		if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "https://files.example.com/ferry/monitor/") {
			t.Errorf("Location = %q", loc)
		}
		f := e.put("/a.txt", "a")
		if u := f["@microsoft.graph.downloadUrl"].(string); !strings.HasPrefix(u, "https://files.example.com/ferry/download/") {
			t.Errorf("downloadUrl = %q", u)
		}
	})
	t.Run("untrusted forwarded headers", func(t *testing.T) {
		e := newEnv(t)
		r := e.do("POST", "/v1.0/me/drive/root/children", src, async,
			header("X-Forwarded-Host", "evil.example"), header("X-Forwarded-Proto", "https")).must(t, http.StatusAccepted)
		if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, e.srv.URL+"/monitor/") {
			t.Errorf("Location = %q, want it on %s", loc, e.srv.URL)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		e := newEnv(t, func(c *graph.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
		r := e.do("POST", "/v1.0/me/drive/root/children", src, async,
			header("X-Forwarded-Host", "drive.example.com"), header("X-Forwarded-Proto", "https")).must(t, http.StatusAccepted)
		if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "https://drive.example.com/monitor/") {
			t.Errorf("Location = %q", loc)
		}
		e.mkdir("", "d")
		e.fill(mustID(t, e, "/d"), 3)
		page := e.do("GET", "/v1.0/me/drive/root:/d:/children?$top=1", nil,
			header("X-Forwarded-Host", "drive.example.com"), header("X-Forwarded-Proto", "https")).must(t, http.StatusOK).json(t)
		if nl, _ := page["@odata.nextLink"].(string); !strings.HasPrefix(nl, "https://drive.example.com/v1.0/me/drive/root:/d:/children?") {
			t.Errorf("nextLink = %q", nl)
		}
	})
}
