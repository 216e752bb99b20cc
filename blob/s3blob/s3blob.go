// Package s3blob stores blobs in an S3-compatible bucket (AWS S3, Ceph
// RGW, Backblaze B2, Cloudflare R2, versitygw …), so that several nodes
// can share them and any node can finish what another one staged.
//
// # Layout
//
// Every object lives under the configured prefix P:
//
//	P/blobs/ID                  a published blob (immutable; items share it by reference)
//	P/staging/ID/OFF-LEN-SEQ    a piece: staged bytes [OFF, OFF+LEN) not yet in a part
//
// and each staging area ID is one multipart upload whose target is
// P/blobs/ID, so that publishing is CompleteMultipartUpload: S3 makes the
// object appear whole, atomically, and the blob's key is the area's ID.
//
// # Staging
//
// A staging area splits the file on a fixed grid of parts (16 MiB by
// default; the part size is part of the ID, so areas outlive a change of
// setting). Each part, the last excepted, is uploaded whole as multipart
// part number k for bytes [(k-1)·size, k·size): the part is the unit that
// survives a node. S3 cannot read back the parts of an unfinished upload,
// while a staging area must serve ReadAt, so bytes go through three
// places:
//
//   - WriteAt puts them in a spool file on local disk (unlinked at
//     creation, so a crash leaves nothing behind), never in memory.
//   - Sync uploads, for every part the caller has released
//     (ferry.Staging.Release: hashed and checkpointed, never read again)
//     and that lies below the released offset, the whole part from the
//     spool, streamed; it frees those spool bytes. Every other written byte
//     that is not durable yet becomes a piece: a small object, readable with
//     a ranged GET from any node, that never crosses a part boundary.
//     After Sync every written byte is in a part or a piece, so a checkpoint
//     recorded after it survives the loss of the node.
//   - Publish uploads the parts not uploaded yet, assembling each one in
//     the spool from this handle's bytes, from pieces (ranged GETs) and
//     zeros for gaps, then completes the upload and deletes the pieces.
//
// The first ferry.StagingHead bytes stay readable as a piece after part 1
// is uploaded, for MIME sniffing.
//
// An import (jobs) writes sequentially and releases at each checkpoint:
// its parts go to S3 as they fill, the spool holds at most the bytes of one
// checkpoint interval plus one part, and a node that takes the job over
// reopens the area (ListParts, the pieces) and continues at the
// checkpoint: it refetches nothing that a checkpoint recorded.
//
// An upload session writes fragments of any size (often 320 KiB
// multiples, below S3's 5 MiB part minimum) in any order, through a new
// handle per request, possibly on different nodes. Each fragment's Sync
// turns it into pieces, which every node can read; the commit reads them
// to hash the file (ranged GETs) and Publish assembles the parts from
// them. A part boundary never has to match a fragment boundary. The cost
// is that session bytes cross the network three times (piece upload,
// read back, part upload) instead of once.
//
// # Clean-up
//
// RemoveStaging aborts the area's multipart upload and deletes its
// pieces. ListStaging lists multipart uploads (ListMultipartUploads under
// the prefix) and pieces, so the jobs package's orphan sweep aborts
// uploads that no job or session refers to. After a completed Publish
// the bucket holds only the blob.
package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferrydrive/ferry"
)

const (
	// DefaultPartSize is the part size of new staging areas: 16 MiB parts
	// keep a 100 GiB file under S3's 10,000 parts (6,400) and bound what a
	// takeover refetches.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part but the last.
	MinPartSize = 5 << 20
	// maxParts is S3's most parts in one upload.
	maxParts = 10000
	// opTimeout bounds one S3 call made outside a caller's context (Sync,
	// WriteAt, reads of a published blob are bounded by their callers).
	opTimeout = 5 * time.Minute
	// uploadConcurrency is how many parts or pieces one Sync or Publish
	// uploads at once.
	uploadConcurrency = 4
)

// Options configure a Store.
type Options struct {
	// Endpoint is the S3 server's URL (http or https); empty means AWS.
	Endpoint string
	// Region is the bucket's region; empty means us-east-1.
	Region string
	// PathStyle asks for path-style addressing (http://host/bucket/key),
	// which most S3-compatible servers want; otherwise virtual-hosted
	// style where the server supports it (minio-go's automatic choice).
	PathStyle bool
	// Bucket and Prefix say where objects go; see ParseLocation.
	Bucket, Prefix string
	// AccessKey, SecretKey and SessionToken are static credentials; when
	// AccessKey is empty the usual chain is asked: AWS_* variables, the
	// shared credentials file (AWS_PROFILE), then web identity, ECS or
	// EC2 instance roles.
	AccessKey, SecretKey, SessionToken string
	// SpoolDir is the local folder for staged bytes not yet uploaded.
	SpoolDir string
	// PartSize is the part size of new staging areas: a multiple of 1 MiB
	// and at least MinPartSize. 0 means DefaultPartSize.
	PartSize int64
	// Presign makes DownloadURL give presigned URLs; PresignExpiry is
	// their lifetime (default 10 minutes).
	Presign       bool
	PresignExpiry time.Duration
	// Transport, if set, carries the requests (tests).
	Transport http.RoundTripper
}

// Store is a ferry.BlobStore in an S3 bucket. It is safe for concurrent
// use.
type Store struct {
	c        minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	spool    string
	partSize int64
	presign  bool
	expiry   time.Duration

	mu   sync.Mutex
	open map[string]map[*staging]bool // open handles by area ID, for ListStaging
	seq  int64                        // last piece sequence number
}

var _ ferry.BlobStore = (*Store)(nil)

// PartSize reports the part size of new staging areas: the unit a
// takeover resumes from, so an import checkpoints at least once per part.
func (s *Store) PartSize() int64 { return s.partSize }

// ParseLocation splits a --blobs value s3://BUCKET[/PREFIX].
func ParseLocation(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("s3blob: %q does not start with s3://", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("s3blob: %q names no bucket", s)
	}
	prefix = strings.Trim(prefix, "/")
	if strings.Contains(prefix, "//") {
		return "", "", fmt.Errorf("s3blob: prefix %q has an empty segment", prefix)
	}
	return bucket, prefix, nil
}

// New returns a Store on the bucket. It makes no request: Check does.
func New(o Options) (*Store, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3blob: no bucket")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize || o.PartSize%(1<<20) != 0 || o.PartSize > 5<<30 {
		return nil, fmt.Errorf("s3blob: part size %d is not a multiple of 1 MiB between 5 MiB and 5 GiB", o.PartSize)
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.PresignExpiry == 0 {
		o.PresignExpiry = 10 * time.Minute
	}
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	if err := os.MkdirAll(o.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("s3blob: spool: %w", err)
	}
	host, secure := "s3.amazonaws.com", true
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("s3blob: endpoint %q is not an http(s)://HOST[:PORT] URL", o.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	var creds *credentials.Credentials
	if o.AccessKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken)
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	lookup := minio.BucketLookupAuto
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.NewCore(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       o.Region,
		BucketLookup: lookup,
		Transport:    o.Transport,
		MaxRetries:   3,
	})
	if err != nil {
		return nil, fmt.Errorf("s3blob: %w", err)
	}
	prefix := strings.Trim(o.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &Store{
		c: *c, bucket: o.Bucket, prefix: prefix, spool: o.SpoolDir, partSize: o.PartSize,
		presign: o.Presign, expiry: o.PresignExpiry, open: map[string]map[*staging]bool{},
	}, nil
}

// Check makes one request to see that the bucket exists and the
// credentials work.
func (s *Store) Check(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3blob: bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3blob: bucket %s does not exist", s.bucket)
	}
	return nil
}

func (s *Store) blobKey(id string) string   { return s.prefix + "blobs/" + id }
func (s *Store) piecesDir(id string) string { return s.prefix + "staging/" + id + "/" }
func (s *Store) blobsDir() string           { return s.prefix + "blobs/" }
func (s *Store) stagingDir() string         { return s.prefix + "staging/" }
func (s *Store) nextSeq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = max(s.seq+1, time.Now().UnixNano())
	return s.seq
}
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
}

// newID makes an area ID (also the blob's key): 32 base32 characters, a
// dash and the part size in MiB.
func (s *Store) newID() string {
	return ferry.NewID("", 20) + "-" + strconv.FormatInt(s.partSize>>20, 10)
}

// parseID checks that id could have been made by newID and returns its
// part size. Only [A-Z2-7], '-' and digits pass, so an ID can never leave
// its place in the key space.
func parseID(id string) (partSize int64, ok bool) {
	r, mib, found := strings.Cut(id, "-")
	if !found || len(r) != 32 || len(mib) == 0 || len(mib) > 4 {
		return 0, false
	}
	for _, c := range []byte(r) {
		if !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return 0, false
		}
	}
	n, err := strconv.Atoi(mib)
	if err != nil || n < MinPartSize>>20 || strconv.Itoa(n) != mib {
		return 0, false
	}
	return int64(n) << 20, true
}

// errorCode is the S3 error code of err, "" if it has none.
func errorCode(err error) string {
	return minio.ToErrorResponse(err).Code
}

func notFound(err error) bool {
	switch errorCode(err) {
	case "NoSuchKey", "NoSuchUpload", "NotFound":
		return true
	}
	return minio.ToErrorResponse(err).StatusCode == http.StatusNotFound && errorCode(err) != "NoSuchBucket"
}

// Stage creates a staging area: a multipart upload to the blob key.
func (s *Store) Stage(ctx context.Context) (ferry.Staging, error) {
	id := s.newID()
	uploadID, err := s.c.NewMultipartUpload(ctx, s.bucket, s.blobKey(id), minio.PutObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3blob: stage: %w", err)
	}
	return s.newStaging(ctx, id, uploadID, s.partSize), nil
}

// uploads lists the multipart uploads whose key starts with prefix.
func (s *Store) uploads(ctx context.Context, prefix string) ([]minio.ObjectMultipartInfo, error) {
	var out []minio.ObjectMultipartInfo
	keyMarker, idMarker := "", ""
	for {
		res, err := s.c.ListMultipartUploads(ctx, s.bucket, prefix, keyMarker, idMarker, "", 1000)
		if err != nil {
			return nil, err
		}
		out = append(out, res.Uploads...)
		if !res.IsTruncated || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return out, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// uploadOf finds the multipart upload of area id; NotFound when none.
func (s *Store) uploadOf(ctx context.Context, id string) (string, error) {
	ups, err := s.uploads(ctx, s.blobKey(id))
	if err != nil {
		return "", fmt.Errorf("s3blob: open staging %s: %w", id, err)
	}
	for _, u := range ups {
		if u.Key == s.blobKey(id) {
			return u.UploadID, nil
		}
	}
	return "", ferry.Errorf(ferry.NotFound, "staging area %s not found", id)
}

// OpenStaging reopens area id with what S3 holds of it: its uploaded parts
// and its pieces. It fails with NotFound if the area does not exist or id
// is malformed.
func (s *Store) OpenStaging(ctx context.Context, id string) (ferry.Staging, error) {
	partSize, ok := parseID(id)
	if !ok {
		return nil, ferry.Errorf(ferry.NotFound, "staging area %q not found", id)
	}
	uploadID, err := s.uploadOf(ctx, id)
	if err != nil {
		return nil, err
	}
	st := s.newStaging(ctx, id, uploadID, partSize)
	if err := st.refresh(ctx); err != nil {
		st.Close()
		if notFound(err) {
			return nil, ferry.Errorf(ferry.NotFound, "staging area %s not found", id)
		}
		return nil, err
	}
	return st, nil
}

// RemoveStaging aborts area id's multipart upload and deletes its pieces.
// A missing area, or a malformed id that cannot name one, is not an error.
func (s *Store) RemoveStaging(ctx context.Context, id string) error {
	if _, ok := parseID(id); !ok {
		return nil
	}
	ups, err := s.uploads(ctx, s.blobKey(id))
	if err != nil {
		return fmt.Errorf("s3blob: remove staging %s: %w", id, err)
	}
	for _, u := range ups {
		if u.Key != s.blobKey(id) {
			continue
		}
		if err := s.c.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil && !notFound(err) {
			return fmt.Errorf("s3blob: remove staging %s: %w", id, err)
		}
	}
	if err := s.removeAll(ctx, s.piecesDir(id)); err != nil {
		return fmt.Errorf("s3blob: remove staging %s: %w", id, err)
	}
	return nil
}

// removeAll deletes every object whose key starts with prefix.
func (s *Store) removeAll(ctx context.Context, prefix string) error {
	objs := make(chan minio.ObjectInfo)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var listErr error
	go func() {
		defer close(objs)
		for o := range s.c.Client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				listErr = o.Err
				return
			}
			select {
			case objs <- o:
			case <-lctx.Done():
				return
			}
		}
	}()
	var firstErr error
	for r := range s.c.Client.RemoveObjects(ctx, s.bucket, objs, minio.RemoveObjectsOptions{}) {
		if r.Err != nil && !notFound(r.Err) && firstErr == nil {
			firstErr = r.Err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return listErr
}

// ListStaging reports every staging area: the multipart uploads under the
// prefix, areas of which only pieces are left (a crash between completing
// an upload and deleting its pieces), and the unsynced bytes of handles
// open in this process. Size counts pieces and local bytes, not uploaded
// parts, which would take a request per area.
func (s *Store) ListStaging(ctx context.Context) ([]ferry.BlobInfo, error) {
	byID := map[string]*ferry.BlobInfo{}
	get := func(id string) *ferry.BlobInfo {
		in := byID[id]
		if in == nil {
			in = &ferry.BlobInfo{ID: id}
			byID[id] = in
		}
		return in
	}
	ups, err := s.uploads(ctx, s.blobsDir())
	if err != nil {
		return nil, fmt.Errorf("s3blob: list staging: %w", err)
	}
	for _, u := range ups {
		id := strings.TrimPrefix(u.Key, s.blobsDir())
		if _, ok := parseID(id); !ok {
			continue
		}
		in := get(id)
		if u.Initiated.After(in.Modified) {
			in.Modified = u.Initiated
		}
	}
	for o := range s.c.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.stagingDir(), Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("s3blob: list staging: %w", o.Err)
		}
		id, name, _ := strings.Cut(strings.TrimPrefix(o.Key, s.stagingDir()), "/")
		p, ok := parsePiece(name)
		if _, idOK := parseID(id); !idOK || !ok {
			continue
		}
		in := get(id)
		in.Size = max(in.Size, p.hi)
		if o.LastModified.After(in.Modified) {
			in.Modified = o.LastModified
		}
	}
	s.mu.Lock()
	handles := map[string][]*staging{}
	for id, hs := range s.open {
		for h := range hs {
			handles[id] = append(handles[id], h)
		}
	}
	s.mu.Unlock()
	for id, hs := range handles {
		for _, h := range hs {
			if size, err := h.Size(); err == nil {
				in := get(id)
				in.Size = max(in.Size, size)
				if in.Modified.IsZero() {
					in.Modified = time.Now()
				}
			}
		}
	}
	out := make([]ferry.BlobInfo, 0, len(byID))
	for _, in := range byID {
		out = append(out, *in)
	}
	return out, nil
}

// Open opens the published blob key for reading with ranged GETs. It
// fails with NotFound if the key does not exist or is malformed.
func (s *Store) Open(ctx context.Context, key string) (ferry.Blob, error) {
	if _, ok := parseID(key); !ok {
		return nil, ferry.Errorf(ferry.NotFound, "blob %q not found", key)
	}
	info, err := s.c.StatObject(ctx, s.bucket, s.blobKey(key), minio.StatObjectOptions{})
	if notFound(err) {
		return nil, ferry.Errorf(ferry.NotFound, "blob %s not found", key)
	}
	if err != nil {
		return nil, fmt.Errorf("s3blob: open %s: %w", key, err)
	}
	return &object{s: s, ctx: ctx, key: s.blobKey(key), size: info.Size, etag: info.ETag}, nil
}

// Delete removes the published blob key. A missing or malformed key is
// not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, ok := parseID(key); !ok {
		return nil
	}
	err := s.c.RemoveObject(ctx, s.bucket, s.blobKey(key), minio.RemoveObjectOptions{})
	if err != nil && !notFound(err) {
		return fmt.Errorf("s3blob: delete %s: %w", key, err)
	}
	return nil
}

// List reports every published blob.
func (s *Store) List(ctx context.Context) ([]ferry.BlobInfo, error) {
	var out []ferry.BlobInfo
	for o := range s.c.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.blobsDir(), Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("s3blob: list: %w", o.Err)
		}
		key := strings.TrimPrefix(o.Key, s.blobsDir())
		if _, ok := parseID(key); !ok {
			continue
		}
		out = append(out, ferry.BlobInfo{ID: key, Size: o.Size, Modified: o.LastModified})
	}
	return out, nil
}

// DownloadURL returns a presigned GET URL for blob key that makes S3
// answer with the given Content-Disposition and Content-Type, and true; or
// false when the store was not configured to presign. The URL is a
// credential for its lifetime: never log it with its query.
func (s *Store) DownloadURL(ctx context.Context, key, disposition, contentType string) (string, bool, error) {
	if !s.presign {
		return "", false, nil
	}
	if _, ok := parseID(key); !ok {
		return "", false, ferry.Errorf(ferry.NotFound, "blob %q not found", key)
	}
	q := url.Values{}
	if disposition != "" {
		q.Set("response-content-disposition", disposition)
	}
	if contentType != "" {
		q.Set("response-content-type", contentType)
	}
	u, err := s.c.PresignedGetObject(ctx, s.bucket, s.blobKey(key), s.expiry, q)
	if err != nil {
		return "", false, fmt.Errorf("s3blob: presign %s: %w", key, err)
	}
	return u.String(), true, nil
}

// object is a published blob read with ranged GETs. Reads at the offset
// where the previous one ended continue the same response, so a
// sequential reader (a download through io.SectionReader) costs one
// request; a read elsewhere starts a new one.
type object struct {
	s    *Store
	ctx  context.Context
	key  string
	size int64
	etag string

	mu      sync.Mutex
	pos     int64         // Read/Seek position
	body    io.ReadCloser // open response, positioned at bodyPos
	bodyPos int64
}

func (o *object) Size() int64 { return o.size }

// read fills p from offset off, stopping early only at the end of the
// blob (with io.EOF) or on an error.
func (o *object) read(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), o.size-off)]
	if o.body == nil || o.bodyPos != off {
		o.closeBody()
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(off, o.size-1); err != nil {
			return 0, fmt.Errorf("s3blob: read %s: %w", o.key, err)
		}
		// The blob is immutable, but a key reused after a delete would
		// be another blob: insist on the one that was opened.
		if err := opts.SetMatchETag(o.etag); err != nil {
			return 0, fmt.Errorf("s3blob: read %s: %w", o.key, err)
		}
		body, _, _, err := o.s.c.GetObject(o.ctx, o.s.bucket, o.key, opts)
		if notFound(err) {
			return 0, ferry.Errorf(ferry.NotFound, "blob %s was deleted", o.key)
		}
		if err != nil {
			return 0, fmt.Errorf("s3blob: read %s: %w", o.key, err)
		}
		o.body, o.bodyPos = body, off
	}
	n, err := io.ReadFull(o.body, want)
	o.bodyPos += int64(n)
	if err != nil {
		o.closeBody()
		return n, fmt.Errorf("s3blob: read %s: %w", o.key, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (o *object) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("s3blob: negative offset")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.read(p, off)
}

func (o *object) Read(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.read(p, o.pos)
	o.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.size
	default:
		return 0, errors.New("s3blob: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("s3blob: negative position")
	}
	o.pos = offset
	return offset, nil
}

func (o *object) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeBody()
	return nil
}
