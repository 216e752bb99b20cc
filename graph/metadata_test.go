package graph_test

import (
	"net/http"
	"strings"
	"testing"
)

// fsInfo returns an item's fileSystemInfo times. It also checks the item's
// own createdDateTime against fileSystemInfo's, which OneDrive for
// Business keeps equal (rclone's Business metadata tests read the item's
// as the upload time "utime" and compare it with the birth time "btime").
func fsInfo(t *testing.T, it map[string]any) (created, modified any) {
	t.Helper()
	f, ok := it["fileSystemInfo"].(map[string]any)
	if !ok {
		t.Fatalf("no fileSystemInfo in %v", it)
	}
	if it["createdDateTime"] != f["createdDateTime"] {
		t.Errorf("item %v: createdDateTime %v, fileSystemInfo.createdDateTime %v; want them equal", it["name"], it["createdDateTime"], f["createdDateTime"])
	}
	return f["createdDateTime"], f["lastModifiedDateTime"]
}

// TestMetadataAsRcloneSetsIt follows rclone's onedrive backend: a small
// file is PUT, then its modification and birth times are PATCHed; a move
// PATCHes name, parentReference and fileSystemInfo together; large files
// carry item.fileSystemInfo in createUploadSession. What was set is what
// every read gives back, to the millisecond.
func TestMetadataAsRcloneSetsIt(t *testing.T) {
	e := newEnv(t)
	dest := e.mkdir("", "dest")
	put := e.put("/small.txt", "hello")
	id := put["id"].(string)
	fsInfo(t, put) // no times set: both are the server's creation time
	fsInfo(t, dest)
	const btime, mtime = "2001-02-03T04:05:06.007Z", "2020-05-06T07:08:09.123Z"
	r := e.do("PATCH", "/v1.0/me/drive/root:/small.txt", map[string]any{
		"fileSystemInfo": map[string]any{"createdDateTime": btime, "lastModifiedDateTime": "2020-05-06T07:08:09.123456789Z"},
	}).must(t, http.StatusOK).json(t)
	if c, m := fsInfo(t, r); c != btime || m != mtime {
		t.Errorf("PATCH answered fileSystemInfo %v, %v; want %s, %s", c, m, btime, mtime)
	}
	for _, p := range []string{"/v1.0/me/drive/items/" + id, "/v1.0/me/drive/root:/small.txt"} {
		if c, m := fsInfo(t, e.do("GET", p, nil).must(t, http.StatusOK).json(t)); c != btime || m != mtime {
			t.Errorf("GET %s: fileSystemInfo %v, %v; want %s, %s", p, c, m, btime, mtime)
		}
	}
	kids := e.do("GET", "/v1.0/me/drive/root/children", nil).must(t, http.StatusOK).json(t)["value"].([]any)
	for _, k := range kids {
		if k := k.(map[string]any); k["id"] == id {
			if c, m := fsInfo(t, k); c != btime || m != mtime {
				t.Errorf("children: fileSystemInfo %v, %v", c, m)
			}
		}
	}
	entries, _ := e.follow(t, "/v1.0/me/drive/root/delta")
	for _, en := range entries {
		if en["id"] == id {
			if c, m := fsInfo(t, en); c != btime || m != mtime {
				t.Errorf("delta: fileSystemInfo %v, %v", c, m)
			}
		}
	}

	// rclone's Move: one PATCH with the new name, parent and times.
	const mtime2 = "2019-01-01T00:00:00Z"
	r = e.do("PATCH", "/v1.0/me/drive/items/"+id, map[string]any{
		"name":            "moved.txt",
		"parentReference": map[string]any{"driveId": string(e.drive.ID), "id": dest["id"]},
		"fileSystemInfo":  map[string]any{"createdDateTime": btime, "lastModifiedDateTime": mtime2},
	}).must(t, http.StatusOK).json(t)
	if c, m := fsInfo(t, r); r["name"] != "moved.txt" || c != btime || m != mtime2 ||
		r["parentReference"].(map[string]any)["id"] != dest["id"] {
		t.Errorf("move answered %v", r)
	}

	// New bytes without times: the modification time becomes now, the
	// birth time stays (Graph's rule; rclone PATCHes again after).
	r = e.do("PUT", "/v1.0/me/drive/items/"+id+"/content", "new bytes").must(t, http.StatusOK).json(t)
	if c, m := fsInfo(t, r); c != btime || m == mtime2 {
		t.Errorf("after new content: fileSystemInfo %v, %v; want birth %s kept and a new modification time", c, m, btime)
	}

	// createUploadSession with both times and a description.
	up := e.do("POST", "/v1.0/me/drive/root:/large.bin:/createUploadSession", map[string]any{
		"item": map[string]any{"fileSystemInfo": map[string]any{"createdDateTime": btime, "lastModifiedDateTime": mtime},
			"description": "about it"},
	}).must(t, http.StatusOK).json(t)["uploadUrl"].(string)
	it := e.fragment(up, []byte("0123456789"), 0, 10).must(t, http.StatusCreated).json(t)
	if c, m := fsInfo(t, it); c != btime || m != mtime || it["description"] != "about it" {
		t.Errorf("session upload: %v", it)
	}

	// A folder made with times, then given a new birth time (rclone's
	// MkdirMetadata on a new and on an existing folder): the item's
	// createdDateTime follows, as on OneDrive for Business.
	const btime2 = "1994-12-24T21:00:00Z"
	dir := e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"name": "meta", "folder": map[string]any{},
		"fileSystemInfo": map[string]any{"createdDateTime": btime, "lastModifiedDateTime": mtime}}).
		must(t, http.StatusCreated).json(t)
	if c, m := fsInfo(t, dir); c != btime || m != mtime || dir["createdDateTime"] != btime {
		t.Errorf("new folder: %v", dir)
	}
	dir = e.do("PATCH", "/v1.0/me/drive/items/"+dir["id"].(string), map[string]any{
		"fileSystemInfo": map[string]any{"createdDateTime": btime2}}).must(t, http.StatusOK).json(t)
	if c, m := fsInfo(t, dir); c != btime2 || m != mtime || dir["createdDateTime"] != btime2 {
		t.Errorf("folder after a new birth time: %v", dir)
	}
	fsInfo(t, e.do("GET", "/v1.0/me/drive/root:/meta", nil).must(t, http.StatusOK).json(t))

	// Descriptions: up to 1024 characters, as OneDrive Personal.
	long := strings.Repeat("é", 1024)
	r = e.do("PATCH", "/v1.0/me/drive/items/"+id, map[string]any{"description": long}).must(t, http.StatusOK).json(t)
	if r["description"] != long {
		t.Errorf("a 1024-character description did not come back")
	}
	tooLong := long + "x"
	e.do("PATCH", "/v1.0/me/drive/items/"+id, map[string]any{"description": tooLong}).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"name": "d", "folder": map[string]any{}, "description": tooLong}).
		wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("POST", "/v1.0/me/drive/root:/x.bin:/createUploadSession", map[string]any{"item": map[string]any{"description": tooLong}}).
		wantError(t, http.StatusBadRequest, "invalidRequest")
	// Clearing a description.
	r = e.do("PATCH", "/v1.0/me/drive/items/"+id, map[string]any{"description": ""}).must(t, http.StatusOK).json(t)
	if _, ok := r["description"]; ok {
		t.Errorf("an empty description still shows: %v", r["description"])
	}
}
