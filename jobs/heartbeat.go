package jobs

import (
	"context"
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

// claim is an attempt's hold on its job: runner is the token that fences
// the attempt's writes (checkpoint, held blob, commit: the store refuses
// them once another attempt has claimed the job), and stop ends the
// heartbeat and releases the claim.
type claim struct {
	runner string
	end    func(release bool)
}

// stop ends the heartbeat and releases the claim.
func (c *claim) stop() { c.end(true) }

// ended ends the heartbeat of a job that has ended: no later attempt will
// claim it, so the claim is not released (a write saved per job).
func (c *claim) ended() { c.end(false) }

// claim makes this attempt the job's runner and keeps its heartbeat until
// the claim's stop is called, which releases it; rctx ends with cause
// errClaimLost if the claim is lost.
// When another attempt holds the job with a fresh heartbeat, it returns a
// snooze for River.
//
// A held runner is a claim made already (StartClaimJob) and is kept.
func (q *Queue) claim(ctx context.Context, id, held string) (rctx context.Context, c *claim, err error) {
	runner, ok := held, true
	if runner == "" {
		runner = q.newRunner()
		ok, err = q.store.ClaimJob(ctx, id, runner, time.Now().Add(-q.cfg.StaleAfter))
		if err != nil {
			return nil, nil, fmt.Errorf("jobs: claim %s: %w", id, err)
		}
	}
	if !ok {
		// Running elsewhere: look again once its heartbeat could have
		// gone stale. A snooze uses no attempt.
		return nil, nil, river.JobSnooze(q.cfg.StaleAfter/2 + rand.N(q.cfg.StaleAfter/4+1))
	}
	rctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { q.keepAlive(rctx, id, runner, cancel) })
	end := func(release bool) {
		cancel(nil)
		wg.Wait()
		if !release {
			q.obs.inactive(id)
			return
		}
		// A job that stays inProgress (River retries it after an error)
		// must not wait for this claim to go stale.
		bg, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer done()
		if err := q.store.ReleaseJob(bg, id, runner); err != nil {
			q.log.Warn("jobs: release claim", "job", id, "err", err)
		}
	}
	return rctx, &claim{runner: runner, end: end}, nil
}

// newRunner returns a new runner token of this node.
func (q *Queue) newRunner() string { return q.cfg.NodeID + "/" + ferry.NewID("", 16) }

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

// rescue hands the jobs whose heartbeat is stale back to River
// (Store.RescueStaleJobs): whichever node fetches one claims it and
// resumes it from its checkpoint (a staging area on another node's disk is
// not found there, so that node starts over, which is correct). A stale
// job that River no longer has any work for (it gave up, or cancelled a
// copy) is failed, so that it ends and frees its slot.
func (q *Queue) rescue(ctx context.Context) error {
	q.park.gate.RLock() // River may not park between the rescue and its wake (park.go)
	resumed, orphaned, err := q.store.RescueStaleJobs(ctx, time.Now().Add(-q.cfg.StaleAfter), 100)
	if len(resumed) > 0 {
		q.park.poke()
	}
	q.park.gate.RUnlock()
	for _, id := range resumed {
		q.log.Info("jobs: resuming an abandoned job", "job", id, "node", q.cfg.NodeID)
	}
	for _, id := range orphaned {
		q.log.Error("jobs: a running job has no work left in River; failing it", "job", id)
		if ferr := q.failJob(ctx, id); ferr != nil {
			err = errors.Join(err, fmt.Errorf("rescue %s: %w", id, ferr))
		}
	}
	return err
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

// claimLive claims the job (see claim; held as there) and reads it again,
// since a cancel may have won the race with StartJob. It returns a nil
// job, and releases the claim, when there is nothing left to run: the job
// ended (err nil), or a cancel was pending and is now finished
// (finishCancelled's error).
func (q *Queue) claimLive(ctx context.Context, id, held string) (context.Context, *claim, *ferry.Job, error) {
	rctx, c, err := q.claim(ctx, id, held)
	if err != nil {
		return nil, nil, nil, err
	}
	j, err := q.store.Job(rctx, id)
	switch {
	case err != nil:
		c.stop()
		return nil, nil, nil, fmt.Errorf("jobs: load %s: %w", id, err)
	case j.Status.Final():
		c.stop()
		return nil, nil, nil, nil
	case j.Status == ferry.StatusCancelPending:
		err := q.finishCancelled(ctx, id) // still holding the claim
		c.stop()
		return nil, nil, nil, err
	}
	return rctx, c, j, nil
}

// ownerLost reports whether err is the store refusing a write of this
// attempt because the attempt does not own the job any more: another
// attempt claimed it, or it has ended (Conflict, see Store).
func ownerLost(err error) bool { return ferry.KindOf(err) == ferry.Conflict }

// loadJob reads the job an attempt is for. A nil job with a nil error means
// there is nothing to run: the job expired and was deleted, or it ended
// (e.g. cancelled while queued).
func (q *Queue) loadJob(ctx context.Context, id string) (*ferry.Job, error) {
	j, err := q.store.Job(ctx, id)
	switch {
	case ferry.KindOf(err) == ferry.NotFound:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("jobs: load %s: %w", id, err)
	case j.Status.Final():
		return nil, nil
	}
	return j, nil
}
