package graph_test

import (
	"net/http"
	"testing"
)

// Cases found by black-box testing of a running server.

func TestExpandChildrenWithSelect(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	e.put("/d/a.txt", "a")
	e.put("/d/b.txt", "bb")
	for _, q := range []string{"$expand=children($select=id,name)", "expand=children(select=id,name)"} {
		got := e.do("GET", "/v1.0/me/drive/root:/d?"+q, nil).must(t, http.StatusOK).json(t)
		kids, _ := got["children"].([]any)
		if len(kids) != 2 {
			t.Fatalf("%s: %d children, want 2: %v", q, len(kids), got)
		}
		for _, k := range kids {
			m := k.(map[string]any)
			if len(m) != 2 || m["id"] == nil || m["name"] == nil {
				t.Errorf("%s: child %v, want only id and name", q, m)
			}
		}
		if got["eTag"] == nil {
			t.Errorf("%s: the parent lost its own fields: %v", q, got)
		}
	}
}

func TestIfMatchStarNeedsAnExistingFile(t *testing.T) {
	e := newEnv(t)
	star := header("If-Match", "*")
	e.do("PUT", "/v1.0/me/drive/root:/nothere.txt:/content", "x", star).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	e.do("GET", "/v1.0/me/drive/root:/nothere.txt", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("POST", "/v1.0/me/drive/root:/nothere.txt:/createUploadSession", nil, star).wantError(t, http.StatusPreconditionFailed, "resourceModified")

	e.put("/there.txt", "old")
	e.do("PUT", "/v1.0/me/drive/root:/there.txt:/content", "new", star).must(t, http.StatusOK)
	e.do("POST", "/v1.0/me/drive/root:/there.txt:/createUploadSession", nil, star).must(t, http.StatusOK)
}

func TestLoneSurrogateNameRefused(t *testing.T) {
	e := newEnv(t)
	it := e.put("/f.txt", "x")
	e.do("PATCH", "/v1.0/me/drive/items/"+it["id"].(string), `{"name":"\ud800"}`,
		header("Content-Type", "application/json")).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("POST", "/v1.0/me/drive/root/children", `{"name":"a\udc00b","folder":{}}`,
		header("Content-Type", "application/json")).wantError(t, http.StatusBadRequest, "invalidRequest")
	if got := e.do("GET", "/v1.0/me/drive/items/"+it["id"].(string), nil).must(t, http.StatusOK).json(t)["name"]; got != "f.txt" {
		t.Errorf("name after refused renames = %v, want f.txt", got)
	}
}
