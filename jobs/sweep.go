package jobs

import (
	"context"
	"fmt"
	"time"
)

// sweepLoop deletes expired monitors, expired upload sessions with their
// staged bytes, orphaned staging areas, the hidden trees of copies that
// will never appear, the rows of large deleted folders, blob files no item
// knows, and blobs no item uses any more: once at start, then every
// SweepEvery until ctx is done; the scan for unknown blob files, which
// lists every blob, only at start and then every BlobScanEvery. When the
// store signals that a deletion left a tree to remove, it removes that at
// once, and the blobs it released. Errors are logged; the next round
// retries.
func (q *Queue) sweepLoop(ctx context.Context) {
	t := time.NewTicker(q.cfg.SweepEvery)
	defer t.Stop()
	var nextScan time.Time
	for {
		scan := !time.Now().Before(nextScan)
		if scan {
			nextScan = time.Now().Add(q.cfg.BlobScanEvery)
		}
		q.sweep(ctx, scan)
		if !q.waitRound(ctx, t.C) {
			return
		}
	}
}

// waitRound waits for the next round of the sweep, removing deleted trees
// and the blobs they released whenever the store signals one meanwhile;
// false once ctx is done.
func (q *Queue) waitRound(ctx context.Context, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick:
			return true
		case <-q.store.Removals():
			q.sweepSteps(ctx, []sweepStep{
				{"deleted trees", q.sweepDeleted},
				{"unreferenced blobs", q.sweepUnreferencedBlobs},
			})
		}
	}
}

// A sweepStep is one kind of garbage the sweep removes.
type sweepStep struct {
	name string
	f    func(context.Context) error
}

func (q *Queue) sweep(ctx context.Context, scanBlobs bool) {
	unknown := q.sweepUnknownBlobs
	if !scanBlobs {
		unknown = func(context.Context) error { return nil }
	}
	q.sweepSteps(ctx, []sweepStep{
		{"expired monitors", q.sweepJobs},
		{"expired upload sessions", q.sweepSessions},
		{"orphaned staging", q.sweepStaging},
		{"abandoned copies", q.sweepCopies},
		{"deleted trees", q.sweepDeleted},
		{"unknown blobs", unknown},
		{"unreferenced blobs", q.sweepUnreferencedBlobs},
	})
}

// sweepSteps runs the steps in order, logging their errors.
func (q *Queue) sweepSteps(ctx context.Context, steps []sweepStep) {
	for _, step := range steps {
		if ctx.Err() != nil {
			return
		}
		if err := step.f(ctx); err != nil && ctx.Err() == nil {
			q.log.Error("jobs: sweep "+step.name, "err", err)
		}
	}
}

// sweepJobs deletes jobs that ended longer ago than the retention period.
func (q *Queue) sweepJobs(ctx context.Context) error {
	n, err := q.store.DeleteJobsFinishedBefore(ctx, time.Now().Add(-q.cfg.Retention))
	if err != nil {
		return err
	}
	if n > 0 {
		q.log.Debug("jobs: deleted expired monitors", "count", n)
	}
	return nil
}

// sweepSessions removes the staging areas and then the records of upload
// sessions that have expired, in batches until none are left. The order
// matters: a crash between the two leaves the record, and the next sweep
// finishes the job (removing a missing area is not an error). Until a
// session's record is gone, StagingInUse counts its area, so the orphan
// sweep never races a live session.
func (q *Queue) sweepSessions(ctx context.Context) error {
	const batch = 100
	for {
		expired, err := q.store.ExpiredSessions(ctx, time.Now(), batch)
		if err != nil {
			return err
		}
		for _, s := range expired {
			if s.StagingID != "" {
				if err := q.blobs.RemoveStaging(ctx, s.StagingID); err != nil {
					return fmt.Errorf("remove staging of session %s: %w", s.ID, err)
				}
			}
			if err := q.store.DeleteSession(ctx, s.ID); err != nil {
				return fmt.Errorf("delete session %s: %w", s.ID, err)
			}
		}
		if len(expired) > 0 {
			q.log.Debug("jobs: deleted expired upload sessions", "count", len(expired))
		}
		if len(expired) < batch {
			return nil
		}
	}
}

// sweepStaging removes staging areas that no job refers to and that have
// not changed for StagingGrace: left by a crash between Stage and the
// first checkpoint, or by a job whose row is gone. The grace period keeps
// areas that a job is about to record.
func (q *Queue) sweepStaging(ctx context.Context) error {
	areas, err := q.blobs.ListStaging(ctx)
	if err != nil {
		return err
	}
	inUse, err := q.store.StagingInUse(ctx)
	if err != nil {
		return err
	}
	used := make(map[string]bool, len(inUse))
	for _, id := range inUse {
		used[id] = true
	}
	cutoff := time.Now().Add(-q.cfg.StagingGrace)
	for _, a := range areas {
		if used[a.ID] || a.Modified.After(cutoff) {
			continue
		}
		if err := q.blobs.RemoveStaging(ctx, a.ID); err != nil {
			return fmt.Errorf("remove staging %s: %w", a.ID, err)
		}
		q.log.Info("jobs: removed orphaned staging area", "id", a.ID, "size", a.Size)
	}
	return nil
}

// sweepCopies removes what copies that will never appear built out of
// sight: those of jobs that ended otherwise (the copy worker removes them
// at once, unless it died first, or the job was cancelled while it
// waited) and those of synchronous copies whose process died, judged by
// StagingGrace without a step. Their blobs go with the next sweep of
// unreferenced blobs.
func (q *Queue) sweepCopies(ctx context.Context) error {
	n, err := q.store.DropAbandonedCopies(ctx, time.Now().Add(-q.cfg.StagingGrace))
	if n > 0 {
		q.log.Info("jobs: removed abandoned copies", "count", n)
	}
	return err
}

// sweepDeleted removes the rows of large folders whose deletion took them
// out of sight (after a crash, or of another node, the first sweep does
// it). Their blobs go with the sweep of unreferenced blobs that follows.
func (q *Queue) sweepDeleted(ctx context.Context) error {
	n, err := q.store.RemoveDeleted(ctx, 0)
	if n > 0 {
		q.log.Info("jobs: removed deleted folders", "count", n)
	}
	return err
}

// sweepUnknownBlobs deletes published blob files that the store has no
// record of and that are older than BlobGrace: a crash between Publish and
// the item's commit leaves them. The grace period covers commits in
// flight; a blob that a job holds for a retried commit is known. The store
// is asked about all old blobs at once (it batches the lookups).
func (q *Queue) sweepUnknownBlobs(ctx context.Context) error {
	blobs, err := q.blobs.List(ctx)
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-q.cfg.BlobGrace)
	var old []string
	size := make(map[string]int64)
	for _, b := range blobs {
		if b.Modified.Before(cutoff) {
			old = append(old, b.ID)
			size[b.ID] = b.Size
		}
	}
	if len(old) == 0 {
		return nil
	}
	unknown, err := q.store.UnknownBlobs(ctx, old)
	if err != nil {
		return err
	}
	for _, k := range unknown {
		if err := q.blobs.Delete(ctx, k); err != nil {
			return fmt.Errorf("delete blob %s: %w", k, err)
		}
		q.log.Info("jobs: deleted unknown blob", "key", k, "size", size[k])
	}
	return nil
}

// sweepUnreferencedBlobs deletes the bytes of blobs no item uses any more,
// then forgets them, in batches until none are left.
func (q *Queue) sweepUnreferencedBlobs(ctx context.Context) error {
	for {
		keys, err := q.store.UnreferencedBlobs(ctx, 100)
		if err != nil || len(keys) == 0 {
			return err
		}
		for _, k := range keys {
			if err := q.blobs.Delete(ctx, k); err != nil {
				return fmt.Errorf("delete blob %s: %w", k, err)
			}
			if err := q.store.ForgetBlob(ctx, k); err != nil {
				return fmt.Errorf("forget blob %s: %w", k, err)
			}
		}
	}
}
