package graph_test

import (
	"net/http"
	"strconv"
	"strings"
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

// TestUploadSessionPublishedNotHeld: a commit publishes the session's
// bytes and then can record neither the blob nor delete it (as a node
// that dies between the two): the client's retry finds the blob under the
// staging area's ID and commits it; the session is not lost, and no other
// blob is left.
func TestUploadSessionPublishedNotHeld(t *testing.T) {
	e := newEnv(t)
	sessions := &faultySessions{SessionStore: e.store}
	blobs := &gatedBlobs{BlobStore: e.blobs}
	e.serve(func(d *graph.Deps) { d.Sessions = sessions; d.Blobs = blobs })
	data := randomBytes(70000, 23)
	up := e.deferred("/held.bin", data, nil)

	sessions.holdErr.Store(&ferry.Error{Kind: ferry.Unavailable, Message: "simulated: the database is busy"})
	blobs.noDelete.Store(true)
	if r := e.do("POST", up, nil, noAuth()); r.StatusCode < 500 {
		t.Fatalf("commit whose hold failed: %d %s, want a 5xx", r.StatusCode, r.body)
	}
	if sessions.holdErr.Load() != nil || blobs.noDelete.Load() {
		t.Fatal("the faults were not hit: the test tested nothing")
	}
	e.checkFile(e.do("POST", up, nil, noAuth()).must(t, http.StatusCreated).json(t), data)
	if bl, err := e.blobs.List(t.Context()); err != nil || len(bl) != 1 {
		t.Errorf("blobs after the retried commit = %v, %v; want the file's one", bl, err)
	}
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas left", n)
	}
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
// written fail: the commit still succeeds with the file. The session's
// record and the replaced file's fileSystemInfo go in the commit's own
// transaction, so they cannot fail apart from it.
func TestUploadSessionCleanupFailures(t *testing.T) {
	e := newEnv(t)
	sessions := &faultySessions{SessionStore: e.store}
	e.serve(func(d *graph.Deps) { d.Sessions = sessions })
	old := e.put("/doc.txt", "old")
	sessions.deleteErr.Store(errLost)

	// A new file.
	data := randomBytes(4000, 23)
	up := e.deferred("/kept.bin", data, nil)
	r := e.do("POST", up, nil, noAuth())
	e.checkFile(r.must(t, http.StatusCreated).json(t), data)
	wantGone(t, e.do("GET", up, nil, noAuth()))

	// New bytes for an existing file, with fileSystemInfo.
	data = randomBytes(3000, 24)
	up = e.createSession("/v1.0/me/drive/items/"+old["id"].(string)+"/createUploadSession", map[string]any{
		"item": map[string]any{"fileSystemInfo": map[string]any{"lastModifiedDateTime": "2020-01-01T00:00:00Z"}},
	})
	r = e.fragment(up, data, 0, int64(len(data)))
	item := r.must(t, http.StatusOK).json(t)
	if item["id"] != old["id"] {
		t.Errorf("replaced item id = %v, want %v", item["id"], old["id"])
	}
	if got := item["fileSystemInfo"].(map[string]any)["lastModifiedDateTime"]; got != "2020-01-01T00:00:00Z" {
		t.Errorf("lastModifiedDateTime = %v, want the session's 2020-01-01T00:00:00Z", got)
	}
	e.checkFile(item, data)
}

// TestUploadSessionOutcomeUnknown loses the store's answer after the file
// was written: the error is reported, but the blob the file uses stays,
// also when the client retries and finds the session gone.
func TestUploadSessionOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	sessions := &faultySessions{SessionStore: e.store}
	e.serve(func(d *graph.Deps) { d.Sessions = sessions })
	sessions.lostCommit.Store(true)
	data := randomBytes(2000, 25)
	up := e.createSession("/v1.0/me/drive/root:/maybe.bin:/createUploadSession", nil)
	e.fragment(up, data, 0, int64(len(data))).wantError(t, http.StatusInternalServerError, "generalException")
	wantGone(t, e.do("POST", up, nil, noAuth()))
	e.checkFile(e.do("GET", "/v1.0/me/drive/root:/maybe.bin", nil).must(t, http.StatusOK).json(t), data)
}

// TestUploadSessionCommitRetried: a commit that hits a transient database
// error keeps the session and its published bytes; the client retries
// (the commit, or the last fragment again) and the file is made from
// those bytes, published once.
func TestUploadSessionCommitRetried(t *testing.T) {
	for _, retry := range []string{"commit", "last fragment"} {
		t.Run(retry, func(t *testing.T) {
			e := newEnv(t)
			sessions := &faultySessions{SessionStore: e.store}
			blobs := &gatedBlobs{BlobStore: e.blobs}
			e.serve(func(d *graph.Deps) { d.Sessions, d.Blobs = sessions, blobs })
			data := randomBytes(3000, 27)
			up := e.createSession("/v1.0/me/drive/root:/retry.bin:/createUploadSession", nil)
			e.fragment(up, data[:1000], 0, 3000).must(t, http.StatusAccepted)
			sessions.commitErr.Store(&ferry.Error{Kind: ferry.Unavailable, RetryAfter: 1, Message: "the database is busy; try again"})
			r := e.fragment(up, data[1000:], 1000, 3000)
			r.wantError(t, http.StatusServiceUnavailable, "serviceNotAvailable")
			wantRanges(t, e.do("GET", up, nil, noAuth()).must(t, http.StatusOK)) // kept, complete
			e.do("GET", "/v1.0/me/drive/root:/retry.bin", nil).wantError(t, http.StatusNotFound, "itemNotFound")

			sessions.commitErr.Store(nil)
			if retry == "commit" {
				r = e.do("POST", up, nil, noAuth())
			} else {
				r = e.fragment(up, data[1000:], 1000, 3000)
			}
			e.checkFile(r.must(t, http.StatusCreated).json(t), data)
			wantGone(t, e.do("GET", up, nil, noAuth()))
			if n := blobs.published.Load(); n != 1 {
				t.Errorf("%d blobs published, want 1", n)
			}
			if n := e.stagingCount(); n != 0 {
				t.Errorf("%d staging areas left", n)
			}
		})
	}
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
		DriveID: e.drive.ID, Size: -1, StagingID: "gone", Expires: e.clock.now().Add(-time.Hour)}, 0); err != nil {
		t.Fatal(err)
	}
	e.do("DELETE", ups[0], nil, noAuth()).must(t, http.StatusNoContent)
	e.createSession("/v1.0/me/drive/root:/f3:/createUploadSession", nil)
}

// TestUploadSessionHashesAsItGrows: the bytes are hashed as the prefix
// received from byte 0 grows, so the fragment that completes a file reads
// back only its own bytes (and the head, for the MIME type), not the file;
// a fragment that fills a gap hashes the run it joins up, once.
func TestUploadSessionHashesAsItGrows(t *testing.T) {
	e := newEnv(t)
	blobs := &gatedBlobs{BlobStore: e.blobs}
	e.serve(func(d *graph.Deps) { d.Blobs = blobs })
	const frag, total = 64 << 10, 4 * 64 << 10
	data := randomBytes(total, 28)
	up := e.createSession("/v1.0/me/drive/root:/grown.bin:/createUploadSession", nil)
	// 0, 2, 1 (joins 0-3), then 3 completes the file.
	for _, i := range []int{0, 2, 1} {
		e.fragment(up, data[i*frag:(i+1)*frag], int64(i*frag), total).must(t, http.StatusAccepted)
	}
	if got := blobs.read.Load(); got != 3*frag {
		t.Errorf("%d bytes read back for the first three fragments, want %d (each once)", got, 3*frag)
	}
	blobs.read.Store(0)
	e.checkFile(e.fragment(up, data[3*frag:], 3*frag, total).must(t, http.StatusCreated).json(t), data)
	if got := blobs.read.Load(); got > frag+512 {
		t.Errorf("the last fragment read back %d bytes, want at most its own %d and a 512-byte head", got, frag)
	}
}
