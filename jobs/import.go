package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

// An import (upload from URL) is a small state machine. Each state is a
// type; each arrow is one method of attempt; decide is the one place that
// chooses between retrying and failing.
//
//	 fetch: segments over one or more connections, restarting in a
//	 fresh staging area when the source changed
//	 ┌──────────┐ ◄┐                                        ┌───────────┐
//	 │ fetching │ ─┘ ─────────────── commit ───────────────► │ committed │ (job completed)
//	 └──────────┘    publish → hold (published) → create     └───────────┘
//	      │ adopt (load: the area was                              ▲
//	      ▼  published, its hold lost)                             │
//	 ┌───────────┐ ─────────────── commitHeld ─────────────────────┘
//	 │ published │   (a commit that failed for a passing reason)
//	 └───────────┘
//	      every error: decide → retry (checkpoint, waiting) | fail | cancel | stop
//
// commit and commitHeld are the one commit path of simple uploads and
// upload sessions too (blob.Committer: Commit and CommitPublished), with
// the job's fenced writes as its hold (Store.HoldJobBlob) and create
// (Store.CommitJobItem). fetching and published are what the checkpoint
// records (checkpoint.go); committed is the job's own completed status.

// state is *fetching or *published.
type state interface{ isState() }

// fetching is an import whose bytes are being staged.
type fetching struct {
	staging  ferry.Staging // nil until a response said where the bytes start
	consumed string        // the area's ID when a failed commit consumed the handle
	durable  int64         // Hashed of the newest checkpoint known to be written: the most Release may give up

	Source  sourceInfo   `json:"source"`
	Written []blob.Range `json:"written,omitempty"` // ranges the staging area holds durably
	Hashed  int64        `json:"hashed,omitempty"`  // bytes Hash has absorbed: a prefix of Written
	Hash    []byte       `json:"hash,omitempty"`    // blob.Hasher state after Hashed bytes
}

// sourceInfo is what the origin said about the file.
type sourceInfo struct {
	ETag         string `json:"etag,omitempty"` // strong only
	LastModified string `json:"lastModified,omitempty"`
	Total        int64  `json:"total"`            // -1 unknown
	Ranges       bool   `json:"ranges,omitempty"` // a 206 with a validator: segments may be fetched
	Name         string `json:"name,omitempty"`   // learnt from the origin
	ContentType  string `json:"contentType,omitempty"`
}

func newFetching() *fetching { return &fetching{Source: sourceInfo{Total: -1}} }

// written reports the bytes f's ranges hold.
func (f *fetching) written() int64 {
	var n int64
	for _, r := range f.Written {
		n += r.Len()
	}
	return n
}

// published is an import whose bytes are a published blob, held by the
// store (Store.HoldJobBlob), whose commit failed for a passing reason.
type published struct {
	Key      string       `json:"key"`
	Size     int64        `json:"size"`
	Hashes   ferry.Hashes `json:"hashes"`
	Mime     string       `json:"mime,omitempty"`
	FileName string       `json:"fileName"`
}

func (*fetching) isState()  {}
func (*published) isState() {}

// downloadArgs is River's job for one upload from URL. It carries only the
// monitor ID: everything else, including the source URL, stays in the
// store's job row.
type downloadArgs struct {
	JobID string `json:"job_id"`
}

// Kind names the River job kind. Changing it orphans queued jobs.
func (downloadArgs) Kind() string { return "ferry_download_url" }

// downloadWorker runs downloadArgs jobs.
type downloadWorker struct {
	river.WorkerDefaults[downloadArgs]
	q *Queue

	// retry holds, per River job ID, the delay the failing attempt asked
	// for (backoff or the origin's Retry-After); NextRetry takes it.
	retry sync.Map
}

// Timeout disables River's job timeout: downloads may legitimately run for
// hours. Config.MaxDuration bounds every download in the end; the idle
// timeout and MaxStalls end stalled ones sooner. The heartbeat
// (heartbeat.go) replaces River's rescuer, which ignores such jobs.
func (w *downloadWorker) Timeout(*river.Job[downloadArgs]) time.Duration { return -1 }

// NextRetry schedules the next attempt after a transient failure.
func (w *downloadWorker) NextRetry(rj *river.Job[downloadArgs]) time.Time {
	d := w.q.cfg.RetryBase
	if v, ok := w.retry.LoadAndDelete(rj.ID); ok {
		d = v.(time.Duration)
	}
	return time.Now().Add(d)
}

// Work runs one attempt of an import. Failures that are the job's own (bad
// origin, quota, hash) end the job and return nil; transient ones leave it
// waiting and return an error so that River retries it.
func (w *downloadWorker) Work(ctx context.Context, rj *river.Job[downloadArgs]) (err error) {
	q := w.q
	id := rj.Args.JobID
	q.park.begin()
	defer q.park.end()
	defer q.lastResort(ctx, id, rj.JobRow, &err)
	j, err := q.loadJob(ctx, id)
	if j == nil || err != nil {
		return err
	}
	// Started, the job is claimed by runner as well: one write.
	runner := q.newRunner()
	started, err := q.store.StartClaimJob(ctx, id, q.cfg.PerUserRunning, runner)
	if err != nil {
		return fmt.Errorf("jobs: start %s: %w", id, err)
	}
	if !started {
		runner = "" // claimed below, unless another attempt runs it
		if j, err = q.store.Job(ctx, id); err != nil {
			return fmt.Errorf("jobs: load %s: %w", id, err)
		}
		switch j.Status {
		case ferry.StatusCompleted, ferry.StatusFailed, ferry.StatusCancelled:
			return nil
		case ferry.StatusInProgress, ferry.StatusCancelPending:
			// Interrupted while running (crash, kill -9), or running
			// elsewhere right now: the claim below tells which.
		default:
			// The user is at PerUserRunning: wait without using an
			// attempt. The jitter spreads a burst's retries.
			return river.JobSnooze(q.cfg.Snooze + rand.N(q.cfg.Snooze/2+1))
		}
	}
	var rctx context.Context
	var c *claim
	if started {
		// Started in the transaction that claimed it: nothing can have
		// ended or cancelled it before (a cancel from now on reaches the
		// claim's heartbeat), so the job read above holds but for that.
		if rctx, c, err = q.claim(ctx, id, runner); err != nil {
			return err
		}
		j.Status = ferry.StatusInProgress
	} else if rctx, c, j, err = q.claimLive(ctx, id, runner); j == nil || err != nil {
		return err
	}
	returned := false // false while panicking: err says nothing then
	defer func() {
		if returned && err == nil { // the attempt ended the job (see attempt)
			c.ended()
		} else {
			c.stop()
		}
	}()
	err = w.attempt(rctx, rj, j, c.runner)
	returned = true
	return err
}

// errCancelRequested is the cause of an attempt's context ending because
// the job's status became cancelPending.
var errCancelRequested = errors.New("jobs: cancel requested")

// errTooLong is the cause of an attempt's context ending because
// Config.MaxDuration passed since its first attempt began.
var errTooLong = errors.New("jobs: download took longer than allowed")

// attempt is one run of an import: the job, its history, the state it is
// in, and the counters its progress reports read.
type attempt struct {
	q      *Queue
	job    *ferry.Job
	runner string // this attempt's claim, which fences its writes
	hist   history
	cur    state
	// unrecorded: the store does not know the current state's staging
	// area or blob yet (a small import, see smallImport); save records it.
	unrecorded bool

	bytes atomic.Int64 // bytes staged (and in flight) so far
	total atomic.Int64 // -1 unknown
	conns atomic.Int32 // connections open now
	tries atomic.Int32 // connection retries within the attempt
}

// attempt loads the job's state, runs it forward as far as it can, and
// settles the outcome (decide). It returns nil only when the job has ended
// (completed, failed or cancelled).
func (w *downloadWorker) attempt(ctx context.Context, rj *river.Job[downloadArgs], j *ferry.Job, runner string) error {
	q := w.q
	a := &attempt{q: q, job: j, runner: runner}
	if err := a.load(ctx); err != nil {
		if errors.Is(context.Cause(ctx), errClaimLost) {
			return q.lostClaim(j.ID)
		}
		return err
	}
	defer a.release()
	bestBefore := a.hist.Best
	if a.hist.Started.IsZero() {
		a.hist.Started = time.Now().UTC()
	}
	tctx, stopTimer := context.WithDeadlineCause(ctx, a.hist.Started.Add(q.cfg.MaxDuration), errTooLong)
	defer stopTimer()
	dctx, cancel := context.WithCancelCause(tctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.report(dctx, cancel) })
	err := a.run(dctx)
	cause := context.Cause(dctx)
	cancel(nil)
	wg.Wait()

	// From here on ctx may be done (River is stopping): the bookkeeping
	// uses a context of its own.
	bg, stop := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer stop()
	var ws *errWaitForSpace
	if errors.As(err, &ws) && cause == nil && ctx.Err() == nil {
		return a.waitForSpace(bg, ws)
	}
	v := q.decide(err, cause, ctx.Err() != nil, a.staged() > bestBefore, a.hist.Stalls, rj.Attempt >= rj.MaxAttempts)
	switch v.kind {
	case verdictDone:
		return nil
	case verdictLost:
		// Another attempt runs the job now: it owns the checkpoint and
		// the staging area.
		return q.lostClaim(j.ID)
	case verdictCancel:
		if a.unrecorded { // finishCancelled frees only what the store knows
			a.discard(bg)
		} else {
			a.release()
		}
		return q.finishCancelled(bg, j.ID)
	case verdictFail:
		return a.fail(bg, v.failure)
	case verdictStop:
		// River is stopping: keep what was staged and let the next start
		// resume at once. Snoozing does not use up an attempt.
		if err := a.save(bg); ownerLost(err) {
			return q.lostClaim(j.ID)
		} else if err != nil {
			q.log.Error("jobs: checkpoint on stop", "job", j.ID, "err", err)
		}
		if _, err := q.store.SetJobStatus(bg, j.ID, ferry.StatusWaiting, ferry.StatusInProgress); err != nil {
			q.log.Error("jobs: mark waiting on stop", "job", j.ID, "err", err)
		}
		return river.JobSnooze(0)
	}
	// verdictRetry
	if a.staged() > bestBefore {
		a.hist.Stalls = 0
	} else {
		a.hist.Stalls++
	}
	if err := a.save(bg); ownerLost(err) {
		a.release()
		return q.lostClaim(j.ID)
	} else if err != nil {
		return fmt.Errorf("jobs: checkpoint %s: %w", j.ID, err)
	}
	// While it waits, the monitor shows what is staged.
	if err := q.store.UpdateJobProgress(bg, j.ID, a.staged(), a.total.Load(), 0); err != nil {
		q.log.Warn("jobs: progress", "job", j.ID, "err", err)
	}
	ok, serr := q.store.SetJobStatus(bg, j.ID, ferry.StatusWaiting, ferry.StatusInProgress)
	if serr != nil {
		return fmt.Errorf("jobs: mark %s waiting: %w", j.ID, serr)
	}
	if !ok { // cancel asked meanwhile
		if cur, lerr := q.store.Job(bg, j.ID); lerr == nil && cur.Status == ferry.StatusCancelPending {
			a.release()
			return q.finishCancelled(bg, j.ID)
		}
	}
	w.retry.Store(rj.ID, q.backoff(a.hist.Stalls, err))
	q.log.Info("jobs: attempt failed; will retry", "job", j.ID, "attempt", rj.Attempt, "stalls", a.hist.Stalls, "err", err)
	return err
}

// staged reports the bytes the current state holds.
func (a *attempt) staged() int64 {
	switch s := a.cur.(type) {
	case *fetching:
		return s.written()
	case *published:
		return s.Size
	}
	return 0
}

// run moves the import forward from its current state until it is
// committed or an error stops it.
func (a *attempt) run(ctx context.Context) error {
	switch s := a.cur.(type) {
	case *fetching:
		began := time.Now()
		h, size, err := a.fetch(ctx, s)
		if err != nil {
			return err
		}
		fetched := time.Now()
		err = a.commit(ctx, s, h, size)
		a.q.log.Debug("jobs: fetched and committed", "job", a.job.ID, "size", size,
			"fetch", fetched.Sub(began), "commit", time.Since(fetched), "err", err)
		return err
	case *published:
		began := time.Now()
		err := a.commitHeld(ctx, s)
		a.q.log.Debug("jobs: committed", "job", a.job.ID, "took", time.Since(began), "err", err)
		return err
	default:
		return fmt.Errorf("jobs: import in unknown state %T", s)
	}
}

// load reads the checkpoint and reopens what it names: the staging area
// of a fetching import (bytes it lost start it over; published already,
// it is adopted), the blob of a published one (gone: start over).
func (a *attempt) load(ctx context.Context) error {
	q, j := a.q, a.job
	stagingID, data, err := q.store.JobCheckpoint(ctx, j.ID)
	if err != nil && ferry.KindOf(err) != ferry.NotFound {
		return fmt.Errorf("jobs: load checkpoint of %s: %w", j.ID, err)
	}
	a.hist, a.cur, err = decodeCheckpoint(data)
	if err != nil {
		q.log.Warn("jobs: unreadable checkpoint; starting over", "job", j.ID, "err", err)
		a.cur = newFetching()
	}
	a.total.Store(-1)
	switch s := a.cur.(type) {
	case *published:
		b, err := q.blobs.Open(ctx, s.Key)
		switch {
		case err == nil:
			size := b.Size()
			b.Close()
			if size == s.Size {
				a.bytes.Store(s.Size)
				a.total.Store(s.Size)
				return nil
			}
		case ferry.KindOf(err) != ferry.NotFound:
			return fmt.Errorf("jobs: reopen blob of %s: %w", j.ID, err)
		}
		q.log.Warn("jobs: published blob of an uncommitted import is gone; starting over", "job", j.ID)
		a.cur = newFetching()
	case *fetching:
		if stagingID == "" {
			*s = *newFetching()
			break
		}
		st, err := q.blobs.OpenStaging(ctx, stagingID)
		switch {
		case ferry.KindOf(err) == ferry.NotFound:
			return a.adopt(ctx, s, stagingID)
		case err != nil:
			return fmt.Errorf("jobs: reopen staging of %s: %w", j.ID, err)
		default:
			s.staging = st
			// The checkpoint is written after Sync, so the staged bytes
			// cover it; a shorter staging area was tampered with.
			if size, err := st.Size(); err != nil || (len(s.Written) > 0 && size < s.Written[len(s.Written)-1].End) {
				s.Written, s.Hashed, s.Hash = nil, 0, nil
			}
			s.durable = s.Hashed
		}
		a.bytes.Store(s.written())
		a.total.Store(s.Source.Total)
	}
	return nil
}

// release closes the staging area's handle (the bytes stay).
func (a *attempt) release() {
	if f, ok := a.cur.(*fetching); ok && f.staging != nil {
		_ = f.staging.Close()
	}
}

// save records the current state durably. For a fetching import with
// bytes, the caller has synced them (the transfer's checkpoint does).
func (a *attempt) save(ctx context.Context) error {
	data, err := encodeCheckpoint(a.hist, a.cur)
	if err != nil {
		return err
	}
	stagingID := ""
	if f, ok := a.cur.(*fetching); ok && f.staging != nil {
		stagingID = f.staging.ID()
	} else if ok {
		stagingID = f.consumed
	}
	if p, ok := a.cur.(*published); ok {
		err = a.q.store.HoldJobBlob(ctx, a.job.ID, a.runner, p.Key, data)
	} else {
		err = a.q.store.SaveJobCheckpoint(ctx, a.job.ID, a.runner, stagingID, data)
	}
	if err != nil {
		return fmt.Errorf("jobs: save checkpoint: %w", err)
	}
	a.unrecorded = false
	a.hist.Best = max(a.hist.Best, a.staged())
	return nil
}

// smallImport is the largest import (its size announced by the origin) whose
// new staging area and published blob are not recorded before its commit:
// two writes saved per import. A crash meanwhile costs fetching at most this
// much again (the orphan sweeps remove what it left); a cancel or failure
// removes them at once (discard). Larger imports record both.
const smallImport = 4 << 20

// restage moves a fetching import that starts from byte 0 to a new, empty
// staging area and records that durably before a byte is written, then
// removes the old area. Writing new bytes over the old ones instead would
// leave the last checkpoint (ranges, validator and hash state of the old
// bytes) describing bytes that are no longer there: a crash before the
// next checkpoint, and a resume whose If-Range matches the old version,
// would splice two versions under the old one's hashes. If the record
// cannot be written the attempt ends, and the old checkpoint and its
// bytes stay as they were. A small import with no staging area before is
// not recorded here (see smallImport): no old bytes are at stake.
func (a *attempt) restage(ctx context.Context, f *fetching, src sourceInfo) error {
	q := a.q
	st, err := q.blobs.Stage(ctx)
	if err != nil {
		return fmt.Errorf("jobs: stage: %w", err)
	}
	old := *f
	*f = fetching{staging: st, Source: src}
	if old.staging == nil && src.Total >= 0 && src.Total <= smallImport {
		// Nothing staged before whose record this would replace.
		a.unrecorded = true
	} else if err := a.save(ctx); err != nil {
		*f = old
		_ = st.Close()
		if rerr := q.blobs.RemoveStaging(context.WithoutCancel(ctx), st.ID()); rerr != nil {
			q.log.Warn("jobs: remove unused staging", "job", a.job.ID, "err", rerr)
		}
		return err
	}
	if old.staging != nil {
		_ = old.staging.Close()
		if err := q.blobs.RemoveStaging(ctx, old.staging.ID()); err != nil {
			// Unreferenced now: the orphan sweep removes it later.
			q.log.Warn("jobs: remove replaced staging", "job", a.job.ID, "err", err)
		}
	}
	a.bytes.Store(0)
	a.total.Store(src.Total)
	return nil
}

// adopt moves a fetching import whose staging area is gone to the
// published state when the area was published (a runner died, or failed,
// between Publish and recording the blob: the blob has the area's ID as
// its key), rehashing it from the bucket rather than fetching the file
// again and leaving the blob behind; else the import starts over.
func (a *attempt) adopt(ctx context.Context, f *fetching, stagingID string) error {
	q, j := a.q, a.job
	c, head, found, err := q.files().Recover(ctx, stagingID, f.Hash, f.Hashed)
	switch {
	case err != nil:
		return fmt.Errorf("jobs: recover published blob of %s: %w", j.ID, err)
	case !found:
		*f = *newFetching()
		a.bytes.Store(0)
		return nil
	}
	if (f.Source.Total >= 0 && c.Size != f.Source.Total) ||
		(j.ExpectSHA256 != "" && !strings.EqualFold(c.Hashes.SHA256, j.ExpectSHA256)) {
		// Never published by a commit of this job (Publish comes after
		// both checks): not its to use.
		q.log.Warn("jobs: a blob under the staging ID is not the file; starting over", "job", j.ID, "key", c.BlobKey)
		*f = *newFetching()
		a.bytes.Store(0)
		return nil
	}
	name := a.fileName(f)
	p := &published{Key: c.BlobKey, Size: c.Size, Hashes: c.Hashes, Mime: mimeType(f.Source.ContentType, name, head), FileName: name}
	if err := a.hold(ctx, p); err != nil {
		return err
	}
	// What a Publish cut short left of the area (S3 pieces) goes now.
	if err := q.blobs.RemoveStaging(ctx, stagingID); err != nil {
		q.log.Warn("jobs: remove what is left of a published staging area", "job", j.ID, "err", err)
	}
	q.log.Info("jobs: adopted the blob an earlier attempt published", "job", j.ID, "key", p.Key)
	a.cur = p
	a.bytes.Store(p.Size)
	a.total.Store(p.Size)
	return nil
}

// fileName is the name the file gets: the job's, else the origin's, else
// one made up.
func (a *attempt) fileName(f *fetching) string {
	switch {
	case a.job.Name != "":
		return a.job.Name
	case f.Source.Name != "":
		return f.Source.Name
	}
	return generatedName(time.Now())
}

// hold records the published state p in the checkpoint and the blob as
// the job's (fenced by the runner's claim), so that a retried commit, on
// any node, finds it and the sweep spares it.
func (a *attempt) hold(ctx context.Context, p *published) error {
	data, err := encodeCheckpoint(a.hist, p)
	if err != nil {
		return err
	}
	if err := a.q.store.HoldJobBlob(ctx, a.job.ID, a.runner, p.Key, data); err != nil {
		return fmt.Errorf("jobs: hold blob: %w", err)
	}
	return nil
}

// commit turns the staged file (all of it, hashed: h over size bytes)
// into the item through the one commit path (blob.Committer.Commit):
// publish, hold the blob (the published state), and create the item,
// applying the job's conflict behaviour again (the name may have been
// taken meanwhile), in the transaction that completes the job
// (Store.CommitJobItem): a crash leaves both or neither, and a commit run
// again finds the job completed. A hash that is not the expected one
// fails the job before anything is published.
func (a *attempt) commit(ctx context.Context, f *fetching, h *blob.Hasher, size int64) error {
	q, j := a.q, a.job
	ctx = context.WithoutCancel(ctx) // short, and a cancel or stop must not cut it in half
	if f.staging == nil {            // an empty body still needs a staging area to publish
		st, err := q.blobs.Stage(ctx)
		if err != nil {
			return fmt.Errorf("jobs: stage: %w", err)
		}
		f.staging = st
	}
	sum := h.Sum()
	if j.ExpectSHA256 != "" && !strings.EqualFold(sum.SHA256, j.ExpectSHA256) {
		return &failure{code: ferry.JobHashMismatch,
			msg: "The downloaded file's SHA-256 (" + sum.SHA256 + ") differs from the expected one."}
	}
	name := a.fileName(f)
	head, ok := h.Head()
	if !ok || int64(len(head)) < min(size, blob.HeadSize) {
		// Resumed: the hasher was restored past the start.
		head = make([]byte, min(size, blob.HeadSize))
		if _, err := f.staging.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("jobs: read staged head: %w", err)
		}
	}
	var held *published
	hold := func(ctx context.Context, c ferry.Content) error {
		p := &published{Key: c.BlobKey, Size: c.Size, Hashes: c.Hashes, Mime: c.MimeType, FileName: name}
		if size <= smallImport {
			// The commit follows at once; should it fail for a passing
			// reason, save holds the blob for the next attempt.
			a.unrecorded = true
		} else if err := a.hold(ctx, p); err != nil {
			return err
		}
		held = p
		return nil
	}
	st := f.staging
	f.staging = nil // the commit consumes it
	_, _, err := q.files().Commit(ctx, blob.Staged{Staging: st, Size: size, Hashes: sum, Name: name,
		MimeType: mimeType(f.Source.ContentType, name, head)}, hold, a.create(name))
	if err != nil && held == nil {
		// Not published: the staging area is where the next attempt
		// resumes. Gone: published after all (Publish's answer was lost,
		// or the hold failed and so did deleting the blob: the next
		// attempt adopts it), or the blob is gone again (it starts over).
		// The checkpoint keeps naming the area either way, and the
		// next attempt's load finds out.
		if reopened, oerr := q.blobs.OpenStaging(ctx, st.ID()); oerr == nil {
			f.staging = reopened
		} else {
			f.consumed = st.ID()
		}
		return fmt.Errorf("jobs: commit %s: %w", j.ID, err)
	}
	if err != nil && !blob.Refused(err) {
		a.cur = held // the next attempt commits it
	}
	return a.committed(err)
}

// commitHeld creates the item from the blob an earlier attempt published
// and held (blob.Committer.CommitPublished), as commit does.
func (a *attempt) commitHeld(ctx context.Context, p *published) error {
	_, err := a.q.files().CommitPublished(ctx, ferry.Content{Size: p.Size, MimeType: p.Mime, Hashes: p.Hashes, BlobKey: p.Key}, a.create(p.FileName))
	return a.committed(err)
}

// committed settles a commit's outcome: a refusal deleted the blob and
// fails the job (Conflict: the job ended meanwhile, or another attempt
// took it over, which decide sorts out); any other error keeps the held
// blob for the next attempt.
func (a *attempt) committed(err error) error {
	switch {
	case err == nil:
		return nil
	case ferry.KindOf(err) == ferry.Conflict:
		a.cur = newFetching()
		return fmt.Errorf("jobs: commit %s: %w", a.job.ID, err)
	case blob.Refused(err):
		a.cur = newFetching()
		return commitFailure(err)
	}
	return fmt.Errorf("jobs: commit %s: %w", a.job.ID, err)
}

// create is the commit's CreateFunc: the item and the job's completion in
// one transaction, for this attempt's runner only.
func (a *attempt) create(name string) blob.CreateFunc {
	q, j := a.q, a.job
	return func(ctx context.Context, c ferry.Content) (*ferry.Item, error) {
		it, already, err := q.store.CommitJobItem(ctx, j.ID, a.runner, ferry.NewItem{
			DriveID:  j.DriveID,
			ParentID: j.ParentID,
			Name:     name,
			Content:  c,
			By:       j.UserName,
		}, j.Conflict, "URL was successfully downloaded to target")
		if already {
			q.log.Info("jobs: import had been committed already", "job", j.ID, "item", it.ID)
		}
		return it, err
	}
}

// files is the one commit path, on the queue's blob store and disk.
func (q *Queue) files() *blob.Committer {
	return &blob.Committer{Blobs: q.blobs, Space: q.cfg.Space, Log: q.log}
}

// deleteBlob removes a published blob that will not be committed.
func (q *Queue) deleteBlob(ctx context.Context, id, key string) {
	if err := q.blobs.Delete(ctx, key); err != nil {
		q.log.Error("jobs: delete uncommitted blob", "job", id, "key", key, "err", err)
	}
}

// fail ends the job as failed and frees its staging area and held blob.
func (a *attempt) fail(ctx context.Context, f *failure) error {
	q, j := a.q, a.job
	a.discard(ctx)
	if err := q.freeJob(ctx, j.ID); err != nil { // what the store records
		q.log.Error("jobs: free failed job", "job", j.ID, "err", err)
	}
	q.log.Info("jobs: import failed", "job", j.ID, "code", f.code, "err", f)
	if err := q.finish(ctx, j.ID, ferry.StatusFailed, f.code, f.msg); err != nil {
		return fmt.Errorf("jobs: finish %s: %w", j.ID, err)
	}
	return nil
}

// discard removes the current state's staging area or published blob.
func (a *attempt) discard(ctx context.Context) {
	q, j := a.q, a.job
	switch s := a.cur.(type) {
	case *fetching:
		if s.staging != nil {
			id := s.staging.ID()
			_ = s.staging.Close()
			s.staging = nil
			if err := q.blobs.RemoveStaging(ctx, id); err != nil {
				q.log.Error("jobs: remove staging of ended job", "job", j.ID, "err", err)
			}
		}
		if s.consumed != "" { // perhaps published, never held
			q.deleteBlob(ctx, j.ID, s.consumed)
		}
	case *published:
		q.deleteBlob(ctx, j.ID, s.Key)
	}
}

// Progress is what an import reports to Config.Observe on every progress
// tick: for metrics and logs.
type Progress struct {
	JobID          string
	Bytes, Total   int64 // Total -1 while unknown
	BytesPerSecond float64
	Connections    int // connections open now
	Retries        int // connection retries in this attempt so far
}

// report writes the attempt's progress every ProgressEvery, at most one
// database write per tick however fast bytes arrive, and reads the job's
// status to notice a cancel request from any node.
func (a *attempt) report(ctx context.Context, cancel context.CancelCauseFunc) {
	q, j := a.q, a.job
	t := time.NewTicker(q.cfg.ProgressEvery)
	defer t.Stop()
	rate := newMeter(5 * time.Second)
	// What the job's row shows already needs no write.
	lastBytes, lastTotal, lastBPS := j.Bytes, j.Total, j.BytesPerSecond
	for {
		now := time.Now()
		b, total := a.bytes.Load(), a.total.Load()
		bps := rate.add(now, b)
		if b != lastBytes || total != lastTotal || bps != 0 || lastBPS != 0 {
			if err := q.store.UpdateJobProgress(ctx, j.ID, b, total, bps); err != nil && ctx.Err() == nil {
				q.log.Warn("jobs: progress", "job", j.ID, "err", err)
			}
			lastBytes, lastTotal, lastBPS = b, total, bps
		}
		if q.cfg.Observe != nil {
			q.cfg.Observe(Progress{JobID: j.ID, Bytes: b, Total: total, BytesPerSecond: bps,
				Connections: int(a.conns.Load()), Retries: int(a.tries.Load())})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := q.store.Job(ctx, j.ID)
		if err == nil && cur.Status == ferry.StatusCancelPending {
			cancel(errCancelRequested)
			return
		}
	}
}

// meter computes a transfer rate over a sliding window of samples.
type meter struct {
	window  time.Duration
	samples []sample
}

type sample struct {
	at    time.Time
	bytes int64
}

func newMeter(window time.Duration) *meter { return &meter{window: window} }

// add records that bytes had arrived by now and returns the bytes per
// second over the window. The window starts at the newest sample at least
// window old, so a quiet gap longer than the window still averages over
// it. A count that went down (the download restarted) starts afresh.
func (m *meter) add(now time.Time, bytes int64) float64 {
	if n := len(m.samples); n > 0 && bytes < m.samples[n-1].bytes {
		m.samples = m.samples[:0]
	}
	m.samples = append(m.samples, sample{now, bytes})
	i := 0
	for i < len(m.samples)-1 && now.Sub(m.samples[i+1].at) >= m.window {
		i++
	}
	m.samples = m.samples[i:]
	first := m.samples[0]
	dt := now.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(bytes-first.bytes) / dt
}
