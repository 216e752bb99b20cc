package graph_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGetDrive(t *testing.T) {
	e := newEnv(t)
	e.put("/a.bin", strings.Repeat("x", 1000))
	for _, p := range []string{
		"/v1.0/me/drive", "/v1.0/drive", "/v1.0/drives/" + string(e.drive.ID),
		"/v2.0/me/drive", "/v2.0/drive", "/v2.0/drives/" + string(e.drive.ID),
	} {
		d := e.do("GET", p, nil).must(t, http.StatusOK).json(t)
		if d["id"] != string(e.drive.ID) {
			t.Errorf("%s: id = %v, want %s", p, d["id"], e.drive.ID)
		}
		q := d["quota"].(map[string]any)
		if q["used"].(float64) != 1000 || q["total"].(float64) != 1<<30 || q["remaining"].(float64) != 1<<30-1000 {
			t.Errorf("%s: quota = %v", p, q)
		}
	}
	golden(t, "drive", e.do("GET", "/v1.0/me/drive", nil).body)
	e.do("POST", "/v1.0/me/drive", map[string]any{}).wantError(t, http.StatusMethodNotAllowed, "notAllowed")
}

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$`)

// checkTimes walks a driveItem and checks every timestamp's format.
func checkTimes(t *testing.T, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if strings.HasSuffix(k, "DateTime") {
				s, ok := val.(string)
				if !ok || !timeRE.MatchString(s) {
					t.Errorf("%s = %#v, want UTC with Z and at most milliseconds", k, val)
				}
			}
			checkTimes(t, val)
		}
	case []any:
		for _, val := range x {
			checkTimes(t, val)
		}
	}
}

func TestRootAndItemJSON(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/v1.0/me/drive/root", "/v1.0/me/drive/items/root", "/v1.0/drive/root:", "/v1.0/drive/items/" + string(e.drive.RootID)} {
		r := e.do("GET", p, nil).must(t, http.StatusOK).json(t)
		if _, ok := r["root"]; !ok {
			t.Errorf("%s: no root facet: %v", p, r)
		}
		if r["id"] != string(e.drive.RootID) {
			t.Errorf("%s: id = %v", p, r["id"])
		}
		pr := r["parentReference"].(map[string]any)
		if _, ok := pr["id"]; ok {
			t.Errorf("%s: the root has parentReference.id", p)
		}
	}
	golden(t, "root", e.do("GET", "/v1.0/me/drive/root", nil).body)

	e.mkdir("", "My Docs")
	folder := e.mkdir("/My Docs", "Sub #1")
	checkTimes(t, folder)
	golden(t, "folder", e.do("GET", "/v1.0/me/drive/items/"+folder["id"].(string), nil).body)

	file := e.put("/My Docs/Sub #1/report 100%.txt", "hello world")
	checkTimes(t, file)
	pr := file["parentReference"].(map[string]any)
	if want := "/drive/root:/My%20Docs/Sub%20%231"; pr["path"] != want {
		t.Errorf("parentReference.path = %v, want %s", pr["path"], want)
	}
	if pr["id"] != folder["id"] || pr["driveId"] != string(e.drive.ID) || pr["driveType"] != "personal" {
		t.Errorf("parentReference = %v", pr)
	}
	h := file["file"].(map[string]any)["hashes"].(map[string]any)
	if want := "aCgDG9jwBhDc4Q1yawMZAAAAAAA="; h["quickXorHash"] != want {
		t.Errorf("quickXorHash = %v, want %s", h["quickXorHash"], want)
	}
	if want := "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9"; h["sha256Hash"] != want {
		t.Errorf("sha256Hash = %v, want %s", h["sha256Hash"], want)
	}
	if !strings.HasPrefix(file["@microsoft.graph.downloadUrl"].(string), e.srv.URL+"/download/") {
		t.Errorf("downloadUrl = %v", file["@microsoft.graph.downloadUrl"])
	}
	golden(t, "file", e.do("GET", "/v1.0/me/drive/items/"+file["id"].(string), nil).body)
	root := e.do("GET", "/v1.0/me/drive/root:/My%20Docs:", nil).must(t, http.StatusOK).json(t)
	if root["folder"].(map[string]any)["childCount"].(float64) != 1 {
		t.Errorf("childCount = %v, want 1", root["folder"])
	}
}

func TestItemAddressForms(t *testing.T) {
	e := newEnv(t)
	a := e.mkdir("", "a")
	b := e.mkdir("/a", "b c")
	f := e.put("/a/b c/f.txt", "data")
	aid, fid := a["id"].(string), f["id"].(string)
	for _, p := range []string{
		"/v1.0/me/drive/root:/a/b%20c/f.txt",
		"/v1.0/me/drive/root:/a/b%20c/f.txt:",
		"/v1.0/me/drive/root:/A/B%20C/F.TXT:", // names ignore case
		"/v1.0/me/drive/root%3A%2Fa%2Fb%20c%2Ff.txt%3A",
		"/v1.0/me/drive/items/" + aid + ":/b%20c/f.txt:",
		"/v1.0/me/drive/items/" + aid + "%3A%2Fb%20c%2Ff.txt",
		"/v1.0/me/drive/items/root:/a/b%20c/f.txt:",
		"/v1.0/drive/items/" + fid,
		"/v2.0/drives/" + string(e.drive.ID) + "/root:/a/b%20c/f.txt:",
		"/v2.0/drives/" + string(e.drive.ID) + "/items/" + fid,
	} {
		r := e.do("GET", p, nil).must(t, http.StatusOK).json(t)
		if r["id"] != fid {
			t.Errorf("%s: id = %v, want %s", p, r["id"], fid)
		}
	}
	for _, p := range []string{
		"/v1.0/me/drive/root:/a:/children",
		"/v1.0/me/drive/root%3A%2Fa%3A%2Fchildren",
		"/v1.0/me/drive/items/" + aid + "/children",
		"/v1.0/me/drive/items/root:/a:/children",
	} {
		r := e.do("GET", p, nil).must(t, http.StatusOK).json(t)
		if got := names(t, r); !cmp.Equal(got, []string{"b c"}) {
			t.Errorf("%s: children = %v", p, got)
		}
	}
	_ = b
	// PUT through the encoded forms.
	e.do("PUT", "/v1.0/me/drive/root%3A%2Fa%2Fg.txt%3A%2Fcontent", "g").must(t, http.StatusCreated)
	e.do("PUT", "/v1.0/me/drive/items/"+aid+"%3A%2Fh.txt%3A%2Fcontent", "h").must(t, http.StatusCreated)
	e.do("PUT", "/v1.0/me/drive/items/"+aid+":/i%23%25.txt:/content", "i").must(t, http.StatusCreated)
	got := names(t, e.do("GET", "/v1.0/me/drive/root:/a:/children", nil).must(t, http.StatusOK).json(t))
	if want := []string{"b c", "g.txt", "h.txt", "i#%.txt"}; !cmp.Equal(got, want) {
		t.Errorf("children = %v, want %v", got, want)
	}
	e.do("GET", "/v1.0/me/drive/root:/a/nope.txt", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("GET", "/v1.0/me/drive/items/NOPE", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("GET", "/v1.0/me/drive/root:/a/../a", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root:/a%2F..%2F..%2Fetc", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root/bogus", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
}

func TestGetItemOptions(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	f := e.put("/d/x.txt", "x")
	e.put("/d/y.txt", "y")
	id := f["id"].(string)

	sel := e.do("GET", "/v1.0/me/drive/items/"+id+"?$select=name,size,bogus", nil).must(t, http.StatusOK).json(t)
	if got := sortedKeys(sel); !cmp.Equal(got, []string{"id", "name", "size"}) {
		t.Errorf("$select keys = %v", got)
	}
	sel = e.do("GET", "/v1.0/me/drive/items/"+id+"?select=name", nil).must(t, http.StatusOK).json(t)
	if got := sortedKeys(sel); !cmp.Equal(got, []string{"id", "name"}) {
		t.Errorf("select (no $) keys = %v", got)
	}
	exp := e.do("GET", "/v1.0/me/drive/root:/d?$expand=children", nil).must(t, http.StatusOK).json(t)
	kids, _ := exp["children"].([]any)
	if len(kids) != 2 {
		t.Errorf("$expand=children gave %d children, want 2: %v", len(kids), exp)
	}

	r := e.do("GET", "/v1.0/me/drive/items/"+id, nil).must(t, http.StatusOK)
	etag := r.json(t)["eTag"].(string)
	if r.Header.Get("ETag") != etag {
		t.Errorf("ETag header %q, want %q", r.Header.Get("ETag"), etag)
	}
	e.do("GET", "/v1.0/me/drive/items/"+id, nil, header("If-None-Match", etag)).must(t, http.StatusNotModified)
	e.do("GET", "/v1.0/me/drive/items/"+id, nil, header("If-None-Match", `"{OTHER},1"`)).must(t, http.StatusOK)

	h := e.do("HEAD", "/v1.0/me/drive/items/"+id, nil).must(t, http.StatusOK)
	if len(h.body) != 0 || h.Header.Get("ETag") != etag {
		t.Errorf("HEAD: body %q, ETag %q", h.body, h.Header.Get("ETag"))
	}
	e.do("HEAD", "/v1.0/me/drive/items/NOPE", nil).must(t, http.StatusNotFound)
}

func TestCreateFolder(t *testing.T) {
	e := newEnv(t)
	created := e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"name": "Photos", "folder": map[string]any{},
		"description": "pics", "fileSystemInfo": map[string]any{"lastModifiedDateTime": "2020-01-02T03:04:05.678Z"}}).
		must(t, http.StatusCreated).json(t)
	if created["description"] != "pics" || created["fileSystemInfo"].(map[string]any)["lastModifiedDateTime"] != "2020-01-02T03:04:05.678Z" {
		t.Errorf("created = %v", created)
	}
	post := func(body map[string]any, query string) *resp {
		body["folder"] = map[string]any{}
		return e.do("POST", "/v1.0/me/drive/root/children"+query, body)
	}
	post(map[string]any{"name": "photos"}, "").wantError(t, http.StatusConflict, "nameAlreadyExists")
	post(map[string]any{"name": "Photos", "@microsoft.graph.conflictBehavior": "fail"}, "").wantError(t, http.StatusConflict, "nameAlreadyExists")
	r1 := post(map[string]any{"name": "Photos", "@microsoft.graph.conflictBehavior": "rename"}, "").must(t, http.StatusCreated).json(t)
	r2 := post(map[string]any{"name": "Photos", "@name.conflictBehavior": "rename"}, "").must(t, http.StatusCreated).json(t)
	r3 := post(map[string]any{"name": "Photos"}, "?@microsoft.graph.conflictBehavior=rename").must(t, http.StatusCreated).json(t)
	if r1["name"] != "Photos 1" || r2["name"] != "Photos 2" || r3["name"] != "Photos 3" {
		t.Errorf("renamed = %v, %v, %v", r1["name"], r2["name"], r3["name"])
	}
	rep := post(map[string]any{"name": "Photos", "@microsoft.graph.conflictBehavior": "replace"}, "").must(t, http.StatusCreated).json(t)
	if rep["id"] == created["id"] {
		t.Error("replace kept the old folder's id")
	}
	post(map[string]any{"name": "x", "@microsoft.graph.conflictBehavior": "overwrite"}, "").wantError(t, http.StatusBadRequest, "invalidRequest")
	for _, bad := range []string{"", "a/b", "a:b", "con?", "..", "trailing.", " lead", strings.Repeat("n", 256)} {
		post(map[string]any{"name": bad}, "").wantError(t, http.StatusBadRequest, "invalidRequest")
	}
	// Neither a folder facet nor a source URL.
	e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"name": "f.txt", "file": map[string]any{}}).
		wantError(t, http.StatusBadRequest, "invalidRequest")
	// Children of a file cannot be created.
	e.put("/f.txt", "x")
	e.do("POST", "/v1.0/me/drive/root:/f.txt:/children", map[string]any{"name": "x", "folder": map[string]any{}}).
		wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("POST", "/v1.0/me/drive/root:/missing:/children", map[string]any{"name": "x", "folder": map[string]any{}}).
		wantError(t, http.StatusNotFound, "itemNotFound")
}

func TestUpdateItem(t *testing.T) {
	e := newEnv(t)
	a := e.mkdir("", "a")
	b := e.mkdir("", "b")
	sub := e.mkdir("/a", "sub")
	f := e.put("/a/f.txt", "f")
	e.put("/b/taken.txt", "t")
	id := f["id"].(string)
	patch := func(path string, body map[string]any, opts ...reqOpt) *resp {
		return e.do("PATCH", path, body, opts...)
	}

	r := patch("/v1.0/me/drive/items/"+id, map[string]any{"name": "g.txt", "size": 999, "id": "ignored"}).must(t, http.StatusOK).json(t)
	if r["name"] != "g.txt" || r["id"] != id || r["size"].(float64) != 1 {
		t.Errorf("rename: %v", r)
	}
	// Move by id, with rclone's empty strings meaning absent.
	r = patch("/v1.0/me/drive/items/"+id, map[string]any{"parentReference": map[string]any{"id": b["id"], "path": "", "driveId": "", "driveType": ""}, "name": ""}).
		must(t, http.StatusOK).json(t)
	if pr := r["parentReference"].(map[string]any); pr["id"] != b["id"] || pr["path"] != "/drive/root:/b" || r["name"] != "g.txt" {
		t.Errorf("move by id: %v", r)
	}
	// Move by path, and into the root by the "root" alias.
	r = patch("/v1.0/me/drive/root:/b/g.txt:", map[string]any{"parentReference": map[string]any{"path": "/drive/root:/a/sub"}}).must(t, http.StatusOK).json(t)
	if r["parentReference"].(map[string]any)["id"] != sub["id"] {
		t.Errorf("move by path: %v", r)
	}
	r = patch("/v1.0/me/drive/items/"+id, map[string]any{"parentReference": map[string]any{"id": "root"}}).must(t, http.StatusOK).json(t)
	if r["parentReference"].(map[string]any)["path"] != "/drive/root:" {
		t.Errorf("move to root: %v", r)
	}
	// fileSystemInfo and description.
	r = patch("/v1.0/me/drive/items/"+id, map[string]any{"description": "about g",
		"fileSystemInfo": map[string]any{"createdDateTime": "2001-02-03T04:05:06Z", "lastModifiedDateTime": "2002-03-04T05:06:07.5+01:00"}}).
		must(t, http.StatusOK).json(t)
	fsi := r["fileSystemInfo"].(map[string]any)
	if r["description"] != "about g" || fsi["createdDateTime"] != "2001-02-03T04:05:06Z" || fsi["lastModifiedDateTime"] != "2002-03-04T04:06:07.5Z" {
		t.Errorf("fileSystemInfo: %v", r)
	}
	patch("/v1.0/me/drive/items/"+id, map[string]any{"fileSystemInfo": map[string]any{"lastModifiedDateTime": "yesterday"}}).
		wantError(t, http.StatusBadRequest, "invalidRequest")

	// If-Match.
	etag := r["eTag"].(string)
	patch("/v1.0/me/drive/items/"+id, map[string]any{"name": "h.txt"}, header("If-Match", `"{stale},1"`)).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	patch("/v1.0/me/drive/items/"+id, map[string]any{"name": "h.txt"}, header("If-Match", etag)).must(t, http.StatusOK)

	// Collisions.
	patch("/v1.0/me/drive/items/"+id, map[string]any{"name": "TAKEN.txt", "parentReference": map[string]any{"id": b["id"]}}).
		wantError(t, http.StatusConflict, "nameAlreadyExists")
	r = patch("/v1.0/me/drive/items/"+id+"?@microsoft.graph.conflictBehavior=rename", map[string]any{"name": "taken.txt", "parentReference": map[string]any{"id": b["id"]}}).
		must(t, http.StatusOK).json(t)
	if r["name"] != "taken 1.txt" {
		t.Errorf("rename on collision: name = %v", r["name"])
	}

	// Folder into itself or a descendant; into a file; bad names; other drives.
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"parentReference": map[string]any{"id": a["id"]}}).wantError(t, http.StatusBadRequest, "invalidRequest")
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"parentReference": map[string]any{"id": sub["id"]}}).wantError(t, http.StatusBadRequest, "invalidRequest")
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"parentReference": map[string]any{"path": "/drive/root:/b/taken.txt"}}).wantError(t, http.StatusBadRequest, "invalidRequest")
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"parentReference": map[string]any{"path": "/drive/root:/nope"}}).wantError(t, http.StatusNotFound, "itemNotFound")
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"parentReference": map[string]any{"path": "nowhere"}}).wantError(t, http.StatusBadRequest, "invalidRequest")
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"parentReference": map[string]any{"id": "root", "driveId": "ELSEWHERE"}}).wantError(t, http.StatusNotFound, "itemNotFound")
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"name": "bad|name"}).wantError(t, http.StatusBadRequest, "invalidRequest")
	patch("/v1.0/me/drive/items/"+a["id"].(string), map[string]any{"name": 5}).wantError(t, http.StatusBadRequest, "invalidRequest")
	patch("/v1.0/me/drive/items/NOPE", map[string]any{"name": "x"}).wantError(t, http.StatusNotFound, "itemNotFound")
}

func TestDeleteItem(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	e.mkdir("/d", "e")
	f := e.put("/d/e/f.txt", "f")
	e.do("DELETE", "/v1.0/me/drive/items/"+f["id"].(string), nil, header("If-Match", `"{stale},9"`)).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	r := e.do("DELETE", "/v1.0/me/drive/items/"+f["id"].(string), nil, header("If-Match", f["eTag"].(string)))
	r.must(t, http.StatusNoContent)
	if len(r.body) != 0 {
		t.Errorf("204 with body %q", r.body)
	}
	e.do("GET", "/v1.0/me/drive/items/"+f["id"].(string), nil).wantError(t, http.StatusNotFound, "itemNotFound")
	e.put("/d/e/g.txt", "g")
	e.do("DELETE", "/v1.0/me/drive/root:/d", nil).must(t, http.StatusNoContent)
	e.do("GET", "/v1.0/me/drive/root:/d/e/g.txt", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("DELETE", "/v1.0/me/drive/root:/d", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("DELETE", "/v1.0/me/drive/root", nil).wantError(t, http.StatusForbidden, "accessDenied")
	e.do("DELETE", "/v1.0/me/drive/items/"+string(e.drive.RootID), nil).wantError(t, http.StatusForbidden, "accessDenied")
	d := e.do("GET", "/v1.0/me/drive", nil).must(t, http.StatusOK).json(t)
	if used := d["quota"].(map[string]any)["used"].(float64); used != 0 {
		t.Errorf("quota.used = %v after deleting everything", used)
	}
	_ = time.Second
}
