package graph_test

import (
	"github.com/google/go-cmp/cmp"
	"net/http"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry"
)

var async = header("Prefer", "respond-async")

func TestUploadFromURL(t *testing.T) {
	e := newEnv(t)
	dl := e.mkdir("", "Downloads")
	r := e.do("POST", "/v1.0/me/drive/root:/Downloads:/children", map[string]any{
		"@microsoft.graph.sourceUrl": "https://example.org/big.iso?sig=secret",
		"name":                       "big.iso",
		"file":                       map[string]any{},
		"@ferry.sha256":              strings.Repeat("ab", 32),
	}, async).must(t, http.StatusAccepted)
	if len(r.body) != 0 {
		t.Errorf("202 with a body: %q", r.body)
	}
	j := e.jobs.last(t)
	if loc := r.Header.Get("Location"); loc != e.srv.URL+"/monitor/"+j.ID {
		t.Errorf("Location = %q, want %q", loc, e.srv.URL+"/monitor/"+j.ID)
	}
	want := ferry.Job{
		ID: j.ID, Operation: ferry.OpDownloadURL, UserID: e.me.ID, UserName: "me", DriveID: e.drive.ID,
		ParentID: ferry.ItemID(dl["id"].(string)), Name: "big.iso", Conflict: ferry.ConflictFail,
		SourceURL: "https://example.org/big.iso?sig=secret", ExpectSHA256: strings.Repeat("AB", 32),
		Status: j.Status, Total: j.Total, Created: j.Created, Updated: j.Updated,
	}
	if diff := cmp.Diff(want, *j); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}

	// Legacy spelling, no name, conflict rename, Prefer in a list, every
	// addressing form.
	for _, p := range []string{
		"/v1.0/me/drive/items/" + dl["id"].(string) + "/children",
		"/v1.0/drive/items/root:/Downloads:/children",
		"/v2.0/drives/" + string(e.drive.ID) + "/root%3A%2FDownloads%3A%2Fchildren",
	} {
		e.do("POST", p, map[string]any{"@content.sourceUrl": "http://example.org/x", "@microsoft.graph.conflictBehavior": "rename"},
			header("Prefer", "wait=5, Respond-Async")).must(t, http.StatusAccepted)
		j := e.jobs.last(t)
		if j.SourceURL != "http://example.org/x" || j.Name != "" || j.Conflict != ferry.ConflictRename || j.ParentID != ferry.ItemID(dl["id"].(string)) {
			t.Errorf("%s: job = %+v", p, j)
		}
	}
	e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "http://example.org/y"}, async).must(t, http.StatusAccepted)
	if j := e.jobs.last(t); j.ParentID != e.drive.RootID {
		t.Errorf("root upload: parent %s, want %s", j.ParentID, e.drive.RootID)
	}
}

func TestUploadFromURLRefusals(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	e.put("/d/taken.txt", "x")
	e.put("/file.txt", "x")
	src := "https://example.org/f"
	for _, tt := range []struct {
		name   string
		path   string
		body   map[string]any
		opts   []reqOpt
		status int
		code   string
	}{
		{"no Prefer", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src}, nil, 400, "invalidRequest"},
		{"other Prefer", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src}, []reqOpt{header("Prefer", "return=minimal")}, 400, "invalidRequest"},
		{"folder facet too", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src, "folder": map[string]any{}}, []reqOpt{async}, 400, "invalidRequest"},
		{"ftp", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "ftp://example.org/f"}, []reqOpt{async}, 400, "invalidRequest"},
		{"credentials", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "https://u:p@example.org/f"}, []reqOpt{async}, 400, "invalidRequest"},
		{"relative", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "/etc/passwd"}, []reqOpt{async}, 400, "invalidRequest"},
		{"url not a string", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": 42}, []reqOpt{async}, 400, "invalidRequest"},
		{"bad name", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src, "name": "a/b"}, []reqOpt{async}, 400, "invalidRequest"},
		{"traversal name", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src, "name": ".."}, []reqOpt{async}, 400, "invalidRequest"},
		{"bad sha256", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src, "@ferry.sha256": "abc"}, []reqOpt{async}, 400, "invalidRequest"},
		{"non-hex sha256", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src, "@ferry.sha256": strings.Repeat("zz", 32)}, []reqOpt{async}, 400, "invalidRequest"},
		{"bad conflict", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src, "@microsoft.graph.conflictBehavior": "maybe"}, []reqOpt{async}, 400, "invalidRequest"},
		{"name taken", "/v1.0/me/drive/root:/d:/children", map[string]any{"@microsoft.graph.sourceUrl": src, "name": "TAKEN.txt"}, []reqOpt{async}, 409, "nameAlreadyExists"},
		{"parent is a file", "/v1.0/me/drive/root:/file.txt:/children", map[string]any{"@microsoft.graph.sourceUrl": src}, []reqOpt{async}, 400, "invalidRequest"},
		{"parent missing", "/v1.0/me/drive/root:/nope:/children", map[string]any{"@microsoft.graph.sourceUrl": src}, []reqOpt{async}, 404, "itemNotFound"},
		{"read-only token", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src}, []reqOpt{async, bearer(e.ro)}, 403, "accessDenied"},
		{"no token", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src}, []reqOpt{async, noAuth()}, 401, "unauthenticated"},
		{"other user's folder", "/v1.0/drives/" + string(e.drive.ID) + "/root/children", map[string]any{"@microsoft.graph.sourceUrl": src}, []reqOpt{async, bearer(e.other)}, 404, "itemNotFound"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", tt.path, tt.body, tt.opts...).wantError(t, tt.status, tt.code)
		})
	}
	r := e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src}, nil...)
	if !strings.Contains(r.json(t)["error"].(map[string]any)["message"].(string), "Prefer: respond-async") {
		t.Errorf("the message does not name the header: %s", r.body)
	}
	if n := e.jobs.count(); n != 0 {
		t.Errorf("%d jobs enqueued by refused requests", n)
	}
	// A taken name is fine with replace or rename.
	e.do("POST", "/v1.0/me/drive/root:/d:/children", map[string]any{"@microsoft.graph.sourceUrl": src, "name": "taken.txt",
		"@microsoft.graph.conflictBehavior": "replace"}, async).must(t, http.StatusAccepted)

	e.jobs.throttle = true
	r = e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": src}, async)
	r.wantError(t, http.StatusTooManyRequests, "activityLimitReached")
	if got := r.Header.Get("Retry-After"); got != "7" {
		t.Errorf("Retry-After = %q, want 7", got)
	}
}

func TestMonitor(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "https://example.org/secret-token-in-url", "name": "f.bin"}, async).must(t, http.StatusAccepted)
	mon := r.Header.Get("Location")
	j := e.jobs.last(t)

	check := func(name string, status int, opts ...reqOpt) map[string]any {
		t.Helper()
		r := e.do("GET", mon, nil, append([]reqOpt{noAuth()}, opts...)...).must(t, status)
		if strings.Contains(string(r.body), "secret-token-in-url") {
			t.Errorf("%s: the monitor shows the source URL: %s", name, r.body)
		}
		if status == http.StatusAccepted && r.Header.Get("Retry-After") != "1" {
			t.Errorf("%s: Retry-After = %q, want 1", name, r.Header.Get("Retry-After"))
		}
		if r.Header.Get("Location") != "" {
			t.Errorf("%s: the monitor sent a Location", name)
		}
		golden(t, "monitor-"+name, r.body)
		return r.json(t)
	}
	check("notStarted", http.StatusAccepted)
	e.jobs.set(j.ID, func(j *ferry.Job) {
		j.Status, j.Bytes, j.Total, j.BytesPerSecond = ferry.StatusInProgress, 250, 1000, 125
	})
	m := check("inProgress", http.StatusAccepted, header("Authorization", "Bearer not-even-valid"))
	if m["percentageComplete"].(float64) != 25 || m["totalBytes"].(float64) != 1000 || m["bytesTransferred"].(float64) != 250 {
		t.Errorf("inProgress: %v", m)
	}
	e.jobs.set(j.ID, func(j *ferry.Job) { j.Status, j.Total = ferry.StatusWaiting, -1 })
	if m := check("waiting", http.StatusAccepted); m["totalBytes"] != nil {
		t.Errorf("unknown total shown: %v", m)
	}
	e.jobs.set(j.ID, func(j *ferry.Job) {
		j.Status, j.ResourceID, j.Bytes, j.Total = ferry.StatusCompleted, "ITEM1", 1000, 1000
	})
	m = check("completed", http.StatusOK)
	if m["resourceId"] != "ITEM1" || m["id"] != "ITEM1" || m["percentageComplete"].(float64) != 100 ||
		m["resourceLocation"] != e.srv.URL+"/v1.0/drives/"+string(e.drive.ID)+"/items/ITEM1" {
		t.Errorf("completed: %v", m)
	}
	for _, tt := range []struct {
		code   ferry.JobErrorCode
		status int
	}{
		{ferry.JobTimeout, http.StatusGatewayTimeout},
		{ferry.JobHashMismatch, http.StatusInternalServerError},
		{"nameAlreadyExists", http.StatusConflict},
		{"quotaLimitReached", http.StatusInsufficientStorage},
		{"maxFileSizeExceeded", http.StatusRequestEntityTooLarge},
		{"itemNotFound", http.StatusBadRequest},
		{"invalidRequest", http.StatusBadRequest},
		{"accessDenied", http.StatusForbidden},
		{"generalException", http.StatusInternalServerError},
		{"somethingElse", http.StatusInternalServerError},
	} {
		e.jobs.set(j.ID, func(j *ferry.Job) {
			j.Status, j.ResourceID, j.ErrorCode, j.ErrorMessage = ferry.StatusFailed, "", tt.code, "it went wrong"
		})
		r := e.do("GET", mon, nil, noAuth()).must(t, tt.status).json(t)
		if r["status"] != "failed" || r["errorCode"] != string(tt.code) || r["statusDescription"] != "it went wrong" ||
			r["error"].(map[string]any)["code"] != string(tt.code) || r["message"] != "it went wrong" {
			t.Errorf("failed %s: %v", tt.code, r)
		}
	}
	e.jobs.set(j.ID, func(j *ferry.Job) { j.ErrorCode = "nameAlreadyExists" })
	check("failed", http.StatusConflict)
	e.jobs.set(j.ID, func(j *ferry.Job) { j.Status, j.ErrorCode, j.ErrorMessage = ferry.StatusCancelled, "", "" })
	check("cancelled", http.StatusGone)

	e.do("GET", e.srv.URL+"/monitor/mon_NOSUCH", nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("POST", mon, nil, noAuth()).wantError(t, http.StatusMethodNotAllowed, "notAllowed")
}

func TestCancelMonitor(t *testing.T) {
	e := newEnv(t)
	enqueue := func() (string, *ferry.Job) {
		r := e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "https://example.org/f"}, async).must(t, http.StatusAccepted)
		return r.Header.Get("Location"), e.jobs.last(t)
	}
	mon, _ := enqueue()
	r := e.do("DELETE", mon, nil, noAuth()).must(t, http.StatusAccepted).json(t)
	if r["status"] != "cancelled" {
		t.Errorf("cancel of a queued job: %v", r)
	}
	e.do("GET", mon, nil, noAuth()).must(t, http.StatusGone)
	e.do("DELETE", mon, nil, noAuth()).wantError(t, http.StatusConflict, "notAllowed")

	mon, j := enqueue()
	e.jobs.set(j.ID, func(j *ferry.Job) { j.Status = ferry.StatusInProgress })
	r = e.do("DELETE", mon, nil, header("Authorization", "Bearer whatever")).must(t, http.StatusAccepted).json(t)
	if r["status"] != "cancelPending" {
		t.Errorf("cancel of a running job: %v", r)
	}
	e.do("DELETE", e.srv.URL+"/monitor/mon_NOSUCH", nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
}
