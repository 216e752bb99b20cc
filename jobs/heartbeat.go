package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferrydrive/ferry"
)

// A running job proves it is alive with a heartbeat. The attempt that runs
// it first claims it (Store.ClaimJob, with a runner token of its own), then
// writes the heartbeat every StaleAfter/10 for as long as it runs. Every
// node looks for jobs whose heartbeat is older than StaleAfter
// (rescueLoop) and hands them to River again, so that a job whose node was
// killed, lost its disk or never came back resumes from its checkpoint on
// any node. An attempt that finds a job claimed with a fresh heartbeat
// leaves it to its runner and snoozes; an attempt that learns it lost its
// claim stops without touching the job.

// errClaimLost is the cause of an attempt's context ending because another
// attempt claimed its job (this one's heartbeat had gone stale).
var errClaimLost = errors.New("jobs: another attempt took over the job")

// claim makes this attempt the job's runner and keeps its heartbeat until
// stop is called, which releases the claim; rctx ends with cause
// errClaimLost if the claim is lost.
// When another attempt holds the job with a fresh heartbeat, it returns a
// snooze for River.
func (q *Queue) claim(ctx context.Context, id string) (rctx context.Context, stop func(), err error) {
	runner := q.cfg.NodeID + "/" + ferry.NewID("", 16)
	ok, err := q.store.ClaimJob(ctx, id, runner, time.Now().Add(-q.cfg.StaleAfter))
	if err != nil {
		return nil, nil, fmt.Errorf("jobs: claim %s: %w", id, err)
	}
	if !ok {
		// Running elsewhere: look again once its heartbeat could have
		// gone stale. A snooze uses no attempt.
		return nil, nil, river.JobSnooze(q.cfg.StaleAfter/2 + rand.N(q.cfg.StaleAfter/4+1))
	}
	rctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { q.keepAlive(rctx, id, runner, cancel) })
	stop = func() {
		cancel(nil)
		wg.Wait()
		// A job that stays inProgress (River retries it after an error)
		// must not wait for this claim to go stale.
		bg, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer done()
		if err := q.store.ReleaseJob(bg, id, runner); err != nil {
			q.log.Warn("jobs: release claim", "job", id, "err", err)
		}
	}
	return rctx, stop, nil
}

// keepAlive writes the job's heartbeat every StaleAfter/10 until ctx ends.
// When the claim is lost, or no heartbeat could be written for half of
// StaleAfter (another node may take the job over soon), it cancels the
// attempt with errClaimLost.
func (q *Queue) keepAlive(ctx context.Context, id, runner string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(q.cfg.StaleAfter / 10)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, err := q.store.Heartbeat(ctx, id, runner)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && !ok:
			cancel(errClaimLost)
			return
		case err == nil:
			last = time.Now()
		case time.Since(last) > q.cfg.StaleAfter/2:
			q.log.Error("jobs: no heartbeat; giving the job up", "job", id, "err", err)
			cancel(errClaimLost)
			return
		default:
			q.log.Warn("jobs: heartbeat", "job", id, "err", err)
		}
	}
}

// lostClaim is what an attempt that lost its claim returns: a snooze, so
// that River looks at the job again later (by then it has ended, or its
// new runner's heartbeat says it is alive) without using an attempt.
func (q *Queue) lostClaim(id string) error {
	q.log.Warn("jobs: another attempt took over the job; stopping", "job", id)
	return river.JobSnooze(q.cfg.StaleAfter)
}

// rescueLoop looks for abandoned jobs every StaleAfter/3 until ctx is
// done. It runs on every node.
func (q *Queue) rescueLoop(ctx context.Context) {
	t := time.NewTicker(q.cfg.StaleAfter / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := q.rescue(ctx); err != nil && ctx.Err() == nil {
			q.log.Error("jobs: rescue abandoned jobs", "err", err)
		}
	}
}

// rescue hands the jobs whose heartbeat is stale back to River: their
// River job, still `running` for a node that is gone, becomes available,
// and whichever node fetches it claims the job and resumes it from its
// checkpoint (a staging area on another node's disk is not found there,
// so that node starts over, which is correct). A stale job that River no
// longer has any work for (it gave up, or cancelled a copy) is failed, so
// that it ends and frees its slot.
//
// River has no API to retry a running job, so this is one UPDATE of River's
// table per dialect, matching the job by the monitor ID in its args, as
// reclaim does.
func (q *Queue) rescue(ctx context.Context) error {
	ids, err := q.store.StaleJobs(ctx, time.Now().Add(-q.cfg.StaleAfter), 100)
	if err != nil {
		return err
	}
	match := `kind IN ('ferry_download_url', 'ferry_copy') AND json_extract(args, '$.job_id') = ?`
	if q.store.Postgres() {
		match = `kind IN ('ferry_download_url', 'ferry_copy') AND args->>'job_id' = $1`
	}
	db := q.store.DB()
	for _, id := range ids {
		res, err := db.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running' AND `+match, id)
		if err != nil {
			return fmt.Errorf("rescue %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			q.log.Info("jobs: resuming an abandoned job", "job", id, "node", q.cfg.NodeID)
			continue
		}
		var live int
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM river_job
			WHERE state NOT IN ('completed', 'cancelled', 'discarded') AND `+match, id).Scan(&live)
		if err != nil {
			return fmt.Errorf("rescue %s: %w", id, err)
		}
		if live > 0 {
			continue // queued or waiting for a retry: it will run
		}
		q.log.Error("jobs: a running job has no work left in River; failing it", "job", id)
		if err := q.failJob(ctx, id); err != nil {
			return fmt.Errorf("rescue %s: %w", id, err)
		}
	}
	return nil
}

// failJob ends a job that cannot go on (River will not run it again) as
// failed with generalException, freeing what it holds. A job that has
// already ended is left alone.
func (q *Queue) failJob(ctx context.Context, id string) error {
	j, err := q.store.Job(ctx, id)
	if ferry.KindOf(err) == ferry.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	if j.Status.Final() {
		return nil
	}
	if err := q.freeJob(ctx, id); err != nil {
		q.log.Error("jobs: free a failed job", "job", id, "err", err)
	}
	return q.finish(ctx, id, ferry.StatusFailed, "generalException", "An internal error occurred.")
}

// lastResort runs deferred in Work. A panic becomes an error of the
// attempt. When the attempt was the last River allows and ends in an error
// (not a snooze), the job would stay non-final for ever: it is failed
// here, and River is told the work is done.
func (q *Queue) lastResort(ctx context.Context, id string, row *rivertype.JobRow, errp *error) {
	if r := recover(); r != nil {
		q.log.Error("jobs: panic in a job", "job", id, "panic", r, "stack", string(debug.Stack()))
		*errp = fmt.Errorf("jobs: panic in %s: %v", id, r)
	}
	var snooze *river.JobSnoozeError
	if *errp == nil || row.Attempt < row.MaxAttempts || errors.As(*errp, &snooze) {
		return
	}
	q.log.Error("jobs: last attempt failed; failing the job", "job", id, "attempt", row.Attempt, "err", *errp)
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := q.failJob(bg, id); err != nil {
		*errp = errors.Join(*errp, err)
		return
	}
	*errp = nil
}

// queryStrings runs a query of one text column.
func queryStrings(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// claimLive claims the job (see claim) and reads it again, since a cancel
// may have won the race with StartJob. It returns a nil job, and releases
// the claim, when there is nothing left to run: the job ended (err nil),
// or a cancel was pending and is now finished (finishCancelled's error).
func (q *Queue) claimLive(ctx context.Context, id string) (context.Context, func(), *ferry.Job, error) {
	rctx, stop, err := q.claim(ctx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	j, err := q.store.Job(rctx, id)
	switch {
	case err != nil:
		stop()
		return nil, nil, nil, fmt.Errorf("jobs: load %s: %w", id, err)
	case j.Status.Final():
		stop()
		return nil, nil, nil, nil
	case j.Status == ferry.StatusCancelPending:
		err := q.finishCancelled(ctx, id) // still holding the claim
		stop()
		return nil, nil, nil, err
	}
	return rctx, stop, j, nil
}
