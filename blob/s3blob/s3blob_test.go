package s3blob_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/s3blob"
	"github.com/ferrydrive/ferry/ferrytest"
)

const mib = 1 << 20

// env is a store on a fresh bucket and a raw client to look behind it.
type env struct {
	store  *s3blob.Store
	raw    minio.Core
	bucket string
	prefix string
}

func newEnv(t *testing.T, prefix string, presign bool) *env {
	t.Helper()
	srv := ferrytest.S3(t)
	s, err := s3blob.New(s3blob.Options{
		Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		Bucket: srv.Bucket, Prefix: prefix,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		SpoolDir: t.TempDir(), PartSize: s3blob.MinPartSize,
		Presign: presign,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.Endpoint)
	raw, err := minio.NewCore(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Region: srv.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: s, raw: *raw, bucket: srv.Bucket, prefix: prefix}
}

func TestConformance(t *testing.T) {
	ferrytest.TestBlobStore(t, func(t *testing.T) ferry.BlobStore { return newEnv(t, "tenant/a", false).store })
}

// keys lists every object in the bucket.
func (e *env) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for o := range e.raw.Client.ListObjects(t.Context(), e.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

// uploads lists every unfinished multipart upload in the bucket.
func (e *env) uploads(t *testing.T) []minio.ObjectMultipartInfo {
	t.Helper()
	res, err := e.raw.ListMultipartUploads(t.Context(), e.bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return res.Uploads
}

func pattern(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7+i>>9)
	}
	return p
}

// TestMultipartStaging checks what S3 holds while an import streams: the
// released parts are real multipart parts as soon as a Sync runs, the
// rest is pieces, every key is under the prefix, and after Publish only
// the blob is left.
func TestMultipartStaging(t *testing.T) {
	e := newEnv(t, "pre/fix", false)
	ctx := t.Context()
	st, err := e.store.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data := pattern(1, 12*mib+5)
	if _, err := st.WriteAt(data[:11*mib], 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Release(11 * mib); err != nil {
		t.Fatal(err)
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	ups := e.uploads(t)
	if len(ups) != 1 || ups[0].Key != "pre/fix/blobs/"+st.ID() {
		t.Fatalf("multipart uploads = %+v, want one for pre/fix/blobs/%s", ups, st.ID())
	}
	parts, err := e.raw.ListObjectParts(ctx, e.bucket, ups[0].Key, ups[0].UploadID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(parts.ObjectParts); got != 2 {
		t.Errorf("uploaded parts after releasing 11 MiB = %d, want 2 (5 MiB each)", got)
	}
	for _, k := range e.keys(t) {
		if !strings.HasPrefix(k, "pre/fix/staging/"+st.ID()+"/") {
			t.Errorf("object %s is not a piece of the area", k)
		}
	}
	// Released bytes past the head cannot be read back; the head can.
	if _, err := st.ReadAt(make([]byte, 10), 6*mib); err == nil {
		t.Error("ReadAt of bytes in an uploaded part succeeded")
	}
	head := make([]byte, ferry.StagingHead)
	if _, err := st.ReadAt(head, 0); err != nil || !bytes.Equal(head, data[:len(head)]) {
		t.Errorf("ReadAt of the head = %v", err)
	}
	if _, err := st.WriteAt(data[11*mib:], 11*mib); err != nil {
		t.Fatal(err)
	}
	key, err := st.Publish(ctx, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.keys(t); len(got) != 1 || got[0] != "pre/fix/blobs/"+key {
		t.Errorf("objects after Publish = %q, want only pre/fix/blobs/%s", got, key)
	}
	if ups := e.uploads(t); len(ups) != 0 {
		t.Errorf("multipart uploads after Publish = %+v, want none", ups)
	}
	info, err := e.raw.StatObject(ctx, e.bucket, "pre/fix/blobs/"+key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(info.ETag, "-3") {
		t.Errorf("blob ETag %q, want a 3-part multipart ETag", info.ETag)
	}
	b, err := e.store.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob read back: %d bytes, %v; want the %d staged", len(got), err, len(data))
	}
}

// TestRangeReads reads a published blob at scattered offsets and through
// a section, as GET …/content with Range does.
func TestRangeReads(t *testing.T) {
	e := newEnv(t, "", false)
	ctx := t.Context()
	data := pattern(2, 6*mib+333)
	st, err := e.store.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	key, err := st.Publish(ctx, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.store.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tt := range []struct{ off, n int64 }{
		{0, 1}, {5*mib - 3, 10}, {int64(len(data)) - 100, 100}, {1234567, 65536}, {17, 3 * mib},
	} {
		got, err := io.ReadAll(io.NewSectionReader(b, tt.off, tt.n))
		if err != nil || !bytes.Equal(got, data[tt.off:tt.off+tt.n]) {
			t.Errorf("section [%d, +%d) = %d bytes, %v; want the blob's", tt.off, tt.n, len(got), err)
		}
	}
	p := make([]byte, 200)
	if n, err := b.ReadAt(p, int64(len(data))-50); n != 50 || err != io.EOF {
		t.Errorf("ReadAt across the end = %d, %v; want 50, EOF", n, err)
	}
}

// TestRemoveStagingAborts checks that removing an area aborts its
// multipart upload and deletes its pieces.
func TestRemoveStagingAborts(t *testing.T) {
	e := newEnv(t, "x", false)
	ctx := t.Context()
	st, err := e.store.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(3, 7*mib)
	if _, err := st.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	st.Release(int64(len(data)))
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if len(e.uploads(t)) != 1 || len(e.keys(t)) == 0 {
		t.Fatalf("before removal: uploads %v, keys %q; want one upload and pieces", e.uploads(t), e.keys(t))
	}
	if err := e.store.RemoveStaging(ctx, st.ID()); err != nil {
		t.Fatal(err)
	}
	if ups, keys := e.uploads(t), e.keys(t); len(ups) != 0 || len(keys) != 0 {
		t.Errorf("after RemoveStaging: uploads %v, keys %q; want none", ups, keys)
	}
}

// TestOrphanSweepSeesAbandonedUploads checks that ListStaging reports a
// multipart upload nobody holds (a dead node's) and pieces left without
// an upload, so that the sweep's RemoveStaging clears both.
func TestOrphanSweepSeesAbandonedUploads(t *testing.T) {
	e := newEnv(t, "p", false)
	ctx := t.Context()
	st, err := e.store.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.WriteAt([]byte("abandoned"), 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Pieces without an upload: what a crash between completing and
	// deleting pieces leaves.
	other, err := e.store.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other.WriteAt([]byte("left"), 0)
	if err := other.Sync(); err != nil {
		t.Fatal(err)
	}
	other.Close()
	ups := e.uploads(t)
	for _, u := range ups {
		if strings.HasSuffix(u.Key, other.ID()) {
			if err := e.raw.AbortMultipartUpload(ctx, e.bucket, u.Key, u.UploadID); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A bucket neighbour outside the prefix is none of the store's business.
	if _, err := e.raw.PutObject(ctx, e.bucket, "q/blobs/AAAA", strings.NewReader("x"), 1, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	infos, err := e.store.ListStaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, in := range infos {
		found[in.ID] = true
		if in.Modified.IsZero() {
			t.Errorf("%s has no Modified time", in.ID)
		}
	}
	if !found[st.ID()] || !found[other.ID()] || len(found) != 2 {
		t.Fatalf("ListStaging = %+v, want %s and %s", infos, st.ID(), other.ID())
	}
	for id := range found {
		if err := e.store.RemoveStaging(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if ups := e.uploads(t); len(ups) != 0 {
		t.Errorf("uploads after the sweep: %v", ups)
	}
	if keys := e.keys(t); len(keys) != 1 || keys[0] != "q/blobs/AAAA" {
		t.Errorf("objects after the sweep = %q, want only the neighbour's", keys)
	}
}

// TestPresignedDownload fetches a blob through its presigned URL, with a
// Range, as a client redirected by GET …/content does.
func TestPresignedDownload(t *testing.T) {
	e := newEnv(t, "ps", true)
	ctx := t.Context()
	st, err := e.store.Stage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(4, 100000)
	st.WriteAt(data, 0)
	key, err := st.Publish(ctx, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	u, ok, err := e.store.DownloadURL(ctx, key, `attachment; filename*=UTF-8''a%20b.txt`, "text/plain")
	if err != nil || !ok {
		t.Fatalf("DownloadURL = %q, %v, %v", u, ok, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[10:20]) {
		t.Errorf("presigned GET with Range = %s %q, want 206 and bytes 10-19", resp.Status, got)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "a%20b.txt") {
		t.Errorf("Content-Disposition = %q, want the file name", cd)
	}
	// Without Presign the store says so.
	plain := newEnv(t, "", false)
	if _, ok, err := plain.store.DownloadURL(ctx, key, "", ""); ok || err != nil {
		t.Errorf("DownloadURL without Presign = %v, %v; want false, nil", ok, err)
	}
}

func TestParseLocation(t *testing.T) {
	for _, tt := range []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"s3://b", "b", "", true},
		{"s3://b/", "b", "", true},
		{"s3://b/p/q/", "b", "p/q", true},
		{"s3:///p", "", "", false},
		{"http://b/p", "", "", false},
		{"s3://b/p//q", "", "", false},
	} {
		b, p, err := s3blob.ParseLocation(tt.in)
		if (err == nil) != tt.ok || b != tt.bucket || p != tt.prefix {
			t.Errorf("ParseLocation(%q) = %q, %q, %v; want %q, %q, ok %v", tt.in, b, p, err, tt.bucket, tt.prefix, tt.ok)
		}
	}
}
