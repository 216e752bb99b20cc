package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydrive/ferry"
)

// Range is the byte range [Start, End) of a file.
type Range struct {
	Start int64 `json:"s"`
	End   int64 `json:"e"`
}

// Len is the number of bytes in r.
func (r Range) Len() int64 { return r.End - r.Start }

// hashBuffers bounds the buffers an Assembly has queued for its hashers:
// the writer at the hash frontier waits once that many are queued, so
// memory stays flat when the disk or the network outruns the hashing.
const hashBuffers = 8

// readBackBuffers bounds the buffers the sequencer has queued for the
// hashers while it reads written ranges back from staging. They are a
// pool of their own: a read-back sits in the queue ahead of the writers'
// buffers, so if it waited for the writers' slots, and the writers held
// all of them with buffers queued behind it, nothing would move.
const readBackBuffers = 2

// Assembly puts one file together in a staging area from byte ranges that
// several writers (the connections of a segmented download) write in any
// order, and computes the file's quickXorHash, SHA-1 and SHA-256 in file
// order while they do.
//
// # How bytes that arrive out of order are hashed
//
// The three hashes are sequential: byte n can only be hashed after bytes
// 0…n-1. The Assembly keeps a hash frontier, the end of the contiguous
// prefix that has been handed to the hashers, and the set of ranges
// written beyond it. A writer whose bytes start exactly at the frontier
// hands its buffer to the hashers straight from memory, as a single-stream
// copy does, and moves the frontier; bytes written anywhere else go to the
// staging area only and are recorded as written. When the frontier reaches
// a written range (the writer below it has caught up), the hashing
// goroutine reads that range back from the staging area (ReadAt) and
// hashes it, then continues from memory with whichever writer is at the
// new frontier. So:
//
//   - one stream (a fast origin, or one without ranges) is hashed from
//     memory only, overlapped with the writes, at the speed of blob.Copy;
//   - with several connections, the connection at the frontier is hashed
//     from memory and the others are read back once, shortly after they
//     were written, because segments are handed out in file order and the
//     frontier trails the newest bytes by a few segments only;
//   - memory is bounded by one 1 MiB buffer per writer plus hashBuffers
//     writers' buffers and readBackBuffers read-back buffers queued for
//     hashing, whatever the file size; out-of-order
//     bytes wait in the staging area, not in memory. Only bytes a writer
//     has written (WriteAt returned) are read back: the staging area holds
//     them;
//   - the bytes waiting to be hashed are bounded too: a writer more than
//     aheadWindow beyond what the hashers were handed waits, so when the
//     hashing is the bottleneck the connections slow down (which is what
//     the import sees when it decides how many to open) and the file is
//     hashed soon after its last byte arrives. HashBusy tells how busy
//     the hashing is.
//
// The hashers are the two goroutines of blob.Copy (quickXorHash with SHA-1
// on one, SHA-256 on the other), fed by a sequencer goroutine that keeps
// file order. For checkpoints the sequencer passes marks through both
// hashers; each records its state when it reaches a mark, so Snapshot can
// report the hash state of a prefix without stopping the writers.
type Assembly struct {
	st ferry.Staging
	h  *Hasher

	quit    chan struct{} // closed by Close: every goroutine and wait ends
	kick    chan struct{} // wakes the sequencer; capacity 1
	tokens  chan struct{} // one per writer's buffer queued for hashing
	backTok chan struct{} // one per read-back buffer queued for hashing
	stages  [2]chan piece
	seqDone chan struct{}
	wg      sync.WaitGroup

	pendMu  sync.Mutex
	pending map[*[]byte]int // buffer → stages past it

	freeMu sync.Mutex
	free   []*[]byte // buffers of this assembly not in use

	busy [3]atomic.Int64 // ns spent hashing (the two stages) and reading back
	// reading and writing are the ns the writers (Fill) spent reading
	// their sources and writing staging, summed over writers.
	reading, writing atomic.Int64

	sentMu   sync.Mutex
	sent     int64         // bytes handed to the hashing stages, from 0
	advanced chan struct{} // closed (and replaced) when sent grows

	mu      sync.Mutex
	front   int64   // bytes queued for hashing, contiguous from 0
	written []Range // ranges written beyond front: sorted, disjoint, not touching front
	queue   []work
	last    *mark // the newest mark both hashers have passed
	marked  int64 // offset of the newest mark queued
	err     error // a read-back failure: hashing cannot go on
	closed  bool
}

// work is one thing for the sequencer, in file order.
type work struct {
	p    []byte  // bytes from a writer's buffer, hashed from memory
	buf  *[]byte // set: the buffer is released once hashed
	back Range   // non-empty: read these bytes back from staging
	mark *mark
}

// piece is what each hashing stage gets.
type piece struct {
	p    []byte
	buf  *[]byte
	back bool // buf holds read-back bytes: its slot is in backTok
	mark *mark
}

// mark records the hash state at offset off.
type mark struct {
	off          int64
	left         atomic.Int32 // stages yet to record their part
	qx, s1, s256 []byte
	done         chan struct{}
}

// NewAssembly starts assembling into st. h has absorbed the first hashed
// bytes, and written lists the ranges the staging area already holds
// (from an earlier attempt's checkpoint; they may include [0, hashed)).
// The hashers start at once: written bytes right after hashed are read
// back. Close (or Finish) stops the goroutines.
func NewAssembly(st ferry.Staging, h *Hasher, hashed int64, written []Range) (*Assembly, error) {
	state, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	qx, s1, s256, err := splitState(state)
	if err != nil {
		return nil, err
	}
	if hashed > 0 {
		h.head = nil // the bytes before hashed do not pass here
	}
	a := &Assembly{
		st:      st,
		h:       h,
		quit:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
		tokens:  make(chan struct{}, hashBuffers),
		backTok: make(chan struct{}, readBackBuffers),
		seqDone: make(chan struct{}),
		pending: map[*[]byte]int{},
		front:   hashed,
		marked:  hashed,

		sent:     hashed,
		advanced: make(chan struct{}),
	}
	first := &mark{off: hashed, qx: qx, s1: s1, s256: s256, done: make(chan struct{})}
	close(first.done)
	a.last = first
	for i := range a.stages {
		a.stages[i] = make(chan piece, 2*hashBuffers)
	}
	a.wg.Go(func() { a.stage(0, func(p []byte) { h.qx.Write(p); h.sha1.Write(p) }) })
	a.wg.Go(func() { a.stage(1, func(p []byte) { h.sha256.Write(p); h.keepHead(p) }) })
	go a.sequence()
	a.mu.Lock()
	for _, r := range written {
		a.addLocked(r)
	}
	a.advanceLocked()
	a.mu.Unlock()
	return a, nil
}

// Front reports the end of the contiguous prefix written so far (all of
// it queued for hashing).
func (a *Assembly) Front() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.front
}

// Written reports every range written so far, sorted and merged.
func (a *Assembly) Written() []Range {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.writtenLocked()
}

func (a *Assembly) writtenLocked() []Range {
	out := make([]Range, 0, len(a.written)+1)
	if a.front > 0 {
		out = append(out, Range{0, a.front})
	}
	return append(out, a.written...)
}

// Snapshot is what a checkpoint records.
type Snapshot struct {
	Written []Range // ranges written (durable once the caller's Sync returns)
	Hashed  int64   // bytes the hash state has absorbed: a prefix of Written
	Hash    []byte  // Hasher state (MarshalBinary form) after Hashed bytes
}

// Snapshot reports the ranges written so far and the newest hash state
// the hashers recorded, and queues a new mark at the frontier so that the
// next Snapshot has a fresher one. It never waits for the hashers. The
// caller must Sync the staging area after Snapshot and before recording
// it, so that the record never claims more than a crash keeps.
func (a *Assembly) Snapshot() Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Snapshot{Written: a.writtenLocked(), Hashed: a.last.off, Hash: joinState(a.last.qx, a.last.s1, a.last.s256)}
	if a.front > a.marked && !a.closed {
		a.pushLocked(work{mark: newMark(a.front)})
		a.marked = a.front
	}
	return s
}

func newMark(off int64) *mark {
	m := &mark{off: off, done: make(chan struct{})}
	m.left.Store(2)
	return m
}

// Finish waits until every byte of the contiguous prefix has been hashed,
// stops the goroutines and returns the Hasher and the prefix's length.
// No Fill may run any more. The caller checks that the prefix is the
// whole file.
func (a *Assembly) Finish(ctx context.Context) (*Hasher, int64, error) {
	a.mu.Lock()
	m := newMark(a.front)
	a.pushLocked(work{mark: m})
	a.mu.Unlock()
	select {
	case <-m.done:
	case <-ctx.Done():
		a.Close()
		return nil, 0, ctx.Err()
	case <-a.seqDone: // the sequencer stopped on an error
	}
	a.Close()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, 0, a.err
	}
	return a.h, m.off, nil
}

// Close stops the hashing goroutines without waiting for the queue; the
// Hasher is then unusable. Closing twice is fine.
func (a *Assembly) Close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.quit)
	}
	a.mu.Unlock()
	<-a.seqDone
	a.wg.Wait()
	a.freeMu.Lock()
	for _, b := range a.free {
		bufPool.Put(b) // for the next import, until a collection
	}
	a.free = nil
	a.freeMu.Unlock()
}

// addLocked records r as written, merging it with its neighbours and
// with the frontier.
func (a *Assembly) addLocked(r Range) {
	if r.Start < a.front {
		r.Start = a.front
	}
	if r.End <= r.Start {
		return
	}
	i, _ := slices.BinarySearchFunc(a.written, r.Start, func(x Range, s int64) int {
		switch {
		case x.End < s:
			return -1
		case x.Start > s:
			return 1
		}
		return 0
	})
	// Merge with every range that touches or overlaps r.
	j := i
	for j < len(a.written) && a.written[j].Start <= r.End {
		r.Start = min(r.Start, a.written[j].Start)
		r.End = max(r.End, a.written[j].End)
		j++
	}
	a.written = slices.Replace(a.written, i, j, r)
}

// advanceLocked queues the read-back of written ranges that start at the
// frontier.
func (a *Assembly) advanceLocked() {
	for len(a.written) > 0 && a.written[0].Start <= a.front {
		r := a.written[0]
		a.written = a.written[1:]
		if r.End > a.front {
			a.pushLocked(work{back: Range{a.front, r.End}})
			a.front = r.End
		}
	}
}

func (a *Assembly) pushLocked(w work) {
	a.queue = append(a.queue, w)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// wrote records that a writer stored p at file offset off; buf is the
// writer's buffer holding p. It reports whether p went to the hashers
// from memory, in which case buf must not be reused until released.
func (a *Assembly) wrote(off int64, p []byte, buf *[]byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	end := off + int64(len(p))
	if a.closed || end <= a.front {
		return false
	}
	if off > a.front {
		a.addLocked(Range{off, end})
		return false
	}
	p = p[a.front-off:]
	a.pushLocked(work{p: p})
	a.front = end
	a.advanceLocked()
	return true
}

// release queues the return of a buffer handed to the hashers; it goes
// back to the pool once both have hashed it.
func (a *Assembly) release(buf *[]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return // the goroutines are gone; the buffer is garbage
	}
	a.pushLocked(work{buf: buf})
}

// token takes one of the hashBuffers slots; false once the Assembly is
// closed.
func (a *Assembly) token() bool {
	select {
	case a.tokens <- struct{}{}:
		return true
	case <-a.quit:
		return false
	case <-a.seqDone: // stopped on a read-back error: nothing frees a slot
		return false
	}
}

// sequence feeds the hashing stages in file order: bytes from memory,
// ranges read back from staging, buffer releases and marks.
func (a *Assembly) sequence() {
	defer close(a.seqDone)
	defer func() {
		for _, st := range a.stages {
			close(st)
		}
	}()
	for {
		a.mu.Lock()
		if len(a.queue) == 0 {
			a.mu.Unlock()
			select {
			case <-a.kick:
				continue
			case <-a.quit:
				return
			}
		}
		w := a.queue[0]
		a.queue[0] = work{}
		a.queue = a.queue[1:]
		a.mu.Unlock()
		switch {
		case w.back.Len() > 0:
			if err := a.readBack(w.back); err != nil {
				a.mu.Lock()
				if a.err == nil {
					a.err = err
				}
				a.mu.Unlock()
				return
			}
		case !a.send(piece{p: w.p, buf: w.buf, mark: w.mark}):
			return
		default:
			a.hand(int64(len(w.p)))
		}
	}
}

// send hands a piece to both stages; false once the Assembly is closed.
func (a *Assembly) send(p piece) bool {
	for _, st := range a.stages {
		select {
		case st <- p:
		case <-a.quit:
			return false
		}
	}
	return true
}

// readBack reads r from staging into pooled buffers and hashes it.
func (a *Assembly) readBack(r Range) error {
	for off := r.Start; off < r.End; {
		select {
		case a.backTok <- struct{}{}:
		case <-a.quit:
			return nil
		}
		buf := a.getBuf()
		p := (*buf)[:min(int64(bufSize), r.End-off)]
		began := time.Now()
		n, err := a.st.ReadAt(p, off)
		a.busy[2].Add(int64(time.Since(began)))
		if n < len(p) {
			a.putBuf(buf)
			<-a.backTok
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("blob: read back %d bytes at %d of %s: %w", len(p), off, a.st.ID(), err)
		}
		if !a.send(piece{p: p, buf: buf, back: true}) {
			return nil
		}
		a.hand(int64(n))
		off += int64(n)
	}
	return nil
}

// stage is one hashing goroutine: it hashes pieces in order, records its
// part of every mark, and releases buffers once both stages are past them.
func (a *Assembly) stage(i int, hash func([]byte)) {
	for p := range a.stages[i] {
		if len(p.p) > 0 {
			began := time.Now()
			hash(p.p)
			a.busy[i].Add(int64(time.Since(began)))
		}
		if p.mark != nil {
			a.record(i, p.mark)
		}
		if p.buf != nil {
			a.pendMu.Lock()
			a.pending[p.buf]++
			last := a.pending[p.buf] == len(a.stages)
			if last {
				delete(a.pending, p.buf)
			}
			a.pendMu.Unlock()
			if last {
				a.putBuf(p.buf)
				if p.back {
					<-a.backTok
				} else {
					<-a.tokens
				}
			}
		}
	}
}

// record saves stage i's part of the hash state at m.
func (a *Assembly) record(i int, m *mark) {
	var err error
	if i == 0 {
		m.qx, err = marshalHash(a.h.qx)
		if err == nil {
			m.s1, err = marshalHash(a.h.sha1)
		}
	} else {
		m.s256, err = marshalHash(a.h.sha256)
	}
	if err != nil {
		return // never for the standard library's hashes; the mark stays incomplete
	}
	if m.left.Add(-1) == 0 {
		a.mu.Lock()
		if m.off >= a.last.off {
			a.last = m
		}
		a.mu.Unlock()
		close(m.done)
	}
}

// Fill copies src into the staging area from file offset off until the
// position end() reports (end may shrink while Fill runs, when another
// writer takes over the tail of this range), src ends, or an error. It
// returns the bytes written from off. progress, if not nil, is called
// after every read with the file position read up to.
//
// Like Copy it writes whole 1 MiB buffers at aligned offsets (direct I/O),
// and writes what a trickling source sent every segmentAge. Bytes read
// beyond end() once it shrank are dropped, never written.
func (a *Assembly) Fill(ctx context.Context, off int64, src io.Reader, end func() int64, progress func(pos int64)) (int64, error) {
	var (
		buf       = a.getBuf()
		handed    bool                         // buf is queued for hashing
		bufOff    = off                        // file offset of (*buf)[0]
		capacity  = bufSize - int(off%bufSize) // bytes this buffer takes
		fill      int                          // bytes of *buf read
		written   int                          // bytes of *buf written
		lastFlush = time.Now()
	)
	defer func() {
		if handed {
			a.release(buf)
		} else {
			a.putBuf(buf)
		}
	}()
	flush := func() error {
		if lim := end() - bufOff; int64(fill) > lim {
			fill = int(max(lim, int64(written)))
		}
		if fill == written {
			return nil
		}
		from := written
		if fill == bufSize {
			from = 0 // whole and aligned: one direct write
		}
		began := time.Now()
		w, err := a.st.WriteAt((*buf)[from:fill], bufOff+int64(from))
		a.writing.Add(int64(time.Since(began)))
		if err == nil && w < fill-from {
			err = io.ErrShortWrite
		}
		if e := from + w; e > written {
			if a.wrote(bufOff+int64(written), (*buf)[written:e], buf) && !handed {
				handed = true
				if !a.token() {
					return errClosed
				}
			}
			written = e
			lastFlush = time.Now()
		}
		if err != nil {
			return fmt.Errorf("blob: write staging: %w", err)
		}
		return nil
	}
	var err error
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		pos := bufOff + int64(fill)
		want := int64(capacity - fill)
		if left := end() - pos; left < want {
			want = left
		}
		if want <= 0 {
			break
		}
		if err = a.waitWindow(ctx, pos); err != nil {
			break
		}
		began := time.Now()
		n, rerr := src.Read((*buf)[fill : fill+int(want)])
		a.reading.Add(int64(time.Since(began)))
		fill += n
		if n > 0 && progress != nil {
			progress(bufOff + int64(fill))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = fmt.Errorf("blob: read source: %w", rerr)
			break
		}
		if fill == capacity {
			if werr := flush(); werr != nil {
				return bufOff + int64(written) - off, werr
			}
			bufOff += int64(fill)
			if handed {
				a.release(buf)
				buf, handed = a.getBuf(), false
			}
			capacity, fill, written = bufSize, 0, 0
			continue
		}
		if time.Since(lastFlush) >= segmentAge {
			if werr := flush(); werr != nil {
				return bufOff + int64(written) - off, werr
			}
		}
	}
	if werr := flush(); werr != nil {
		err = werr // a failed write outranks why reading stopped
	}
	return bufOff + int64(written) - off, err
}

var errClosed = errors.New("blob: assembly closed")

// aheadWindow bounds how far beyond the bytes handed to the hashers a
// writer may write: when the hashing is the bottleneck (a fast origin over
// several connections, a busy CPU), writers far ahead wait, so that the
// backlog left to hash when the last byte arrives stays small, and the
// time the connections spend waiting shows as a lower rate to whoever
// decides how many connections to open.
const aheadWindow = 64 << 20

// hand records n more bytes handed to the hashers and wakes writers
// waiting for the window.
func (a *Assembly) hand(n int64) {
	if n == 0 {
		return
	}
	a.sentMu.Lock()
	a.sent += n
	close(a.advanced)
	a.advanced = make(chan struct{})
	a.sentMu.Unlock()
}

// waitWindow waits until pos is within aheadWindow of the bytes handed to
// the hashers.
func (a *Assembly) waitWindow(ctx context.Context, pos int64) error {
	for {
		a.sentMu.Lock()
		sent, ch := a.sent, a.advanced
		a.sentMu.Unlock()
		if pos < sent+aheadWindow {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-a.quit:
			return errClosed
		}
	}
}

// HashBusy reports how long the busiest part of the hashing pipeline (one
// of the two hashing goroutines, or the reading back of staged bytes) has
// worked so far. Its growth over a span of time, divided by that span,
// tells how close the hashing is to being what limits the import.
func (a *Assembly) HashBusy() time.Duration {
	var most int64
	for i := range a.busy {
		most = max(most, a.busy[i].Load())
	}
	return time.Duration(most)
}

// IOBusy reports how long the writers (Fill) have spent reading their
// sources and writing staging so far, each summed over the writers: beside
// HashBusy, where an import's time went.
func (a *Assembly) IOBusy() (read, write time.Duration) {
	return time.Duration(a.reading.Load()), time.Duration(a.writing.Load())
}

// getBuf takes a buffer from the assembly's own free list, or a new one.
// The assembly keeps the buffers it made for its whole life rather than
// in the shared sync.Pool: the pool is emptied by every garbage
// collection, and refilling it churns the heap by several MiB a second
// per connection, which a collector that runs at twice the live heap
// turns into resident memory.
func (a *Assembly) getBuf() *[]byte {
	a.freeMu.Lock()
	defer a.freeMu.Unlock()
	if n := len(a.free); n > 0 {
		b := a.free[n-1]
		a.free = a.free[:n-1]
		return b
	}
	return bufPool.Get().(*[]byte)
}

func (a *Assembly) putBuf(b *[]byte) {
	a.freeMu.Lock()
	defer a.freeMu.Unlock()
	a.free = append(a.free, b)
}
