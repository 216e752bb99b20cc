package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// finalStatuses lists the final job statuses as SQL string literals.
const finalStatuses = `('completed', 'failed', 'cancelled')`

// Secret returns the named server secret, creating n random bytes on first
// use. Creation is atomic across processes sharing the database: all of
// them get the bytes of whichever created it first.
func (s *Store) Secret(ctx context.Context, name string, n int) ([]byte, error) {
	if name == "" || n <= 0 {
		return nil, ferry.Errorf(ferry.Invalid, "a secret needs a name and a positive length")
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("sqlstore: secret: %w", err)
	}
	var v []byte
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		_, err := t.exec(ctx, `INSERT INTO ferry_secrets (name, value, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			name, b, millis(now()))
		if err != nil {
			return fmt.Errorf("sqlstore: secret %s: %w", name, err)
		}
		if err := t.row(ctx, `SELECT value FROM ferry_secrets WHERE name = ?`, name).Scan(&v); err != nil {
			return fmt.Errorf("sqlstore: secret %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

const jobCols = `id, operation, user_id, user_name, drive_id, parent_id, name, conflict, source_url,
	expect_sha256, source_item, status, bytes, total, bytes_per_second, resource_id, error_code,
	error_message, created, updated, finished`

func errJobNotFound() error {
	return ferry.Errorf(ferry.NotFound, "monitor not found")
}

// InsertJob stores j and, in the same transaction, calls enqueue (River's
// InsertTx), so that a monitor never exists without its work or the other
// way round. If enqueue fails, nothing is stored and its error is returned
// wrapped. enqueue may be nil. An empty Status becomes notStarted, and zero
// Created and Updated become now. j.ID is set by the caller; a taken ID is
// Conflict.
//
// This is where the store deliberately hands a transaction to the queue:
// atomicity matters more here than keeping River out of sqlstore's
// business.
func (s *Store) InsertJob(ctx context.Context, j *ferry.Job, enqueue func(tx *sql.Tx) error) error {
	if j.ID == "" || j.UserID == "" {
		return ferry.Errorf(ferry.Invalid, "a job needs an ID and a user")
	}
	ts := now()
	if j.Status == "" {
		j.Status = ferry.StatusNotStarted
	}
	if j.Created.IsZero() {
		j.Created = ts
	}
	if j.Updated.IsZero() {
		j.Updated = ts
	}
	j.Created, j.Updated = fromMillis(millis(j.Created)), fromMillis(millis(j.Updated))
	if !j.Finished.IsZero() {
		j.Finished = fromMillis(millis(j.Finished))
	}
	return s.tx(ctx, func(tx *sql.Tx, t conn) error {
		_, err := t.exec(ctx, `INSERT INTO ferry_jobs (`+jobCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, string(j.Operation), string(j.UserID), j.UserName, string(j.DriveID), string(j.ParentID), j.Name,
			string(j.Conflict), j.SourceURL, j.ExpectSHA256, string(j.SourceItem), string(j.Status), j.Bytes, j.Total,
			j.BytesPerSecond, string(j.ResourceID), j.ErrorCode, j.ErrorMessage, millis(j.Created), millis(j.Updated),
			nullMillis(j.Finished))
		if s.d.uniqueViolation(err) {
			return ferry.Errorf(ferry.Conflict, "a job with that ID already exists")
		}
		if err != nil {
			return fmt.Errorf("sqlstore: insert job: %w", err)
		}
		if enqueue != nil {
			if err := enqueue(tx); err != nil {
				return fmt.Errorf("sqlstore: enqueue job: %w", err)
			}
		}
		return nil
	})
}

// Job returns a job by ID, or NotFound.
func (s *Store) Job(ctx context.Context, id string) (*ferry.Job, error) {
	var j ferry.Job
	var created, updated int64
	var finished sql.NullInt64
	err := s.c.row(ctx, `SELECT `+jobCols+` FROM ferry_jobs WHERE id = ?`, id).Scan(
		&j.ID, &j.Operation, &j.UserID, &j.UserName, &j.DriveID, &j.ParentID, &j.Name, &j.Conflict, &j.SourceURL,
		&j.ExpectSHA256, &j.SourceItem, &j.Status, &j.Bytes, &j.Total, &j.BytesPerSecond, &j.ResourceID, &j.ErrorCode,
		&j.ErrorMessage, &created, &updated, &finished)
	if notFound(err) {
		return nil, errJobNotFound()
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: job: %w", err)
	}
	j.Created, j.Updated, j.Finished = fromMillis(created), fromMillis(updated), fromNullMillis(finished)
	return &j, nil
}

// jobExists turns "no row changed" into NotFound when the job is missing.
func (s *Store) jobExists(ctx context.Context, c conn, id string) error {
	var n int
	if err := c.row(ctx, `SELECT count(*) FROM ferry_jobs WHERE id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("sqlstore: job: %w", err)
	}
	if n == 0 {
		return errJobNotFound()
	}
	return nil
}

// SetJobStatus moves a job to status to only if its current status is one
// of from, and reports whether it did; NotFound if the job does not exist.
// Moving to a final status also records the finish time and forgets the
// checkpoint.
func (s *Store) SetJobStatus(ctx context.Context, id string, to ferry.JobStatus, from ...ferry.JobStatus) (bool, error) {
	if len(from) == 0 {
		return false, nil
	}
	ts := millis(now())
	q := `UPDATE ferry_jobs SET status = ?, updated = ?`
	args := []any{string(to), ts}
	if to.Final() {
		q += `, finished = ?, checkpoint = NULL, staging_id = ''`
		args = append(args, ts)
	}
	q += ` WHERE id = ? AND status IN (?` + strings.Repeat(", ?", len(from)-1) + `)`
	args = append(args, id)
	for _, f := range from {
		args = append(args, string(f))
	}
	var done bool
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		res, err := t.exec(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("sqlstore: set job status: %w", err)
		}
		n, err := rowsAffected(res)
		if err != nil {
			return err
		}
		if done = n == 1; !done {
			return s.jobExists(ctx, t, id)
		}
		return nil
	})
	return done, err
}

// StartJob moves a notStarted or waiting job to inProgress if its user has
// fewer than limit jobs in progress (limit <= 0: no limit), and reports
// whether it did; NotFound if the job does not exist. Concurrent calls never
// let more than limit jobs of one user run: the count and the update happen
// under the database's write lock (SQLite) or a per-user advisory lock
// (PostgreSQL).
func (s *Store) StartJob(ctx context.Context, id string, limit int) (bool, error) {
	var started bool
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		started = false
		var user string
		var status ferry.JobStatus
		err := t.row(ctx, `SELECT user_id, status FROM ferry_jobs WHERE id = ?`, id).Scan(&user, &status)
		if notFound(err) {
			return errJobNotFound()
		}
		if err != nil {
			return fmt.Errorf("sqlstore: start job: %w", err)
		}
		if lock := s.d.lockUserSQL(); lock != "" {
			if _, err := t.exec(ctx, lock, user); err != nil {
				return fmt.Errorf("sqlstore: start job: lock: %w", err)
			}
		}
		q := `UPDATE ferry_jobs SET status = 'inProgress', started_at = ?, updated = ?
			WHERE id = ? AND status IN ('notStarted', 'waiting')`
		ts := millis(now())
		args := []any{ts, ts, id}
		if limit > 0 {
			q += ` AND (SELECT count(*) FROM ferry_jobs r WHERE r.user_id = ? AND r.status = 'inProgress') < ?`
			args = append(args, user, limit)
		}
		res, err := t.exec(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("sqlstore: start job: %w", err)
		}
		n, err := rowsAffected(res)
		if err != nil {
			return err
		}
		started = n == 1
		return nil
	})
	return started, err
}

// UpdateJobProgress records how far a job has got. A job that has already
// ended keeps its last figures; NotFound if the job does not exist.
func (s *Store) UpdateJobProgress(ctx context.Context, id string, bytes, total int64, bytesPerSecond float64) error {
	res, err := s.c.exec(ctx, `UPDATE ferry_jobs SET bytes = ?, total = ?, bytes_per_second = ?, updated = ?
		WHERE id = ? AND status NOT IN `+finalStatuses, bytes, total, bytesPerSecond, millis(now()), id)
	if err != nil {
		return fmt.Errorf("sqlstore: job progress: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if n == 0 {
		return s.jobExists(ctx, s.c, id)
	}
	return nil
}

// FinishJob ends a job with a final status, the created item (if any) and
// an error code and message (if any), and forgets its checkpoint and
// staging area. Invalid if status is not final; NotFound if the job does
// not exist.
func (s *Store) FinishJob(ctx context.Context, id string, status ferry.JobStatus, resource ferry.ItemID, code, msg string) error {
	if !status.Final() {
		return ferry.Errorf(ferry.Invalid, "%q is not a final job status", status)
	}
	ts := millis(now())
	res, err := s.c.exec(ctx, `UPDATE ferry_jobs SET status = ?, resource_id = ?, error_code = ?, error_message = ?,
		finished = ?, updated = ?, checkpoint = NULL, staging_id = '' WHERE id = ?`,
		string(status), string(resource), code, msg, ts, ts, id)
	if err != nil {
		return fmt.Errorf("sqlstore: finish job: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if n == 0 {
		return errJobNotFound()
	}
	return nil
}

// SaveJobCheckpoint records the job's staging area and its resume state;
// NotFound if the job does not exist.
func (s *Store) SaveJobCheckpoint(ctx context.Context, id, stagingID string, data []byte) error {
	res, err := s.c.exec(ctx, `UPDATE ferry_jobs SET staging_id = ?, checkpoint = ?, updated = ? WHERE id = ?`,
		stagingID, data, millis(now()), id)
	if err != nil {
		return fmt.Errorf("sqlstore: save checkpoint: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if n == 0 {
		return errJobNotFound()
	}
	return nil
}

// JobCheckpoint returns what SaveJobCheckpoint recorded ("" and nil if
// nothing); NotFound if the job does not exist.
func (s *Store) JobCheckpoint(ctx context.Context, id string) (string, []byte, error) {
	var staging string
	var data []byte
	err := s.c.row(ctx, `SELECT staging_id, checkpoint FROM ferry_jobs WHERE id = ?`, id).Scan(&staging, &data)
	if notFound(err) {
		return "", nil, errJobNotFound()
	}
	if err != nil {
		return "", nil, fmt.Errorf("sqlstore: checkpoint: %w", err)
	}
	return staging, data, nil
}

// DeleteJobsFinishedBefore removes jobs that ended before t and reports how
// many.
func (s *Store) DeleteJobsFinishedBefore(ctx context.Context, t time.Time) (int, error) {
	res, err := s.c.exec(ctx, `DELETE FROM ferry_jobs WHERE finished IS NOT NULL AND finished < ?`, millis(t))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: delete old jobs: %w", err)
	}
	n, err := rowsAffected(res)
	return int(n), err
}

// StagingInUse lists the staging areas that jobs which have not ended, and
// upload sessions not yet deleted (expired ones included: their sweep owns
// those bytes), still refer to, so that a sweep of orphaned staging areas
// spares them.
func (s *Store) StagingInUse(ctx context.Context) ([]string, error) {
	rows, err := s.c.query(ctx, `SELECT staging_id FROM ferry_jobs
		WHERE staging_id <> '' AND status NOT IN `+finalStatuses+`
		UNION SELECT staging_id FROM upload_sessions WHERE staging_id <> ''
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: staging in use: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlstore: staging in use: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: staging in use: %w", err)
	}
	return ids, nil
}
