package sqlstore

import (
	"context"
	"fmt"
)

// A RetryCounter counts transactions run again after a transient failure
// (*metrics.Metrics implements it).
type RetryCounter interface{ DBRetry() }

// CountRetries makes the store report every transaction it runs again to
// c. Call it before the store is shared.
func (s *Store) CountRetries(c RetryCounter) { s.retries = c }

// UnfinishedJobs counts the jobs that have not ended, by status, across
// every node on this database: the queue's depth.
func (s *Store) UnfinishedJobs(ctx context.Context) (map[string]int, error) {
	rows, err := s.c.query(ctx, `SELECT status, count(*) FROM ferry_jobs
		WHERE status IN ('notStarted', 'inProgress', 'waiting', 'cancelPending') GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: count jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("sqlstore: count jobs: %w", err)
		}
		out[status] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: count jobs: %w", err)
	}
	return out, nil
}
