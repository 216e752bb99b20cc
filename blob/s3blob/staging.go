package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/ferrydrive/ferry"
)

// piece is a staged object holding bytes [lo, hi) of an area; among
// pieces that overlap, the highest seq holds the newest bytes.
type piece struct {
	span
	seq int64
}

// name is the piece's object name below the area's folder: fixed-width
// hex, so that names sort by offset.
func (p piece) name() string {
	return fmt.Sprintf("%012x-%08x-%016x", p.lo, p.len(), p.seq)
}

func parsePiece(name string) (piece, bool) {
	f := strings.Split(name, "-")
	if len(f) != 3 || len(f[0]) != 12 || len(f[1]) != 8 || len(f[2]) != 16 {
		return piece{}, false
	}
	var v [3]int64
	for i, s := range f {
		n, err := strconv.ParseInt(s, 16, 64)
		if err != nil || n < 0 {
			return piece{}, false
		}
		v[i] = n
	}
	if v[1] == 0 {
		return piece{}, false
	}
	return piece{span{v[0], v[0] + v[1]}, v[2]}, true
}

// part is an uploaded multipart part.
type part struct {
	etag string
	size int64
}

// staging is one handle on an area. mu is held for reading by WriteAt
// and ReadAt, which the contract lets run at once on different ranges,
// and for writing by the other methods; meta guards the bookkeeping that
// WriteAt and ReadAt share.
type staging struct {
	s        *Store
	id       string
	uploadID string
	partSize int64
	ctx      context.Context // the opener's values, for S3 calls outside any caller's context

	mu     sync.RWMutex
	spool  *os.File // nil until the first write, and after Close
	closed bool

	meta     sync.Mutex
	local    ranges       // bytes this handle wrote that are in the spool
	dirty    ranges       // bytes of local that are in no piece or part yet
	pieces   []piece      // pieces known to exist
	parts    map[int]part // uploaded parts by number
	released int64
}

func (s *Store) newStaging(ctx context.Context, id, uploadID string, partSize int64) *staging {
	st := &staging{s: s, id: id, uploadID: uploadID, partSize: partSize,
		ctx: context.WithoutCancel(ctx), parts: map[int]part{}}
	s.mu.Lock()
	if s.open[id] == nil {
		s.open[id] = map[*staging]bool{}
	}
	s.open[id][st] = true
	s.mu.Unlock()
	return st
}

func (st *staging) forget() {
	st.s.mu.Lock()
	delete(st.s.open[st.id], st)
	if len(st.s.open[st.id]) == 0 {
		delete(st.s.open, st.id)
	}
	st.s.mu.Unlock()
}

func (st *staging) ID() string { return st.id }

var errClosed = errors.New("s3blob: staging area is closed")

// refresh reads the area's uploaded parts and pieces from S3.
func (st *staging) refresh(ctx context.Context) error {
	parts := map[int]part{}
	marker := 0
	for {
		res, err := st.s.c.ListObjectParts(ctx, st.s.bucket, st.s.blobKey(st.id), st.uploadID, marker, 1000)
		if err != nil {
			return fmt.Errorf("s3blob: list parts of %s: %w", st.id, err)
		}
		for _, p := range res.ObjectParts {
			parts[p.PartNumber] = part{etag: p.ETag, size: p.Size}
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			break
		}
		marker = res.NextPartNumberMarker
	}
	var pieces []piece
	for o := range st.s.c.Client.ListObjects(ctx, st.s.bucket, minio.ListObjectsOptions{Prefix: st.s.piecesDir(st.id), Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("s3blob: list pieces of %s: %w", st.id, o.Err)
		}
		if p, ok := parsePiece(strings.TrimPrefix(o.Key, st.s.piecesDir(st.id))); ok {
			pieces = append(pieces, p)
		}
	}
	st.meta.Lock()
	defer st.meta.Unlock()
	st.parts = parts
	st.pieces = pieces
	return nil
}

// partSpan is the byte range of part k (1-based) on the grid.
func (st *staging) partSpan(k int) span {
	lo := int64(k-1) * st.partSize
	return span{lo, lo + st.partSize}
}

// uploadedSpan reports whether [lo, hi) touches an uploaded part. The
// caller holds meta.
func (st *staging) touchesUploaded(lo, hi int64) bool {
	if lo >= hi {
		return false
	}
	for k := int(lo/st.partSize) + 1; int64(k-1)*st.partSize < hi; k++ {
		if _, ok := st.parts[k]; ok {
			return true
		}
	}
	return false
}

func (st *staging) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("s3blob: negative offset")
	}
	end := off + int64(len(p))
	if end > maxParts*st.partSize {
		return 0, ferry.Errorf(ferry.TooLarge, "a staged file on S3 holds at most %d bytes", maxParts*st.partSize)
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return 0, errClosed
	}
	st.meta.Lock()
	uploaded := st.touchesUploaded(off, end)
	st.meta.Unlock()
	if uploaded {
		return 0, fmt.Errorf("s3blob: write at %d of %s: the bytes were released and uploaded", off, st.id)
	}
	if st.spool == nil {
		// Upgrade to create the spool; WriteAt is the only writer, so
		// nobody else creates it meanwhile.
		st.mu.RUnlock()
		st.mu.Lock()
		err := st.openSpool()
		st.mu.Unlock()
		st.mu.RLock()
		if err != nil {
			return 0, err
		}
		if st.closed {
			return 0, errClosed
		}
	}
	n, err := st.spool.WriteAt(p, off)
	st.meta.Lock()
	st.local = st.local.add(off, off+int64(n))
	st.dirty = st.dirty.add(off, off+int64(n))
	st.meta.Unlock()
	if err != nil {
		return n, fmt.Errorf("s3blob: spool %s: %w", st.id, err)
	}
	return n, nil
}

// openSpool creates the spool file and unlinks it at once: it lives as
// long as the handle and a crash leaves nothing behind. The caller holds
// mu for writing.
func (st *staging) openSpool() error {
	if st.spool != nil {
		return nil
	}
	f, err := os.CreateTemp(st.s.spool, "s3spool-*")
	if err != nil {
		return fmt.Errorf("s3blob: spool: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return fmt.Errorf("s3blob: spool: %w", err)
	}
	st.spool = f
	return nil
}

// size is the end of the furthest byte known. The caller holds meta.
func (st *staging) size() int64 {
	n := st.local.end()
	for _, p := range st.pieces {
		n = max(n, p.hi)
	}
	for k := range st.parts {
		n = max(n, st.partSpan(k).lo+st.parts[k].size)
	}
	return n
}

func (st *staging) Size() (int64, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return 0, errClosed
	}
	st.meta.Lock()
	defer st.meta.Unlock()
	return st.size(), nil
}

// source says where the bytes of one run of a read come from.
type source struct {
	span
	from  int // fromLocal, fromPiece, fromPart or fromZero
	piece piece
}

const (
	fromZero = iota
	fromLocal
	fromPiece
	fromPart
)

// sources splits [lo, hi) into runs, each read from one place: this
// handle's spool first (its bytes are the newest), then the newest piece,
// then an uploaded part (unreadable), else zeros. The caller holds meta.
func (st *staging) sources(lo, hi int64) []source {
	cuts := []int64{lo, hi}
	for _, s := range st.local.clip(lo, hi) {
		cuts = append(cuts, s.lo, s.hi)
	}
	for _, p := range st.pieces {
		if p.hi > lo && p.lo < hi {
			cuts = append(cuts, max(p.lo, lo), min(p.hi, hi))
		}
	}
	for k := int(lo/st.partSize) + 1; int64(k-1)*st.partSize < hi; k++ {
		cuts = append(cuts, max(st.partSpan(k).lo, lo))
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	var out []source
	for i := 0; i+1 < len(cuts); i++ {
		a, b := cuts[i], cuts[i+1]
		src := source{span: span{a, b}}
		switch {
		case st.local.covers(a, b):
			src.from = fromLocal
		default:
			best := piece{seq: -1}
			for _, p := range st.pieces {
				if p.lo <= a && p.hi >= b && p.seq > best.seq {
					best = p
				}
			}
			if best.seq >= 0 {
				src.from, src.piece = fromPiece, best
			} else if _, ok := st.parts[int(a/st.partSize)+1]; ok {
				src.from = fromPart
			}
		}
		if n := len(out); n > 0 && out[n-1].from == src.from && out[n-1].piece == src.piece && out[n-1].hi == a {
			out[n-1].hi = b
			continue
		}
		out = append(out, src)
	}
	return out
}

// ReadAt reads staged bytes from the spool or from pieces; gaps read as
// zeros and reading past Size gives io.EOF. Bytes in uploaded parts,
// which S3 cannot give back before the upload completes, are an error.
func (st *staging) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("s3blob: negative offset")
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return 0, errClosed
	}
	st.meta.Lock()
	size := st.size()
	if off >= size {
		st.meta.Unlock()
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), size-off)]
	srcs := st.sources(off, off+int64(len(want)))
	st.meta.Unlock()
	if err := st.readSources(st.ctx, want, off, srcs); err != nil {
		return 0, err
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// readSources fills p (bytes from off) from srcs. The caller holds mu.
func (st *staging) readSources(ctx context.Context, p []byte, off int64, srcs []source) error {
	for _, src := range srcs {
		dst := p[src.lo-off : src.hi-off]
		switch src.from {
		case fromZero:
			clear(dst)
		case fromLocal:
			if _, err := st.spool.ReadAt(dst, src.lo); err != nil && err != io.EOF {
				return fmt.Errorf("s3blob: read spool of %s: %w", st.id, err)
			}
		case fromPiece:
			if err := st.readPiece(ctx, dst, src.piece, src.lo); err != nil {
				return err
			}
		case fromPart:
			return fmt.Errorf("s3blob: read of [%d, %d) of %s: the bytes were released into an uploaded part", src.lo, src.hi, st.id)
		}
	}
	return nil
}

// readPiece reads len(dst) bytes at off from piece p with a ranged GET.
func (st *staging) readPiece(ctx context.Context, dst []byte, p piece, off int64) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off-p.lo, off-p.lo+int64(len(dst))-1); err != nil {
		return err
	}
	body, _, _, err := st.s.c.GetObject(ctx, st.s.bucket, st.s.piecesDir(st.id)+p.name(), opts)
	if notFound(err) {
		return ferry.Errorf(ferry.NotFound, "a piece of staging area %s is gone", st.id)
	}
	if err != nil {
		return fmt.Errorf("s3blob: read piece of %s: %w", st.id, err)
	}
	defer body.Close()
	if _, err := io.ReadFull(body, dst); err != nil {
		return fmt.Errorf("s3blob: read piece of %s: %w", st.id, err)
	}
	return nil
}

// Release records that bytes [0, n) will not be read or written again;
// the next Sync uploads the whole parts below n.
func (st *staging) Release(n int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errClosed
	}
	st.meta.Lock()
	st.released = max(st.released, n)
	st.meta.Unlock()
	return nil
}

// Sync uploads every released, not yet uploaded whole part that holds
// bytes, then turns every other written byte that is not durable yet into
// pieces (split on part boundaries). Afterwards all written bytes are in
// S3 and any node's OpenStaging finds them.
func (st *staging) Sync() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errClosed
	}
	ctx, cancel := opContext(st.ctx)
	defer cancel()
	st.meta.Lock()
	var todo []int
	size := st.size()
	for k := 1; st.partSpan(k).hi <= st.released && st.partSpan(k).lo < size; k++ {
		if _, ok := st.parts[k]; !ok {
			todo = append(todo, k)
		}
	}
	st.meta.Unlock()
	if err := st.uploadParts(ctx, todo, 0); err != nil {
		return err
	}
	return st.syncPieces(ctx)
}

// syncPieces uploads the dirty spool bytes as pieces. The caller holds mu.
func (st *staging) syncPieces(ctx context.Context) error {
	st.meta.Lock()
	var todo []span
	for _, d := range st.dirty {
		for lo := d.lo; lo < d.hi; {
			hi := min(d.hi, (lo/st.partSize+1)*st.partSize)
			todo = append(todo, span{lo, hi})
			lo = hi
		}
	}
	st.meta.Unlock()
	return parallel(len(todo), func(i int) error {
		sp := todo[i]
		p := piece{span: sp, seq: st.s.nextSeq()}
		if err := st.putPiece(ctx, p); err != nil {
			return err
		}
		st.meta.Lock()
		st.pieces = append(st.pieces, p)
		st.dirty = st.dirty.remove(sp.lo, sp.hi)
		st.meta.Unlock()
		return nil
	})
}

func (st *staging) putPiece(ctx context.Context, p piece) error {
	_, err := st.s.c.PutObject(ctx, st.s.bucket, st.s.piecesDir(st.id)+p.name(),
		io.NewSectionReader(st.spool, p.lo, p.len()), p.len(), "", "", minio.PutObjectOptions{})
	if err != nil {
		return fmt.Errorf("s3blob: put piece of %s: %w", st.id, err)
	}
	return nil
}

// uploadParts uploads parts todo, each assembled in the spool and streamed
// from it; a part ends at the grid or, for the last part of a Publish, at
// end (0: the grid). Afterwards the part's pieces are deleted (but the
// head's) and its spool bytes freed. The caller holds mu.
func (st *staging) uploadParts(ctx context.Context, todo []int, end int64) error {
	if len(todo) == 0 {
		return nil
	}
	if err := st.openSpool(); err != nil {
		return err
	}
	return parallel(len(todo), func(i int) error {
		k := todo[i]
		sp := st.partSpan(k)
		if end > 0 {
			sp.hi = min(sp.hi, end)
		}
		if err := st.assemble(ctx, sp); err != nil {
			return err
		}
		info, err := st.s.c.PutObjectPart(ctx, st.s.bucket, st.s.blobKey(st.id), st.uploadID, k,
			io.NewSectionReader(st.spool, sp.lo, sp.len()), sp.len(), minio.PutObjectPartOptions{})
		if notFound(err) {
			return ferry.Errorf(ferry.NotFound, "staging area %s was removed", st.id)
		}
		if err != nil {
			return fmt.Errorf("s3blob: upload part %d of %s: %w", k, st.id, err)
		}
		var head piece
		if k == 1 {
			// Keep the head readable for MIME sniffing.
			head = piece{span: span{0, min(ferry.StagingHead, sp.hi)}, seq: st.s.nextSeq()}
			if head.len() > 0 {
				if err := st.putPiece(ctx, head); err != nil {
					return err
				}
			}
		}
		st.meta.Lock()
		st.parts[k] = part{etag: info.ETag, size: sp.len()}
		var stale []piece
		kept := st.pieces[:0]
		for _, p := range st.pieces {
			if p.lo >= sp.lo && p.hi <= st.partSpan(k).hi {
				stale = append(stale, p)
			} else {
				kept = append(kept, p)
			}
		}
		st.pieces = kept
		if head.len() > 0 {
			st.pieces = append(st.pieces, head)
		}
		st.local = st.local.remove(sp.lo, sp.hi)
		st.dirty = st.dirty.remove(sp.lo, sp.hi)
		st.meta.Unlock()
		punchHole(st.spool, sp.lo, sp.len())
		for _, p := range stale {
			// Deleting is tidying: a piece left behind only costs space
			// until Publish or RemoveStaging deletes the folder.
			_ = st.s.c.RemoveObject(ctx, st.s.bucket, st.s.piecesDir(st.id)+p.name(), minio.RemoveObjectOptions{})
		}
		return nil
	})
}

// assemble makes the spool hold the bytes of sp: those this handle wrote
// are there; others come from pieces; gaps are zeros. The caller holds mu
// for writing.
func (st *staging) assemble(ctx context.Context, sp span) error {
	st.meta.Lock()
	srcs := st.sources(sp.lo, sp.hi)
	st.meta.Unlock()
	for _, src := range srcs {
		switch src.from {
		case fromLocal:
		case fromPart:
			return fmt.Errorf("s3blob: part of %s at %d was uploaded with another length; its bytes cannot be read back", st.id, src.lo)
		default:
			buf := make([]byte, min(src.len(), 1<<20))
			for lo := src.lo; lo < src.hi; {
				b := buf[:min(int64(len(buf)), src.hi-lo)]
				if src.from == fromPiece {
					if err := st.readPiece(ctx, b, src.piece, lo); err != nil {
						return err
					}
				} else {
					clear(b)
				}
				if _, err := st.spool.WriteAt(b, lo); err != nil {
					return fmt.Errorf("s3blob: spool %s: %w", st.id, err)
				}
				lo += int64(len(b))
			}
			st.meta.Lock()
			st.local = st.local.add(src.lo, src.hi)
			st.meta.Unlock()
		}
	}
	return nil
}

// Publish completes the multipart upload with parts covering exactly
// [0, size): parts uploaded already keep their place, the others are
// assembled and uploaded now. The blob's key is the area's ID. The handle
// is closed whatever the outcome; on failure the area stays for the
// caller to retry or remove.
func (st *staging) Publish(ctx context.Context, size int64) (string, error) {
	if size < 0 {
		return "", ferry.Errorf(ferry.Invalid, "negative blob size %d", size)
	}
	if size > maxParts*st.partSize {
		return "", ferry.Errorf(ferry.TooLarge, "a staged file on S3 holds at most %d bytes", maxParts*st.partSize)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return "", errClosed
	}
	defer st.closeLocked()
	// Other handles (fragments through other requests or nodes) may have
	// added pieces since this one opened.
	if err := st.refresh(ctx); err != nil {
		if notFound(err) {
			return "", ferry.Errorf(ferry.NotFound, "staging area %s was removed", st.id)
		}
		return "", err
	}
	if size == 0 {
		// CompleteMultipartUpload needs a part; an empty object is one PUT.
		if _, err := st.s.c.PutObject(ctx, st.s.bucket, st.s.blobKey(st.id), strings.NewReader(""), 0, "", "", minio.PutObjectOptions{}); err != nil {
			return "", fmt.Errorf("s3blob: publish %s: %w", st.id, err)
		}
		if err := st.s.c.AbortMultipartUpload(ctx, st.s.bucket, st.s.blobKey(st.id), st.uploadID); err != nil && !notFound(err) {
			return "", fmt.Errorf("s3blob: publish %s: %w", st.id, err)
		}
	} else {
		count := int((size + st.partSize - 1) / st.partSize)
		var todo []int
		st.meta.Lock()
		for k := 1; k <= count; k++ {
			want := min(st.partSpan(k).hi, size) - st.partSpan(k).lo
			p, ok := st.parts[k]
			switch {
			case !ok:
				todo = append(todo, k)
			case p.size != want:
				st.meta.Unlock()
				return "", fmt.Errorf("s3blob: publish %s: part %d holds %d bytes, want %d; released bytes cannot be truncated", st.id, k, p.size, want)
			}
		}
		st.meta.Unlock()
		if err := st.uploadParts(ctx, todo, size); err != nil {
			return "", err
		}
		parts := make([]minio.CompletePart, 0, count)
		st.meta.Lock()
		for k := 1; k <= count; k++ {
			parts = append(parts, minio.CompletePart{PartNumber: k, ETag: st.parts[k].etag})
		}
		st.meta.Unlock()
		_, err := st.s.c.CompleteMultipartUpload(ctx, st.s.bucket, st.s.blobKey(st.id), st.uploadID, parts, minio.PutObjectOptions{})
		if notFound(err) {
			return "", ferry.Errorf(ferry.NotFound, "staging area %s was removed", st.id)
		}
		if err != nil {
			return "", fmt.Errorf("s3blob: publish %s: %w", st.id, err)
		}
	}
	// The blob exists; pieces left by a failure here are found by the
	// orphan sweep (ListStaging lists them).
	_ = st.s.removeAll(ctx, st.s.piecesDir(st.id))
	return st.id, nil
}

// Close releases the handle and its spool; synced bytes stay in S3.
func (st *staging) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closeLocked()
	return nil
}

func (st *staging) closeLocked() {
	if st.closed {
		return
	}
	st.closed = true
	if st.spool != nil {
		st.spool.Close()
		st.spool = nil
	}
	st.forget()
}

// parallel runs fn(0) … fn(n-1), uploadConcurrency at a time, and returns
// the first error.
func parallel(n int, fn func(i int) error) error {
	if n == 0 {
		return nil
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range min(n, uploadConcurrency) {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
