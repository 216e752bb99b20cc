package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"math"
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
	error_message, created, updated, finished, request_id, mirrors`

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
// With rate > 0, the job first takes a token from its user's bucket, which
// holds at most burst tokens and refills at rate tokens per second, in the
// same transaction (see takeJobToken); an empty bucket is Throttled, with
// the whole seconds until a token is back, and nothing is stored. The
// bucket lives in the database, so the limit holds across nodes.
//
// This is where the store deliberately hands a transaction to the queue:
// atomicity matters more here than keeping River out of sqlstore's
// business.
func (s *Store) InsertJob(ctx context.Context, j *ferry.Job, rate float64, burst int, enqueue func(tx *sql.Tx) error) error {
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
	err := s.tx(ctx, func(tx *sql.Tx, t conn) error {
		if rate > 0 {
			if err := s.takeJobToken(ctx, t, string(j.UserID), rate, burst); err != nil {
				return err
			}
		}
		_, err := t.exec(ctx, `INSERT INTO ferry_jobs (`+jobCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, string(j.Operation), string(j.UserID), j.UserName, string(j.DriveID), string(j.ParentID), j.Name,
			string(j.Conflict), j.SourceURL, j.ExpectSHA256, string(j.SourceItem), string(j.Status), j.Bytes, j.Total,
			j.BytesPerSecond, string(j.ResourceID), string(j.ErrorCode), j.ErrorMessage, millis(j.Created), millis(j.Updated),
			nullMillis(j.Finished), j.RequestID, strings.Join(j.Mirrors, "\n"))
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
	if err == nil && enqueue != nil {
		s.wakeRiver()
	}
	return err
}

// takeJobToken takes one token from user's job bucket (see InsertJob), in
// the caller's transaction, or returns Throttled with the whole seconds
// until the next token. The bucket's read and write are serial per user:
// SQLite's write transactions are serial, and on PostgreSQL the user's
// advisory lock (lockUserSQL) orders them.
func (s *Store) takeJobToken(ctx context.Context, t conn, user string, rate float64, burst int) error {
	if lock := s.d.lockUserSQL(); lock != "" {
		if _, err := t.exec(ctx, lock, user); err != nil {
			return fmt.Errorf("sqlstore: job rate: lock: %w", err)
		}
	}
	ts := millis(now())
	tokens := float64(max(burst, 1))
	var left float64
	var at int64
	err := t.row(ctx, `SELECT tokens, updated FROM ferry_job_rates WHERE user_id = ?`, user).Scan(&left, &at)
	switch {
	case notFound(err):
	case err != nil:
		return fmt.Errorf("sqlstore: job rate: %w", err)
	default:
		tokens = min(tokens, left+float64(max(ts-at, 0))/1000*rate)
	}
	if tokens < 1 {
		secs := max(int(math.Ceil((1-tokens)/rate)), 1)
		return &ferry.Error{Kind: ferry.Throttled, RetryAfter: secs,
			Message: fmt.Sprintf("too many new jobs; try again in %d s", secs)}
	}
	_, err = t.exec(ctx, `INSERT INTO ferry_job_rates (user_id, tokens, updated) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated`, user, tokens-1, ts)
	if err != nil {
		return fmt.Errorf("sqlstore: job rate: %w", err)
	}
	return nil
}

// Job returns a job by ID, or NotFound.
func (s *Store) Job(ctx context.Context, id string) (*ferry.Job, error) {
	j, err := scanJob(s.c.row(ctx, `SELECT `+jobCols+` FROM ferry_jobs WHERE id = ?`, id))
	if notFound(err) {
		return nil, errJobNotFound()
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: job: %w", err)
	}
	return j, nil
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
		if to.Final() {
			return s.endRun(ctx, t, id)
		}
		return nil
	})
	return done, err
}

// endRun forgets what the run of a job that has just ended held: its
// runner and held blob, and the room a copy under way held in its drive.
// (The hidden tree of such a copy is garbage from now on: DropJobCopy.)
func (s *Store) endRun(ctx context.Context, c conn, id string) error {
	if _, err := c.exec(ctx, `DELETE FROM ferry_job_runs WHERE job_id = ?`, id); err != nil {
		return fmt.Errorf("sqlstore: end run of job %s: %w", id, err)
	}
	if _, err := c.exec(ctx, `UPDATE pending_copies SET reserved = 0 WHERE id = ? AND reserved <> 0`, id); err != nil {
		return fmt.Errorf("sqlstore: end run of job %s: %w", id, err)
	}
	return nil
}

// StartJob moves a notStarted or waiting job to inProgress if its user has
// fewer than limit uploads from URL (OpDownloadURL) in progress (limit <=
// 0: no limit), and reports whether it did; NotFound if the job does not
// exist. Only uploads from URL hold a slot: a copy is over in moments, and
// a copy left inProgress by a failure must never keep a user's imports
// queued. Concurrent calls never let more than limit jobs of one user run:
// the count and the update happen under the database's write lock (SQLite)
// or a per-user advisory lock (PostgreSQL). A started job has a fresh
// heartbeat and no runner yet (see ClaimJob).
func (s *Store) StartJob(ctx context.Context, id string, limit int) (bool, error) {
	return s.startJob(ctx, id, limit, "")
}

// StartClaimJob is StartJob that also makes runner the started job's
// runner (see ClaimJob), in the same transaction: a write saved per job.
// A job it does not start is not claimed either.
func (s *Store) StartClaimJob(ctx context.Context, id string, limit int, runner string) (bool, error) {
	if runner == "" {
		return false, ferry.Errorf(ferry.Invalid, "a claim needs a runner")
	}
	return s.startJob(ctx, id, limit, runner)
}

func (s *Store) startJob(ctx context.Context, id string, limit int, runner string) (bool, error) {
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
			q += ` AND (SELECT count(*) FROM ferry_jobs r
				WHERE r.user_id = ? AND r.status = 'inProgress' AND r.operation = ?) < ?`
			args = append(args, user, string(ferry.OpDownloadURL), limit)
		}
		res, err := t.exec(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("sqlstore: start job: %w", err)
		}
		n, err := rowsAffected(res)
		if err != nil {
			return err
		}
		if started = n == 1; !started {
			return nil
		}
		return s.beat(ctx, t, id, runner, ts)
	})
	return started, err
}

// beat records runner (which may be "") and a heartbeat at ts for the job's
// run, keeping a blob the run holds.
func (s *Store) beat(ctx context.Context, c conn, id, runner string, ts int64) error {
	_, err := c.exec(ctx, `INSERT INTO ferry_job_runs (job_id, runner, heartbeat) VALUES (?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET runner = excluded.runner, heartbeat = excluded.heartbeat`, id, runner, ts)
	if err != nil {
		return fmt.Errorf("sqlstore: heartbeat of job %s: %w", id, err)
	}
	return nil
}

// UpdateJobProgress records how far a job has got. A job that has already
// ended keeps its last figures; NotFound if the job does not exist.
func (s *Store) UpdateJobProgress(ctx context.Context, id string, bytes, total int64, bytesPerSecond float64) error {
	res, err := s.write(ctx, `UPDATE ferry_jobs SET bytes = ?, total = ?, bytes_per_second = ?, updated = ?
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
// an error code and message (if any), and forgets its checkpoint, staging
// area, runner and held blob. A job that has already ended keeps its end:
// Conflict. Invalid if status is not final; NotFound if the job does not
// exist.
func (s *Store) FinishJob(ctx context.Context, id string, status ferry.JobStatus, resource ferry.ItemID, code ferry.JobErrorCode, msg string) error {
	if !status.Final() {
		return ferry.Errorf(ferry.Invalid, "%q is not a final job status", status)
	}
	ts := millis(now())
	return s.tx(ctx, func(_ *sql.Tx, t conn) error {
		err := s.updateLiveJob(ctx, t, id, `UPDATE ferry_jobs SET status = ?, resource_id = ?, error_code = ?, error_message = ?,
			finished = ?, updated = ?, checkpoint = NULL, staging_id = '' WHERE id = ? AND status NOT IN `+finalStatuses,
			string(status), string(resource), string(code), msg, ts, ts, id)
		if err != nil {
			return fmt.Errorf("sqlstore: finish job: %w", err)
		}
		return s.endRun(ctx, t, id)
	})
}

// SaveJobCheckpoint records the job's staging area and its resume state,
// for runner only (see holdsClaim): Conflict when runner does not hold the
// job's claim any more or the job has ended, NotFound if the job does not
// exist.
func (s *Store) SaveJobCheckpoint(ctx context.Context, id, runner, stagingID string, data []byte) error {
	return s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if err := s.holdsClaim(ctx, t, id, runner); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE ferry_jobs SET staging_id = ?, checkpoint = ?, updated = ? WHERE id = ?`,
			stagingID, data, millis(now()), id); err != nil {
			return fmt.Errorf("sqlstore: save checkpoint: %w", err)
		}
		return nil
	})
}

// errClaimLost is the Conflict of a write that belongs to a job's runner
// (checkpoint, held blob, commit) made by an attempt that is not the job's
// runner any more.
func errClaimLost() error {
	return ferry.Errorf(ferry.Conflict, "another attempt runs the job now")
}

// holdsClaim fences the writes that belong to the runner of a job (its
// checkpoint, the blob it holds, its commit): inside the writing
// transaction, it locks the job's row (PostgreSQL; SQLite's write
// transactions are serial anyway), so that no ClaimJob can pass between
// the check and the write, and checks that runner still holds the job's
// claim. A runner that lost its claim (it was paused, partitioned or slow,
// its heartbeat went stale and another attempt claimed the job) gets
// Conflict and changes nothing, so it can never overwrite the live
// runner's checkpoint or commit the job a second time. Conflict too when
// the job has ended; NotFound when it does not exist; Invalid without a
// runner.
func (s *Store) holdsClaim(ctx context.Context, t conn, id, runner string) error {
	if runner == "" {
		return ferry.Errorf(ferry.Invalid, "a runner's write needs the runner")
	}
	var status ferry.JobStatus
	err := t.row(ctx, `SELECT status FROM ferry_jobs WHERE id = ?`+s.d.forUpdate(), id).Scan(&status)
	if notFound(err) {
		return errJobNotFound()
	}
	if err != nil {
		return fmt.Errorf("sqlstore: job claim: %w", err)
	}
	if status.Final() {
		return ferry.Errorf(ferry.Conflict, "the job has already ended (%s)", status)
	}
	var holder string
	err = t.row(ctx, `SELECT runner FROM ferry_job_runs WHERE job_id = ?`, id).Scan(&holder)
	if err != nil && !notFound(err) {
		return fmt.Errorf("sqlstore: job claim: %w", err)
	}
	if holder != runner {
		return errClaimLost()
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
	res, err := s.write(ctx, `DELETE FROM ferry_jobs WHERE finished IS NOT NULL AND finished < ?`, millis(t))
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
	return scanStrings(rows, "staging in use")
}

// runningStatuses lists the statuses in which an attempt runs a job.
const runningStatuses = `('inProgress', 'cancelPending')`

// ClaimJob makes runner the one attempt that runs an inProgress or
// cancelPending job, and reports whether it did. It succeeds when the job
// has no runner (just started, or released), when runner already holds it,
// or when the holder's heartbeat is older than staleBefore (its node
// died); otherwise another attempt is alive and it returns false. The
// claim writes a fresh heartbeat. NotFound if the job does not exist.
func (s *Store) ClaimJob(ctx context.Context, id, runner string, staleBefore time.Time) (bool, error) {
	if runner == "" {
		return false, ferry.Errorf(ferry.Invalid, "a claim needs a runner")
	}
	var ok bool
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		ok = false
		var status ferry.JobStatus
		err := t.row(ctx, `SELECT status FROM ferry_jobs WHERE id = ?`+s.d.forUpdate(), id).Scan(&status)
		if notFound(err) {
			return errJobNotFound()
		}
		if err != nil {
			return fmt.Errorf("sqlstore: claim job: %w", err)
		}
		if status != ferry.StatusInProgress && status != ferry.StatusCancelPending {
			return nil
		}
		var holder string
		var beat int64
		err = t.row(ctx, `SELECT runner, heartbeat FROM ferry_job_runs WHERE job_id = ?`, id).Scan(&holder, &beat)
		switch {
		case notFound(err):
		case err != nil:
			return fmt.Errorf("sqlstore: claim job: %w", err)
		case holder != "" && holder != runner && beat >= millis(staleBefore):
			return nil
		}
		ok = true
		return s.beat(ctx, t, id, runner, millis(now()))
	})
	return ok, err
}

// Heartbeat records that runner still runs the job, and reports whether it
// still holds it: false once another attempt has claimed the job or the
// job has left inProgress and cancelPending. It never fails with NotFound.
func (s *Store) Heartbeat(ctx context.Context, id, runner string) (bool, error) {
	res, err := s.write(ctx, `UPDATE ferry_job_runs SET heartbeat = ? WHERE job_id = ? AND runner = ?
		AND EXISTS (SELECT 1 FROM ferry_jobs j WHERE j.id = ? AND j.status IN `+runningStatuses+`)`,
		millis(now()), id, runner, id)
	if err != nil {
		return false, fmt.Errorf("sqlstore: heartbeat: %w", err)
	}
	n, err := rowsAffected(res)
	return n == 1, err
}

// ReleaseJob drops the job's runner, so that the next ClaimJob succeeds at
// once: for an attempt that ends while the job stays inProgress (River
// retries it), and for a node that restarts and takes back the jobs it was
// running (they cannot be running any more). With runner set, only that
// runner's claim is dropped; with "", any. Releasing a job without a run is
// not an error.
func (s *Store) ReleaseJob(ctx context.Context, id, runner string) error {
	q := `UPDATE ferry_job_runs SET runner = '' WHERE job_id = ?`
	args := []any{id}
	if runner != "" {
		q += ` AND runner = ?`
		args = append(args, runner)
	}
	if _, err := s.write(ctx, q, args...); err != nil {
		return fmt.Errorf("sqlstore: release job: %w", err)
	}
	return nil
}

// StaleJobs returns up to limit IDs of jobs in inProgress or cancelPending
// whose heartbeat (or, without one, whose last update) is older than
// before: no live attempt runs them.
func (s *Store) StaleJobs(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.c.query(ctx, `SELECT j.id FROM ferry_jobs j LEFT JOIN ferry_job_runs r ON r.job_id = j.id
		WHERE j.status IN `+runningStatuses+` AND COALESCE(r.heartbeat, j.updated) < ?
		ORDER BY j.id LIMIT ?`, millis(before), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: stale jobs: %w", err)
	}
	return scanStrings(rows, "stale jobs")
}

// scanStrings reads a one-column result and closes rows.
func scanStrings(rows *sql.Rows, what string) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return out, nil
}

// HoldJobBlob records that the job holds the published blob key, which no
// item uses yet, with the checkpoint data that describes it; the staging
// area is gone (Publish consumed it). Until the job ends, UnknownBlobs
// does not report key, so a commit retried later still finds its bytes.
// For runner only (see holdsClaim): Conflict if runner lost its claim or
// the job has ended, NotFound if it does not exist.
func (s *Store) HoldJobBlob(ctx context.Context, id, runner, key string, data []byte) error {
	if key == "" {
		return ferry.Errorf(ferry.Invalid, "a held blob needs a key")
	}
	ts := millis(now())
	return s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if err := s.holdsClaim(ctx, t, id, runner); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE ferry_jobs SET staging_id = '', checkpoint = ?, updated = ? WHERE id = ?`,
			data, ts, id); err != nil {
			return fmt.Errorf("sqlstore: hold blob: %w", err)
		}
		if _, err := t.exec(ctx, `UPDATE ferry_job_runs SET blob_key = ? WHERE job_id = ?`, key, id); err != nil {
			return fmt.Errorf("sqlstore: hold blob: %w", err)
		}
		return nil
	})
}

// UnknownBlobs returns those of keys that the store has no record of: no
// item has used them, and no job that has not ended holds them
// (HoldJobBlob). A sweep may delete their bytes once they are old enough.
// The order of keys is kept.
func (s *Store) UnknownBlobs(ctx context.Context, keys []string) ([]string, error) {
	const batch = 500
	var unknown []string
	for len(keys) > 0 {
		part := keys[:min(batch, len(keys))]
		keys = keys[len(part):]
		marks := "?" + strings.Repeat(", ?", len(part)-1)
		args := make([]any, 0, 2*len(part))
		for range 2 {
			for _, k := range part {
				args = append(args, k)
			}
		}
		rows, err := s.c.query(ctx, `SELECT key FROM blobs WHERE key IN (`+marks+`)
			UNION SELECT r.blob_key FROM ferry_job_runs r JOIN ferry_jobs j ON j.id = r.job_id
			WHERE r.blob_key IN (`+marks+`) AND j.status NOT IN `+finalStatuses, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: unknown blobs: %w", err)
		}
		known, err := scanStrings(rows, "unknown blobs")
		if err != nil {
			return nil, err
		}
		seen := make(map[string]bool, len(known))
		for _, k := range known {
			seen[k] = true
		}
		for _, k := range part {
			if !seen[k] {
				unknown = append(unknown, k)
			}
		}
	}
	return unknown, nil
}

// jobForCommit reads, inside a commit's transaction, the job row a commit
// finishes. done reports that an earlier commit already completed the job
// and it is that commit's item; a job that ended otherwise is Conflict, and
// so is a job whose claim runner does not hold (see holdsClaim).
func (s *Store) jobForCommit(ctx context.Context, t conn, id, runner string) (j *ferry.Job, it *ferry.Item, done bool, err error) {
	if runner == "" {
		return nil, nil, false, ferry.Errorf(ferry.Invalid, "a commit needs the job's runner")
	}
	j = &ferry.Job{ID: id}
	err = t.row(ctx, `SELECT status, resource_id, parent_id, name, conflict, source_item, user_name
		FROM ferry_jobs WHERE id = ?`+s.d.forUpdate(), id).Scan(
		&j.Status, &j.ResourceID, &j.ParentID, &j.Name, &j.Conflict, &j.SourceItem, &j.UserName)
	if notFound(err) {
		return nil, nil, false, errJobNotFound()
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("sqlstore: commit job: %w", err)
	}
	switch {
	case j.Status == ferry.StatusCompleted:
		it, err := s.item(ctx, t, j.ResourceID)
		if ferry.KindOf(err) == ferry.NotFound {
			// Deleted since: the job's outcome stands all the same.
			return j, &ferry.Item{ID: j.ResourceID}, true, nil
		}
		return j, it, err == nil, err
	case j.Status.Final():
		return nil, nil, false, ferry.Errorf(ferry.Conflict, "the job has already ended (%s)", j.Status)
	}
	var holder string
	err = t.row(ctx, `SELECT runner FROM ferry_job_runs WHERE job_id = ?`, id).Scan(&holder)
	if err != nil && !notFound(err) {
		return nil, nil, false, fmt.Errorf("sqlstore: commit job: %w", err)
	}
	if holder != runner {
		return nil, nil, false, errClaimLost()
	}
	return j, nil, false, nil
}

// completeJob ends the job as completed with item it, in the caller's
// transaction, showing size bytes transferred out of size.
func (s *Store) completeJob(ctx context.Context, t conn, id string, it *ferry.Item, size int64, msg string) error {
	ts := millis(now())
	_, err := t.exec(ctx, `UPDATE ferry_jobs SET status = 'completed', resource_id = ?, error_code = '',
		error_message = ?, bytes = ?, total = ?, bytes_per_second = 0, finished = ?, updated = ?,
		checkpoint = NULL, staging_id = '' WHERE id = ?`, string(it.ID), msg, size, size, ts, ts, id)
	if err != nil {
		return fmt.Errorf("sqlstore: complete job: %w", err)
	}
	return s.endRun(ctx, t, id)
}

// CommitJobItem creates the file n (as CreateItem does, with conflict
// behaviour c) and completes the job jobID with it, in one transaction, so
// that a crash leaves either both or neither. msg becomes the job's status
// description. Only runner, the attempt holding the job's claim, commits
// (see holdsClaim). It is idempotent by job: when an earlier call already
// completed the job, it changes nothing and returns that item (only its
// ID, if it has been deleted since) with already set. Conflict if the job
// ended otherwise or runner lost its claim, NotFound if it does not exist;
// else CreateItem's errors, and then nothing changes.
func (s *Store) CommitJobItem(ctx context.Context, jobID, runner string, n ferry.NewItem, c ferry.ConflictBehavior, msg string) (it *ferry.Item, already bool, err error) {
	if n.Folder {
		return nil, false, ferry.Errorf(ferry.Invalid, "a job commits files only")
	}
	c, drive, err := s.checkNewItem(ctx, n, c)
	if err != nil {
		return nil, false, err
	}
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		it, already = nil, false
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		var err error
		if _, it, already, err = s.jobForCommit(ctx, t, jobID, runner); err != nil || already {
			return err
		}
		if it, _, err = s.createItem(ctx, t, drive, n, c); err != nil {
			return err
		}
		return s.completeJob(ctx, t, jobID, it, n.Size, msg)
	})
	if err != nil {
		return nil, false, err
	}
	return it, already, nil
}

// updateLiveJob runs an UPDATE of the job id that must not touch an ended
// job (its WHERE says so): no row changed means Conflict when the job has
// ended, NotFound when it does not exist.
func (s *Store) updateLiveJob(ctx context.Context, t conn, id, query string, args ...any) error {
	res, err := t.exec(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if n == 0 {
		if err := s.jobExists(ctx, t, id); err != nil {
			return err
		}
		return ferry.Errorf(ferry.Conflict, "the job has already ended")
	}
	return nil
}
