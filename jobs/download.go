package jobs

import (
	"context"
	"encoding/json"
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
	"github.com/ferrydrive/ferry/fetch"
)

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
// hours. Config.MaxDuration is what bounds every download in the end;
// fetch's idle timeout and MaxStalls end the stalled ones sooner. River's
// rescuer ignores jobs without a timeout: the heartbeat (heartbeat.go)
// takes its place.
func (w *downloadWorker) Timeout(*river.Job[downloadArgs]) time.Duration { return -1 }

// NextRetry schedules the next attempt after a transient failure.
func (w *downloadWorker) NextRetry(rj *river.Job[downloadArgs]) time.Time {
	d := w.q.cfg.RetryBase
	if v, ok := w.retry.LoadAndDelete(rj.ID); ok {
		d = v.(time.Duration)
	}
	return time.Now().Add(d)
}

// errCancelRequested is the cause of a download's context ending because
// the job's status became cancelPending.
var errCancelRequested = errors.New("jobs: cancel requested")

// errTooLong is the cause of a download's context ending because
// Config.MaxDuration passed since its first attempt began.
var errTooLong = errors.New("jobs: download took longer than allowed")

// Work runs one attempt of a download. Failures that are the job's own
// (bad origin, quota, hash) end the job and return nil; transient ones
// leave it waiting and return an error so that River retries it.
func (w *downloadWorker) Work(ctx context.Context, rj *river.Job[downloadArgs]) (err error) {
	q := w.q
	id := rj.Args.JobID
	defer q.lastResort(ctx, id, rj.JobRow, &err)
	j, err := q.store.Job(ctx, id)
	switch {
	case ferry.KindOf(err) == ferry.NotFound:
		return nil // expired and deleted
	case err != nil:
		return fmt.Errorf("jobs: load %s: %w", id, err)
	case j.Status.Final():
		return nil // e.g. cancelled while queued
	}
	started, err := q.store.StartJob(ctx, id, q.cfg.PerUserRunning)
	if err != nil {
		return fmt.Errorf("jobs: start %s: %w", id, err)
	}
	if !started {
		if j, err = q.store.Job(ctx, id); err != nil {
			return fmt.Errorf("jobs: load %s: %w", id, err)
		}
		switch j.Status {
		case ferry.StatusCompleted, ferry.StatusFailed, ferry.StatusCancelled:
			return nil
		case ferry.StatusInProgress, ferry.StatusCancelPending:
			// An attempt of this job was interrupted (crash, kill -9,
			// a node that never came back) while running, or another
			// node runs it right now: the claim below tells which. The
			// slot stays the job's.
		default:
			// The user is at PerUserRunning: wait without using an
			// attempt, staying notStarted. The jitter spreads a burst's
			// retries. River fetches at a bounded rate, so a long queue
			// of waiting jobs costs bounded database work.
			return river.JobSnooze(q.cfg.Snooze + rand.N(q.cfg.Snooze/2+1))
		}
	}
	rctx, c, j, err := q.claimLive(ctx, id)
	if j == nil || err != nil {
		return err
	}
	defer c.stop()
	return w.attempt(rctx, rj, j, c.runner)
}

// attempt downloads as much as it can, then ends the job, or leaves it
// waiting for the next attempt.
func (w *downloadWorker) attempt(ctx context.Context, rj *river.Job[downloadArgs], j *ferry.Job, runner string) error {
	q := w.q
	d, err := q.openDownload(ctx, j)
	if err != nil {
		if errors.Is(context.Cause(ctx), errClaimLost) {
			return q.lostClaim(j.ID)
		}
		return err
	}
	defer d.close()
	d.runner = runner

	bestBefore := d.cp.Best
	if d.cp.Started.IsZero() {
		d.cp.Started = time.Now().UTC()
	}
	tctx, stopTimer := context.WithDeadlineCause(ctx, d.cp.Started.Add(q.cfg.MaxDuration), errTooLong)
	defer stopTimer()
	dctx, cancel := context.WithCancelCause(tctx)
	var wg sync.WaitGroup
	wg.Go(func() { d.report(dctx, cancel) })
	if d.cp.BlobKey != "" {
		// An earlier attempt published the bytes, but its commit failed
		// for a reason that may pass: commit them again.
		err = d.commit(dctx)
	} else if err = d.fetchRange(dctx, d.cp.Offset, 0); err == nil {
		err = d.commit(dctx)
	}
	cause := context.Cause(dctx)
	cancel(nil)
	wg.Wait()

	// From here on, ctx may be done (River is stopping): the final
	// bookkeeping uses a context of its own.
	bg, stop := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer stop()
	var f *failure
	var ws *errWaitForSpace
	switch {
	case err == nil:
		return nil
	case errors.Is(cause, errClaimLost) || ownerLost(err):
		// Another attempt runs the job now (or it has ended): it owns
		// the checkpoint and the staging area, and the store refuses
		// this attempt's writes.
		d.close()
		return q.lostClaim(j.ID)
	case errors.Is(cause, errCancelRequested):
		d.close()
		return q.finishCancelled(bg, j.ID)
	case errors.Is(cause, errTooLong):
		return d.fail(bg, &failure{code: "timeout", err: err,
			msg: fmt.Sprintf("The download did not finish within %v.", q.cfg.MaxDuration)})
	case ctx.Err() != nil:
		// River is stopping: keep what was staged and let the next start
		// resume at once. Snoozing does not use up an attempt.
		if err := d.checkpoint(bg); ownerLost(err) {
			return q.lostClaim(j.ID)
		} else if err != nil {
			q.log.Error("jobs: checkpoint on stop", "job", j.ID, "err", err)
		}
		if _, err := q.store.SetJobStatus(bg, j.ID, ferry.StatusWaiting, ferry.StatusInProgress); err != nil {
			q.log.Error("jobs: mark waiting on stop", "job", j.ID, "err", err)
		}
		return river.JobSnooze(0)
	case errors.As(err, &ws):
		return d.waitForSpace(bg, ws)
	case errors.As(err, &f):
		return d.fail(bg, f)
	}

	// Transient: count attempts that added no bytes.
	if d.offset > bestBefore {
		d.cp.Stalls = 0
	} else {
		d.cp.Stalls++
	}
	if d.cp.Stalls >= q.cfg.MaxStalls || rj.Attempt >= rj.MaxAttempts {
		return d.fail(bg, giveUp(err))
	}
	if err := d.checkpoint(bg); ownerLost(err) {
		d.close()
		return q.lostClaim(j.ID)
	} else if err != nil {
		return fmt.Errorf("jobs: checkpoint %s: %w", j.ID, err)
	}
	// While it waits, the monitor shows what is staged, not what the last
	// progress tick happened to see.
	if err := q.store.UpdateJobProgress(bg, j.ID, d.offset, d.total.Load(), 0); err != nil {
		q.log.Warn("jobs: progress", "job", j.ID, "err", err)
	}
	ok, serr := q.store.SetJobStatus(bg, j.ID, ferry.StatusWaiting, ferry.StatusInProgress)
	if serr != nil {
		return fmt.Errorf("jobs: mark %s waiting: %w", j.ID, serr)
	}
	if !ok { // cancel asked meanwhile
		if cur, lerr := q.store.Job(bg, j.ID); lerr == nil && cur.Status == ferry.StatusCancelPending {
			d.close()
			return q.finishCancelled(bg, j.ID)
		}
	}
	w.retry.Store(rj.ID, q.backoff(d.cp.Stalls, err))
	q.log.Info("jobs: attempt failed; will retry", "job", j.ID, "attempt", rj.Attempt, "stalls", d.cp.Stalls, "err", err)
	return err
}

// backoff is the delay before the next attempt: RetryBase doubled per
// stall, at most RetryMax. An origin's Retry-After beyond that is honoured
// up to 5 minutes (not RetryMax: a polite origin asking for a minute gets
// it), so that every job still ends in bounded time.
func (q *Queue) backoff(stalls int, err error) time.Duration {
	d := q.cfg.RetryBase << min(stalls, 20)
	d = min(d, q.cfg.RetryMax)
	var fe *fetch.Error
	if errors.As(err, &fe) && fe.RetryAfter > d {
		d = min(fe.RetryAfter, 5*time.Minute)
	}
	return d
}

// checkpointData is what a download records durably between attempts, as
// JSON next to the staging ID.
type checkpointData struct {
	Offset       int64  `json:"offset"` // bytes staged and hashed, contiguous from 0
	Total        int64  `json:"total"`  // -1 unknown
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	Hash         []byte `json:"hash,omitempty"` // blob.Hasher state after Offset bytes
	Name         string `json:"name,omitempty"` // name learnt from the origin
	ContentType  string `json:"contentType,omitempty"`
	Stalls       int    `json:"stalls,omitempty"` // consecutive attempts without new bytes
	Best         int64  `json:"best,omitempty"`   // most bytes staged by any attempt
	// Started is when the first attempt began; Config.MaxDuration counts
	// from it, so time spent queued behind other jobs does not count.
	Started time.Time `json:"started,omitzero"`

	// BlobKey, once set, is the published blob of the whole file, which
	// a commit that failed for a passing reason left uncommitted (the
	// store holds it: Store.HoldJobBlob). The next attempt commits it
	// again instead of downloading the file again. Size, Hashes, Mime and
	// FileName describe it.
	BlobKey  string       `json:"blobKey,omitempty"`
	Size     int64        `json:"size,omitempty"`
	Hashes   ferry.Hashes `json:"hashes,omitzero"`
	Mime     string       `json:"mime,omitempty"`
	FileName string       `json:"fileName,omitempty"`
}

// download is one attempt's state. Its fields are used by the attempt's
// goroutine only, except bytes and total, which report reads.
type download struct {
	q      *Queue
	job    *ferry.Job
	runner string        // this attempt's claim, which fences its writes
	st     ferry.Staging // nil until the first byte range starts
	h      *blob.Hasher
	cp     checkpointData

	offset int64 // bytes staged and hashed so far
	limit  int64 // the most bytes the file may have: min(quota left, MaxFileSize)
	quota  int64 // bytes left in the drive

	bytes atomic.Int64 // offset plus bytes of the segment in flight
	total atomic.Int64
}

// openDownload loads the job's checkpoint and reopens its staging area.
// A checkpoint whose staging area is gone restarts from zero.
func (q *Queue) openDownload(ctx context.Context, j *ferry.Job) (*download, error) {
	d := &download{q: q, job: j, h: blob.NewHasher(), cp: checkpointData{Total: -1}}
	stagingID, data, err := q.store.JobCheckpoint(ctx, j.ID)
	if err != nil && ferry.KindOf(err) != ferry.NotFound {
		return nil, fmt.Errorf("jobs: load checkpoint of %s: %w", j.ID, err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &d.cp); err != nil {
			q.log.Warn("jobs: unreadable checkpoint; starting over", "job", j.ID, "err", err)
			d.cp = checkpointData{Total: -1}
		}
	}
	if d.cp.BlobKey != "" {
		// The bytes were published by an earlier attempt; they must
		// still be there, whole.
		b, err := q.blobs.Open(ctx, d.cp.BlobKey)
		switch {
		case err == nil:
			size := b.Size()
			b.Close()
			if size == d.cp.Size {
				break
			}
			fallthrough
		case ferry.KindOf(err) == ferry.NotFound:
			q.log.Warn("jobs: published blob of an uncommitted download is gone; starting over", "job", j.ID)
			d.cp = checkpointData{Total: -1, Started: d.cp.Started, Stalls: d.cp.Stalls, Best: d.cp.Best}
		default:
			return nil, fmt.Errorf("jobs: reopen blob of %s: %w", j.ID, err)
		}
	}
	if stagingID != "" && d.cp.BlobKey == "" {
		st, err := q.blobs.OpenStaging(ctx, stagingID)
		switch {
		case ferry.KindOf(err) == ferry.NotFound:
			d.cp.Offset = 0
		case err != nil:
			return nil, fmt.Errorf("jobs: reopen staging of %s: %w", j.ID, err)
		default:
			d.st = st
		}
	}
	if d.st == nil {
		d.cp.Offset = 0
	}
	if d.st != nil && d.cp.Offset > 0 {
		// The checkpoint is written after Sync, so the staged bytes cover
		// it; a staging area shorter than that was tampered with.
		if size, err := d.st.Size(); err != nil || size < d.cp.Offset {
			d.cp.Offset = 0
		}
	}
	if d.cp.Offset > 0 {
		if err := d.h.UnmarshalBinary(d.cp.Hash); err != nil {
			// Hash state from another version: hash the staged bytes again
			// rather than fetch them again.
			q.log.Warn("jobs: unreadable hash state; rehashing", "job", j.ID, "err", err)
			if d.h, err = blob.Rehash(ctx, d.st, d.cp.Offset); err != nil {
				d.h, d.cp.Offset = blob.NewHasher(), 0
			}
		}
	}
	d.offset = d.cp.Offset
	if d.cp.BlobKey != "" {
		d.offset = d.cp.Size
	}
	d.bytes.Store(d.offset)
	d.total.Store(d.cp.Total)

	drive, err := q.store.Drive(ctx, j.DriveID)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("jobs: drive of %s: %w", j.ID, err)
	}
	d.quota = drive.Remaining()
	d.limit = min(d.quota, q.cfg.MaxFileSize)
	return d, nil
}

func (d *download) close() {
	if d.st != nil {
		_ = d.st.Close()
	}
}

// reset drops what was staged: the origin cannot resume, or the file
// changed. The staged bytes stay where they are until fetchOnce moves the
// download to a fresh staging area (restage) before it writes byte 0.
func (d *download) reset() {
	d.h = blob.NewHasher()
	d.offset = 0
	d.bytes.Store(0)
	d.cp.Offset, d.cp.Hash = 0, nil
	d.cp.ETag, d.cp.LastModified = "", ""
	d.cp.Total = -1
	d.total.Store(-1)
}

// errSourceChanged says the origin answered a resumed request with bytes
// of another version of the file.
var errSourceChanged = transientError("the source changed while downloading")

// changed reports whether a response to a resumed request carries a
// validator other than the one the staged bytes came with: a different
// strong ETag, or, when neither side has one, a different Last-Modified.
func (d *download) changed(resp *fetch.Response) bool {
	if d.cp.ETag != "" || resp.ETag != "" {
		return resp.ETag != d.cp.ETag
	}
	return d.cp.LastModified != "" && resp.LastModified != "" && resp.LastModified != d.cp.LastModified
}

// validator is the If-Range value for resuming: the strong ETag, else
// Last-Modified.
func (d *download) validator() string {
	if d.cp.ETag != "" {
		return d.cp.ETag
	}
	return d.cp.LastModified
}

// fetchRange downloads the file from byte off to byte end (exclusive; 0
// means to the end) into the staging area. It is the unit a segmented
// download would run several of in parallel (each into its own range of
// the same staging area via WriteAt, hashing afterwards with blob.Rehash);
// today one range covers the whole file and hashes as it streams.
func (d *download) fetchRange(ctx context.Context, off, end int64) error {
	restarted := false
	for {
		err := d.fetchOnce(ctx, off, end)
		var fe *fetch.Error
		restart := errors.Is(err, errSourceChanged) || (errors.As(err, &fe) && fe.Restart)
		if err != nil && off > 0 && !restarted && restart {
			// The origin cannot continue these bytes: start over, once.
			d.reset()
			off, restarted = 0, true
			continue
		}
		return err
	}
}

func (d *download) fetchOnce(ctx context.Context, off, end int64) error {
	q, j := d.q, d.job
	req := fetch.Request{URL: j.SourceURL, Offset: off}
	if end > 0 {
		req.End = end - 1
	}
	if off > 0 {
		req.IfRange = d.validator()
	}
	resp, err := q.fetch.Open(ctx, req)
	if err != nil {
		return classifyFetch(err)
	}
	defer resp.Body.Close()

	if off > 0 && resp.Offset == off && d.changed(resp) {
		// A 206 for another version of the file: the origin ignored
		// If-Range. Splicing it onto the staged bytes would make a file
		// that never existed; fetch it again from the start.
		return errSourceChanged
	}
	if resp.Offset != off || (off > 0 && d.cp.Total >= 0 && resp.Total >= 0 && resp.Total != d.cp.Total) {
		// 200 to a range request: the origin ignores ranges or the file
		// changed (If-Range did not match). A 206 with another total
		// means the same without a validator to tell.
		if resp.Offset != 0 {
			return errSourceChanged
		}
		d.reset()
		off = 0
	}
	if off == 0 {
		d.cp.ETag, d.cp.LastModified = resp.ETag, resp.LastModified
		d.cp.ContentType = resp.ContentType
		d.cp.Name = originName(resp.Filename, resp.FinalURL)
		d.cp.Total = resp.Total
		d.total.Store(resp.Total)
	}
	if resp.Total >= 0 {
		if err := d.checkSize(resp.Total, true); err != nil {
			return err
		}
	}
	if off == 0 {
		if err := d.restage(ctx); err != nil {
			return err
		}
	}
	if err := d.reserveSpace(resp.Total); err != nil {
		return err
	}
	if resp.Status == 416 { // fetch: the staged bytes already are the whole file
		return nil
	}
	return d.stream(ctx, resp.Body, end)
}

// restage moves a download that starts from byte 0 to a new, empty
// staging area and records that durably before a byte is written, then
// removes the old area. Writing the new bytes over the old ones instead
// would leave the last checkpoint (offset, validator and hash state of the
// old bytes) describing bytes that are no longer there: a crash, or a
// failed checkpoint write, before the next checkpoint, and a resume whose
// If-Range matches the old version, would splice two versions under the
// old one's hashes. If the record cannot be written the attempt ends, and
// the old checkpoint and its bytes stay as they were.
func (d *download) restage(ctx context.Context) error {
	q := d.q
	st, err := q.blobs.Stage(ctx)
	if err != nil {
		return fmt.Errorf("jobs: stage: %w", err)
	}
	old := d.st
	d.st = st
	if err := d.checkpoint(ctx); err != nil {
		d.st = old
		_ = st.Close()
		if rerr := q.blobs.RemoveStaging(context.WithoutCancel(ctx), st.ID()); rerr != nil {
			q.log.Warn("jobs: remove unused staging", "job", d.job.ID, "err", rerr)
		}
		return err
	}
	if old != nil {
		_ = old.Close()
		if err := q.blobs.RemoveStaging(ctx, old.ID()); err != nil {
			// Unreferenced now: the orphan sweep removes it later.
			q.log.Warn("jobs: remove replaced staging", "job", d.job.ID, "err", err)
		}
	}
	return nil
}

// stream copies body into the staging area from d.offset, checkpointing
// durably every CheckpointEvery or CheckpointBytes, whichever comes first.
func (d *download) stream(ctx context.Context, body io.Reader, end int64) error {
	q := d.q
	for {
		seg := &segment{r: body, left: q.cfg.CheckpointBytes, until: time.Now().Add(q.cfg.CheckpointEvery)}
		base := d.offset
		limit := d.limit
		if end > 0 {
			limit = min(limit, end)
		}
		if base > limit { // the quota shrank since the last attempt
			return d.checkSize(base, false)
		}
		if d.cp.Total < 0 { // size unknown: reserve a segment ahead
			if err := d.reserveSpace(base + q.cfg.CheckpointBytes); err != nil {
				return err
			}
		}
		n, err := blob.Copy(ctx, d.st, base, seg, d.h, limit-base, func(n int64) { d.bytes.Store(base + n) })
		d.offset = base + n
		d.bytes.Store(d.offset)
		if err != nil {
			switch ferry.KindOf(err) {
			case ferry.TooLarge, ferry.QuotaExceeded:
				return d.checkSize(d.offset+1, false)
			}
			if seg.err != nil { // the origin's error, not staging's
				return classifyFetch(seg.err)
			}
			return fmt.Errorf("jobs: stage bytes: %w", err)
		}
		if seg.eof {
			return nil
		}
		if err := d.checkpoint(ctx); err != nil {
			return err
		}
	}
}

// checkSize fails the job when a file of size bytes cannot be stored.
// announced says whether the origin announced the size (Content-Length)
// or the bytes were already streaming.
func (d *download) checkSize(size int64, announced bool) error {
	how := "is"
	if !announced {
		how = "grew"
	}
	switch {
	case size > d.q.cfg.MaxFileSize:
		return &failure{code: "maxFileSizeExceeded",
			msg: fmt.Sprintf("The file %s larger than the largest import allowed (%d bytes).", how, d.q.cfg.MaxFileSize)}
	case size > d.quota:
		return &failure{code: "quotaLimitReached",
			msg: fmt.Sprintf("The file %s larger than the space left in the drive (%d bytes).", how, d.quota)}
	}
	return nil
}

// checkpoint makes the staged bytes durable and then records how far they
// go, so that the record never claims more than a crash keeps.
func (d *download) checkpoint(ctx context.Context) error {
	if d.st == nil {
		data, err := json.Marshal(d.cp)
		if err != nil {
			return fmt.Errorf("jobs: checkpoint: %w", err)
		}
		return d.q.store.SaveJobCheckpoint(ctx, d.job.ID, d.runner, "", data)
	}
	// Every byte below the offset is hashed and is never read again (a
	// restart from zero moves to a fresh area): an S3 store may turn it
	// into multipart parts at this Sync and drop its local copy.
	if err := d.st.Release(d.offset); err != nil {
		return fmt.Errorf("jobs: release staged bytes: %w", err)
	}
	if err := d.st.Sync(); err != nil {
		return fmt.Errorf("jobs: sync staging: %w", err)
	}
	state, err := d.h.MarshalBinary()
	if err != nil {
		return fmt.Errorf("jobs: hash state: %w", err)
	}
	d.cp.Offset, d.cp.Hash = d.offset, state
	d.cp.Best = max(d.cp.Best, d.offset)
	data, err := json.Marshal(d.cp)
	if err != nil {
		return fmt.Errorf("jobs: checkpoint: %w", err)
	}
	if err := d.q.store.SaveJobCheckpoint(ctx, d.job.ID, d.runner, d.st.ID(), data); err != nil {
		return fmt.Errorf("jobs: save checkpoint: %w", err)
	}
	return nil
}

// commit publishes the staged bytes and commits them as the item,
// applying the job's conflict behaviour again (the name may have been
// taken meanwhile), in the same transaction that completes the job
// (Store.CommitJobItem): a crash leaves both or neither, and a commit run
// again after a crash finds the job completed. Before committing, the
// published blob is recorded in the checkpoint and held by the store, so
// that a commit failing for a passing reason (the database is unavailable)
// is retried by the next attempt with the same bytes.
func (d *download) commit(ctx context.Context) error {
	q, j := d.q, d.job
	// From publishing on, a cancel or stop must not cut the commit in
	// half: it is short, and undoing it is worse than finishing it.
	ctx = context.WithoutCancel(ctx)
	if d.cp.BlobKey == "" {
		if err := d.publish(ctx); err != nil {
			return err
		}
	}
	it, already, err := q.store.CommitJobItem(ctx, j.ID, d.runner, ferry.NewItem{
		DriveID:  j.DriveID,
		ParentID: j.ParentID,
		Name:     d.cp.FileName,
		Content: ferry.Content{
			Size:     d.cp.Size,
			MimeType: d.cp.Mime,
			Hashes:   d.cp.Hashes,
			BlobKey:  d.cp.BlobKey,
		},
		By: j.UserName,
	}, j.Conflict, "URL was successfully downloaded to target")
	switch ferry.KindOf(err) {
	case ferry.Internal, ferry.Unavailable:
		if err != nil {
			// Perhaps passing: keep the blob for the next attempt.
			return fmt.Errorf("jobs: commit %s: %w", j.ID, err)
		}
	case ferry.Conflict: // the job ended meanwhile, or another attempt took it over
		q.deleteBlob(ctx, j.ID, d.cp.BlobKey)
		return fmt.Errorf("jobs: commit %s: %w", j.ID, err)
	default:
		q.deleteBlob(ctx, j.ID, d.cp.BlobKey)
		d.cp.BlobKey = ""
		return commitFailure(err)
	}
	if already {
		q.log.Info("jobs: download had been committed already", "job", j.ID, "item", it.ID)
	}
	return nil
}

// publish checks the staged bytes, publishes them as a blob and records it
// in the checkpoint, held by the store until the commit.
func (d *download) publish(ctx context.Context) error {
	q, j := d.q, d.job
	if d.cp.Total >= 0 && d.offset != d.cp.Total {
		return transientError("the source sent fewer bytes than it announced")
	}
	if d.st == nil { // an empty body still needs a staging area to publish
		st, err := q.blobs.Stage(ctx)
		if err != nil {
			return fmt.Errorf("jobs: stage: %w", err)
		}
		d.st = st
	}
	sum := d.h.Sum()
	if j.ExpectSHA256 != "" && !strings.EqualFold(sum.SHA256, j.ExpectSHA256) {
		return &failure{code: "hashMismatch",
			msg: "The downloaded file's SHA-256 (" + sum.SHA256 + ") differs from the expected one."}
	}
	name := j.Name
	if name == "" {
		name = d.cp.Name
	}
	if name == "" {
		name = generatedName(time.Now())
	}
	head := make([]byte, min(d.offset, 512))
	if _, err := d.st.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("jobs: read staged head: %w", err)
	}
	key, err := d.st.Publish(ctx, d.offset)
	if err != nil {
		return fmt.Errorf("jobs: publish: %w", err)
	}
	d.st = nil // Publish consumed it
	d.cp.BlobKey, d.cp.Size, d.cp.Hashes = key, d.offset, sum
	d.cp.Mime, d.cp.FileName = mimeType(d.cp.ContentType, name, head), name
	d.cp.Offset, d.cp.Hash = d.offset, nil
	data, err := json.Marshal(d.cp)
	if err == nil {
		err = q.store.HoldJobBlob(ctx, j.ID, d.runner, key, data)
	}
	if err != nil {
		// The commit is likely to fail as well; if it does, the next
		// attempt starts over, and the unknown-blob sweep removes key.
		q.log.Warn("jobs: record published blob", "job", j.ID, "err", err)
	}
	return nil
}

// deleteBlob removes a published blob that will not be committed.
func (q *Queue) deleteBlob(ctx context.Context, id, key string) {
	if err := q.blobs.Delete(ctx, key); err != nil {
		q.log.Error("jobs: delete uncommitted blob", "job", id, "key", key, "err", err)
	}
}

// fail ends the job as failed and frees its staging and held blob.
func (d *download) fail(ctx context.Context, f *failure) error {
	q, j := d.q, d.job
	if d.st != nil {
		id := d.st.ID()
		d.close()
		d.st = nil
		if err := q.blobs.RemoveStaging(ctx, id); err != nil {
			q.log.Error("jobs: remove staging of failed job", "job", j.ID, "err", err)
		}
	}
	if d.cp.BlobKey != "" {
		q.deleteBlob(ctx, j.ID, d.cp.BlobKey)
	}
	if err := q.freeJob(ctx, j.ID); err != nil { // what the store records
		q.log.Error("jobs: free failed job", "job", j.ID, "err", err)
	}
	q.log.Info("jobs: download failed", "job", j.ID, "code", f.code, "err", f)
	if err := q.finish(ctx, j.ID, ferry.StatusFailed, f.code, f.msg); err != nil {
		return fmt.Errorf("jobs: finish %s: %w", j.ID, err)
	}
	return nil
}

// report writes the attempt's progress every ProgressEvery, at most one
// database write per tick however fast bytes arrive, and reads the job's
// status to notice a cancel request from any node.
func (d *download) report(ctx context.Context, cancel context.CancelCauseFunc) {
	q, j := d.q, d.job
	t := time.NewTicker(q.cfg.ProgressEvery)
	defer t.Stop()
	rate := newMeter(5 * time.Second)
	lastBytes, lastTotal := int64(-1), int64(-2)
	for {
		now := time.Now()
		b, total := d.bytes.Load(), d.total.Load()
		bps := rate.add(now, b)
		if b != lastBytes || total != lastTotal || bps != 0 {
			if err := q.store.UpdateJobProgress(ctx, j.ID, b, total, bps); err != nil && ctx.Err() == nil {
				q.log.Warn("jobs: progress", "job", j.ID, "err", err)
			}
			lastBytes, lastTotal = b, total
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
// second over the window.
// The window starts at the newest sample at least window old, so a quiet
// gap longer than the window still averages over it. A count that went
// down (the download restarted) starts the window afresh.
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

// segment reads from r until left bytes were read or until passes, then
// reports io.EOF, so that blob.Copy returns and a checkpoint can be taken
// at a point where the hasher and the staged bytes agree. eof and err tell
// a real end or error of r apart from the end of the segment.
type segment struct {
	r     io.Reader
	left  int64
	until time.Time
	eof   bool
	err   error
}

func (s *segment) Read(p []byte) (int, error) {
	if s.left <= 0 || !time.Now().Before(s.until) {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	switch {
	case errors.Is(err, io.EOF):
		s.eof = true
	case err != nil:
		s.err = err
	}
	return n, err
}

// failure ends a job as failed: code is the monitor's Graph errorCode and
// msg its statusDescription, both safe to show (never the URL).
type failure struct {
	code, msg string
	err       error
}

func (f *failure) Error() string {
	if f.err != nil {
		return f.code + ": " + f.msg + ": " + f.err.Error()
	}
	return f.code + ": " + f.msg
}

func (f *failure) Unwrap() error { return f.err }

// transientError is a retryable failure with a safe message.
func transientError(msg string) error {
	return &fetch.Error{Code: fetch.CodeShortBody, Message: msg}
}

// classifyFetch turns fetch's permanent errors into failures with a Graph
// code; transient ones pass through for a retry.
func classifyFetch(err error) error {
	var fe *fetch.Error
	if !errors.As(err, &fe) || !fe.Permanent {
		return err
	}
	code := "invalidRequest"
	switch fe.Code {
	case fetch.CodeNotFound, fetch.CodeDNSNotFound:
		code = "itemNotFound"
	case fetch.CodeHTTPStatus:
		if fe.Status == 401 || fe.Status == 403 {
			code = "accessDenied"
		}
	}
	return &failure{code: code, msg: safeSentence(fe.Message), err: err}
}

// giveUp is the failure after MaxStalls attempts without new bytes.
func giveUp(last error) *failure {
	msg := "The source stopped sending data."
	var fe *fetch.Error
	if errors.As(last, &fe) && fe.Message != "" {
		msg = "The download made no progress in several attempts; last: " + safeSentence(fe.Message)
	}
	return &failure{code: "generalException", msg: msg, err: last}
}

// commitFailure translates an error from CreateItem.
func commitFailure(err error) *failure {
	code := "generalException"
	switch ferry.KindOf(err) {
	case ferry.NameConflict:
		code = "nameAlreadyExists"
	case ferry.QuotaExceeded:
		code = "quotaLimitReached"
	case ferry.NotFound:
		code = "itemNotFound"
	case ferry.Invalid:
		code = "invalidRequest"
	}
	return &failure{code: code, msg: ferry.Message(err), err: err}
}

// safeSentence capitalises a fetch message and ends it with a period.
func safeSentence(s string) string {
	if s == "" {
		return "The download failed."
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
