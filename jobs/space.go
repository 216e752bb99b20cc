package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferrydrive/ferry"
)

// An import reserves local disk for its staging area (Config.Space) as
// soon as it knows how big the file is, before writing, and as it goes
// when the origin does not say. One that does not fit waits: the job goes
// back to waiting with a statusDescription that says why, without using
// up an attempt or counting as a stall, and asks again later (bounded by
// MaxDuration like every job). One that could never fit fails with
// insufficientStorage.

// errWaitForSpace marks an attempt that ended because the disk has no
// room for the file right now.
type errWaitForSpace struct{ err error }

func (e *errWaitForSpace) Error() string { return "jobs: waiting for disk space: " + e.err.Error() }
func (e *errWaitForSpace) Unwrap() error { return e.err }

// reserveSpace reserves room for the staging area to hold size bytes in
// all. A disk that never fits the file fails the job; one without room
// now makes the attempt wait (errWaitForSpace).
func (a *attempt) reserveSpace(st ferry.Staging, size int64) error {
	sp := a.q.cfg.Space
	if sp == nil || st == nil || size < 0 {
		return nil
	}
	err := sp.Reserve(st.ID(), size)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ferry.ErrDiskTooSmall):
		return &failure{code: ferry.JobInsufficientStorage, err: err,
			msg: fmt.Sprintf("The server's disk is too small for this file (%d bytes); ask its operator for more space.", size)}
	case ferry.KindOf(err) == ferry.Unavailable:
		return &errWaitForSpace{err}
	}
	return err
}

// waitForSpace ends an attempt that found no room on the disk: it keeps
// what was staged, tells the monitor why the job waits, and snoozes the
// job (no attempt used) until space may have been freed.
func (a *attempt) waitForSpace(ctx context.Context, w *errWaitForSpace) error {
	q, j := a.q, a.job
	if err := a.save(ctx); err != nil {
		return fmt.Errorf("jobs: checkpoint %s: %w", j.ID, err)
	}
	if err := q.store.NoteJob(ctx, j.ID, "Waiting for disk space on the server: "+ferry.Message(w.err)); err != nil {
		q.log.Warn("jobs: note why a job waits", "job", j.ID, "err", err)
	}
	ok, err := q.store.SetJobStatus(ctx, j.ID, ferry.StatusWaiting, ferry.StatusInProgress)
	if err != nil {
		return fmt.Errorf("jobs: mark %s waiting: %w", j.ID, err)
	}
	if !ok { // cancel asked meanwhile
		if cur, lerr := q.store.Job(ctx, j.ID); lerr == nil && cur.Status == ferry.StatusCancelPending {
			a.release()
			return q.finishCancelled(ctx, j.ID)
		}
	}
	if f, ok := a.cur.(*fetching); ok && f.staging != nil {
		// Nothing is written while the job waits: its reservation must
		// not hold room that others could use.
		q.cfg.Space.Release(f.staging.ID())
	}
	q.log.Info("jobs: waiting for disk space", "job", j.ID, "err", w.err)
	// Ask again after the store's Retry-After, at most RetryMax.
	after := q.cfg.RetryMax
	var fe *ferry.Error
	if errors.As(w.err, &fe) && fe.RetryAfter > 0 {
		after = min(time.Duration(fe.RetryAfter)*time.Second, after)
	}
	return river.JobSnooze(after)
}
