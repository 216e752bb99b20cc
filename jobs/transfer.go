package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
	"github.com/ferrydrive/ferry/fetch"
)

// A transfer is the fetching state's work for one attempt: it stages the
// file's missing ranges over one or more connections and hashes them in
// file order (blob.Assembly).
//
// The first request asks for the first missing byte onwards (from 0 with
// "Range: bytes=0-", so that a 206 says the origin serves ranges). When
// the origin answered 206 with a total and a strong validator (ETag, else
// Last-Modified), the rest is fetched in segments: the missing ranges are
// handed out in file order, a piece at a time (about a quarter of a
// second of one connection's transfer, 1–64 MiB), to as many connections
// as raise the total throughput, up to Config.Connections; a connection
// that finds nothing left takes over the tail of the segment that will
// finish last (stealing). Every response must carry the validator and
// total of the first, or the download starts over in a fresh staging area.
//
// How many connections: see ramp. A 503 or 429 on any connection lowers
// the cap to the connections that worked. Connections beyond the first
// never wait for a host slot (fetch's per-host limit): they are opened
// only when one is free.
type transfer struct {
	a     *attempt
	f     *fetching
	cfg   *Config
	limit int64 // the most bytes the file may have: min(quota, MaxFileSize)
	quota int64 // the drive's room when the transfer began (Store.Room)
	asm   *blob.Assembly
	srcs  []*source

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	free     []blob.Range // missing and not assigned, sorted
	segs     []*segment   // assigned to a connection
	workers  int
	target   int // connections wanted now
	maxConns int // lowered by 503s
	fatal    error
	lastErr  error
	eof      bool // a stream of unknown length ended
	closed   bool // no more workers start
	idle     chan struct{}
	ignored  int // range requests answered 200
	requests int // requests sent (for the debug line at the end)
	steals   int
	drained  time.Time // when the last free range was handed out
	done     sync.WaitGroup
}

// source is one URL of the file: the job's, or a mirror.
type source struct {
	url  string
	etag string // its validator, once it answered
	lm   string
	seen bool
	dead bool
	errs int
}

// segment is the range a connection is filling.
type segment struct {
	src    *source
	wrote  int64 // written up to (its worker's)
	pos    int64 // read up to (under transfer.mu via progress)
	last   int64 // pos at the controller's previous tick
	still  int   // ticks without progress
	ticks  int   // ticks seen by the controller
	rate   float64
	first  time.Time // when it read its first byte
	shed   bool      // cut because the transfer wants fewer connections
	end    atomic.Int64
	cancel context.CancelCauseFunc
}

// estimate is s's rate, or mean while s is too young to have one.
func (s *segment) estimate(mean float64) float64 {
	if s.ticks < 4 {
		return mean
	}
	return s.rate
}

// errStalled is the cause of a connection cut because it stopped sending
// while others did not.
var errStalled = errors.New("jobs: connection stalled")

// errShed is the cause of a connection cut because the transfer wants
// fewer connections.
var errShed = errors.New("jobs: connection shed")

const (
	minPiece  = 1 << 20
	maxPiece  = 64 << 20
	stealMin  = 256 << 10
	tick      = 25 * time.Millisecond
	pieceTime = 250 * time.Millisecond
)

// fetch runs the fetching state until the file is staged and hashed, and
// returns the hasher and the file's size. A source that changed starts
// the download over (at most twice per attempt).
func (a *attempt) fetch(ctx context.Context, f *fetching) (*blob.Hasher, int64, error) {
	for restarts := 0; ; restarts++ {
		t := &transfer{a: a, f: f, cfg: &a.q.cfg}
		h, size, err := t.run(ctx)
		if errors.Is(err, errSourceChanged) && restarts < 2 && ctx.Err() == nil {
			a.q.log.Info("jobs: the source changed; starting over", "job", a.job.ID)
			f.Written, f.Hashed, f.Hash, f.Source = nil, 0, nil, sourceInfo{Total: -1}
			a.bytes.Store(0)
			continue
		}
		return h, size, err
	}
}

func (t *transfer) run(ctx context.Context) (*blob.Hasher, int64, error) {
	q := t.a.q
	room, err := q.store.Room(ctx, t.a.job.DriveID)
	if err != nil {
		return nil, 0, fmt.Errorf("jobs: drive of %s: %w", t.a.job.ID, err)
	}
	t.quota = room
	t.limit = min(t.quota, t.cfg.MaxFileSize)
	t.srcs = []*source{{url: t.a.job.SourceURL}}
	for _, m := range t.a.job.Mirrors {
		t.srcs = append(t.srcs, &source{url: m})
	}
	t.ctx, t.cancel = context.WithCancelCause(ctx)
	defer t.cancel(nil)
	t.idle = make(chan struct{})
	t.maxConns = max(1, t.cfg.Connections)
	t.target = 1

	seg, resp, err := t.first()
	if err != nil {
		if t.asm != nil {
			t.asm.Close()
		}
		return nil, 0, err
	}
	if resp != nil {
		t.mu.Lock()
		t.startLocked(seg, resp)
		t.mu.Unlock()
		stop := make(chan struct{})
		var cw sync.WaitGroup
		cw.Go(func() { t.control(stop) })
		<-t.idle
		close(stop)
		cw.Wait()
		t.done.Wait()
		t.mu.Lock()
		tail := time.Duration(0)
		if !t.drained.IsZero() {
			tail = time.Since(t.drained)
		}
		t.a.q.log.Debug("jobs: transfer ended", "job", t.a.job.ID, "requests", t.requests,
			"steals", t.steals, "tail", tail)
		t.mu.Unlock()
	}
	err = t.result()
	if err != nil {
		t.save(context.WithoutCancel(ctx))
		t.asm.Close()
		return nil, 0, err
	}
	h, size, err := t.asm.Finish(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("jobs: hash: %w", err)
	}
	// Where the time went: the connections' reading and writing, summed
	// over connections, and the busiest part of the hashing.
	read, write := t.asm.IOBusy()
	q.log.Debug("jobs: staged", "job", t.a.job.ID, "bytes", size, "read", read, "write", write, "hash", t.asm.HashBusy())
	return h, size, nil
}

// result tells whether the transfer staged the whole file.
func (t *transfer) result() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fatal != nil {
		return t.fatal
	}
	front := t.asm.Front()
	total := t.f.Source.Total
	switch {
	case total >= 0 && front == total && len(t.free) == 0:
		return nil
	case total < 0 && t.eof && len(t.asm.Written()) <= 1:
		t.f.Source.Total = front
		t.a.total.Store(front)
		return nil
	case t.lastErr != nil:
		return t.lastErr
	}
	return errShort
}

// first sends the first request, from the first missing byte, and sets
// the transfer up from its answer: a fresh staging area when the download
// starts from 0, the assembly, and the missing ranges. It returns the
// first connection's segment and response; a nil response means the file
// was staged whole already.
func (t *transfer) first() (*segment, *fetch.Response, error) {
	f, q := t.f, t.a.q
	resuming := f.staging != nil && len(f.Written) > 0
	var start int64
	if resuming {
		gaps := t.missing()
		if len(gaps) == 0 {
			return nil, nil, t.assemble()
		}
		start = gaps[0].Start
	}
	req := fetch.Request{URL: t.srcs[0].url, Offset: start, Probe: start == 0}
	if start > 0 {
		req.IfRange = validator(f.Source)
	}
	sctx, scancel := context.WithCancelCause(t.ctx)
	resp, err := q.fetch.Open(sctx, req)
	if err != nil {
		scancel(nil)
		return nil, nil, err
	}
	fail := func(err error) (*segment, *fetch.Response, error) {
		resp.Body.Close()
		scancel(nil)
		return nil, nil, err
	}
	switch {
	case start > 0 && resp.Status == 416: // the staged bytes are the whole file
		resp.Body.Close()
		scancel(nil)
		if f.Source.Total < 0 {
			f.Source.Total = start
			t.a.total.Store(start)
		}
		return nil, nil, t.assemble()
	case start > 0 && resp.Offset == start:
		if changed(f.Source, resp.ETag, resp.LastModified) ||
			(f.Source.Total >= 0 && resp.Total >= 0 && resp.Total != f.Source.Total) {
			// A 206 of another version: the origin ignored If-Range, or
			// sent another size. Splicing it onto the staged bytes would
			// make a file that never existed.
			return fail(errSourceChanged)
		}
		if f.Source.Total < 0 && resp.Total >= 0 {
			f.Source.Total = resp.Total
		}
	case resp.Offset != 0:
		return fail(errSourceChanged)
	default:
		// From byte 0: a fresh download, or a resume the origin answered
		// with the whole file (no ranges, or If-Range did not match).
		src := sourceInfo{ETag: resp.ETag, LastModified: resp.LastModified, Total: resp.Total,
			Ranges:      resp.Status == 206 && resp.Total >= 0 && (resp.ETag != "" || resp.LastModified != ""),
			Name:        originName(resp.Filename, resp.FinalURL),
			ContentType: resp.ContentType}
		if src.Total >= 0 {
			if err := t.checkSize(src.Total, true); err != nil {
				return fail(err)
			}
		}
		if err := t.a.restage(t.ctx, f, src); err != nil {
			return fail(err)
		}
		start = 0
		t.srcs[0].etag, t.srcs[0].lm, t.srcs[0].seen = src.ETag, src.LastModified, true
	}
	if f.Source.Total >= 0 {
		if err := t.checkSize(f.Source.Total, true); err != nil {
			return fail(err)
		}
	}
	t.a.total.Store(f.Source.Total)
	if err := t.a.reserveSpace(f.staging, f.Source.Total); err != nil {
		return fail(err)
	}
	if !t.srcs[0].seen {
		t.srcs[0].etag, t.srcs[0].lm, t.srcs[0].seen = f.Source.ETag, f.Source.LastModified, true
	}
	if err := t.assemble(); err != nil {
		return fail(err)
	}
	t.free = t.missing()
	seg := &segment{src: t.srcs[0], wrote: start, pos: start, cancel: scancel}
	end := t.limit + 1 // a stream of unknown length may not outgrow the limit
	if f.Source.Total >= 0 {
		end = f.Source.Total
	}
	if t.segmented() && len(t.free) > 0 {
		end = t.free[0].End // the rest of the first gap; the others are pieces
	}
	seg.end.Store(end)
	t.takeLocked(blob.Range{Start: start, End: end})
	return seg, resp, nil
}

// assemble starts the assembly on the staged ranges and hash state.
func (t *transfer) assemble() error {
	f := t.f
	h := blob.NewHasher()
	hashed := f.Hashed
	if hashed > 0 {
		if err := h.UnmarshalBinary(f.Hash); err != nil {
			// Hash state from another version: hash the staged bytes
			// again (the assembly reads them back) rather than fetch
			// them again.
			t.a.q.log.Debug("jobs: unreadable hash state; rehashing", "job", t.a.job.ID, "err", err)
			h, hashed = blob.NewHasher(), 0
		}
	}
	if f.staging == nil {
		return nil
	}
	asm, err := blob.NewAssembly(f.staging, h, hashed, f.Written)
	if err != nil {
		return fmt.Errorf("jobs: assemble: %w", err)
	}
	t.asm = asm
	return nil
}

// segmented reports whether the file may be fetched in segments.
func (t *transfer) segmented() bool {
	return t.f.Source.Ranges && t.f.Source.Total >= 0
}

// missing lists the ranges not staged yet: the complement of the written
// ranges in [0, total), or everything after the contiguous prefix when
// the total is unknown.
func (t *transfer) missing() []blob.Range {
	total := t.f.Source.Total
	var out []blob.Range
	var at int64
	for _, r := range t.f.Written {
		if r.Start > at {
			out = append(out, blob.Range{Start: at, End: r.Start})
		}
		at = max(at, r.End)
	}
	switch {
	case total < 0:
		if len(t.f.Written) > 1 || (len(t.f.Written) == 1 && t.f.Written[0].Start != 0) {
			out = out[:0] // an unknown-length file is only ever staged as one prefix
			at = 0
		}
		return append(out[:0], blob.Range{Start: at, End: math.MaxInt64})
	case at < total:
		out = append(out, blob.Range{Start: at, End: total})
	}
	return out
}

// takeLocked removes r from the free ranges.
func (t *transfer) takeLocked(r blob.Range) {
	var out []blob.Range
	for _, g := range t.free {
		if g.End <= r.Start || g.Start >= r.End {
			out = append(out, g)
			continue
		}
		if g.Start < r.Start {
			out = append(out, blob.Range{Start: g.Start, End: r.Start})
		}
		if g.End > r.End {
			out = append(out, blob.Range{Start: r.End, End: g.End})
		}
	}
	t.free = out
}

// giveLocked returns r to the free ranges.
func (t *transfer) giveLocked(r blob.Range) {
	if r.Len() <= 0 {
		return
	}
	t.free = append(t.free, r)
	slices.SortFunc(t.free, func(a, b blob.Range) int { return int(min(max(a.Start-b.Start, -1), 1)) })
	out := t.free[:1]
	for _, g := range t.free[1:] {
		if last := &out[len(out)-1]; g.Start <= last.End {
			last.End = max(last.End, g.End)
			continue
		}
		out = append(out, g)
	}
	t.free = out
}

// checkSize fails the job when a file of size bytes cannot be stored.
// announced says whether the origin announced the size or the bytes were
// already streaming.
func (t *transfer) checkSize(size int64, announced bool) error {
	how := "is"
	if !announced {
		how = "grew"
	}
	switch {
	case size > t.cfg.MaxFileSize:
		return &failure{code: ferry.JobMaxFileSizeExceeded,
			msg: fmt.Sprintf("The file %s larger than the largest import allowed (%d bytes).", how, t.cfg.MaxFileSize)}
	case size > t.quota:
		return &failure{code: ferry.JobQuotaLimitReached,
			msg: fmt.Sprintf("The file %s larger than the space left in the drive (%d bytes).", how, t.quota)}
	}
	return nil
}

// validator is the If-Range value for resuming: the strong ETag, else
// Last-Modified.
func validator(s sourceInfo) string {
	if s.ETag != "" {
		return s.ETag
	}
	return s.LastModified
}

// changed reports whether a response carries a validator other than the
// one the staged bytes came with: a different strong ETag, or, when
// neither side has one, a different Last-Modified.
func changed(s sourceInfo, etag, lm string) bool {
	if s.ETag != "" || etag != "" {
		return etag != s.ETag
	}
	return s.LastModified != "" && lm != "" && lm != s.LastModified
}

// save takes a durable checkpoint: the ranges written so far and the
// newest hash state, recorded only after the staged bytes are synced.
func (t *transfer) save(ctx context.Context) {
	if t.asm == nil || t.f.staging == nil {
		return
	}
	snap := t.asm.Snapshot()
	// Every byte below the hash state of a durable checkpoint is never
	// read again (a resume starts hashing there; a restart from zero
	// moves to a fresh area): a store such as S3 may turn it into parts
	// at this Sync, which it cannot read back. Not snap.Hashed: should
	// the process die before the checkpoint below is written, the
	// resume starts from the previous one and reads back from there.
	if err := t.f.staging.Release(t.f.durable); err != nil {
		t.a.q.log.Debug("jobs: release staged bytes", "job", t.a.job.ID, "err", err)
		return
	}
	if err := t.f.staging.Sync(); err != nil {
		t.a.q.log.Debug("jobs: sync staging", "job", t.a.job.ID, "err", err)
		return
	}
	t.f.Written, t.f.Hashed, t.f.Hash = snap.Written, snap.Hashed, snap.Hash
	if err := t.a.save(ctx); err != nil {
		t.a.q.log.Debug("jobs: checkpoint", "job", t.a.job.ID, "err", err)
		return
	}
	t.f.durable = snap.Hashed
}

// abortLocked ends the transfer with err (the first one wins).
func (t *transfer) abortLocked(err error) {
	if t.fatal == nil {
		t.fatal = err
	}
	t.cancel(err)
}

// startLocked starts a connection on seg, with resp when it has one.
func (t *transfer) startLocked(seg *segment, resp *fetch.Response) {
	t.workers++
	t.a.conns.Add(1)
	if seg != nil {
		t.segs = append(t.segs, seg)
	}
	t.done.Go(func() { t.work(seg, resp) })
}

// work is one connection: it fills segments until none is left or it
// gives up.
func (t *transfer) work(seg *segment, resp *fetch.Response) {
	defer func() {
		t.mu.Lock()
		t.workers--
		t.a.conns.Add(-1)
		if t.workers == 0 && !t.closed {
			t.closed = true
			close(t.idle)
		}
		t.mu.Unlock()
	}()
	fails := 0
	for {
		if seg == nil {
			if seg = t.next(); seg == nil {
				return
			}
		}
		if resp == nil {
			var err error
			if resp, err = t.open(seg, fails == 0 && t.isExtra()); err != nil {
				t.giveBack(seg)
				seg = nil
				if !t.retry(err, &fails) {
					return
				}
				continue
			}
		}
		err := t.fill(seg, resp)
		resp.Body.Close()
		resp = nil
		if err == nil {
			t.finished(seg)
			seg, fails = nil, 0
			continue
		}
		if t.giveBack(seg) {
			return // shed
		}
		seg = nil
		if !t.retry(err, &fails) {
			return
		}
	}
}

// isExtra reports whether the calling connection is not the only one.
func (t *transfer) isExtra() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.workers > 1
}

// next assigns the calling connection its next segment: the first piece
// of the first free range, else the tail of the segment that will finish
// last. nil when there is nothing worth taking.
func (t *transfer) next() *segment {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fatal != nil || t.ctx.Err() != nil || !t.segmented() {
		return nil
	}
	if t.workers > max(1, t.target) {
		return nil // shed: the others take the rest
	}
	src := t.sourceLocked()
	if src == nil {
		return nil
	}
	var seg *segment
	if len(t.free) > 0 {
		r := t.free[0]
		p := t.pieceLocked()
		end := min(r.End, r.Start+p)
		if r.End-end < p/4 { // no slivers
			end = r.End
		}
		t.takeLocked(blob.Range{Start: r.Start, End: end})
		seg = &segment{src: src, wrote: r.Start, pos: r.Start}
		seg.end.Store(end)
	} else if seg = t.stealLocked(src); seg == nil {
		return nil
	} else {
		t.steals++
	}
	if len(t.free) == 0 && t.drained.IsZero() {
		t.drained = time.Now()
	}
	t.segs = append(t.segs, seg)
	return seg
}

// pieceLocked is the size of a new piece: about pieceTime of one
// connection's transfer, less near the end, 1–64 MiB, a multiple of 1 MiB.
func (t *transfer) pieceLocked() int64 {
	var rate float64
	for _, s := range t.segs {
		rate += s.rate
	}
	p := int64(4 << 20)
	if n := len(t.segs); n > 0 && rate > 0 {
		p = int64(rate / float64(n) * pieceTime.Seconds())
	}
	// Near the end, smaller pieces: the connections finish together, and
	// fewer bytes wait beyond the hash frontier when the last one does.
	var free int64
	for _, r := range t.free {
		free += r.Len()
	}
	if w := int64(max(1, t.workers)); free < 2*w*p {
		p = free / (2 * w)
	}
	p = min(max(p, minPiece), maxPiece)
	return p &^ (minPiece - 1)
}

// stealLocked splits the segment that will finish last, giving its tail
// to a new segment, so that the end of a download is not one slow
// connection. The split point shares the rest in proportion to the two
// connections' rates (a stalled one keeps almost nothing).
func (t *transfer) stealLocked(src *source) *segment {
	var victim *segment
	var worst float64
	var total float64
	for _, s := range t.segs {
		total += s.rate
	}
	mean := total / float64(max(1, len(t.segs)))
	for _, s := range t.segs {
		rem := s.end.Load() - s.pos
		if rem < 2*stealMin {
			continue
		}
		eta := float64(rem) / max(s.estimate(mean), 1)
		if victim == nil || eta > worst {
			victim, worst = s, eta
		}
	}
	if victim == nil {
		return nil
	}
	end := victim.end.Load()
	rem := end - victim.pos
	share := 0.5
	if vr := victim.estimate(mean); vr+mean > 0 {
		share = vr / (vr + mean)
	}
	split := victim.pos + int64(float64(rem)*share)
	split = max(split, victim.pos+stealMin/4)
	split = (split + (64<<10 - 1)) &^ (64<<10 - 1)
	if end-split < stealMin {
		return nil
	}
	victim.end.Store(split)
	seg := &segment{src: src, wrote: split, pos: split}
	seg.end.Store(end)
	return seg
}

// sourceLocked picks the source for a new segment: the live one with the
// fewest segments.
func (t *transfer) sourceLocked() *source {
	var best *source
	bestN := 0
	for _, s := range t.srcs {
		if s.dead {
			continue
		}
		n := 0
		for _, g := range t.segs {
			if g.src == s {
				n++
			}
		}
		if best == nil || n < bestN {
			best, bestN = s, n
		}
	}
	return best
}

// extend grows seg into the free range right after it, within what resp
// still delivers: a connection whose response goes on keeps it.
func (t *transfer) extend(seg *segment, respEnd int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	end := seg.end.Load()
	if t.fatal != nil || end >= respEnd {
		return false
	}
	for _, r := range t.free {
		if r.Start == end {
			e := min(r.End, end+t.pieceLocked(), respEnd)
			t.takeLocked(blob.Range{Start: end, End: e})
			seg.end.Store(e)
			return true
		}
	}
	return false
}

// finished drops a completed segment.
func (t *transfer) finished(seg *segment) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropLocked(seg)
}

// giveBack returns what a segment did not write to the free ranges, and
// reports whether its connection was shed.
func (t *transfer) giveBack(seg *segment) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropLocked(seg)
	if seg.pos > seg.wrote {
		t.a.bytes.Add(seg.wrote - seg.pos)
	}
	if t.segmented() {
		t.giveLocked(blob.Range{Start: seg.wrote, End: seg.end.Load()})
	}
	return seg.shed
}

func (t *transfer) dropLocked(seg *segment) {
	if i := slices.Index(t.segs, seg); i >= 0 {
		t.segs = slices.Delete(t.segs, i, i+1)
	}
	if seg.cancel != nil { // its response is closed: release its context
		seg.cancel(nil)
		seg.cancel = nil
	}
}

// open requests seg's range from its source and checks that the answer
// is the same file: the same total and validator, bytes from seg's start.
// noWait asks fetch not to wait for a host slot.
func (t *transfer) open(seg *segment, noWait bool) (*fetch.Response, error) {
	src := seg.src
	t.mu.Lock()
	end := seg.end.Load()
	if t.target <= 1 {
		// One connection wanted: ask for the free bytes after the
		// segment too, so that it grows into them (extend) on this
		// response rather than with a request per piece.
		for _, r := range t.free {
			if r.Start == end {
				end = r.End
			}
		}
	}
	t.requests++
	// Another connection to src may learn its validator meanwhile.
	seen, known := src.seen, sourceInfo{ETag: src.etag, LastModified: src.lm}
	t.mu.Unlock()
	req := fetch.Request{URL: src.url, Offset: seg.wrote, End: end - 1, NoWait: noWait}
	if seen {
		req.IfRange = validator(known)
	}
	sctx, scancel := context.WithCancelCause(t.ctx)
	resp, err := t.a.q.fetch.Open(sctx, req)
	if err != nil {
		scancel(nil)
		return nil, sourceError(src, err)
	}
	bad := func(err error) (*fetch.Response, error) {
		resp.Body.Close()
		scancel(nil)
		return nil, err
	}
	total := t.f.Source.Total
	switch {
	case resp.Status == 206 && resp.Offset == seg.wrote:
		if resp.Total != total {
			return bad(t.disagree(src))
		}
		if seen && changed(known, resp.ETag, resp.LastModified) {
			return bad(t.disagree(src))
		}
		if !seen {
			if disagrees(t.f.Source, resp.ETag, resp.LastModified) {
				return bad(t.disagree(src))
			}
			t.mu.Lock()
			differs := src.seen && changed(sourceInfo{ETag: src.etag, LastModified: src.lm}, resp.ETag, resp.LastModified)
			if !src.seen {
				src.etag, src.lm, src.seen = resp.ETag, resp.LastModified, true
			}
			t.mu.Unlock()
			if differs {
				return bad(t.disagree(src))
			}
		}
	case resp.Status == 200 && resp.Total == total && !changed(t.f.Source, resp.ETag, resp.LastModified) && src == t.srcs[0]:
		// The origin ignored the range this time. Once it is the last
		// connection, it reads the whole body and skips what it does not
		// need; until then the connection gives its piece back.
		t.mu.Lock()
		t.ignored++
		last := t.workers == 1
		t.mu.Unlock()
		if !last {
			return bad(&retryable{"the source ignored a range request"})
		}
		if _, err := io.CopyN(io.Discard, resp.Body, seg.wrote); err != nil {
			return bad(err)
		}
		resp.Offset, resp.Length = seg.wrote, resp.Length-seg.wrote
	default:
		return bad(t.disagree(src))
	}
	t.mu.Lock()
	seg.cancel = scancel
	t.mu.Unlock()
	return resp, nil
}

// disagree is the error for a response that is not the same file: the
// whole download starts over for the job's own URL, a mirror is dropped.
func (t *transfer) disagree(src *source) error {
	if src == t.srcs[0] {
		return errSourceChanged
	}
	t.mu.Lock()
	src.dead = true
	t.mu.Unlock()
	t.a.q.log.Info("jobs: dropping a mirror that serves another file", "job", t.a.job.ID)
	return errMirrorDropped
}

// errMirrorDropped ends a connection to a mirror that was dropped.
var errMirrorDropped = &retryable{"a mirror was dropped"}

// disagrees reports whether a mirror's validator contradicts the main
// source's, where they share one: strong ETags when both have one, else
// Last-Modified when both have it. (Mirrors on different servers often
// have different ETags for the same bytes; such a mirror is dropped, which
// is safe. @ferry.sha256 guards the result either way.)
func disagrees(main sourceInfo, etag, lm string) bool {
	switch {
	case main.ETag != "" && etag != "":
		return main.ETag != etag
	case main.LastModified != "" && lm != "":
		return main.LastModified != lm
	}
	return false
}

// sourceError marks errors of mirrors so that retry drops the mirror
// rather than failing the job.
func sourceError(src *source, err error) error {
	if src.url == "" {
		return err
	}
	return &sourceErr{src: src, err: err}
}

type sourceErr struct {
	src *source
	err error
}

func (e *sourceErr) Error() string { return e.err.Error() }
func (e *sourceErr) Unwrap() error { return e.err }

// fill writes what resp delivers into seg until seg's end (growing it
// into free ranges while the response goes on). nil means seg is done.
func (t *transfer) fill(seg *segment, resp *fetch.Response) error {
	respEnd := int64(math.MaxInt64)
	if resp.Length >= 0 {
		respEnd = resp.Offset + resp.Length
	}
	progress := func(p int64) {
		t.mu.Lock()
		if seg.first.IsZero() {
			seg.first = time.Now()
		}
		t.a.bytes.Add(p - seg.pos)
		seg.pos = p
		t.mu.Unlock()
	}
	for {
		n, err := t.asm.Fill(t.ctx, seg.wrote, resp.Body, seg.end.Load, progress)
		seg.wrote += n
		if seg.wrote > t.limit {
			t.mu.Lock()
			t.abortLocked(t.checkSize(seg.wrote, false))
			t.mu.Unlock()
			return t.fatal
		}
		if err != nil {
			return err
		}
		if seg.wrote >= seg.end.Load() {
			if t.extend(seg, respEnd) {
				continue
			}
			return nil
		}
		// The body ended before seg's end without an error: the end of a
		// file of unknown length.
		if t.f.Source.Total < 0 {
			t.mu.Lock()
			t.eof = true
			t.mu.Unlock()
			return nil
		}
		return errShort
	}
}

// retry decides whether a connection whose request or transfer failed
// tries again (true, after a pause) or ends. The transfer's own end (a
// changed source, a failure, cancellation) ends every connection.
func (t *transfer) retry(err error, fails *int) bool {
	var se *sourceErr
	mirror := errors.As(err, &se) && se.src != t.srcs[0]
	t.mu.Lock()
	defer t.mu.Unlock()
	var f *failure
	var fe *fetch.Error
	switch {
	case t.fatal != nil || t.ctx.Err() != nil:
		return false
	case errors.Is(err, errMirrorDropped):
		return t.segmented()
	case mirror && (permanentFetch(err) != nil || *fails >= 2):
		se.src.dead = true
		t.a.q.log.Info("jobs: dropping a failing mirror", "job", t.a.job.ID, "err", err)
		return true
	case errors.Is(err, errSourceChanged), errors.As(err, &f), permanentFetch(err) != nil:
		t.abortLocked(err)
		return false
	case errors.As(err, &fe) && fe.Code == fetch.CodeHostBusy:
		return false
	case errors.As(err, &fe) && (fe.Status == 503 || fe.Status == 429) && t.workers > 1:
		// The origin limits connections: fewer, not failure.
		t.maxConns = max(1, t.workers-1)
		t.target = min(t.target, t.maxConns)
		t.lastErr = err
		return false
	case !t.segmented():
		t.lastErr = err
		return false
	}
	t.lastErr = err
	*fails++
	if *fails > 3 {
		return false
	}
	t.a.tries.Add(1)
	d := time.Duration(50<<*fails) * time.Millisecond
	t.mu.Unlock()
	select {
	case <-t.ctx.Done():
	case <-time.After(d):
	}
	t.mu.Lock()
	return t.ctx.Err() == nil
}

// control runs beside the connections until stop: every tick it measures
// the segments' rates, cuts a stalled connection, adds connections while
// they pay and sheds them when they do not (see ramp), and takes a
// checkpoint every CheckpointEvery or CheckpointBytes.
func (t *transfer) control(stop <-chan struct{}) {
	tk := time.NewTicker(tick)
	defer tk.Stop()
	var (
		lastSave   = time.Now()
		savedBytes = t.a.bytes.Load()
		r          = ramp{t: t}
	)
	r.sample(time.Now(), t.a.bytes.Load())
	stallTicks := int(max(2*time.Second, t.cfg.StallAfter) / tick)
	for {
		select {
		case <-stop:
			return
		case <-t.ctx.Done():
			return
		case <-tk.C:
		}
		now := time.Now()
		b := t.a.bytes.Load()
		r.sample(now, b)

		t.mu.Lock()
		moving := false
		for _, s := range t.segs {
			s.ticks++
			rate := float64(s.pos-s.last) / tick.Seconds()
			s.rate = 0.8*s.rate + 0.2*rate
			if s.pos > s.last {
				s.still, moving = 0, true
			} else {
				s.still++
			}
			s.last = s.pos
		}
		for _, s := range t.segs {
			if s.still >= stallTicks && moving && s.cancel != nil {
				s.cancel(errStalled) // its connection retries elsewhere in the file
				s.still = 0
			}
		}
		if t.segmented() {
			r.stepLocked(now)
			for t.workers < min(t.target, t.maxConns) && !t.closed && t.fatal == nil {
				if !t.spawnLocked() {
					break
				}
			}
			t.shedLocked()
		}
		t.mu.Unlock()

		if now.Sub(lastSave) >= t.cfg.CheckpointEvery || b-savedBytes >= t.cfg.CheckpointBytes {
			t.save(t.ctx)
			lastSave, savedBytes = time.Now(), t.a.bytes.Load()
		}
	}
}

// ramp decides how many connections a segmented transfer wants. One
// connection is measured after its first byte (the best of three
// measureFor windows, or only the first when it is far too slow for the
// rest to matter); if it is
// slower than FastStream and keeps the hashing busy less than hashBound of
// the time (a fast origin, or a busy CPU, makes the hashing the limit with
// one stream, where more would only compete), the transfer opens
// more (see firstStep: 4, or the cap at once for a connection far slower
// than FastStream; then doubling up to the cap). Each step is measured for
// measureFor once every new connection has sent its first byte; the
// transfer goes on growing while each added connection brought at least
// half of what one brought before (an origin that throttles per
// connection) and the hashing is not the limit. A step that did less is measured for twice as long: it is
// kept if the total rose by more than 30 %, and undone otherwise (an
// origin, a disk or a CPU that is already the limit); either way the
// transfer stays where it is.
type ramp struct {
	t         *transfer
	samples   []rampSample // per tick
	phase     int          // 0 measuring one connection, 1 measuring a step, 2 steady
	firstByte time.Time
	changedAt time.Time
	ready     time.Time // when every connection of the step had delivered (readyLocked)
	before    float64   // the rate before the step
	busy      float64   // the share of time the hashing was busy with one connection
	nBefore   int       // the connections before the step
}

const measureFor = 3 * tick

// hashBound is the share of its time the hashing may be busy for more
// connections to be worth trying: beyond it, the hashers (and the CPU)
// are what limits the import, and more connections would only pile up
// bytes to hash.
const hashBound = 0.5

func (r *ramp) sample(now time.Time, b int64) {
	var busy time.Duration
	if r.t.asm != nil {
		busy = r.t.asm.HashBusy()
	}
	r.samples = append(r.samples, rampSample{now, b, busy})
	if len(r.samples) > 64 {
		r.samples = r.samples[1:]
	}
}

type rampSample struct {
	at    time.Time
	bytes int64
	busy  time.Duration // the assembly's HashBusy
}

// rateOver is the total rate over the last d and the share of that time
// the hashing was busy (false: not that much history).
func (r *ramp) rateOver(now time.Time, d time.Duration) (rate, busy float64, ok bool) {
	for i := len(r.samples) - 1; i >= 0; i-- {
		if now.Sub(r.samples[i].at) >= d {
			first, last := r.samples[i], r.samples[len(r.samples)-1]
			span := last.at.Sub(first.at).Seconds()
			return float64(last.bytes-first.bytes) / span, (last.busy - first.busy).Seconds() / span, true
		}
	}
	return 0, 0, false
}

// stepLocked moves the ramp on and sets t.target.
func (r *ramp) stepLocked(now time.Time) {
	t := r.t
	if r.phase == 2 {
		return
	}
	if r.firstByte.IsZero() {
		for _, s := range t.segs {
			if !s.first.IsZero() && (r.firstByte.IsZero() || s.first.Before(r.firstByte)) {
				r.firstByte = s.first
			}
		}
		if r.firstByte.IsZero() {
			return
		}
	}
	rem := float64(t.remainingLocked())
	switch r.phase {
	case 0:
		// The first tick warms up; then the best of three windows is
		// the one connection's rate (a low guess would make any step
		// look like a gain).
		since := now.Sub(r.firstByte)
		if since < measureFor+tick {
			return
		}
		if rate, busy, ok := r.rateOver(now, measureFor); ok {
			r.before = max(r.before, rate)
			r.busy = max(r.busy, busy)
		}
		rate := r.before
		// Three windows, unless the first shows a connection so far below
		// a fast stream that every connection there is would together
		// still be no faster than one (so the step opens them all, see
		// firstStep): a longer look would not change the step, only
		// start it 50 ms later.
		far := rate > 0 && rate*float64(t.maxConns) <= t.cfg.FastStream
		if since < measureFor+3*tick && rate < t.cfg.FastStream && !far && r.busy < hashBound {
			return
		}
		if r.busy >= hashBound {
			t.a.q.log.Debug("jobs: the hashing is the limit; one connection", "job", t.a.job.ID,
				"rate", int64(rate), "hash_busy", r.busy)
			r.phase = 2
			return
		}
		if rate >= t.cfg.FastStream || rem < rate*0.25 || t.maxConns <= 1 || t.workers > 1 {
			r.phase = 2
			return
		}
		r.grow(now, rate, 1, min(firstStep(rate, t.cfg.FastStream), t.maxConns))
	case 1:
		// Measure once every connection of the step delivers, and for
		// measureFor after that (at most a second after the step: a host
		// slot may not come).
		if r.ready.IsZero() {
			r.ready = r.readyLocked()
		}
		ready := r.ready
		timedOut := now.Sub(r.changedAt) >= time.Second
		if (ready.IsZero() || now.Sub(ready) < measureFor) && !timedOut {
			return
		}
		rate, busy, _ := r.rateOver(now, measureFor)
		n := t.workers
		paid := n > r.nBefore && (rate-r.before)/float64(n-r.nBefore) >= 0.5*r.before/float64(r.nBefore)
		switch {
		case paid && t.target < t.maxConns && rem >= rate*0.25 && busy < hashBound:
			r.grow(now, rate, n, min(2*t.target, t.maxConns))
		case paid:
			r.settle(rate, n)
		case !timedOut && now.Sub(ready) < 2*measureFor:
			// Not a clear gain: measure longer before undoing it (a
			// burst or a late sender weighs less over a longer time).
		default:
			rate, _, _ = r.rateOver(now, 2*measureFor)
			if n > r.nBefore && rate > 1.3*r.before {
				r.settle(rate, n) // some gain: keep it, grow no more
				return
			}
			t.a.q.log.Debug("jobs: more connections did not pay", "job", t.a.job.ID,
				"rate", int64(rate), "connections", n, "back_to", r.nBefore)
			t.target, r.phase = r.nBefore, 2
		}
	}
}

// readyLocked is when every connection the step added had delivered its
// first byte: when as many segments begun since the step as it added
// connections had (zero: not yet). Segments, not connections, carry
// first-byte times, and a connection takes a new segment for every piece
// and drops the finished one; so the answer is kept once found (r.ready):
// asked again later, it would be the first byte of a later piece. Before,
// the step waited for every segment to have delivered, the pieces just
// requested included: on an origin at 20 MB/s per connection the step
// from four connections to eight came 150 ms after the step to four,
// against about 100 ms now, and the step to eight was measured only at
// its one-second limit.
func (r *ramp) readyLocked() time.Time {
	t := r.t
	added := t.workers - r.nBefore
	if added <= 0 {
		return r.changedAt
	}
	var firsts []time.Time
	for _, s := range t.segs {
		if !s.first.IsZero() && !s.first.Before(r.changedAt) {
			firsts = append(firsts, s.first)
		}
	}
	if len(firsts) < added {
		return time.Time{}
	}
	slices.SortFunc(firsts, time.Time.Compare)
	return firsts[added-1]
}

// firstStep is how many connections the ramp's first step opens after
// one connection measured rate: 4, or as many as would together still run
// no faster than one fast stream (fast: FastStream), when that is more. An
// origin that throttles each connection far below what this node can take
// (20 MB/s against 256 MiB/s) gets all its connections at once instead of
// after a second step, about 100 ms later; whether they paid is measured
// as for any step.
func firstStep(rate, fast float64) int {
	if rate <= 0 || fast/rate <= 4 {
		return 4
	}
	return int(min(fast/rate, 1<<10))
}

func (r *ramp) settle(rate float64, n int) {
	r.phase = 2
	r.t.a.q.log.Debug("jobs: connections settled", "job", r.t.a.job.ID, "rate", int64(rate), "connections", n)
}

func (r *ramp) grow(now time.Time, rate float64, n, target int) {
	r.phase, r.changedAt, r.before, r.nBefore, r.ready = 1, now, rate, n, time.Time{}
	r.t.target = target
	r.t.a.q.log.Debug("jobs: adding connections", "job", r.t.a.job.ID, "rate", int64(rate), "target", target)
}

// shedLocked cuts connections beyond the target, the ones farthest from
// the hash frontier first; their segments' rest goes back to the free
// ranges for the others.
func (t *transfer) shedLocked() {
	over := t.workers - t.shedCount() - max(1, t.target)
	for over > 0 {
		var far *segment
		for _, s := range t.segs {
			if !s.shed && s.cancel != nil && (far == nil || s.pos > far.pos) {
				far = s
			}
		}
		if far == nil || len(t.segs)-t.shedCount() <= 1 {
			return
		}
		far.shed = true
		far.cancel(errShed)
		over--
	}
}

func (t *transfer) shedCount() int {
	n := 0
	for _, s := range t.segs {
		if s.shed {
			n++
		}
	}
	return n
}

// remainingLocked is the bytes not yet read.
func (t *transfer) remainingLocked() int64 {
	var n int64
	for _, r := range t.free {
		n += r.Len()
	}
	for _, s := range t.segs {
		n += s.end.Load() - s.pos
	}
	return n
}

// spawnLocked starts one more connection if there is work for it. When
// no range is free it carves one: the segment with the most left keeps
// one piece from where it is, and the rest becomes free, to be handed out
// in file order, so that every connection works close to the hash
// frontier.
func (t *transfer) spawnLocked() bool {
	if len(t.free) == 0 {
		var victim *segment
		for _, s := range t.segs {
			if victim == nil || s.end.Load()-s.pos > victim.end.Load()-victim.pos {
				victim = s
			}
		}
		if victim == nil {
			return false
		}
		p := t.pieceLocked()
		end := victim.end.Load()
		cut := (victim.pos + p + minPiece - 1) &^ (minPiece - 1)
		if end-cut < minPiece {
			return false
		}
		victim.end.Store(cut)
		t.giveLocked(blob.Range{Start: cut, End: end})
	}
	t.startLocked(nil, nil)
	return true
}
