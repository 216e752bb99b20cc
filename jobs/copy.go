package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferrydrive/ferry"
)

// copyQueue is the River queue copies run on. Copies are short and
// metadata-only (the copied files share the source's blobs), so they get
// workers of their own: a node busy with hours-long downloads must not keep
// a copy queued behind them.
const copyQueue = "ferry_copy"

// copyAttempts bounds the attempts of a copy whose store reports a
// transient error (Unavailable); every other error ends the job at once.
const copyAttempts = 5

// copyArgs is River's job for one copy. Like downloadArgs it carries only
// the monitor ID; the source, destination and conflict behaviour stay in
// the store's job row.
type copyArgs struct {
	JobID string `json:"job_id"`
}

// Kind names the River job kind. Changing it orphans queued jobs.
func (copyArgs) Kind() string { return "ferry_copy" }

// InsertOpts puts copies on their own queue.
func (copyArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: copyQueue} }

// copyWorker runs copyArgs jobs.
type copyWorker struct {
	river.WorkerDefaults[copyArgs]
	q *Queue
}

// NextRetry spaces the attempts of a copy that hit a transient store error.
func (w *copyWorker) NextRetry(rj *river.Job[copyArgs]) time.Time {
	return time.Now().Add(w.q.backoff(rj.Attempt-1, nil))
}

// Work runs a copy: one ItemStore.CopyItem, which copies the item (and a
// folder's subtree) in one transaction, sharing blobs.
//
// A copy takes no per-user running slot: it does not download, and it is
// over in moments, so it must not wait behind a user's long imports. It
// still moves through inProgress so that the monitor tells queued from
// running.
//
// Cancel: a queued copy is cancelled at once by Queue.Cancel. A copy whose
// cancel arrives while it runs ends with the copy's own outcome (completed
// or failed), not cancelled: the copy is one transaction that is either
// wholly done or not done at all, and undoing a finished copy would delete
// an item the user may already see. Only a cancelPending seen before the
// copy starts ends it as cancelled.
func (w *copyWorker) Work(ctx context.Context, rj *river.Job[copyArgs]) (err error) {
	q := w.q
	id := rj.Args.JobID
	defer q.lastResort(ctx, id, rj.JobRow, &err)
	j, err := q.loadJob(ctx, id)
	if j == nil || err != nil {
		return err
	}
	// Limit 0: no per-user limit (StartJob counts uploads from URL only).
	// An inProgress row left by a crash is not started again; the claim
	// below tells whether another attempt still runs it.
	if _, err := q.store.StartJob(ctx, id, 0); err != nil {
		return fmt.Errorf("jobs: start %s: %w", id, err)
	}
	if j, err = q.store.Job(ctx, id); err != nil {
		return fmt.Errorf("jobs: load %s: %w", id, err)
	}
	if j.Status.Final() {
		return nil
	}
	if j.Status == ferry.StatusNotStarted || j.Status == ferry.StatusWaiting {
		return fmt.Errorf("jobs: copy %s did not start (%s)", id, j.Status)
	}
	_, c, j, err := q.claimLive(ctx, id, "")
	if j == nil || err != nil {
		return err
	}
	defer c.stop()

	// The copy is one short transaction that also completes the job, so
	// a crash leaves both or neither, and a copy run again after a crash
	// finds its job completed instead of copying twice. Once begun it is
	// not cut by a stop (River waits for it in StopAndCancel), so that a
	// stop never turns a copy that was about to succeed into a retry.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	it, already, err := q.store.CommitJobCopy(bg, j.ID, c.runner, "The item was copied.")
	switch {
	case err == nil && already:
		q.log.Info("jobs: copy had been made already", "job", j.ID, "item", it.ID)
	case ferry.KindOf(err) == ferry.Conflict: // the job ended meanwhile, or another attempt took it over
		return nil
	case err != nil:
		return w.fail(bg, rj, j, err)
	}
	return nil
}

// fail ends a copy as failed with the Graph code for err (commitFailure:
// a source deleted after the copy was accepted is itemNotFound, like a
// missing destination), or, for a transient store error with attempts
// left, marks it waiting and returns the error so that River tries again.
// When the failure cannot be written, the error goes to River, which
// tries the copy again: nothing was copied, so that is safe, and the row
// never stays inProgress without an attempt (or the stale-job rescue)
// coming back to it.
func (w *copyWorker) fail(ctx context.Context, rj *river.Job[copyArgs], j *ferry.Job, err error) error {
	q := w.q
	if ferry.KindOf(err) == ferry.Unavailable && rj.Attempt < copyAttempts {
		ok, serr := q.store.SetJobStatus(ctx, j.ID, ferry.StatusWaiting, ferry.StatusInProgress)
		if serr != nil {
			return errors.Join(err, serr)
		}
		if !ok {
			cur, lerr := q.store.Job(ctx, j.ID)
			switch {
			case lerr != nil:
				return errors.Join(err, lerr)
			case cur.Status == ferry.StatusCancelPending: // nothing was copied
				return q.finishCancelled(ctx, j.ID)
			case cur.Status.Final(): // e.g. the failed call did commit
				return nil
			}
		}
		q.log.Info("jobs: copy failed; will retry", "job", j.ID, "attempt", rj.Attempt, "err", err)
		return err
	}
	f := commitFailure(err)
	if ferry.KindOf(err) == ferry.Internal || ferry.KindOf(err) == ferry.Unavailable {
		q.log.Error("jobs: copy failed", "job", j.ID, "err", err)
	} else {
		q.log.Info("jobs: copy failed", "job", j.ID, "code", f.code, "err", err)
	}
	if ferr := q.finish(ctx, j.ID, ferry.StatusFailed, f.code, f.msg); ferr != nil {
		return fmt.Errorf("jobs: finish %s: %w", j.ID, ferr)
	}
	return nil
}
