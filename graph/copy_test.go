package graph_test

import (
	"github.com/google/go-cmp/cmp"
	"net/http"
	"testing"

	"github.com/ferrydrive/ferry"
)

func TestCopy(t *testing.T) {
	e := newEnv(t)
	src := e.mkdir("", "src")
	dst := e.mkdir("", "dst")
	f := e.put("/src/a.txt", "hello")
	srcID, dstID, fID := ferry.ItemID(src["id"].(string)), ferry.ItemID(dst["id"].(string)), ferry.ItemID(f["id"].(string))

	r := e.do("POST", "/v1.0/me/drive/items/"+string(fID)+"/copy", map[string]any{
		"parentReference": map[string]any{"driveId": string(e.drive.ID), "id": string(dstID)},
		"name":            "b.txt",
	}, header("Prefer", "respond-async")).must(t, http.StatusAccepted)
	if len(r.body) != 0 {
		t.Errorf("202 with a body: %q", r.body)
	}
	j := e.jobs.last(t)
	if loc := r.Header.Get("Location"); loc != e.srv.URL+"/monitor/"+j.ID {
		t.Errorf("Location = %q, want %q", loc, e.srv.URL+"/monitor/"+j.ID)
	}
	want := ferry.Job{
		ID: j.ID, Operation: ferry.OpCopy, UserID: e.me.ID, UserName: "me", DriveID: e.drive.ID,
		ParentID: dstID, Name: "b.txt", Conflict: ferry.ConflictFail, SourceItem: fID,
		Status: j.Status, Total: j.Total, Created: j.Created, Updated: j.Updated,
	}
	if diff := cmp.Diff(want, *j); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	if m := e.do("GET", r.Header.Get("Location"), nil, noAuth()).must(t, http.StatusAccepted).json(t); m["operation"] != "ItemCopy" {
		t.Errorf("monitor operation = %v, want ItemCopy", m["operation"])
	}

	for _, tt := range []struct {
		name     string
		path     string
		body     any
		parent   ferry.ItemID
		itemName string
		conflict ferry.ConflictBehavior
	}{
		// rclone's body: every field present, unused ones empty.
		{"rclone", "/v1.0/drives/" + string(e.drive.ID) + "/items/" + string(fID) + "/copy?@microsoft.graph.conflictBehavior=replace",
			map[string]any{"parentReference": map[string]any{"driveId": string(e.drive.ID), "id": string(dstID), "path": "", "driveType": ""}, "name": ""},
			dstID, "a.txt", ferry.ConflictReplace},
		{"by path, path destination", "/v2.0/me/drive/root:/src/a.txt:/copy",
			map[string]any{"parentReference": map[string]any{"path": "/drive/root:/dst"}}, dstID, "a.txt", ferry.ConflictFail},
		{"encoded address", "/v1.0/drive/root%3A%2Fsrc%2Fa.txt%3A%2Fcopy",
			map[string]any{"parentReference": map[string]any{"id": "root"}}, e.drive.RootID, "a.txt", ferry.ConflictFail},
		{"no body, rename beside", "/v1.0/me/drive/items/" + string(fID) + "/copy?@microsoft.graph.conflictBehavior=rename",
			nil, srcID, "a.txt", ferry.ConflictRename},
		{"empty body object", "/v1.0/me/drive/items/" + string(fID) + "/copy", map[string]any{"name": "c.txt"}, srcID, "c.txt", ferry.ConflictFail},
		{"folder", "/v1.0/me/drive/items/" + string(srcID) + "/copy", map[string]any{"parentReference": map[string]any{"id": string(dstID)}},
			dstID, "src", ferry.ConflictFail},
		{"legacy query spelling", "/v1.0/me/drive/items/" + string(fID) + "/copy?@name.conflictBehavior=replace",
			map[string]any{"parentReference": map[string]any{"id": string(dstID)}}, dstID, "a.txt", ferry.ConflictReplace},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", tt.path, tt.body).must(t, http.StatusAccepted)
			j := e.jobs.last(t)
			if j.Operation != ferry.OpCopy || j.ParentID != tt.parent || j.Name != tt.itemName || j.Conflict != tt.conflict || j.DriveID != e.drive.ID {
				t.Errorf("job = %+v, want parent %s, name %q, conflict %s", j, tt.parent, tt.itemName, tt.conflict)
			}
		})
	}
}

func TestCopyRefusals(t *testing.T) {
	e := newEnv(t)
	a := e.mkdir("", "a")
	e.mkdir("/a", "b")
	e.put("/a/b/f.txt", "x")
	e.put("/a/f.txt", "x")
	e.put("/file.txt", "x")
	aID := a["id"].(string)
	bID := string(mustID(t, e, "/a/b"))
	f := string(mustID(t, e, "/a/b/f.txt"))
	before := e.jobs.count()
	for _, tt := range []struct {
		name   string
		path   string
		body   any
		opts   []reqOpt
		status int
		code   string
	}{
		{"name taken (default fail)", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"parentReference": map[string]any{"id": aID}}, nil, 409, "nameAlreadyExists"},
		{"beside itself", "/v1.0/me/drive/items/" + f + "/copy", nil, nil, 409, "nameAlreadyExists"},
		{"other drive", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"parentReference": map[string]any{"driveId": string(e.odrive.ID), "id": string(e.odrive.RootID)}}, nil, 404, "itemNotFound"},
		{"other drive's folder by id", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"parentReference": map[string]any{"id": string(e.odrive.RootID)}}, nil, 404, "itemNotFound"},
		{"source missing", "/v1.0/me/drive/items/NOSUCH/copy", nil, nil, 404, "itemNotFound"},
		{"destination missing", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"parentReference": map[string]any{"id": "NOSUCH"}}, nil, 404, "itemNotFound"},
		{"destination path missing", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"parentReference": map[string]any{"path": "/drive/root:/nope"}}, nil, 404, "itemNotFound"},
		{"destination is a file", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"parentReference": map[string]any{"path": "/drive/root:/file.txt"}}, nil, 400, "invalidRequest"},
		{"root", "/v1.0/me/drive/root/copy", map[string]any{"parentReference": map[string]any{"id": aID}}, nil, 400, "invalidRequest"},
		{"folder into itself", "/v1.0/me/drive/items/" + aID + "/copy", map[string]any{"parentReference": map[string]any{"id": aID}, "name": "a2"}, nil, 400, "invalidRequest"},
		{"folder into its subtree", "/v1.0/me/drive/items/" + aID + "/copy", map[string]any{"parentReference": map[string]any{"id": bID}}, nil, 400, "invalidRequest"},
		{"replace the source", "/v1.0/me/drive/items/" + f + "/copy?@microsoft.graph.conflictBehavior=replace", nil, nil, 400, "invalidRequest"},
		{"replace a folder holding the source", "/v1.0/me/drive/items/" + f + "/copy?@microsoft.graph.conflictBehavior=replace",
			map[string]any{"parentReference": map[string]any{"id": "root"}, "name": "a"}, nil, 400, "invalidRequest"},
		{"bad name", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"name": "a:b"}, nil, 400, "invalidRequest"},
		{"bad conflict", "/v1.0/me/drive/items/" + f + "/copy?@microsoft.graph.conflictBehavior=merge", nil, nil, 400, "invalidRequest"},
		{"body not an object", "/v1.0/me/drive/items/" + f + "/copy", "[1]", nil, 400, "invalidRequest"},
		{"read-only token", "/v1.0/me/drive/items/" + f + "/copy", nil, []reqOpt{bearer(e.ro)}, 403, "accessDenied"},
		{"no token", "/v1.0/me/drive/items/" + f + "/copy", nil, []reqOpt{noAuth()}, 401, "unauthenticated"},
		{"another user's item", "/v1.0/me/drive/items/" + f + "/copy", map[string]any{"name": "mine.txt"}, []reqOpt{bearer(e.other)}, 404, "itemNotFound"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", tt.path, tt.body, tt.opts...).wantError(t, tt.status, tt.code)
		})
	}
	if n := e.jobs.count() - before; n != 0 {
		t.Errorf("%d jobs enqueued by refused requests", n)
	}
	e.jobs.throttle = true
	e.do("POST", "/v1.0/me/drive/items/"+f+"/copy", map[string]any{"name": "g.txt"}).wantError(t, http.StatusTooManyRequests, "activityLimitReached")
}
