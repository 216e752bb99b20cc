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

	"github.com/ferrydrive/ferry"
)

const (
	// bufSize is the size of pooled copy buffers.
	bufSize = 1 << 20
	// buffersPerCopy bounds the memory of one Copy: the reader fills one
	// buffer while the hasher works through the others.
	buffersPerCopy = 4
	// segmentMin is how many written bytes the reader collects before it
	// hands them to the hasher, unless segmentAge has passed.
	segmentMin = 256 << 10
	// segmentAge bounds how long written bytes wait for the hasher (and
	// so for progress) when the source trickles.
	segmentAge = 200 * time.Millisecond
)

// bufPool holds *[]byte of bufSize bytes, shared by all copies, so memory
// stays flat whatever the file sizes and however many copies ran before.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, bufSize)
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

// segment is a run of written bytes for the hasher. buf is set on a
// buffer's last segment: the hasher recycles the buffer after it.
type segment struct {
	p     []byte
	buf   *[]byte
	total int64 // bytes written by the Copy up to the end of p
}

// Copy streams src into dst from offset off, feeding every byte written
// to h, and returns the number of bytes written.
//
// Reading and writing run on the calling goroutine while hashing runs on
// another, so that on two cores the transfer and the (more expensive)
// hashing overlap. Both goroutines share at most four pooled 1 MiB
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
// progress, if not nil, is called with the running total of bytes written
// and hashed, at most every 256 KiB to 1 MiB of data or every 200 ms when
// the source trickles, and once more at the end. It runs on the hashing
// goroutine while that goroutine holds h still, so it may save h with
// h.MarshalBinary for a checkpoint (after syncing dst), but it must not
// write to h, and it should be quick: the copy waits for it.
func Copy(ctx context.Context, dst ferry.Staging, off int64, src io.Reader, h *Hasher, limit int64, progress func(total int64)) (int64, error) {
	segs := make(chan segment, buffersPerCopy)
	free := make(chan *[]byte, buffersPerCopy)
	for range buffersPerCopy {
		free <- bufPool.Get().(*[]byte)
	}
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		var sh *splitHasher
		if h != nil {
			sh = newSplitHasher(h)
			defer sh.Close()
		}
		var reported int64
		for s := range segs {
			if sh != nil {
				sh.Write(s.p)
			}
			if s.buf != nil {
				free <- s.buf // never blocks: free holds every buffer there is
			}
			if progress != nil && s.total > reported {
				progress(s.total)
				reported = s.total
			}
		}
	}()

	total, err := copyLoop(ctx, dst, off, src, limit, segs, free)
	close(segs)
	<-hashed
	for range buffersPerCopy {
		bufPool.Put(<-free)
	}
	return total, err
}

// copyLoop reads src and writes dst, passing written bytes to the hasher
// through segs and taking buffers from free. It owns one buffer at a time
// and hands its last segment, with the buffer, to the hasher before
// returning.
func copyLoop(ctx context.Context, dst ferry.Staging, off int64, src io.Reader, limit int64, segs chan<- segment, free <-chan *[]byte) (int64, error) {
	var (
		total    int64
		buf      = <-free
		fill     int // bytes of *buf written
		sent     int // bytes of *buf handed to the hasher
		lastSent = time.Now()
		err      error
	)
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		want := len(*buf) - fill
		if limit >= 0 && int64(want) > limit-total {
			want = int(limit-total) + 1 // one byte more shows the source is too large
		}
		n, rerr := src.Read((*buf)[fill : fill+want])
		over := limit >= 0 && total+int64(n) > limit
		if over {
			n = int(limit - total)
		}
		if n > 0 {
			w, werr := dst.WriteAt((*buf)[fill:fill+n], off+total)
			fill += w
			total += int64(w)
			if werr == nil && w < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				err = werr
				break
			}
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
		switch {
		case fill == len(*buf):
			segs <- segment{p: (*buf)[sent:fill], buf: buf, total: total}
			buf, fill, sent = <-free, 0, 0
			lastSent = time.Now()
		case fill-sent >= segmentMin:
			segs <- segment{p: (*buf)[sent:fill], total: total}
			sent = fill
			lastSent = time.Now()
		case fill > sent:
			if now := time.Now(); now.Sub(lastSent) >= segmentAge {
				segs <- segment{p: (*buf)[sent:fill], total: total}
				sent = fill
				lastSent = now
			}
		}
	}
	segs <- segment{p: (*buf)[sent:fill], buf: buf, total: total}
	return total, err
}
