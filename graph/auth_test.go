package graph_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestHealthzNeedsNoToken(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/healthz", nil, noAuth()).must(t, http.StatusOK)
}

func TestMissingAndBadTokens(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1.0/me/drive", nil, noAuth())
	r.wantError(t, http.StatusUnauthorized, "unauthenticated")
	if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("missing token: WWW-Authenticate = %q, want Bearer", got)
	}
	for _, h := range []string{"Bearer fy_nope", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer "} {
		r := e.do("GET", "/v1.0/me/drive/root", nil, header("Authorization", h))
		r.wantError(t, http.StatusUnauthorized, "unauthenticated")
		if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("%q: WWW-Authenticate = %q", h, got)
		}
	}
	r = e.do("GET", "/v1.0/me/drive", nil, header("Authorization", "Bearer fy_wrong"))
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
		t.Errorf("bad token: WWW-Authenticate = %q", got)
	}
	// The scheme is case-insensitive.
	e.do("GET", "/v1.0/me/drive", nil, header("Authorization", "bearer "+e.token)).must(t, http.StatusOK)
	e.do("GET", "/v1.0/me/drive", nil, header("Authorization", "BEARER "+e.token)).must(t, http.StatusOK)
}

func TestReadOnlyToken(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "docs")
	f := e.put("/docs/a.txt", "hello")
	id := f["id"].(string)
	ro := bearer(e.ro)
	e.do("GET", "/v1.0/me/drive/root/children", nil, ro).must(t, http.StatusOK)
	e.do("GET", "/v1.0/me/drive/items/"+id, nil, ro).must(t, http.StatusOK)
	e.do("GET", "/v1.0/me/drive/items/"+id+"/content", nil, ro).must(t, http.StatusFound)
	e.do("HEAD", "/v1.0/me/drive/items/"+id, nil, ro).must(t, http.StatusOK)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1.0/me/drive/root/children", map[string]any{"name": "x", "folder": map[string]any{}}},
		{"POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "https://example.org/a"}},
		{"PUT", "/v1.0/me/drive/root:/docs/b.txt:/content", "x"},
		{"PUT", "/v1.0/me/drive/items/" + id + "/content", "x"},
		{"PATCH", "/v1.0/me/drive/items/" + id, map[string]any{"name": "c.txt"}},
		{"DELETE", "/v1.0/me/drive/items/" + id, nil},
	} {
		e.do(c.method, c.path, c.body, ro, header("Prefer", "respond-async")).wantError(t, http.StatusForbidden, "accessDenied")
	}
	// Nothing changed.
	e.do("GET", "/v1.0/me/drive/root:/docs/a.txt", nil).must(t, http.StatusOK)
	e.do("GET", "/v1.0/me/drive/root:/docs/b.txt", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	if n := e.jobs.count(); n != 0 {
		t.Errorf("%d jobs enqueued by a read-only token", n)
	}
}

func TestOtherUsersDriveIsInvisible(t *testing.T) {
	e := newEnv(t)
	f := e.put("/secret.txt", "mine")
	id := f["id"].(string)
	other := bearer(e.other)
	for _, p := range []string{
		"/v1.0/drives/" + string(e.drive.ID),
		"/v1.0/drives/" + string(e.drive.ID) + "/root",
		"/v1.0/drives/" + string(e.drive.ID) + "/items/" + id,
		"/v1.0/me/drive/items/" + id,
		"/v1.0/me/drive/items/" + id + "/content",
		"/v1.0/drive/items/" + string(e.drive.RootID) + "/children",
		"/v1.0/me/drive/items/" + string(e.drive.RootID) + ":/secret.txt",
		"/v1.0/drives/NOSUCHDRIVE",
	} {
		e.do("GET", p, nil, other).wantError(t, http.StatusNotFound, "itemNotFound")
	}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"DELETE", "/v1.0/me/drive/items/" + id, nil},
		{"PATCH", "/v1.0/me/drive/items/" + id, map[string]any{"name": "stolen.txt"}},
		{"PUT", "/v1.0/me/drive/items/" + id + "/content", "overwritten"},
		{"PUT", "/v1.0/me/drive/items/" + string(e.drive.RootID) + ":/planted.txt:/content", "x"},
		{"POST", "/v1.0/me/drive/items/" + string(e.drive.RootID) + "/children", map[string]any{"name": "x", "folder": map[string]any{}}},
	} {
		e.do(c.method, c.path, c.body, other).wantError(t, http.StatusNotFound, "itemNotFound")
	}
	// Moving one's own item into someone else's folder is refused as well.
	mine := e.do("PUT", "/v1.0/me/drive/root:/o.txt:/content", "o", other).must(t, http.StatusCreated).json(t)
	e.do("PATCH", "/v1.0/me/drive/items/"+mine["id"].(string),
		map[string]any{"parentReference": map[string]any{"id": string(e.drive.RootID)}}, other).
		wantError(t, http.StatusNotFound, "itemNotFound")
	// The owner still sees the file untouched.
	r := e.do("GET", "/v1.0/me/drive/root:/secret.txt", nil).must(t, http.StatusOK).json(t)
	if r["size"].(float64) != 4 {
		t.Errorf("size = %v, want 4", r["size"])
	}
	e.do("GET", "/v1.0/me/drive/root:/planted.txt", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}

// TestHealthzReportsDatabase: /healthz needs no token and reports 503,
// Graph-shaped with a whole-second Retry-After, once the database is gone.
func TestHealthzReportsDatabase(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/healthz", nil, noAuth()).must(t, http.StatusOK)
	e.store.Close()
	r := e.do("GET", "/healthz", nil, noAuth())
	r.wantError(t, http.StatusServiceUnavailable, "serviceNotAvailable")
	if got := r.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
}
