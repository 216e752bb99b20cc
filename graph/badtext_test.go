package graph_test

import (
	"encoding/base64"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/ferrydrive/ferry/ferrytest"
)

// TestBadTextInRequests sends IDs and names that are not UTF-8 or hold
// control characters, with and without a token. They must be refused
// before a store sees them (PostgreSQL answers such text with an error,
// SQLSTATE 22021): a missing item, drive, session or monitor for an ID
// (404), a malformed request for a path name (400), never a 500. It runs on
// SQLite, and on PostgreSQL when FERRY_TEST_POSTGRES is set.
func TestBadTextInRequests(t *testing.T) {
	for _, db := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"SQLite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "ferry.db") }},
		{"Postgres", func(t *testing.T) string { return ferrytest.PostgresDSN(t) }},
	} {
		t.Run(db.name, func(t *testing.T) {
			e := newEnvOn(t, db.dsn(t))
			f := e.put("/f.txt", "x")
			id := f["id"].(string)
			for _, tt := range []struct {
				method, path string
				body         any
				opts         []reqOpt
				status       int
				code         string
				inner        string
			}{
				{"GET", "/upload/%FF", nil, []reqOpt{noAuth()}, 404, "itemNotFound", "uploadSessionNotFound"},
				{"GET", "/upload/up_%00", nil, []reqOpt{noAuth()}, 404, "itemNotFound", "uploadSessionNotFound"},
				{"PUT", "/upload/%FF", "abc", []reqOpt{noAuth(), header("Content-Range", "bytes 0-2/3")}, 404, "itemNotFound", "uploadSessionNotFound"},
				{"POST", "/upload/%FF", nil, []reqOpt{noAuth()}, 404, "itemNotFound", "uploadSessionNotFound"},
				{"DELETE", "/upload/%C3", nil, []reqOpt{noAuth()}, 404, "itemNotFound", "uploadSessionNotFound"},
				{"GET", "/monitor/%FF", nil, []reqOpt{noAuth()}, 404, "itemNotFound", ""},
				{"DELETE", "/monitor/mon_%00", nil, []reqOpt{noAuth()}, 404, "itemNotFound", ""},
				{"GET", "/v1.0/me/drive/items/%00", nil, nil, 404, "itemNotFound", ""},
				{"GET", "/v1.0/me/drive/items/%FF", nil, nil, 404, "itemNotFound", ""},
				{"GET", "/v1.0/me/drive/items/%FF/children", nil, nil, 404, "itemNotFound", ""},
				{"GET", "/v1.0/me/drive/items/%FF:/a.txt:", nil, nil, 404, "itemNotFound", ""},
				{"DELETE", "/v1.0/me/drive/items/A%07B", nil, nil, 404, "itemNotFound", ""},
				{"GET", "/v1.0/drives/%FF", nil, nil, 404, "itemNotFound", ""},
				{"GET", "/v1.0/drives/d%00/root", nil, nil, 404, "itemNotFound", ""},
				{"GET", "/v1.0/me/drive/root:/a%00b", nil, nil, 400, "invalidRequest", "invalidPath"},
				{"GET", "/v1.0/me/drive/root:/%FF", nil, nil, 400, "invalidRequest", "invalidPath"},
				{"GET", "/v1.0/me/drive/root:/caf%E9:/children", nil, nil, 400, "invalidRequest", "invalidPath"},
				{"PUT", "/v1.0/me/drive/root:/a%FF.txt:/content", "x", nil, 400, "invalidRequest", "invalidPath"},
				{"POST", "/v1.0/me/drive/root:/a%0A.bin:/createUploadSession", nil, nil, 400, "invalidRequest", "invalidPath"},
				{"PATCH", "/v1.0/me/drive/items/" + id, map[string]any{"parentReference": map[string]any{"id": "A\x00"}}, nil, 404, "itemNotFound", ""},
				{"PATCH", "/v1.0/me/drive/items/" + id, map[string]any{"parentReference": map[string]any{"path": "/drive/root:/a%00"}}, nil, 400, "invalidRequest", "invalidPath"},
				{"POST", "/v1.0/me/drive/items/" + id + "/copy", map[string]any{"parentReference": map[string]any{"id": "\x01"}}, nil, 404, "itemNotFound", ""},
				{"POST", "/v1.0/me/drive/items/" + id + "/copy", map[string]any{"parentReference": map[string]any{"path": "/drive/root:/%FF"}}, nil, 400, "invalidRequest", "invalidPath"},
			} {
				t.Run(tt.method+" "+tt.path, func(t *testing.T) {
					r := e.do(tt.method, tt.path, tt.body, tt.opts...)
					r.wantError(t, tt.status, tt.code)
					if tt.inner != "" {
						wantInner(t, r, tt.inner)
					}
				})
			}
			// Text the API passes on as it is, inside a paging token or a
			// body, is the store's to refuse: 400 or an answer, never 500.
			forged := base64.RawURLEncoding.EncodeToString([]byte("1|name|a|" +
				base64.RawURLEncoding.EncodeToString([]byte("na\xff\x00X\xfe"))))
			for _, tt := range []struct {
				method, path string
				body         any
			}{
				{"GET", "/v1.0/me/drive/root/children?$skiptoken=" + forged, nil},
				{"PATCH", "/v1.0/me/drive/items/" + id, map[string]any{"description": "a\x00b"}},
				{"POST", "/v1.0/me/drive/root/children", map[string]any{"name": "d", "folder": map[string]any{}, "description": "\x00"}},
			} {
				r := e.do(tt.method, tt.path, tt.body)
				if r.StatusCode >= 300 {
					r.wantError(t, http.StatusBadRequest, "invalidRequest")
				}
			}
		})
	}
}
