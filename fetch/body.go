package fetch

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// body wraps a response body. It delivers exactly want bytes when want is
// known (an early end is a shortBody error, never io.EOF), translates read
// errors into *Error, and enforces the idle timeout.
//
// The idle timeout costs one monotonic clock read and one atomic store per
// Read: the timer is not reset on each read. When it fires it looks at the
// time of the last read and either re-arms for the rest of the period or,
// after a full quiet period, cancels the request, which unblocks the
// pending Read.
type body struct {
	rc     io.ReadCloser
	ctx    context.Context // the caller's context
	cancel context.CancelFunc
	host   string

	want int64 // bytes to deliver, -1 if unknown
	got  int64
	err  error // sticky: once set, every Read returns it

	scratch [1]byte

	idle  time.Duration
	base  time.Time    // monotonic origin for last
	last  atomic.Int64 // time.Since(base) at the last read that made progress
	timer *time.Timer
	idled atomic.Bool
}

func newBody(ctx context.Context, rc io.ReadCloser, cancel context.CancelFunc, host string, want int64, idle time.Duration) *body {
	b := &body{rc: rc, ctx: ctx, cancel: cancel, host: host, want: want, idle: idle, base: time.Now()}
	// Arm only once b.timer is set, so fire never sees a nil timer.
	b.timer = time.AfterFunc(time.Duration(1<<62), b.fire)
	b.timer.Reset(idle)
	return b
}

func (b *body) fire() {
	quiet := time.Since(b.base) - time.Duration(b.last.Load())
	if quiet < b.idle {
		b.timer.Reset(b.idle - quiet)
		return
	}
	b.idled.Store(true)
	b.cancel()
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.want >= 0 {
		rem := b.want - b.got
		if rem == 0 {
			b.finish()
			return 0, io.EOF
		}
		if int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.got += int64(n)
		b.last.Store(int64(time.Since(b.base)))
	}
	if err != nil {
		b.err = b.translate(err)
		return n, b.err
	}
	return n, nil
}

// finish ends a body that delivered all its bytes, on the Read after the
// last byte (never in the same Read, so data is not held back waiting for
// the end of the stream). It reads the underlying body to its end (one byte
// of scratch; anything beyond Length is dropped), because the transport
// reuses a connection only after seeing io.EOF.
func (b *body) finish() {
	b.err = io.EOF
	_, _ = b.rc.Read(b.scratch[:])
}

func (b *body) translate(err error) error {
	switch {
	case b.idled.Load():
		return transient(CodeIdleTimeout, "no data from "+b.host+" for "+b.idle.String(), err)
	case b.ctx.Err() != nil:
		return transient(CodeCanceled, "the download was cancelled", context.Cause(b.ctx))
	case err == io.EOF && (b.want < 0 || b.got == b.want):
		return io.EOF
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return transient(CodeShortBody, b.host+" closed the connection before the end of the body", err)
	}
	e := classify(b.ctx, err, b.host)
	if e.Code == CodeReset {
		e.Message = "the connection to " + b.host + " was reset during the download"
	}
	return e
}

// Close releases the connection and stops the idle timer.
func (b *body) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}
