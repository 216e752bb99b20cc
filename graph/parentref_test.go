package graph_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/ferrydrive/ferry"
)

// TestParentReference moves (PATCH) and copies an item to the folder a
// parentReference names, in each form OneDrive writes. A drive other than
// the caller's, by driveId or in the path, is 404 for both: another
// user's drive is invisible, even where the caller has a folder of the
// same path.
func TestParentReference(t *testing.T) {
	e := newEnv(t)
	a := ferry.ItemID(e.mkdir("", "a")["id"].(string))
	x := ferry.ItemID(e.mkdir("", "x")["id"].(string))
	f := e.put("/f.txt", "f")["id"].(string)
	e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"name": "x", "folder": map[string]any{}}, bearer(e.other)).
		must(t, http.StatusCreated)
	mine, theirs := string(e.drive.ID), string(e.odrive.ID)
	root := e.drive.RootID

	for _, tt := range []struct {
		name   string
		ref    map[string]any
		status int
		code   string
		want   ferry.ItemID // the destination folder, for 2xx answers
	}{
		{"drive prefix", map[string]any{"path": "/drive/root:/a"}, 200, "", a},
		{"me prefix", map[string]any{"path": "/me/drive/root:/x"}, 200, "", x},
		{"own drive id", map[string]any{"path": "/drives/" + mine + "/root:/a"}, 200, "", a},
		{"own drive id, escaped", map[string]any{"path": "/drives/" + url.PathEscape(mine) + "/root:/x/"}, 200, "", x},
		{"own driveId and path", map[string]any{"driveId": mine, "path": "/drive/root:/a"}, 200, "", a},
		{"the root", map[string]any{"path": "/drive/root:"}, 200, "", root},
		{"the root, slash", map[string]any{"path": "/drive/root:/"}, 200, "", root},
		{"the root, own drive id", map[string]any{"path": "/drives/" + mine + "/root:"}, 200, "", root},
		{"trailing slash", map[string]any{"path": "/drive/root:/a/"}, 200, "", a},
		{"other drive in the path", map[string]any{"path": "/drives/" + theirs + "/root:/x"}, 404, "itemNotFound", ""},
		{"other drive's root", map[string]any{"path": "/drives/" + theirs + "/root:"}, 404, "itemNotFound", ""},
		{"unknown drive in the path", map[string]any{"path": "/drives/NOSUCHDRIVE/root:/x"}, 404, "itemNotFound", ""},
		{"other driveId with an id", map[string]any{"driveId": theirs, "id": "root"}, 404, "itemNotFound", ""},
		{"other driveId with a path", map[string]any{"driveId": theirs, "path": "/drive/root:/x"}, 404, "itemNotFound", ""},
		{"other driveId alone", map[string]any{"driveId": theirs}, 404, "itemNotFound", ""},
		{"no prefix", map[string]any{"path": "root:/a"}, 400, "invalidRequest", ""},
		{"unknown prefix", map[string]any{"path": "/sites/s/drive/root:/a"}, 400, "invalidRequest", ""},
		{"drives without an id", map[string]any{"path": "/drives/root:/a"}, 400, "invalidRequest", ""},
		{"drives without root", map[string]any{"path": "/drives/" + mine + "/items/" + string(a)}, 400, "invalidRequest", ""},
		{"no colon", map[string]any{"path": "/drive/root/a"}, 400, "invalidRequest", ""},
		{"missing folder", map[string]any{"path": "/drive/root:/nope"}, 404, "itemNotFound", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			moved := e.do("PATCH", "/v1.0/me/drive/items/"+f, map[string]any{"parentReference": tt.ref})
			copied := e.do("POST", "/v1.0/me/drive/items/"+f+"/copy", map[string]any{"parentReference": tt.ref, "name": "copy.txt"})
			if tt.status >= 300 {
				moved.wantError(t, tt.status, tt.code)
				copied.wantError(t, tt.status, tt.code)
				return
			}
			got := moved.must(t, http.StatusOK).json(t)["parentReference"].(map[string]any)["id"]
			if got != string(tt.want) {
				t.Errorf("PATCH moved into %v, want %s", got, tt.want)
			}
			copied.must(t, http.StatusAccepted)
			if j := e.jobs.last(t); j.ParentID != tt.want || j.DriveID != e.drive.ID {
				t.Errorf("copy job into %s of drive %s, want %s of %s", j.ParentID, j.DriveID, tt.want, e.drive.ID)
			}
		})
	}
}
