package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrydrive/ferry"
)

// lister is what the queue needs from the store to list a user's jobs;
// part of Store. endedAfter leaves out jobs that ended before it.
type lister interface {
	UserJobs(ctx context.Context, user ferry.UserID, q ferry.JobPage, endedAfter time.Time) ([]*ferry.Job, string, error)
	JobChanges(ctx context.Context, user ferry.UserID, after ferry.ChangeMark, limit int, endedAfter time.Time) ([]*ferry.Job, error)
}

// UserJobs implements ferry.JobQueue. Jobs past retention are left out, as
// Job leaves them out.
func (q *Queue) UserJobs(ctx context.Context, user ferry.UserID, p ferry.JobPage) ([]*ferry.Job, string, error) {
	js, next, err := q.store.UserJobs(ctx, user, p, time.Now().Add(-q.cfg.Retention))
	if err != nil {
		return nil, "", fmt.Errorf("jobs: list: %w", err)
	}
	return js, next, nil
}

// JobChanges implements ferry.JobQueue.
func (q *Queue) JobChanges(ctx context.Context, user ferry.UserID, after ferry.ChangeMark, limit int) ([]*ferry.Job, error) {
	js, err := q.store.JobChanges(ctx, user, after, limit, time.Now().Add(-q.cfg.Retention))
	if err != nil {
		return nil, fmt.Errorf("jobs: changes: %w", err)
	}
	return js, nil
}
