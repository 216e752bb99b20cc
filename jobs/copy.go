package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferrydrive/ferry"
)

// copyQueue is the River queue copies run on. Copies are metadata-only
// (the copied files share the source's blobs) and short but for very large
// folders, so they get workers of their own: a node busy with hours-long
// downloads must not keep a copy queued behind them.
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

// Work runs a copy: steps of the store's AdvanceJobCopy, each one
// transaction that copies a bounded number of items out of sight (the
// copies share the source's blobs), until the last one makes the copy
// appear, all at once, and completes the job. A copy of no more items than
// one step holds is one step, one transaction.
//
// A copy takes no per-user running slot: it does not download, and it
// must not wait behind a user's long imports. It still moves through
// inProgress so that the monitor tells queued from running; the monitor
// shows the bytes copied so far.
//
// Between steps, a copy stops when its job is cancelled (cancelPending:
// it ends as cancelled and what it built is removed), when another
// attempt took its claim over, or when River stops (it goes back to
// waiting, and the next start continues from the last step). A step, once
// begun, is not cut by a stop (River waits for it in StopAndCancel), so
// that a stop never turns a step that was about to commit into a retry. A
// copy whose last step has begun ends with the copy's own outcome: the
// copy is either wholly there or not at all, and undoing a finished copy
// would delete an item the user may already see. Every step is fenced by
// the claim, and a step run again after a crash finds the job completed,
// or continues where the last committed step stopped.
func (w *copyWorker) Work(ctx context.Context, rj *river.Job[copyArgs]) (err error) {
	q := w.q
	id := rj.Args.JobID
	q.park.begin()
	defer q.park.end()
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
	rctx, c, j, err := q.claimLive(ctx, id, "")
	if j == nil || err != nil {
		return err
	}
	defer c.stop()

	for {
		if over, err := w.step(ctx, rctx, rj, j, c.runner); over {
			return err
		}
	}
}

// step runs one step of the copy and settles what follows: over reports
// that the attempt ends, with err as its result.
func (w *copyWorker) step(ctx, rctx context.Context, rj *river.Job[copyArgs], j *ferry.Job, runner string) (over bool, err error) {
	q := w.q
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	it, already, err := q.store.AdvanceJobCopy(sctx, j.ID, runner, "The item was copied.")
	cancel()
	// From here on ctx may be done (River is stopping): the bookkeeping
	// uses a context of its own.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	switch {
	case err == nil && it != nil:
		if already {
			q.log.Info("jobs: copy had been made already", "job", j.ID, "item", it.ID)
		}
		return true, nil
	case ownerLost(err): // the job ended meanwhile, or another attempt took it over
		return true, nil
	case err != nil:
		return true, w.fail(bg, rj, j, err)
	case errors.Is(context.Cause(rctx), errClaimLost):
		return true, q.lostClaim(j.ID)
	case ctx.Err() != nil:
		// River is stopping: the next start continues the copy.
		// Snoozing does not use up an attempt.
		if _, err := q.store.SetJobStatus(bg, j.ID, ferry.StatusWaiting, ferry.StatusInProgress); err != nil {
			q.log.Error("jobs: mark waiting on stop", "job", j.ID, "err", err)
		}
		return true, river.JobSnooze(0)
	}
	cur, err := q.store.Job(bg, j.ID)
	if err != nil {
		return true, fmt.Errorf("jobs: load %s: %w", j.ID, err)
	}
	if cur.Status == ferry.StatusCancelPending {
		err := q.finishCancelled(bg, j.ID) // still holding the claim
		q.dropCopy(bg, j.ID)
		return true, err
	}
	return false, nil
}

// dropCopy removes what the copy job id, which has ended, built out of
// sight, in steps, on a context of its own: a stop must not leave the
// removal half done (the sweep would finish it, later). An error is
// logged; the sweep tries again.
func (q *Queue) dropCopy(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if err := q.store.DropJobCopy(ctx, id); err != nil {
		q.log.Warn("jobs: remove the copy a job left; the sweep will", "job", id, "err", err)
	}
}

// fail ends a copy as failed with the Graph code for err (commitFailure:
// a source deleted after the copy was accepted is itemNotFound, like a
// missing destination) and removes what it built out of sight, or, for a
// transient store error with attempts left, marks it waiting and returns
// the error so that River tries again, from the last step. When the
// failure cannot be written, the error goes to River, which tries the
// copy again: nothing has appeared, so that is safe, and the row never
// stays inProgress without an attempt (or the stale-job rescue) coming
// back to it.
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
			case cur.Status == ferry.StatusCancelPending: // nothing has appeared
				err := q.finishCancelled(ctx, j.ID)
				q.dropCopy(ctx, j.ID)
				return err
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
	q.dropCopy(ctx, j.ID)
	return nil
}
