package graph_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
	"github.com/ferrydrive/ferry/graph"
	"github.com/google/go-cmp/cmp"
)

// slice is the fragment size real clients use: a multiple of 320 KiB near
// 3.2 MiB.
const slice = 10 * 320 << 10

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// createSession starts an upload session at path (an item path after the
// drive prefix, e.g. "/v1.0/me/drive/root:/a.bin:/createUploadSession")
// and returns its uploadUrl.
func (e *env) createSession(path string, body any, opts ...reqOpt) string {
	e.t.Helper()
	m := e.do("POST", path, body, opts...).must(e.t, http.StatusOK).json(e.t)
	u, _ := m["uploadUrl"].(string)
	if !strings.HasPrefix(u, e.srv.URL+"/upload/") {
		e.t.Fatalf("uploadUrl = %q, want an absolute URL under %s/upload/", u, e.srv.URL)
	}
	return u
}

// fragment sends data as the bytes from start of a file of total bytes,
// without a token unless opts add one.
func (e *env) fragment(uploadURL string, data []byte, start, total int64, opts ...reqOpt) *resp {
	e.t.Helper()
	cr := header("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+int64(len(data))-1, total))
	return e.do("PUT", uploadURL, data, append([]reqOpt{noAuth(), cr}, opts...)...)
}

// ranges returns nextExpectedRanges of a session answer.
func ranges(t *testing.T, r *resp) []string {
	t.Helper()
	m := r.json(t)
	raw, ok := m["nextExpectedRanges"].([]any)
	if !ok {
		t.Fatalf("no nextExpectedRanges array in %s", r.body)
	}
	out := []string{}
	for _, v := range raw {
		out = append(out, v.(string))
	}
	if s, _ := m["expirationDateTime"].(string); !strings.HasSuffix(s, "Z") {
		t.Errorf("expirationDateTime = %q, want UTC with Z", s)
	}
	return out
}

func wantRanges(t *testing.T, r *resp, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if diff := cmp.Diff(want, ranges(t, r)); diff != "" {
		t.Errorf("%s %s: nextExpectedRanges (-want +got):\n%s", r.Request.Method, r.Request.URL, diff)
	}
}

// wantInner checks the innerError.code of a Graph error body.
func wantInner(t *testing.T, r *resp, code string) {
	t.Helper()
	inner, _ := r.json(t)["error"].(map[string]any)["innerError"].(map[string]any)
	if got, _ := inner["code"].(string); got != code {
		t.Errorf("%s %s: inner code %q, want %q\n%s", r.Request.Method, r.Request.URL, got, code, r.body)
	}
}

// hashesOf is what the driveItem of data must show.
func hashesOf(data []byte) map[string]any {
	h := blob.NewHasher()
	h.Write(data)
	s := h.Sum()
	return map[string]any{"quickXorHash": s.QuickXor, "sha1Hash": s.SHA1, "sha256Hash": s.SHA256}
}

// checkFile compares a driveItem and the bytes behind its download URL
// with data.
func (e *env) checkFile(item map[string]any, data []byte) {
	e.t.Helper()
	if got := int(item["size"].(float64)); got != len(data) {
		e.t.Errorf("size = %d, want %d", got, len(data))
	}
	file, _ := item["file"].(map[string]any)
	if diff := cmp.Diff(hashesOf(data), file["hashes"]); diff != "" {
		e.t.Errorf("hashes (-want +got):\n%s", diff)
	}
	got := e.do("GET", item["@microsoft.graph.downloadUrl"].(string), nil, noAuth()).must(e.t, http.StatusOK).body
	if !bytes.Equal(got, data) {
		e.t.Errorf("downloaded %d bytes that differ from the %d uploaded", len(got), len(data))
	}
}

// stagingCount reports how many staging areas exist.
func (e *env) stagingCount() int {
	e.t.Helper()
	l, err := e.blobs.ListStaging(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(l)
}

// TestUploadSessionLargeFile uploads 10 MiB and a bit in ~3.2 MiB slices,
// in order, as rclone and the SDKs do.
func TestUploadSessionLargeFile(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "big")
	data := randomBytes(10<<20+12345, 1)
	total := int64(len(data))
	r := e.do("POST", "/v1.0/me/drive/root:/big/file.bin:/createUploadSession", map[string]any{
		"item": map[string]any{
			"@odata.type":    "microsoft.graph.driveItemUploadableProperties",
			"name":           "file.bin",
			"fileSystemInfo": map[string]any{"lastModifiedDateTime": "2021-03-04T05:06:07Z"},
			"description":    "the big one",
		},
	}).must(t, http.StatusOK)
	golden(t, "upload-session", r.body)
	wantRanges(t, r, "0-")
	exp, err := time.Parse(time.RFC3339, r.json(t)["expirationDateTime"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if want := e.clock.now().Add(graph.DefaultSessionTTL); exp.Sub(want).Abs() > time.Second {
		t.Errorf("expirationDateTime = %v, want %v", exp, want)
	}
	up := r.json(t)["uploadUrl"].(string)

	var last *resp
	for start := int64(0); start < total; start += slice {
		end := min(start+slice, total)
		last = e.fragment(up, data[start:end], start, total)
		if end < total {
			last.must(t, http.StatusAccepted)
			wantRanges(t, last, fmt.Sprintf("%d-", end))
		}
	}
	item := last.must(t, http.StatusCreated).json(t)
	e.checkFile(item, data)
	if item["name"] != "file.bin" || item["description"] != "the big one" ||
		item["fileSystemInfo"].(map[string]any)["lastModifiedDateTime"] != "2021-03-04T05:06:07Z" {
		t.Errorf("item = %v", item)
	}
	if mime := item["file"].(map[string]any)["mimeType"]; mime != "application/octet-stream" {
		t.Errorf("mimeType = %v", mime)
	}
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas left after the commit", n)
	}
	wantGone(t, e.do("GET", up, nil, noAuth()))
	wantGone(t, e.fragment(up, data[:10], 0, total))
}

// wantGone checks the answer for a session that no longer exists.
func wantGone(t *testing.T, r *resp) {
	t.Helper()
	r.wantError(t, http.StatusNotFound, "itemNotFound")
	wantInner(t, r, "uploadSessionNotFound")
}

// TestUploadSessionForms creates sessions through every addressing form,
// drive prefix and API version, as rclone does (no body, then fragments
// carrying its token, which must be ignored).
func TestUploadSessionForms(t *testing.T) {
	e := newEnv(t)
	dir := e.mkdir("", "d")
	dirID := dir["id"].(string)
	drive := string(e.drive.ID)
	for i, p := range []string{
		"/v1.0/me/drive/items/" + dirID + ":/f%d.txt:/createUploadSession",
		"/v2.0/me/drive/root:/d/f%d.txt:/createUploadSession",
		"/v1.0/drive/items/" + dirID + ":/f%d.txt:/createUploadSession",
		"/v2.0/drive/root:/d/f%d.txt:/createUploadSession",
		"/v1.0/drives/" + drive + "/items/" + dirID + ":/f%d.txt:/createUploadSession",
		"/v2.0/drives/" + drive + "/root%%3A%%2Fd%%2Ff%d.txt%%3A%%2FcreateUploadSession",
	} {
		path := fmt.Sprintf(p, i)
		up := e.createSession(path, nil)
		data := []byte(fmt.Sprintf("hello %d", i))
		item := e.fragment(up, data, 0, int64(len(data)), bearer("not a token at all")).must(t, http.StatusCreated).json(t)
		if want := fmt.Sprintf("f%d.txt", i); item["name"] != want || item["parentReference"].(map[string]any)["id"] != dirID {
			t.Errorf("%s: item %v, want %s in d", path, item, want)
		}
		if mime := item["file"].(map[string]any)["mimeType"]; mime != "text/plain" {
			t.Errorf("%s: mimeType = %v", path, mime)
		}
		e.checkFile(item, data)
	}
	// The default conflict behaviour is replace: an existing file gets the
	// new bytes and keeps its id (200).
	old := e.put("/d/f0.txt", "old")
	up := e.createSession("/v1.0/me/drive/root:/d/f0.txt:/createUploadSession", map[string]any{"item": map[string]any{}})
	item := e.fragment(up, []byte("new!"), 0, 4).must(t, http.StatusOK).json(t)
	if item["id"] != old["id"] {
		t.Errorf("replace gave id %v, want %v", item["id"], old["id"])
	}
	e.checkFile(item, []byte("new!"))
}

// TestUploadSessionOutOfOrder sends the fragments in a scrambled order:
// the answers list every missing range and the hashes come out right.
func TestUploadSessionOutOfOrder(t *testing.T) {
	e := newEnv(t)
	data := randomBytes(5*slice+777, 2)
	total := int64(len(data))
	up := e.createSession("/v1.0/me/drive/root:/scrambled.bin:/createUploadSession", nil)
	frag := func(i int64) *resp {
		start := i * slice
		return e.fragment(up, data[start:min(start+slice, total)], start, total)
	}
	s := func(a, b int64) string { return fmt.Sprintf("%d-%d", a*slice, b*slice-1) }
	wantRanges(t, frag(5).must(t, http.StatusAccepted), "0-"+fmt.Sprint(5*slice-1))
	wantRanges(t, frag(2).must(t, http.StatusAccepted), s(0, 2), s(3, 5))
	wantRanges(t, frag(0).must(t, http.StatusAccepted), s(1, 2), s(3, 5))
	golden(t, "upload-session-status", e.do("GET", up, nil, noAuth()).must(t, http.StatusOK).body)
	wantRanges(t, frag(4).must(t, http.StatusAccepted), s(1, 2), s(3, 4))
	wantRanges(t, frag(1).must(t, http.StatusAccepted), s(3, 4))
	e.checkFile(frag(3).must(t, http.StatusCreated).json(t), data)
}

// TestUploadSessionResume loses a fragment, finds out from the status,
// sends it again and finishes; then re-sends a fragment already stored and
// recovers from the 416 the way rclone does.
func TestUploadSessionResume(t *testing.T) {
	e := newEnv(t)
	data := randomBytes(4*slice+1, 3)
	total := int64(len(data))
	up := e.createSession("/v1.0/me/drive/root:/resumed.bin:/createUploadSession", nil)
	frag := func(i int64) *resp {
		start := i * slice
		return e.fragment(up, data[start:min(start+slice, total)], start, total)
	}
	frag(0).must(t, http.StatusAccepted)
	// Fragment 1 is lost on the way; fragment 2 arrives.
	frag(2).must(t, http.StatusAccepted)
	want := []string{fmt.Sprintf("%d-%d", slice, 2*slice-1), fmt.Sprintf("%d-", 3*slice)}
	wantRanges(t, e.do("GET", up, nil, noAuth()).must(t, http.StatusOK), want...)
	st := e.do("GET", up, nil).must(t, http.StatusOK) // rclone sends its token
	wantRanges(t, st, want...)
	if _, ok := st.json(t)["uploadUrl"]; ok {
		t.Errorf("the status shows uploadUrl: %s", st.body)
	}
	frag(1).must(t, http.StatusAccepted)
	wantRanges(t, e.do("GET", up, nil, noAuth()).must(t, http.StatusOK), fmt.Sprintf("%d-", 3*slice))

	// A retry of fragment 2 whose first answer was lost: 416, then the
	// status says where to go on.
	r := frag(2)
	r.wantError(t, http.StatusRequestedRangeNotSatisfiable, "invalidRange")
	wantInner(t, r, "fragmentOverlap")
	if msg := r.json(t)["error"].(map[string]any)["message"]; msg != "Uploaded fragment overlaps with existing data." {
		t.Errorf("overlap message = %q", msg)
	}
	next := ranges(t, e.do("GET", up, nil).must(t, http.StatusOK))
	if len(next) != 1 || next[0] != fmt.Sprintf("%d-", 3*slice) {
		t.Fatalf("status after 416: %v", next)
	}
	frag(3).must(t, http.StatusAccepted)
	e.checkFile(frag(4).must(t, http.StatusCreated).json(t), data)
}

// TestUploadSessionFragmentErrors refuses bad fragments without recording
// or writing anything, so that the upload still finishes with the right
// bytes.
func TestUploadSessionFragmentErrors(t *testing.T) {
	e := newEnv(t, func(c *graph.Config) { c.MaxFragmentSize = 1000 })
	data := randomBytes(300, 4)
	up := e.createSession("/v1.0/me/drive/root:/f.bin:/createUploadSession", nil)
	e.fragment(up, data[:100], 0, 300).must(t, http.StatusAccepted)
	for _, tt := range []struct {
		name   string
		body   []byte
		cr     string
		status int
		code   string
		inner  string
	}{
		{"no Content-Range", data[100:200], "", 400, "invalidRequest", ""},
		{"not bytes", data[100:200], "items 100-199/300", 400, "invalidRequest", ""},
		{"no total", data[100:200], "bytes 100-199", 400, "invalidRequest", ""},
		{"star total", data[100:200], "bytes 100-199/*", 400, "invalidRequest", ""},
		{"backwards", data[100:200], "bytes 199-100/300", 400, "invalidRequest", ""},
		{"beyond total", data[100:200], "bytes 250-349/300", 400, "invalidRequest", ""},
		{"zero total", nil, "bytes 0--1/0", 400, "invalidRequest", ""},
		{"total changes", data[100:200], "bytes 100-199/301", 400, "invalidRequest", "fragmentLengthMismatch"},
		{"Content-Length short", data[100:150], "bytes 100-199/300", 400, "invalidRequest", ""},
		{"Content-Length long", data[100:250], "bytes 100-199/300", 400, "invalidRequest", ""},
		{"too large", data[100:101], "bytes 0-1000/5000", 413, "invalidRequest", "maxFragmentLengthExceeded"},
		{"overlap inside", bytes.Repeat([]byte("B"), 10), "bytes 50-59/300", 416, "invalidRange", "fragmentOverlap"},
		{"overlap across", bytes.Repeat([]byte("B"), 100), "bytes 50-149/300", 416, "invalidRange", "fragmentOverlap"},
		{"overlap exact", bytes.Repeat([]byte("B"), 100), "bytes 0-99/300", 416, "invalidRange", "fragmentOverlap"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := []reqOpt{noAuth()}
			if tt.cr != "" {
				opts = append(opts, header("Content-Range", tt.cr))
			}
			r := e.do("PUT", up, tt.body, opts...)
			r.wantError(t, tt.status, tt.code)
			if tt.inner != "" {
				wantInner(t, r, tt.inner)
			}
			wantRanges(t, e.do("GET", up, nil).must(t, http.StatusOK), "100-")
		})
	}
	wantGone(t, e.fragment(e.srv.URL+"/upload/up_NOSUCHSESSION", data[:10], 0, 10))
	e.do("PATCH", up, nil, noAuth()).wantError(t, http.StatusMethodNotAllowed, "notAllowed")

	e.fragment(up, data[200:], 200, 300).must(t, http.StatusAccepted)
	item := e.fragment(up, data[100:200], 100, 300).must(t, http.StatusCreated).json(t)
	e.checkFile(item, data) // no refused fragment wrote a byte
}

// TestUploadSessionShortBody cuts a fragment's body off: 400, nothing
// recorded, and the same fragment can be sent again.
func TestUploadSessionShortBody(t *testing.T) {
	e := newEnv(t)
	data := randomBytes(1000, 5)
	up := e.createSession("/v1.0/me/drive/root:/f.bin:/createUploadSession", nil)

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	path := strings.TrimPrefix(up, e.srv.URL)
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Range: bytes 0-999/1000\r\nContent-Length: 1000\r\n\r\n", path, e.srv.Listener.Addr())
	conn.Write(data[:400])
	conn.(*net.TCPConn).CloseWrite()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("short body: status %d, want 400\n%s", res.StatusCode, body)
	}
	wantRanges(t, e.do("GET", up, nil).must(t, http.StatusOK), "0-")
	e.checkFile(e.fragment(up, data, 0, 1000).must(t, http.StatusCreated).json(t), data)
}

// TestUploadSessionRace runs two sessions for one name to the end, as
// DESIGN.md §3 says: with replace both succeed and the last commit wins;
// with fail the second commit gets 409 and leaves nothing behind.
func TestUploadSessionRace(t *testing.T) {
	e := newEnv(t)
	a, b := randomBytes(2000, 6), randomBytes(3000, 7)

	upA := e.createSession("/v1.0/me/drive/root:/same.bin:/createUploadSession", nil)
	upB := e.createSession("/v1.0/me/drive/root:/same.bin:/createUploadSession", nil)
	e.fragment(upA, a[:1000], 0, 2000).must(t, http.StatusAccepted)
	e.fragment(upB, b[:1000], 0, 3000).must(t, http.StatusAccepted)
	first := e.fragment(upA, a[1000:], 1000, 2000).must(t, http.StatusCreated).json(t)
	second := e.fragment(upB, b[1000:], 1000, 3000).must(t, http.StatusOK).json(t)
	if first["id"] != second["id"] {
		t.Errorf("replace made a second item: %v then %v", first["id"], second["id"])
	}
	e.checkFile(e.do("GET", "/v1.0/me/drive/root:/same.bin", nil).must(t, http.StatusOK).json(t), b)

	fail := map[string]any{"item": map[string]any{"@microsoft.graph.conflictBehavior": "fail"}}
	upA = e.createSession("/v1.0/me/drive/root:/once.bin:/createUploadSession", fail)
	upB = e.createSession("/v1.0/me/drive/root:/once.bin:/createUploadSession", fail)
	e.fragment(upA, a[:1000], 0, 2000).must(t, http.StatusAccepted)
	e.fragment(upB, b[:1000], 0, 3000).must(t, http.StatusAccepted)
	blobs := e.blobCount()
	e.fragment(upA, a[1000:], 1000, 2000).must(t, http.StatusCreated)
	r := e.fragment(upB, b[1000:], 1000, 3000)
	r.wantError(t, http.StatusConflict, "nameAlreadyExists")
	e.checkFile(e.do("GET", "/v1.0/me/drive/root:/once.bin", nil).must(t, http.StatusOK).json(t), a)
	wantGone(t, e.do("GET", upB, nil, noAuth()))
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas left", n)
	}
	if n := e.blobCount(); n != blobs+1 {
		t.Errorf("%d blobs, want %d: the refused commit left its bytes", n, blobs+1)
	}
}

// TestUploadSessionConcurrentFragments sends all fragments of one session
// at once: exactly one of them commits.
func TestUploadSessionConcurrentFragments(t *testing.T) {
	e := newEnv(t)
	const n = 8
	data := randomBytes(n*1000, 8)
	up := e.createSession("/v1.0/me/drive/root:/parallel.bin:/createUploadSession", nil)
	statuses := make([]int, n)
	items := make([]map[string]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := e.fragment(up, data[i*1000:(i+1)*1000], int64(i*1000), int64(len(data)))
			statuses[i] = r.StatusCode
			if r.StatusCode == http.StatusCreated {
				items[i] = r.json(t)
			}
		})
	}
	wg.Wait()
	created := 0
	for i, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
			e.checkFile(items[i], data)
		case http.StatusAccepted:
		default:
			t.Errorf("fragment %d: status %d", i, s)
		}
	}
	if created != 1 {
		t.Errorf("%d fragments committed, want 1 (statuses %v)", created, statuses)
	}
}

// TestUploadSessionExpiry lets a session expire: every fragment extends
// it, and once it has expired it is 404 and its bytes are freed.
func TestUploadSessionExpiry(t *testing.T) {
	e := newEnv(t, func(c *graph.Config) { c.SessionTTL = time.Hour })
	up := e.createSession("/v1.0/me/drive/root:/slow.bin:/createUploadSession", nil)
	e.clock.advance(50 * time.Minute)
	r := e.fragment(up, []byte("abc"), 0, 10).must(t, http.StatusAccepted)
	exp, err := time.Parse(time.RFC3339, r.json(t)["expirationDateTime"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if want := e.clock.now().Add(time.Hour); exp.Sub(want).Abs() > time.Second {
		t.Errorf("a fragment moved the expiry to %v, want %v", exp, want)
	}
	e.clock.advance(50 * time.Minute) // 100 minutes after creation, 50 after the fragment
	e.fragment(up, []byte("def"), 3, 10).must(t, http.StatusAccepted)
	e.clock.advance(61 * time.Minute)
	wantGone(t, e.fragment(up, []byte("ghij"), 6, 10))
	wantGone(t, e.do("GET", up, nil, noAuth()))
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas left by an expired session", n)
	}
	e.do("GET", "/v1.0/me/drive/root:/slow.bin", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}

// TestUploadSessionCancel deletes a session: 204, its bytes freed, and it
// is gone for every method.
func TestUploadSessionCancel(t *testing.T) {
	e := newEnv(t)
	up := e.createSession("/v1.0/me/drive/root:/cancelled.bin:/createUploadSession", nil)
	e.fragment(up, []byte("abc"), 0, 10).must(t, http.StatusAccepted)
	if n := e.stagingCount(); n != 1 {
		t.Fatalf("%d staging areas during the upload, want 1", n)
	}
	r := e.do("DELETE", up, nil, noAuth()).must(t, http.StatusNoContent)
	if len(r.body) != 0 {
		t.Errorf("204 with a body: %q", r.body)
	}
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas after DELETE", n)
	}
	wantGone(t, e.do("GET", up, nil, noAuth()))
	wantGone(t, e.do("DELETE", up, nil, noAuth()))
	wantGone(t, e.do("POST", up, nil, noAuth()))
	wantGone(t, e.fragment(up, []byte("defghij"), 3, 10))
	e.do("GET", "/v1.0/me/drive/root:/cancelled.bin", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}

// TestUploadSessionDeferCommit holds the file back until an empty POST.
func TestUploadSessionDeferCommit(t *testing.T) {
	e := newEnv(t)
	data := randomBytes(2500, 9)
	up := e.createSession("/v1.0/me/drive/root:/later.bin:/createUploadSession", map[string]any{"deferCommit": true})
	e.fragment(up, data[:1000], 0, 2500).must(t, http.StatusAccepted)
	r := e.do("POST", up, nil, noAuth())
	r.wantError(t, http.StatusBadRequest, "invalidRequest")
	wantInner(t, r, "uploadSessionIncomplete")
	wantRanges(t, e.fragment(up, data[1000:], 1000, 2500).must(t, http.StatusAccepted))
	e.do("GET", "/v1.0/me/drive/root:/later.bin", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	wantRanges(t, e.do("GET", up, nil, noAuth()).must(t, http.StatusOK))
	item := e.do("POST", up, nil, noAuth(), header("Content-Length", "0")).must(t, http.StatusCreated).json(t)
	e.checkFile(item, data)
	wantGone(t, e.do("POST", up, nil, noAuth()))
}

// TestUploadSessionReplaceByID replaces the bytes of an existing file
// through items/{id}/createUploadSession: same id, new bytes, 200.
func TestUploadSessionReplaceByID(t *testing.T) {
	e := newEnv(t)
	old := e.put("/doc.txt", "old text")
	id := old["id"].(string)
	data := randomBytes(5000, 10)
	e.do("POST", "/v1.0/me/drive/items/"+id+"/createUploadSession", nil, header("If-Match", `"{`+id+`},999"`)).
		wantError(t, http.StatusPreconditionFailed, "resourceModified")
	up := e.createSession("/v1.0/me/drive/items/"+id+"/createUploadSession", map[string]any{
		"item": map[string]any{"fileSystemInfo": map[string]any{"lastModifiedDateTime": "2020-01-01T00:00:00Z"}},
	}, header("If-Match", old["eTag"].(string)))
	e.fragment(up, data[:2000], 0, 5000).must(t, http.StatusAccepted)
	item := e.fragment(up, data[2000:], 2000, 5000).must(t, http.StatusOK).json(t)
	if item["id"] != id || item["name"] != "doc.txt" {
		t.Errorf("replaced item = %v, want id %s named doc.txt", item, id)
	}
	if got := item["fileSystemInfo"].(map[string]any)["lastModifiedDateTime"]; got != "2020-01-01T00:00:00Z" {
		t.Errorf("lastModifiedDateTime = %v", got)
	}
	e.checkFile(item, data)

	// The file changes while the session runs: the commit's If-Match
	// check fails, and the session is gone.
	cur := e.do("GET", "/v1.0/me/drive/items/"+id, nil).must(t, http.StatusOK).json(t)
	up = e.createSession("/v1.0/me/drive/items/"+id+"/createUploadSession", nil, header("If-Match", cur["cTag"].(string)))
	e.put("/doc.txt", "changed meanwhile")
	e.fragment(up, data[:10], 0, 10).wantError(t, http.StatusPreconditionFailed, "resourceModified")
	wantGone(t, e.do("GET", up, nil, noAuth()))
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas left", n)
	}

	// The file is deleted while the session runs.
	up = e.createSession("/v1.0/me/drive/items/"+id+"/createUploadSession", nil)
	e.do("DELETE", "/v1.0/me/drive/items/"+id, nil).must(t, http.StatusNoContent)
	e.fragment(up, data[:10], 0, 10).wantError(t, http.StatusNotFound, "itemNotFound")

	// If-Match on the path form names the file to replace.
	f := e.put("/other.txt", "x")
	up = e.createSession("/v1.0/me/drive/root:/other.txt:/createUploadSession",
		map[string]any{"item": map[string]any{"@microsoft.graph.conflictBehavior": "fail"}}, header("If-Match", f["eTag"].(string)))
	if item := e.fragment(up, data[:10], 0, 10).must(t, http.StatusOK).json(t); item["id"] != f["id"] {
		t.Errorf("If-Match path form replaced into %v, want %v", item["id"], f["id"])
	}
}

// TestCreateUploadSessionRefusals checks every request refused at
// creation leaves no session and no staging area behind.
func TestCreateUploadSessionRefusals(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	e.put("/d/taken.txt", "x")
	f := e.put("/file.txt", "x")
	dir := mustID(t, e, "/d")
	fail := map[string]any{"item": map[string]any{"@microsoft.graph.conflictBehavior": "fail"}}
	for _, tt := range []struct {
		name   string
		path   string
		body   any
		opts   []reqOpt
		status int
		code   string
	}{
		{"fail and taken", "/v1.0/me/drive/root:/d/TAKEN.txt:/createUploadSession", fail, nil, 409, "nameAlreadyExists"},
		{"legacy fail and taken", "/v1.0/me/drive/items/" + string(dir) + ":/taken.txt:/createUploadSession",
			map[string]any{"item": map[string]any{"@name.conflictBehavior": "fail"}}, nil, 409, "nameAlreadyExists"},
		{"query fail and taken", "/v1.0/me/drive/root:/d/taken.txt:/createUploadSession?@microsoft.graph.conflictBehavior=fail", nil, nil, 409, "nameAlreadyExists"},
		{"parent missing", "/v1.0/me/drive/root:/nope/a.txt:/createUploadSession", nil, nil, 404, "itemNotFound"},
		{"parent is a file", "/v1.0/me/drive/root:/file.txt/a.txt:/createUploadSession", nil, nil, 400, "invalidRequest"},
		{"bad name", "/v1.0/me/drive/root:/d/a%3Fb:/createUploadSession", nil, nil, 400, "invalidRequest"},
		{"name differs", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", map[string]any{"item": map[string]any{"name": "b.txt"}}, nil, 400, "invalidRequest"},
		{"by id of a folder", "/v1.0/me/drive/items/" + string(dir) + "/createUploadSession", nil, nil, 400, "invalidRequest"},
		{"root", "/v1.0/me/drive/root/createUploadSession", nil, nil, 400, "invalidRequest"},
		{"by id missing", "/v1.0/me/drive/items/NOSUCHITEM/createUploadSession", nil, nil, 404, "itemNotFound"},
		{"over quota", "/v1.0/me/drive/root:/d/huge.iso:/createUploadSession", map[string]any{"item": map[string]any{"fileSize": 2 << 30}}, nil, 507, "quotaLimitReached"},
		{"negative size", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", map[string]any{"item": map[string]any{"fileSize": -1}}, nil, 400, "invalidRequest"},
		{"size not a number", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", map[string]any{"item": map[string]any{"fileSize": "big"}}, nil, 400, "invalidRequest"},
		{"bad conflict", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", map[string]any{"item": map[string]any{"@microsoft.graph.conflictBehavior": "merge"}}, nil, 400, "invalidRequest"},
		{"bad time", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", map[string]any{"item": map[string]any{"fileSystemInfo": map[string]any{"lastModifiedDateTime": "yesterday"}}}, nil, 400, "invalidRequest"},
		{"not JSON", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", "{", nil, 400, "invalidRequest"},
		{"stale If-Match", "/v1.0/me/drive/root:/file.txt:/createUploadSession", nil, []reqOpt{header("If-Match", `"{X},1"`)}, 412, "resourceModified"},
		{"If-Match on a free name", "/v1.0/me/drive/root:/free.txt:/createUploadSession", nil, []reqOpt{header("If-Match", f["eTag"].(string))}, 412, "resourceModified"},
		{"If-None-Match star", "/v1.0/me/drive/root:/file.txt:/createUploadSession", nil, []reqOpt{header("If-None-Match", "*")}, 412, "resourceModified"},
		{"If-None-Match eTag", "/v1.0/me/drive/items/" + f["id"].(string) + "/createUploadSession", nil, []reqOpt{header("If-None-Match", f["eTag"].(string))}, 412, "resourceModified"},
		{"read-only token", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", nil, []reqOpt{bearer(e.ro)}, 403, "accessDenied"},
		{"no token", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", nil, []reqOpt{noAuth()}, 401, "unauthenticated"},
		{"other user's drive", "/v1.0/drives/" + string(e.drive.ID) + "/root:/a.txt:/createUploadSession", nil, []reqOpt{bearer(e.other)}, 404, "itemNotFound"},
		{"GET", "/v1.0/me/drive/root:/d/a.txt:/createUploadSession", nil, []reqOpt{func(r *http.Request) { r.Method = http.MethodGet }}, 405, "notAllowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", tt.path, tt.body, tt.opts...).wantError(t, tt.status, tt.code)
		})
	}
	if n := e.stagingCount(); n != 0 {
		t.Errorf("%d staging areas left by refused requests", n)
	}
	// What fits, and a taken name under replace or rename, is fine; a
	// fileSize may use the room of the file it replaces, less what other
	// sessions have declared (1000 bytes here).
	e.createSession("/v1.0/me/drive/root:/d/taken.txt:/createUploadSession", map[string]any{"item": map[string]any{"fileSize": 1000}})
	e.createSession("/v1.0/me/drive/root:/d/taken.txt:/createUploadSession?@microsoft.graph.conflictBehavior=rename", nil)
	e.createSession("/v1.0/me/drive/root:/d/a.txt:/createUploadSession", map[string]any{"item": map[string]any{"name": "a.txt"}})
	e.createSession("/v1.0/me/drive/root:/d/b.txt:/createUploadSession", map[string]any{"item": map[string]any{"fileSize": e.drive.Quota - 1100}})
}

// TestUploadSessionQuota refuses a session whose first fragment shows a
// file larger than the room left, and one that no longer fits at commit.
func TestUploadSessionQuota(t *testing.T) {
	e := newEnv(t)
	up := e.createSession("/v1.0/me/drive/root:/huge.bin:/createUploadSession", nil)
	r := e.fragment(up, []byte("abc"), 0, 2<<30)
	r.wantError(t, http.StatusInsufficientStorage, "quotaLimitReached")
	wantRanges(t, e.do("GET", up, nil).must(t, http.StatusOK), "0-")

	// A session whose fileSize fitted keeps its room: another upload
	// cannot take it, and the session still commits.
	up = e.createSession("/v1.0/me/drive/root:/late.bin:/createUploadSession", map[string]any{"item": map[string]any{"fileSize": 10}})
	e.fragment(up, []byte("12345"), 0, 10).must(t, http.StatusAccepted)
	filler := func(size int64) error {
		_, _, err := e.store.CreateItem(t.Context(), ferry.NewItem{DriveID: e.drive.ID, ParentID: e.drive.RootID, Name: "filler",
			Content: ferry.Content{Size: size, BlobKey: "filler"}}, ferry.ConflictFail)
		return err
	}
	if err := filler(e.drive.Quota - 5); ferry.KindOf(err) != ferry.QuotaExceeded {
		t.Fatalf("an upload into the session's room: %v, want QuotaExceeded", err)
	}
	if err := filler(e.drive.Quota - 10); err != nil {
		t.Fatalf("an upload that leaves the session its room: %v", err)
	}
	e.fragment(up, []byte("67890"), 5, 10).must(t, http.StatusCreated)
	if n := e.stagingCount(); n != 1 { // the first session's
		t.Errorf("%d staging areas, want 1", n)
	}
}

// TestUploadSessionsUnavailable runs the API without a session store.
func TestUploadSessionsUnavailable(t *testing.T) {
	e := newEnv(t)
	h := graph.NewHandler(graph.Config{SigningKey: []byte("k")}, graph.Deps{
		Accounts: e.store, Items: e.store, Blobs: e.blobs, Jobs: e.jobs,
	})
	for _, tt := range []struct{ method, path string }{
		{"POST", "/v1.0/me/drive/root:/a.bin:/createUploadSession"},
		{"PUT", "/upload/up_X"},
		{"GET", "/upload/up_X"},
	} {
		req := httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotImplemented {
			t.Errorf("%s %s: status %d, want 501\n%s", tt.method, tt.path, rec.Code, rec.Body)
		}
	}
}
