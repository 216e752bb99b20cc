package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// listCols are jobCols of the job row j, followed by the names of the
// item the job made (r) and of a copy's source (s), for ItemName.
var listCols = func() string {
	var b strings.Builder
	for i, c := range strings.Split(jobCols, ",") {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("j." + strings.TrimSpace(c))
	}
	return b.String() + ", COALESCE(r.name, ''), COALESCE(s.name, '')"
}()

const listFrom = ` FROM ferry_jobs j
	LEFT JOIN items r ON r.id = j.resource_id
	LEFT JOIN items s ON s.id = j.source_item AND j.operation = 'ItemCopy'`

// UserJobs returns one page of the user's jobs, newest first (by created,
// then id), leaving out jobs that ended before endedAfter, and the cursor
// of the next page ("" on the last). A cursor it did not hand out is
// Invalid.
func (s *Store) UserJobs(ctx context.Context, user ferry.UserID, q ferry.JobPage, endedAfter time.Time) ([]*ferry.Job, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = ferry.DefaultJobPage
	}
	limit = min(limit, ferry.MaxJobPage)
	query := `SELECT ` + listCols + listFrom + ` WHERE j.user_id = ? AND (j.finished IS NULL OR j.finished >= ?)`
	args := []any{string(user), millis(endedAfter)}
	if q.Cursor != "" {
		created, id, err := parseJobCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		query += ` AND (j.created < ? OR (j.created = ? AND j.id < ?))`
		args = append(args, created, created, id)
	}
	query += ` ORDER BY j.created DESC, j.id DESC LIMIT ?`
	args = append(args, limit+1)
	jobs, err := s.listJobs(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	if len(jobs) <= limit {
		return jobs, "", nil
	}
	jobs = jobs[:limit]
	last := jobs[limit-1]
	return jobs, strconv.FormatInt(millis(last.Created), 10) + "~" + last.ID, nil
}

// parseJobCursor reads the cursor UserJobs hands out: the created
// milliseconds and the id of the page's last job.
func parseJobCursor(c string) (int64, string, error) {
	ms, id, ok := strings.Cut(c, "~")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", ferry.Errorf(ferry.Invalid, "the page cursor is not valid")
	}
	return n, id, nil
}

// JobChanges returns up to limit of the user's jobs changed after the mark
// (by updated, then id), in that order, leaving out jobs that ended before
// endedAfter.
func (s *Store) JobChanges(ctx context.Context, user ferry.UserID, after ferry.ChangeMark, limit int, endedAfter time.Time) ([]*ferry.Job, error) {
	if limit <= 0 {
		limit = ferry.DefaultJobPage
	}
	ms := millis(after.Updated)
	return s.listJobs(ctx, `SELECT `+listCols+listFrom+` WHERE j.user_id = ?
		AND (j.updated > ? OR (j.updated = ? AND j.id > ?)) AND (j.finished IS NULL OR j.finished >= ?)
		ORDER BY j.updated, j.id LIMIT ?`,
		string(user), ms, ms, after.ID, millis(endedAfter), min(limit, ferry.MaxJobPage))
}

func (s *Store) listJobs(ctx context.Context, query string, args ...any) ([]*ferry.Job, error) {
	rows, err := s.c.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list jobs: %w", err)
	}
	defer rows.Close()
	var out []*ferry.Job
	for rows.Next() {
		var made, source string
		j, err := scanJob(rows, &made, &source)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list jobs: %w", err)
		}
		switch {
		case made != "":
			j.ItemName = made
		case j.Name != "":
			j.ItemName = j.Name
		default:
			j.ItemName = source
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list jobs: %w", err)
	}
	return out, nil
}

// scanJob reads the jobCols of one row, followed by extra columns.
func scanJob(sc interface{ Scan(...any) error }, extra ...any) (*ferry.Job, error) {
	var j ferry.Job
	var created, updated int64
	var finished sql.NullInt64
	var mirrors string
	dest := []any{&j.ID, &j.Operation, &j.UserID, &j.UserName, &j.DriveID, &j.ParentID, &j.Name, &j.Conflict, &j.SourceURL,
		&j.ExpectSHA256, &j.SourceItem, &j.Status, &j.Bytes, &j.Total, &j.BytesPerSecond, &j.ResourceID, &j.ErrorCode,
		&j.ErrorMessage, &created, &updated, &finished, &j.RequestID, &mirrors}
	if err := sc.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	if mirrors != "" {
		j.Mirrors = strings.Split(mirrors, "\n")
	}
	j.Created, j.Updated, j.Finished = fromMillis(created), fromMillis(updated), fromNullMillis(finished)
	return &j, nil
}
