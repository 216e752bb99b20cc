package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// River keeps its tables (river_job and its companions) in the store's
// database, beside the job monitors, so that a monitor and its queued work
// commit in one transaction (InsertJob). This file is the one place outside
// River that knows those tables: the queue asks for what River has no API
// for by name (RequeueInterruptedJobs, RescueStaleJobs), and never sees SQL
// or which engine runs it. River's jobs are matched to monitors by the
// job_id field of their args, which every Ferry job kind carries.

// River brings River's tables up to date in the store's database (a second
// call applies nothing) and returns the River driver over the store's
// connection pool, for the queue's River client. Both engines' drivers run
// on database/sql, so River's transactions are the store's *sql.Tx, which
// is what lets InsertJob hand one to River.
func (s *Store) River(ctx context.Context) (riverdriver.Driver[*sql.Tx], error) {
	var d, client riverdriver.Driver[*sql.Tx]
	if s.d.postgres {
		d = riverdatabasesql.New(s.db)
		client = d
	} else {
		sd := riversqlite.New(s.db)
		// The store wakes River's listener itself (riverwake.go).
		d, client = sd, &sqliteRiver{Driver: sd, s: s}
	}
	m, err := rivermigrate.New(d, &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("sqlstore: river migrations: %w", err)
	}
	return client, nil
}

// riverJobOf is a condition on river_job matching the River job of the
// monitor given as its one '?'.
func (d dialect) riverJobOf() string { return d.riverJobID() + ` = ?` }

// riverLastAttemptBy is a condition on river_job matching jobs whose latest
// attempt was made by the River client given as its one '?': attempted_by
// is text[] on PostgreSQL and a JSON array on SQLite, and its last element
// is the client that made the latest attempt.
func (d dialect) riverLastAttemptBy() string {
	if d.postgres {
		return `attempted_by[array_length(attempted_by, 1)] = ?`
	}
	return `json_extract(attempted_by, '$[#-1]') = ?`
}

// RequeueInterruptedJobs makes the River jobs that the River client node
// was running when it stopped available again, and drops the runners of
// their monitors (ReleaseJob), in one transaction, and reports how many it
// requeued. A crash or kill -9 leaves such jobs running in River's table;
// this way they resume within moments of the node's restart instead of
// after their heartbeat goes stale. It must run before node's River client
// starts: from then on, running jobs attempted by node are live. (River's
// own JobRetry skips running jobs.)
func (s *Store) RequeueInterruptedJobs(ctx context.Context, node string) (int, error) {
	if node == "" {
		return 0, fmt.Errorf("sqlstore: requeue interrupted jobs: no node")
	}
	where := `state = 'running' AND ` + s.d.riverLastAttemptBy()
	var n int64
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		rows, err := t.query(ctx, `SELECT COALESCE(`+s.d.riverJobID()+`, '') FROM river_job WHERE `+where, node)
		if err != nil {
			return fmt.Errorf("sqlstore: requeue interrupted jobs: %w", err)
		}
		ids, err := scanStrings(rows, "requeue interrupted jobs")
		if err != nil {
			return err
		}
		for _, id := range ids {
			if id == "" {
				continue
			}
			if _, err := t.exec(ctx, `UPDATE ferry_job_runs SET runner = '' WHERE job_id = ?`, id); err != nil {
				return fmt.Errorf("sqlstore: requeue interrupted jobs: %w", err)
			}
		}
		res, err := t.exec(ctx, `UPDATE river_job SET state = 'available' WHERE `+where, node)
		if err != nil {
			return fmt.Errorf("sqlstore: requeue interrupted jobs: %w", err)
		}
		n, err = rowsAffected(res)
		return err
	})
	if n > 0 && err == nil {
		s.wakeRiver()
	}
	return int(n), err
}

// riverJobID is the expression of river_job's monitor ID.
func (d dialect) riverJobID() string {
	if d.postgres {
		return `args->>'job_id'`
	}
	return `json_extract(args, '$.job_id')`
}

// RescueStaleJobs hands up to limit jobs whose heartbeat is older than
// before (StaleJobs: no live attempt runs them; their node died or lost the
// database) back to River: their River job, still running for that node,
// becomes available, and whichever node fetches it claims the job (its
// stale runner loses the claim, and with it the right to write the job's
// checkpoint or commit it) and resumes it from its checkpoint. Those IDs
// are returned as resumed. A stale job that River no longer has any work
// for (River gave up on it, or it never had a River job) is returned as
// orphaned and left as it is: the caller, which knows what the job holds
// outside the database, ends it. A stale job whose River job is queued or
// waiting for a retry is in neither list: River will run it.
func (s *Store) RescueStaleJobs(ctx context.Context, before time.Time, limit int) (resumed, orphaned []string, err error) {
	ids, err := s.StaleJobs(ctx, before, limit)
	if err != nil {
		return nil, nil, err
	}
	match := s.d.riverJobOf()
	for _, id := range ids {
		var requeued, live int64
		err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
			res, err := t.exec(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running' AND `+match, id)
			if err != nil {
				return err
			}
			if requeued, err = rowsAffected(res); err != nil || requeued > 0 {
				return err
			}
			return t.row(ctx, `SELECT count(*) FROM river_job
				WHERE state NOT IN ('completed', 'cancelled', 'discarded') AND `+match, id).Scan(&live)
		})
		switch {
		case err != nil:
			return resumed, orphaned, fmt.Errorf("sqlstore: rescue stale job %s: %w", id, err)
		case requeued > 0:
			resumed = append(resumed, id)
		case live == 0:
			orphaned = append(orphaned, id)
		}
	}
	if len(resumed) > 0 {
		s.wakeRiver()
	}
	return resumed, orphaned, nil
}
