package sqlstore

import (
	"context"
	"fmt"
)

// NoteJob records why a job that has not ended waits (its monitor's
// statusDescription while waiting); a job that has ended keeps its final
// message. NotFound if the job does not exist.
func (s *Store) NoteJob(ctx context.Context, id, note string) error {
	res, err := s.write(ctx, `UPDATE ferry_jobs SET error_message = ?, updated = ?
		WHERE id = ? AND status IN ('notStarted', 'waiting', 'inProgress')`, note, millis(now()), id)
	if err != nil {
		return fmt.Errorf("sqlstore: note job %s: %w", id, err)
	}
	if n, err := rowsAffected(res); err != nil || n == 1 {
		return err
	}
	return s.jobExists(ctx, s.c, id)
}

// ImportStaging lists the staging areas of imports that have not ended:
// bytes fetched from an origin, which can be fetched again. A node that
// starts on a full disk frees these first (an import whose staging area
// is gone starts over from its origin), never an upload session's, whose
// bytes only the client has.
func (s *Store) ImportStaging(ctx context.Context) ([]string, error) {
	rows, err := s.c.query(ctx, `SELECT staging_id FROM ferry_jobs
		WHERE staging_id <> '' AND status NOT IN `+finalStatuses+` ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: import staging: %w", err)
	}
	return scanStrings(rows, "import staging")
}
