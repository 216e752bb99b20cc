package jobs

import (
	"context"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// RetryNow makes every retryable River job of q available at once, as if
// its backoff had passed, and reports how many there were. With a long
// RetryBase, a test can hold a job in waiting for as long as it looks, then
// let it go: no time window to hit.
func RetryNow(ctx context.Context, q *Queue) (int, error) {
	// Like anything that makes River jobs available, it wakes a parked
	// River (park.go).
	q.park.gate.RLock()
	defer q.park.gate.RUnlock()
	defer q.park.poke()
	res, err := q.client.JobList(ctx, river.NewJobListParams().States(rivertype.JobStateRetryable))
	if err != nil {
		return 0, err
	}
	for _, rj := range res.Jobs {
		if _, err := q.client.JobRetry(ctx, rj.ID); err != nil {
			return 0, err
		}
	}
	return len(res.Jobs), nil
}

// Parked reports whether q has River's client stopped for being idle.
func Parked(q *Queue) bool { return q.park.parked.Load() }
