package jobs

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Parking River while the queue is idle.
//
// A running River client wakes up many times a second with nothing to do:
// its job completer ticks every 50 ms whatever the load (not configurable
// in River v0.51.2), which alone costs about half a percent of a core on a
// small machine, and its elector and producers add their own timers. A
// Ferry server that imports nothing should cost nothing, so where the
// store allows it (RiverParkPoll: on SQLite, where every job is queued,
// rescued or retried through this process) the queue stops River's client
// once it has had nothing to do for Config.ParkAfter, and starts it again
// as soon as there is work:
//
//   - a job queued (Enqueue) or rescued (rescue) here pokes the parker,
//     which starts River at once; River's first fetch finds the job;
//   - a job River will retry or that snoozed comes due at a known time
//     (RiverWorkIn), and the parker starts River then;
//   - every RiverParkPoll the parker asks RiverWorkIn, the backstop for a
//     job that another process put in the database file.
//
// The gate makes parking safe against a job queued at the same moment:
// whatever makes River jobs available holds it for reading, and the parker
// holds it for writing while it checks that River has no work and stops
// the client. So a job is either seen by that check, which keeps River
// running, or queued after the stop, and its poke starts River again.
// River's client is stopped with StopAndCancel: nothing runs when it
// parks, and should a job from another process have been fetched in that
// moment, it checkpoints and is put back (verdictStop) instead of holding
// the gate, and with it every Enqueue, for as long as it runs.
type parking struct {
	gate   sync.RWMutex
	active atomic.Int32  // Work calls running
	last   atomic.Int64  // UnixNano of the last sign of work
	wake   chan struct{} // a poke; one pending is enough
	parked atomic.Bool   // River's client is stopped by the parker
}

// init readies a parking that has not been used.
func (p *parking) init() {
	p.wake = make(chan struct{}, 1)
	p.last.Store(time.Now().UnixNano())
}

// poke records work: it keeps River running a while longer, or starts it.
func (p *parking) poke() {
	p.last.Store(time.Now().UnixNano())
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// begin and end bracket a Work call.
func (p *parking) begin() {
	p.active.Add(1)
	p.last.Store(time.Now().UnixNano())
}

func (p *parking) end() {
	p.last.Store(time.Now().UnixNano())
	p.active.Add(-1)
}

// idleFor reports whether no Work call has run, and nothing has poked,
// for at least d.
func (p *parking) idleFor(d time.Duration) bool {
	return p.active.Load() == 0 && time.Since(time.Unix(0, p.last.Load())) >= d
}

// parkLoop parks River's client while the queue is idle and starts it
// again when work comes (see above), until ctx is done. River's client is
// running when it is called; it may be stopped when it returns (Run's
// final stop then does nothing).
func (q *Queue) parkLoop(ctx context.Context, poll time.Duration) {
	p := &q.park
	after := q.cfg.ParkAfter
	every := max(after/2, time.Millisecond)
	check := time.NewTicker(every)
	defer check.Stop()
	for {
		// Running: look now and then whether the queue has gone idle.
		select {
		case <-ctx.Done():
			return
		case <-check.C:
		}
		if !p.idleFor(after) {
			continue
		}
		due, ok := q.tryPark(ctx, after)
		if !ok {
			continue
		}
		// Parked: wait for work.
		if !q.parked(ctx, poll, due) {
			return
		}
		check.Reset(every)
	}
}

// tryPark stops River's client if the queue is still idle and River has
// nothing due within after. due is when River's next job is due (zero:
// none); ok reports whether the client was stopped.
func (q *Queue) tryPark(ctx context.Context, after time.Duration) (due time.Time, ok bool) {
	p := &q.park
	p.gate.Lock()
	due, ok, slow := q.parkLocked(ctx, after)
	p.gate.Unlock()
	if slow != nil {
		// River goes on stopping, and starting it before it has stopped
		// would do nothing: wait for the stop (without holding up
		// Enqueue), then take River as parked with work due at once, so
		// that the parker looks and starts it again if there is any.
		select {
		case <-slow:
		case <-ctx.Done():
		}
		due, ok = time.Now(), true
	}
	if ok {
		p.parked.Store(true)
		q.log.Debug("jobs: River parked: nothing to do", "next_due", due)
	}
	return due, ok
}

// parkLocked is tryPark with the gate held; slow is River's Stopped
// channel when the stop took too long.
func (q *Queue) parkLocked(ctx context.Context, after time.Duration) (due time.Time, ok bool, slow <-chan struct{}) {
	p := &q.park
	select {
	case <-p.wake: // what poked came before the check below, which sees it
	default:
	}
	if !p.idleFor(after) {
		return time.Time{}, false, nil
	}
	in, any, err := q.store.RiverWorkIn(ctx)
	if err != nil {
		if ctx.Err() == nil {
			q.log.Warn("jobs: could not tell whether River is idle", "err", err)
		}
		return time.Time{}, false, nil
	}
	if any && in < after {
		return time.Time{}, false, nil
	}
	if any {
		due = time.Now().Add(in)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := q.client.StopAndCancel(stopCtx); err != nil {
		q.log.Error("jobs: park River: the stop is slow; waiting for it", "err", err)
		return time.Time{}, false, q.client.Stopped()
	}
	return due, true, nil
}

// dueMargin is how long after a job's due time the parker starts River
// for it: the store computes the wait to the millisecond.
const dueMargin = 10 * time.Millisecond

// parked waits, River's client stopped, until there is work, and starts
// the client again; false once ctx is done (the client stays stopped).
// due is when River's next job is due (zero: none known).
func (q *Queue) parked(ctx context.Context, poll time.Duration, due time.Time) bool {
	p := &q.park
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		wait := poll
		if !due.IsZero() {
			// A little after: River's first fetch must find the job due.
			wait = min(wait, time.Until(due)+dueMargin)
		}
		t.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return false
		case <-p.wake:
		case <-t.C:
			in, any, err := q.store.RiverWorkIn(ctx)
			if err != nil && ctx.Err() != nil {
				return false
			}
			if err == nil && (!any || in > 0) {
				due = time.Time{}
				if any {
					due = time.Now().Add(in)
				}
				continue
			}
			// Work is due, or the store cannot tell: start River, which
			// finds out.
		}
		if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
			q.log.Error("jobs: start River again", "err", err)
			due = time.Now().Add(time.Second) // try again
			continue
		}
		p.parked.Store(false)
		p.last.Store(time.Now().UnixNano())
		q.log.Debug("jobs: River started: work is due")
		return true
	}
}
