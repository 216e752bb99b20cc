// Package blob moves bytes into a ferry.BlobStore: it streams a source
// into a staging area while computing the file's hashes, enforces size
// limits, and picks a MIME type. The HTTP API (simple uploads, upload
// sessions) and the import jobs share this one implementation.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unsafe"

	"github.com/ferrydrive/ferry"
)

const (
	// bufSize is the size of pooled copy buffers. Copy writes whole
	// buffers at multiples of bufSize in the file, so that a store that
	// can write aligned buffers directly (fsblob uses O_DIRECT) skips the
	// page cache.
	bufSize = 1 << 20
	// bufAlign is the memory alignment of pooled buffers, enough for
	// direct I/O.
	bufAlign = 4096
	// buffersPerCopy bounds the memory of one Copy: the reader fills one
	// buffer while the hashers work through the others.
	buffersPerCopy = 8
	// segmentAge bounds how long read bytes wait before they are written
	// and hashed (and so count for progress) when the source trickles.
	segmentAge = 200 * time.Millisecond
)

// bufPool holds *[]byte of bufSize bytes aligned to bufAlign, shared by
// all copies, so memory stays flat whatever the file sizes and however
// many copies ran before.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, bufSize+bufAlign)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % bufAlign); r != 0 {
		skip = bufAlign - r
	}
	b = b[skip : skip+bufSize : skip+bufSize]
	return &b
}}

// ErrLimit is the cause of the error Copy and Ingest return when the
// source holds more bytes than the limit.
var ErrLimit = errors.New("size limit exceeded")

func limitError(limit int64) error {
	return (&ferry.Error{
		Kind:    ferry.TooLarge,
		Message: fmt.Sprintf("The file is larger than the limit of %d bytes.", limit),
		Err:     ErrLimit,
	}).WithCode("maxFileSizeExceeded")
}

// OverQuota turns the limit error of Copy or Ingest into one of kind
// QuotaExceeded with code quotaLimitReached, for a caller whose limit was
// the drive's remaining quota rather than the size cap. Other errors,
// and nil, are returned unchanged.
func OverQuota(err error) error {
	if !errors.Is(err, ErrLimit) {
		return err
	}
	return (&ferry.Error{
		Kind:    ferry.QuotaExceeded,
		Message: "Insufficient space in the drive for this file.",
		Err:     ErrLimit,
	}).WithCode("quotaLimitReached")
}

// segment is a run of written bytes for the hashers. A segment with buf
// set (and no bytes) says the buffer is done with: it is recycled once
// every hasher is past it.
type segment struct {
	p   []byte
	buf *[]byte
}

// Copy streams src into dst from offset off, feeding every byte written
// to h, and returns the number of bytes written.
//
// Reading and writing run on the calling goroutine, SHA-1 and quickXorHash
// on a second and SHA-256 on a third, each at its own pace, so that on two
// cores the transfer and the (more expensive) hashing overlap without
// waiting for one another. They share at most buffersPerCopy pooled 1 MiB
// buffers; memory does not grow with the size of src.
//
// limit < 0 means no limit. Otherwise Copy reads at most limit+1 bytes and
// fails, as soon as the source holds more than limit bytes, with an error
// of kind TooLarge and code maxFileSizeExceeded wrapping ErrLimit (use
// OverQuota when the limit was the quota). Copy also stops when ctx is
// done (returning ctx.Err()), when src fails (the error wrapped) or when
// dst fails. Cancellation is checked between reads; a Read that blocks is
// the source's to interrupt (an HTTP body bound to ctx is).
//
// Whatever the outcome, when Copy returns dst holds [off, off+n) and h has
// absorbed exactly those n bytes, so a caller may save h and resume later
// at off+n. h may be nil when the bytes are hashed later, e.g. for one
// range of a download fetched in parallel (see Rehash). No goroutine
// outlives the call.
//
// progress, if not nil, is called on the calling goroutine after every
// read that returned bytes, with the running count of bytes received from
// src, and once more at the end with the total written. It reports what
// arrived, for display: bytes still in a buffer when a source stalls count
// too. It must be cheap (an atomic store): it runs once per read.
func Copy(ctx context.Context, dst ferry.Staging, off int64, src io.Reader, h *Hasher, limit int64, progress func(total int64)) (int64, error) {
	free := make(chan *[]byte, buffersPerCopy)
	for range buffersPerCopy {
		free <- bufPool.Get().(*[]byte)
	}
	// Each hashing stage gets every segment; a buffer goes back to free
	// once every stage is past it, which the last one to arrive sees.
	type stage struct {
		segs chan segment
		hash func(p []byte)
	}
	var stages []stage
	if h != nil {
		stages = []stage{
			{make(chan segment, 2*buffersPerCopy), func(p []byte) { h.qx.Write(p); h.sha1.Write(p) }},
			{make(chan segment, 2*buffersPerCopy), func(p []byte) { h.sha256.Write(p) }},
		}
	} else {
		stages = []stage{{make(chan segment, 2*buffersPerCopy), func([]byte) {}}}
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pending = map[*[]byte]int{} // buffer → stages not yet past it
	)
	release := func(buf *[]byte) {
		mu.Lock()
		pending[buf]++
		last := pending[buf] == len(stages)
		if last {
			delete(pending, buf)
		}
		mu.Unlock()
		if last {
			free <- buf // never blocks: free holds every buffer there is
		}
	}
	for _, st := range stages {
		wg.Go(func() {
			for seg := range st.segs {
				st.hash(seg.p)
				if seg.buf != nil {
					release(seg.buf)
				}
			}
		})
	}
	send := func(seg segment) {
		for _, st := range stages {
			st.segs <- seg
		}
	}

	if progress == nil {
		progress = func(int64) {}
	}
	total, err := copyLoop(ctx, dst, off, src, limit, send, free, progress)
	progress(total)
	for _, st := range stages {
		close(st.segs)
	}
	wg.Wait()
	for range buffersPerCopy {
		bufPool.Put(<-free)
	}
	return total, err
}

// copyLoop reads src and writes dst, passing written bytes to the hashers
// through send and taking buffers from free. It owns one buffer at a time.
//
// Reads fill a buffer before it is written, so the store sees whole 1 MiB
// writes at aligned offsets (only the first buffer is shortened, to end
// on a multiple of bufSize, and the last may be short). When the source
// trickles, the bytes read so far are written and hashed every segmentAge
// anyway; the full buffer is then written once more from its start, so
// that it still goes out as one aligned write.
//
// Every byte read is written and hashed before copyLoop returns, except
// after a write error, so the total it reports is exactly what dst holds.
func copyLoop(ctx context.Context, dst ferry.Staging, off int64, src io.Reader, limit int64, send func(segment), free <-chan *[]byte, progress func(int64)) (int64, error) {
	var (
		buf       = <-free
		bufOff    = off                        // file offset of (*buf)[0]
		capacity  = bufSize - int(off%bufSize) // bytes this buffer takes
		fill      int                          // bytes of *buf read
		written   int                          // bytes of *buf written and hashed
		lastFlush = time.Now()
		err       error
	)
	// flush writes the bytes read but not yet written and hands them to
	// the hasher. A full, aligned buffer is written whole.
	flush := func() error {
		if fill == written {
			return nil
		}
		from := written
		if fill == bufSize {
			from = 0
		}
		w, werr := dst.WriteAt((*buf)[from:fill], bufOff+int64(from))
		if werr == nil && w < fill-from {
			werr = io.ErrShortWrite
		}
		// Bytes a failed write still stored count, as the contract of
		// Copy says: dst holds them and h must absorb them.
		if end := from + w; end > written {
			send(segment{p: (*buf)[written:end]})
			written = end
			lastFlush = time.Now()
		}
		return werr
	}
	read := func() int64 { return bufOff + int64(fill) - off }
	var werr error
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		want := capacity - fill
		if limit >= 0 && int64(want) > limit-read() {
			want = int(limit-read()) + 1 // one byte more shows the source is too large
		}
		n, rerr := src.Read((*buf)[fill : fill+want])
		over := limit >= 0 && read()+int64(n) > limit
		if over {
			n = int(limit - read())
		}
		fill += n
		if n > 0 {
			progress(read())
		}
		if over {
			err = limitError(limit)
			break
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = fmt.Errorf("blob: read source: %w", rerr)
			break
		}
		if fill == capacity {
			if werr = flush(); werr != nil {
				break
			}
			send(segment{buf: buf}) // recycled once the hashers are past it
			bufOff += int64(fill)
			buf, capacity, fill, written = <-free, bufSize, 0, 0
			continue
		}
		if time.Since(lastFlush) >= segmentAge {
			if werr = flush(); werr != nil {
				break
			}
		}
	}
	if werr == nil {
		werr = flush()
	}
	if werr != nil {
		err = werr // a failed write outranks why reading stopped
	}
	send(segment{buf: buf})
	return bufOff + int64(written) - off, err
}
