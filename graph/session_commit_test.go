package graph_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/graph"
)

// deferred creates a deferCommit session at path holding all of data, and
// returns its uploadUrl.
func (e *env) deferred(path string, data []byte, body map[string]any) string {
	e.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	body["deferCommit"] = true
	up := e.createSession("/v1.0/me/drive/root:"+path+":/createUploadSession", body)
	wantRanges(e.t, e.fragment(up, data, 0, int64(len(data))).must(e.t, http.StatusAccepted))
	return up
}

// TestUploadSessionCancelDuringCommit cancels a session while its commit
// runs: the cancel is 409 and removes nothing, and the commit finishes.
func TestUploadSessionCancelDuringCommit(t *testing.T) {
	e := newEnv(t)
	blobs := &gatedBlobs{BlobStore: e.blobs}
	e.serve(func(d *graph.Deps) { d.Blobs = blobs })
	t.Cleanup(blobs.gate.open)
	data := randomBytes(5000, 20)
	up := e.deferred("/committing.bin", data, nil)

	publishing := blobs.gate.arm()
	done := make(chan *resp)
	go func() { done <- e.do("POST", up, nil, noAuth()) }()
	<-publishing
	r := e.do("DELETE", up, nil, noAuth())
	r.wantError(t, http.StatusConflict, "notAllowed")
	wantRanges(t, e.do("GET", up, nil, noAuth()).must(t, http.StatusOK)) // still there, complete
	e.do("POST", up, nil, noAuth()).wantError(t, http.StatusConflict, "notAllowed")
	blobs.gate.open()
	e.checkFile((<-done).must(t, http.StatusCreated).json(t), data)
	wantGone(t, e.do("DELETE", up, nil, noAuth()))
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas left", n)
	}
}

// TestUploadSessionCommitBehindCommit lets a commit read the session, then
// stop, while another commit of it finishes: the late one must find the
// session gone, not report the file it just made as a name conflict.
func TestUploadSessionCommitBehindCommit(t *testing.T) {
	e := newEnv(t)
	sessions := &faultySessions{SessionStore: e.store}
	e.serve(func(d *graph.Deps) { d.Sessions = sessions })
	t.Cleanup(sessions.gate.open)
	data := randomBytes(3000, 21)
	fail := map[string]any{"item": map[string]any{"@microsoft.graph.conflictBehavior": "fail"}}
	up := e.deferred("/once.bin", data, fail)

	reading := sessions.gate.arm()
	late := make(chan *resp)
	go func() { late <- e.do("POST", up, nil, noAuth()) }()
	<-reading
	first := e.do("POST", up, nil, noAuth())
	sessions.gate.open()
	second := <-late
	// Either commit may win; the other answers 409 notAllowed (busy)
	// or 404 (gone), never nameAlreadyExists.
	var won *resp
	for _, r := range []*resp{first, second} {
		switch {
		case r.StatusCode == http.StatusCreated:
			if won != nil {
				t.Fatalf("both commits created the file")
			}
			won = r
		case r.StatusCode == http.StatusConflict:
			r.wantError(t, http.StatusConflict, "notAllowed")
		default:
			wantGone(t, r)
		}
	}
	if won == nil {
		t.Fatalf("no commit created the file: %d %s, %d %s", first.StatusCode, first.body, second.StatusCode, second.body)
	}
	e.checkFile(won.json(t), data)
	wantGone(t, e.do("POST", up, nil, noAuth())) // and again, later
}

// TestUploadSessionStagingVanishes removes a session's staged bytes behind
// its back while it commits: 404 uploadSessionNotFound, without naming the
// staging area.
func TestUploadSessionStagingVanishes(t *testing.T) {
	e := newEnv(t)
	blobs := &gatedBlobs{BlobStore: e.blobs}
	e.serve(func(d *graph.Deps) { d.Blobs = blobs })
	t.Cleanup(blobs.gate.open)
	up := e.deferred("/vanishing.bin", randomBytes(100, 22), nil)
	areas, err := e.blobs.ListStaging(t.Context())
	if err != nil || len(areas) != 1 {
		t.Fatalf("ListStaging = %v, %v; want one area", areas, err)
	}

	publishing := blobs.gate.arm()
	done := make(chan *resp)
	go func() { done <- e.do("POST", up, nil, noAuth()) }()
	<-publishing
	if err := e.blobs.RemoveStaging(t.Context(), areas[0].ID); err != nil {
		t.Fatal(err)
	}
	blobs.gate.open()
	r := <-done
	wantGone(t, r)
	if strings.Contains(string(r.body), areas[0].ID) {
		t.Errorf("the answer names the staging area: %s", r.body)
	}
	wantGone(t, e.do("GET", up, nil, noAuth()))
	e.do("GET", "/v1.0/me/drive/root:/vanishing.bin", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}

// TestUploadSessionCleanupFailures lets every step after the file is
// written fail: the commit still succeeds with the file.
func TestUploadSessionCleanupFailures(t *testing.T) {
	e := newEnv(t)
	items := &faultyItems{ItemStore: e.store}
	accounts := &faultyAccounts{AccountStore: e.store}
	sessions := &faultySessions{SessionStore: e.store}
	var armed atomic.Bool // the drive cannot be read once a commit has written
	items.written = func() { accounts.failDrive.Store(armed.Load()) }
	e.serve(func(d *graph.Deps) { d.Items, d.Accounts, d.Sessions = items, accounts, sessions })
	old := e.put("/doc.txt", "old")
	armed.Store(true)
	sessions.deleteErr.Store(errLost)
	items.updateErr.Store(errLost)

	// A new file: deleting the session and reading the drive fail.
	data := randomBytes(4000, 23)
	up := e.deferred("/kept.bin", data, nil)
	r := e.do("POST", up, nil, noAuth())
	accounts.failDrive.Store(false)
	e.checkFile(r.must(t, http.StatusCreated).json(t), data)

	// New bytes for an existing file, with fileSystemInfo: retouching it
	// fails too, and the file keeps its old times.
	data = randomBytes(3000, 24)
	up = e.createSession("/v1.0/me/drive/items/"+old["id"].(string)+"/createUploadSession", map[string]any{
		"item": map[string]any{"fileSystemInfo": map[string]any{"lastModifiedDateTime": "2020-01-01T00:00:00Z"}},
	})
	r = e.fragment(up, data, 0, int64(len(data)))
	accounts.failDrive.Store(false)
	item := r.must(t, http.StatusOK).json(t)
	if item["id"] != old["id"] {
		t.Errorf("replaced item id = %v, want %v", item["id"], old["id"])
	}
	if got := item["fileSystemInfo"].(map[string]any)["lastModifiedDateTime"]; got == "2020-01-01T00:00:00Z" {
		t.Errorf("lastModifiedDateTime = %v, though setting it failed", got)
	}
	e.checkFile(item, data)
}

// TestUploadSessionOutcomeUnknown loses the store's answer after the file
// was written: the error is reported, but the blob the file uses stays.
func TestUploadSessionOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	items := &faultyItems{ItemStore: e.store}
	e.serve(func(d *graph.Deps) { d.Items = items })
	items.lostWrite.Store(true)
	data := randomBytes(2000, 25)
	up := e.createSession("/v1.0/me/drive/root:/maybe.bin:/createUploadSession", nil)
	e.fragment(up, data, 0, int64(len(data))).wantError(t, http.StatusInternalServerError, "generalException")
	e.checkFile(e.do("GET", "/v1.0/me/drive/root:/maybe.bin", nil).must(t, http.StatusOK).json(t), data)
}

// TestUploadSessionOverFolder refuses a session whose name a folder holds
// (replace replaces only a file with a file): at creation, and at commit
// before any bytes are published when the folder appears meanwhile.
func TestUploadSessionOverFolder(t *testing.T) {
	e := newEnv(t)
	blobs := &gatedBlobs{BlobStore: e.blobs}
	e.serve(func(d *graph.Deps) { d.Blobs = blobs })
	e.mkdir("", "dir")
	for _, q := range []string{"", "?@microsoft.graph.conflictBehavior=replace"} {
		e.do("POST", "/v1.0/me/drive/root:/DIR:/createUploadSession"+q, nil).wantError(t, http.StatusConflict, "nameAlreadyExists")
	}
	// rename picks a free name instead.
	e.createSession("/v1.0/me/drive/root:/dir:/createUploadSession?@microsoft.graph.conflictBehavior=rename", nil)

	data := randomBytes(1000, 26)
	up := e.deferred("/later.bin", data, nil)
	e.mkdir("", "later.bin")
	e.do("POST", up, nil, noAuth()).wantError(t, http.StatusConflict, "nameAlreadyExists")
	wantGone(t, e.do("GET", up, nil, noAuth()))
	if n := blobs.published.Load(); n != 0 {
		t.Errorf("%d blobs published for a commit refused beforehand", n)
	}
	if got := e.do("GET", "/v1.0/me/drive/root:/later.bin", nil).must(t, http.StatusOK).json(t); got["folder"] == nil {
		t.Errorf("the folder was replaced: %v", got)
	}
}

// TestUploadSessionQuotaCountsSessions counts the bytes of sessions in
// progress against the quota: several sessions cannot each take the whole
// room left.
func TestUploadSessionQuotaCountsSessions(t *testing.T) {
	e := newEnv(t)
	create := func(name string, size int64) *resp {
		t.Helper()
		var body any
		if size > 0 {
			body = map[string]any{"item": map[string]any{"fileSize": size}}
		}
		return e.do("POST", "/v1.0/me/drive/root:/"+name+":/createUploadSession", body)
	}
	quota := e.drive.Quota
	big := create("big.bin", quota-1000).must(t, http.StatusOK).json(t)["uploadUrl"].(string)
	create("more.bin", 2000).wantError(t, http.StatusInsufficientStorage, "quotaLimitReached")
	fits := create("fits.bin", 1000).must(t, http.StatusOK).json(t)["uploadUrl"].(string)
	create("over.bin", 1).wantError(t, http.StatusInsufficientStorage, "quotaLimitReached")

	// A session without a size counts what its first fragment declares.
	e.do("DELETE", fits, nil, noAuth()).must(t, http.StatusNoContent)
	open := create("open.bin", 0).must(t, http.StatusOK).json(t)["uploadUrl"].(string)
	e.fragment(open, []byte("ab"), 0, 1001).wantError(t, http.StatusInsufficientStorage, "quotaLimitReached")
	data := randomBytes(600, 27)
	e.fragment(open, data[:100], 0, 600).must(t, http.StatusAccepted)
	create("small.bin", 401).wantError(t, http.StatusInsufficientStorage, "quotaLimitReached")

	// Room comes back when a session ends, and a commit counts only what
	// is used.
	e.do("DELETE", big, nil, noAuth()).must(t, http.StatusNoContent)
	create("more.bin", 2000).must(t, http.StatusOK)
	e.checkFile(e.fragment(open, data[100:], 100, 600).must(t, http.StatusCreated).json(t), data)
}

// TestUploadSessionLimit caps the live sessions of a drive.
func TestUploadSessionLimit(t *testing.T) {
	e := newEnv(t, func(c *graph.Config) { c.MaxUploadSessions = 3 })
	var ups []string
	for i := range 3 {
		ups = append(ups, e.createSession("/v1.0/me/drive/root:/f"+strconv.Itoa(i)+":/createUploadSession", nil))
	}
	r := e.do("POST", "/v1.0/me/drive/root:/f3:/createUploadSession", nil)
	r.wantError(t, http.StatusTooManyRequests, "activityLimitReached")
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After = %q, want whole seconds", r.Header.Get("Retry-After"))
	}
	// Another user's drive has its own count.
	e.do("POST", "/v1.0/me/drive/root:/f3:/createUploadSession", nil, bearer(e.other)).must(t, http.StatusOK)
	// Expired sessions do not count.
	if err := e.store.CreateSession(t.Context(), &ferry.UploadSession{ID: ferry.NewID("up_", 20), UserID: e.me.ID,
		DriveID: e.drive.ID, Size: -1, StagingID: "gone", Expires: e.clock.now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e.do("DELETE", ups[0], nil, noAuth()).must(t, http.StatusNoContent)
	e.createSession("/v1.0/me/drive/root:/f3:/createUploadSession", nil)
}
