package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferrydrive/ferry/ferrytest"
)

// s3Env is a bucket for a server and a client to look into it.
type s3Env struct {
	srv  *ferrytest.S3Server
	raw  *minio.Core
	env  map[string]string
	args []string
}

func newS3Env(t *testing.T, prefix string, extra ...string) *s3Env {
	t.Helper()
	srv := ferrytest.S3(t)
	u, _ := url.Parse(srv.Endpoint)
	raw, err := minio.NewCore(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Region: srv.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &s3Env{
		srv: srv, raw: raw,
		env: map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey},
		args: append([]string{"--blobs", "s3://" + srv.Bucket + "/" + prefix, "--s3-endpoint", srv.Endpoint,
			"--s3-path-style", "--fetch-allow", "127.0.0.1/32"}, extra...),
	}
}

// objects lists the bucket's keys; uploads its unfinished multipart uploads.
func (e *s3Env) objects(t *testing.T) []string {
	t.Helper()
	var out []string
	for o := range e.raw.Client.ListObjects(t.Context(), e.srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

func (e *s3Env) uploads(t *testing.T) int {
	t.Helper()
	res, err := e.raw.ListMultipartUploads(t.Context(), e.srv.Bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Uploads)
}

// startStoppable runs `ferry serve` in process and returns a function that
// stops it and waits.
func startStoppable(t *testing.T, env map[string]string, args ...string) (server, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	args = append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)
	go func() { done <- run(ctx, args, func(k string) string { return env[k] }, pw, io.Discard); pw.Close() }()
	s := scanServerOutput(t, pr)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after a clean stop", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return s, stop
}

// TestServeOnS3 runs a server on S3: an import that spans several parts,
// downloads with Range and If-Range, a copy that adds no object, deletes,
// and a restart whose sweep removes the blob no item uses; the bucket
// never holds an unfinished upload once the jobs have ended.
func TestServeOnS3(t *testing.T) {
	e := newS3Env(t, "ferry")
	content := make([]byte, 37<<20+4321) // three 16 MiB parts, the last one short
	for i := range content {
		content[i] = byte(i*13 + i>>11)
	}
	src := origin(t, content)
	data := t.TempDir()
	s, stop := startStoppable(t, e.env, append([]string{"--data", data}, e.args...)...)

	code, st := pollMonitor(t, s.importURL(t, src.URL+"/big.bin", "big.bin").Header.Get("Location"), 120*time.Second)
	if code != http.StatusOK || st["status"] != "completed" {
		t.Fatalf("import ended %d %v", code, st)
	}
	id := st["resourceId"].(string)
	item := decodeJSON(t, s.do(t, "GET", "/v1.0/me/drive/items/"+id, "").Body)
	sum := sha256.Sum256(content)
	if got, want := item["file"].(map[string]any)["hashes"].(map[string]any)["sha256Hash"], strings.ToUpper(hex.EncodeToString(sum[:])); got != want {
		t.Errorf("sha256Hash = %v, want %s", got, want)
	}
	objs := e.objects(t)
	if len(objs) != 1 || !strings.HasPrefix(objs[0], "ferry/blobs/") || e.uploads(t) != 0 {
		t.Fatalf("bucket after the import: objects %q, %d uploads; want one blob under ferry/blobs/ and no upload", objs, e.uploads(t))
	}
	info, err := e.raw.StatObject(t.Context(), e.srv.Bucket, objs[0], minio.StatObjectOptions{})
	if err != nil || !strings.HasSuffix(info.ETag, "-3") {
		t.Errorf("blob ETag %q (%v), want a three-part multipart upload", info.ETag, err)
	}

	dl := s.do(t, "GET", "/v1.0/me/drive/items/"+id+"/content", "", "Range", "bytes=16777200-16777299")
	got, _ := io.ReadAll(dl.Body)
	if dl.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[16777200:16777300]) {
		t.Errorf("ranged download across a part boundary = %d, %d bytes; want 206 and the 100 bytes", dl.StatusCode, len(got))
	}
	dl = s.do(t, "GET", "/v1.0/me/drive/items/"+id+"/content", "", "Range", "bytes=0-9", "If-Range", `"stale"`)
	got, _ = io.ReadAll(dl.Body)
	if dl.StatusCode != http.StatusOK || !bytes.Equal(got, content) {
		t.Errorf("download with a stale If-Range = %d, %d bytes; want 200 and the whole file", dl.StatusCode, len(got))
	}

	resp := s.do(t, "POST", "/v1.0/me/drive/items/"+id+"/copy", `{"name":"copy.bin"}`, "Content-Type", "application/json")
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("copy: %d %s", resp.StatusCode, b)
	}
	code, st = pollMonitor(t, resp.Header.Get("Location"), 60*time.Second)
	if code != http.StatusOK || st["status"] != "completed" {
		t.Fatalf("copy ended %d %v", code, st)
	}
	copyID := st["resourceId"].(string)
	if got := e.objects(t); len(got) != 1 {
		t.Errorf("objects after the copy = %q, want the one shared blob", got)
	}
	dl = s.do(t, "GET", "/v1.0/me/drive/items/"+copyID+"/content", "", "Range", "bytes=-5")
	got, _ = io.ReadAll(dl.Body)
	if dl.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[len(content)-5:]) {
		t.Errorf("copy's last 5 bytes = %d %q", dl.StatusCode, got)
	}

	for _, it := range []string{id, copyID} {
		if resp := s.do(t, "DELETE", "/v1.0/me/drive/items/"+it, ""); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete %s: %d", it, resp.StatusCode)
		}
	}
	stop()
	// The sweep at start deletes the bytes no item uses.
	startStoppable(t, e.env, append([]string{"--data", data}, e.args...)...)
	deadline := time.Now().Add(30 * time.Second)
	for len(e.objects(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("objects left 30s after the restart: %q", e.objects(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCancelOnS3Aborts cancels an import that has staged bytes on S3 (a
// multipart upload and synced pieces) and checks that its multipart
// upload and pieces are gone once the monitor says cancelled. The origin
// sends a third of the file over however many connections the import
// opens and then holds the rest back until the test ends, so the import
// cannot finish before the cancel arrives.
func TestCancelOnS3Aborts(t *testing.T) {
	e := newS3Env(t, "")
	content := make([]byte, 24<<20)
	o := &slowOrigin{content: content, hold: make(chan struct{}), holdAfter: 8 << 20}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(o.hold) }) // runs before srv.Close
	src := srv.URL
	s, _ := startStoppable(t, e.env, append([]string{"--data", t.TempDir()}, e.args...)...)
	monitor := s.importURL(t, src+"/slow.bin", "slow.bin").Header.Get("Location")
	deadline := time.Now().Add(60 * time.Second)
	for len(e.objects(t)) == 0 { // a checkpoint synced pieces
		if time.Now().After(deadline) {
			t.Fatal("no staged bytes in the bucket within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ups := e.uploads(t); ups != 1 {
		t.Fatalf("%d multipart uploads while the import stages, want 1", ups)
	}
	if r, err := http.Get(monitor); err != nil {
		t.Fatal(err)
	} else if st := decodeJSON(t, r.Body); st["status"] != "inProgress" {
		t.Fatalf("import before the cancel: %v, want inProgress", st)
	}
	req, _ := http.NewRequest(http.MethodDelete, monitor, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	code, st := pollMonitor(t, monitor, 60*time.Second)
	if st["status"] != "cancelled" {
		t.Fatalf("job ended %d %v, want cancelled", code, st)
	}
	if objs, ups := e.objects(t), e.uploads(t); len(objs) != 0 || ups != 0 {
		t.Errorf("after the cancel: objects %q, %d uploads; want none", objs, ups)
	}
}

// TestUploadSessionOnS3 uploads a file through a session whose fragments
// are smaller than S3's part minimum and arrive out of order, and checks
// that only the blob is left in the bucket.
func TestUploadSessionOnS3(t *testing.T) {
	e := newS3Env(t, "sessions")
	s, _ := startStoppable(t, e.env, append([]string{"--data", t.TempDir()}, e.args...)...)
	uploadAcrossNodes(t, []server{s})
	if objs, ups := e.objects(t), e.uploads(t); len(objs) != 1 || ups != 0 {
		t.Errorf("bucket after the session: objects %q, %d uploads; want one blob", objs, ups)
	}
}

// TestPresignedDownloadOnS3 checks --s3-presign: a download is a 302 to
// the bucket, which serves the bytes and a Range itself; a request with
// If-Range stays with Ferry, which alone knows the validator.
func TestPresignedDownloadOnS3(t *testing.T) {
	e := newS3Env(t, "", "--s3-presign")
	s, _ := startStoppable(t, e.env, append([]string{"--data", t.TempDir()}, e.args...)...)
	content := bytes.Repeat([]byte("presigned bytes\n"), 4096)
	resp := s.do(t, "PUT", "/v1.0/me/drive/root:/p.txt:/content", string(content))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	id := decodeJSON(t, resp.Body)["id"].(string)

	// The content URL redirects to Ferry's download URL, which redirects
	// to S3.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, s.base+"/v1.0/me/drive/items/"+id+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	var loc string
	for range 3 {
		r, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusFound {
			break
		}
		loc = r.Header.Get("Location")
		req, _ = http.NewRequest(http.MethodGet, loc, nil)
	}
	if !strings.HasPrefix(loc, e.srv.Endpoint+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("last redirect to %q, want a presigned URL on %s", loc, e.srv.Endpoint)
	}
	req, _ = http.NewRequest(http.MethodGet, loc, nil)
	req.Header.Set("Range", "bytes=16-31")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[16:32]) {
		t.Errorf("presigned GET with Range = %d %q", r.StatusCode, got)
	}

	item := decodeJSON(t, s.do(t, "GET", "/v1.0/me/drive/items/"+id, "").Body)
	dl := item["@microsoft.graph.downloadUrl"].(string)
	req, _ = http.NewRequest(http.MethodGet, dl, nil)
	req.Header.Set("Range", "bytes=0-3")
	req.Header.Set("If-Range", item["cTag"].(string))
	r, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusPartialContent || string(got) != "pres" {
		t.Errorf("download with If-Range = %d %q, want 206 from Ferry itself", r.StatusCode, got)
	}
}
