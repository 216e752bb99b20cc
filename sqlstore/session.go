package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

var _ ferry.SessionStore = (*Store)(nil)

const sessionCols = `id, user_id, user_name, drive_id, parent_id, name, item_id, conflict, if_match, description,
	fs_created, fs_modified, defer_commit, size, staging_id, received, expires, created, hashed, hash_state, held`

// errSessionNotFound is the answer for a session that never existed, was
// deleted or has expired: clients cannot tell these apart, and need not.
func errSessionNotFound() error {
	return ferry.Errorf(ferry.NotFound, "the upload session does not exist or has expired").WithCode("uploadSessionNotFound")
}

// CreateSession stores a new upload session; see ferry.SessionStore. The ID,
// StagingID and Expires must be set (else Invalid), and a taken ID is
// Conflict. A zero Created becomes now. The times in s are rounded to what
// the store keeps (UTC, whole milliseconds), so that s equals what Session
// later returns.
func (s *Store) CreateSession(ctx context.Context, us *ferry.UploadSession, limit int) error {
	if us.ID == "" || us.StagingID == "" || us.Expires.IsZero() {
		return ferry.Errorf(ferry.Invalid, "an upload session needs an ID, a staging area and an expiry")
	}
	if us.Size < -1 {
		return ferry.Errorf(ferry.Invalid, "an upload session's size must be -1 (unknown) or more")
	}
	received, err := normalRanges(us.Received, us.Size)
	if err != nil {
		return err
	}
	if us.Created.IsZero() {
		us.Created = now()
	}
	us.Received = received
	us.Created, us.Expires = fromMillis(millis(us.Created)), fromMillis(millis(us.Expires))
	us.FSCreated, us.FSModified = roundNull(us.FSCreated), roundNull(us.FSModified)
	held, err := encodeHeld(us.Held)
	if err != nil {
		return err
	}
	// The count and the insert are one transaction holding a lock on the
	// drive's sessions (SQLite: the write lock), so simultaneous creations
	// on any nodes are counted one after the other.
	return s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if limit > 0 {
			if q := s.d.lockSessionsSQL(); q != "" {
				if _, err := t.exec(ctx, q, string(us.DriveID)); err != nil {
					return fmt.Errorf("sqlstore: lock upload sessions: %w", err)
				}
			}
			var n int
			err := t.row(ctx, `SELECT COUNT(*) FROM upload_sessions WHERE drive_id = ? AND expires >= ?`,
				string(us.DriveID), millis(now())).Scan(&n)
			if err != nil {
				return fmt.Errorf("sqlstore: count upload sessions: %w", err)
			}
			if n >= limit {
				return &ferry.Error{Kind: ferry.Throttled, RetryAfter: sessionRetryAfter,
					Message: fmt.Sprintf("the drive has %d upload sessions in progress, the most it may have; finish or cancel some", n)}
			}
		}
		_, err := t.exec(ctx, `INSERT INTO upload_sessions (`+sessionCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			us.ID, string(us.UserID), us.UserName, string(us.DriveID), string(us.ParentID), us.Name, string(us.ItemID),
			string(us.Conflict), us.IfMatch, us.Description, nullMillis(us.FSCreated), nullMillis(us.FSModified),
			us.DeferCommit, us.Size, us.StagingID, formatRanges(us.Received), millis(us.Expires), millis(us.Created),
			us.Hashed, base64.StdEncoding.EncodeToString(us.HashState), held)
		if s.d.uniqueViolation(err) {
			return ferry.Errorf(ferry.Conflict, "an upload session with that ID already exists")
		}
		if err != nil {
			return fmt.Errorf("sqlstore: create upload session: %w", err)
		}
		return nil
	})
}

// sessionRetryAfter is the Retry-After, in seconds, of a refusal for too
// many live sessions: they end when committed, cancelled or expired.
const sessionRetryAfter = 60

// encodeHeld renders a session's held content as its column keeps it.
func encodeHeld(c *ferry.Content) (string, error) {
	if c == nil {
		return "", nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sqlstore: upload session content: %w", err)
	}
	return string(b), nil
}

// Session returns a live upload session; see ferry.SessionStore. A session
// whose expiry is before now is NotFound even while its row waits for the
// sweep.
func (s *Store) Session(ctx context.Context, id string) (*ferry.UploadSession, error) {
	return s.session(ctx, s.c, id, "")
}

// session reads a live session; lock is appended to the query.
func (s *Store) session(ctx context.Context, c conn, id, lock string) (*ferry.UploadSession, error) {
	us, err := scanSession(c.row(ctx, `SELECT `+sessionCols+` FROM upload_sessions WHERE id = ?`+lock, id))
	if notFound(err) {
		return nil, errSessionNotFound()
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: upload session: %w", err)
	}
	if us.Expires.Before(now()) {
		return nil, errSessionNotFound()
	}
	return us, nil
}

// AddFragment records a staged fragment; see ferry.SessionStore. The
// session's row is read, checked and written back in one transaction that
// holds the row (PostgreSQL: FOR UPDATE) or the database's write lock
// (SQLite), so two fragments of one session never both pass the overlap
// check against the same old state. Besides the contract's errors, a
// range that is empty or does not lie within [0, total) is Invalid.
func (s *Store) AddFragment(ctx context.Context, id string, r ferry.Range, total int64, expires time.Time) (*ferry.UploadSession, error) {
	if r.Start < 0 || r.End <= r.Start || r.End > total {
		return nil, ferry.Errorf(ferry.Invalid, "the fragment %d-%d does not lie within a file of %d bytes", r.Start, r.End, total)
	}
	var out *ferry.UploadSession
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		us, err := s.session(ctx, t, id, s.d.forUpdate())
		if err != nil {
			return err
		}
		known := us.Size
		if known < 0 && len(us.Received) > 0 && us.Received[len(us.Received)-1].End > total {
			known = us.Received[len(us.Received)-1].End // bytes already stored lie beyond the new total
		}
		if known >= 0 && known != total {
			return ferry.Errorf(ferry.Invalid, "the fragment gives a total of %d bytes, but the upload is %d bytes long", total, known).
				WithCode("fragmentLengthMismatch")
		}
		received, ok := ferry.AddRange(us.Received, r)
		if !ok {
			return errFragmentOverlap()
		}
		us.Size, us.Received, us.Expires = total, received, fromMillis(millis(expires))
		_, err = t.exec(ctx, `UPDATE upload_sessions SET size = ?, received = ?, expires = ? WHERE id = ?`,
			us.Size, formatRanges(us.Received), millis(us.Expires), id)
		if err == nil {
			_, err = t.exec(ctx, `DELETE FROM upload_fragments WHERE session_id = ? AND start_at = ? AND end_at = ?`, id, r.Start, r.End)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: add fragment: %w", err)
		}
		out = us
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSession removes an upload session's record; see
// ferry.SessionStore. The caller frees the staging area.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return s.tx(ctx, func(_ *sql.Tx, t conn) error { return s.deleteSession(ctx, t, id) })
}

// deleteSession removes a session's record and its fragment claims.
func (s *Store) deleteSession(ctx context.Context, t conn, id string) error {
	if _, err := t.exec(ctx, `DELETE FROM upload_fragments WHERE session_id = ?`, id); err != nil {
		return fmt.Errorf("sqlstore: delete upload session: %w", err)
	}
	if _, err := t.exec(ctx, `DELETE FROM upload_sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlstore: delete upload session: %w", err)
	}
	return nil
}

// SessionUsage reports the bytes the drive's live upload sessions hold or
// have declared, and how many there are, with the room copies under way
// hold in the drive (pending_copies) in the bytes; see
// ferry.SessionStore. A session's received ranges are text, so the bytes
// are totalled here rather than in SQL; a drive has few live sessions
// (the API caps them).
func (s *Store) SessionUsage(ctx context.Context, drive ferry.DriveID) (int64, int, error) {
	var bytes int64
	err := s.c.row(ctx, `SELECT COALESCE(SUM(reserved), 0) FROM pending_copies WHERE drive_id = ?`, string(drive)).Scan(&bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlstore: session usage: copies: %w", err)
	}
	rows, err := s.c.query(ctx, `SELECT id, size, received FROM upload_sessions WHERE drive_id = ? AND expires >= ?`,
		string(drive), millis(now()))
	if err != nil {
		return 0, 0, fmt.Errorf("sqlstore: session usage: %w", err)
	}
	defer rows.Close()
	var count int
	for rows.Next() {
		var id, received string
		var size int64
		if err := rows.Scan(&id, &size, &received); err != nil {
			return 0, 0, fmt.Errorf("sqlstore: session usage: %w", err)
		}
		count++
		if size >= 0 {
			bytes += size
			continue
		}
		list, err := parseRanges(received)
		if err != nil {
			return 0, 0, fmt.Errorf("sqlstore: session usage: session %s: %w", id, err)
		}
		bytes += (&ferry.UploadSession{Received: list}).ReceivedBytes()
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("sqlstore: session usage: %w", err)
	}
	return bytes, count, nil
}

// ExpiredSessions returns up to limit sessions whose expiry is before t,
// the longest expired first; see ferry.SessionStore. A limit of 0 or less
// gives none.
func (s *Store) ExpiredSessions(ctx context.Context, t time.Time, limit int) ([]*ferry.UploadSession, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.c.query(ctx, `SELECT `+sessionCols+` FROM upload_sessions WHERE expires < ?
		ORDER BY expires, id LIMIT ?`, millis(t), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: expired upload sessions: %w", err)
	}
	defer rows.Close()
	var out []*ferry.UploadSession
	for rows.Next() {
		us, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: expired upload sessions: %w", err)
		}
		out = append(out, us)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: expired upload sessions: %w", err)
	}
	return out, nil
}

// scanSession reads one row of sessionCols.
func scanSession(r interface{ Scan(...any) error }) (*ferry.UploadSession, error) {
	var us ferry.UploadSession
	var fsCreated, fsModified sql.NullInt64
	var received, hashState, held string
	var expires, created int64
	err := r.Scan(&us.ID, &us.UserID, &us.UserName, &us.DriveID, &us.ParentID, &us.Name, &us.ItemID, &us.Conflict,
		&us.IfMatch, &us.Description, &fsCreated, &fsModified, &us.DeferCommit, &us.Size, &us.StagingID, &received,
		&expires, &created, &us.Hashed, &hashState, &held)
	if err != nil {
		return nil, err
	}
	if hashState != "" {
		if us.HashState, err = base64.StdEncoding.DecodeString(hashState); err != nil {
			return nil, fmt.Errorf("session %s: hash state: %w", us.ID, err)
		}
	}
	if held != "" {
		us.Held = new(ferry.Content)
		if err := json.Unmarshal([]byte(held), us.Held); err != nil {
			return nil, fmt.Errorf("session %s: held content: %w", us.ID, err)
		}
	}
	if us.Received, err = parseRanges(received); err != nil {
		return nil, fmt.Errorf("session %s: %w", us.ID, err)
	}
	us.FSCreated, us.FSModified = fromNullMillis(fsCreated), fromNullMillis(fsModified)
	us.Expires, us.Created = fromMillis(expires), fromMillis(created)
	return &us, nil
}

// roundNull rounds t as the store keeps it; the zero time stays zero.
func roundNull(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return fromMillis(millis(t))
}

// normalRanges checks ranges a caller gives for a new session and returns
// them sorted and merged: each must be non-empty, start at 0 or later, end
// within size (when known) and not overlap another.
func normalRanges(list []ferry.Range, size int64) ([]ferry.Range, error) {
	var out []ferry.Range
	for _, r := range list {
		if r.Start < 0 || r.End <= r.Start || (size >= 0 && r.End > size) {
			return nil, ferry.Errorf(ferry.Invalid, "the received range %d-%d is not valid", r.Start, r.End)
		}
		var ok bool
		if out, ok = ferry.AddRange(out, r); !ok {
			return nil, ferry.Errorf(ferry.Invalid, "the received ranges overlap")
		}
	}
	return out, nil
}

// formatRanges renders sorted, merged half-open ranges as the received
// column holds them: "start-end" pairs joined by commas.
func formatRanges(list []ferry.Range) string {
	var b strings.Builder
	for i, r := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(r.Start, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(r.End, 10))
	}
	return b.String()
}

// parseRanges reads what formatRanges wrote, and rejects anything else:
// a malformed, empty, overlapping or unsorted range means the row was
// damaged, and trusting it could commit a file with holes.
func parseRanges(s string) ([]ferry.Range, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]ferry.Range, 0, len(parts))
	var last int64
	for i, p := range parts {
		a, b, ok := strings.Cut(p, "-")
		start, err1 := strconv.ParseInt(a, 10, 64)
		end, err2 := strconv.ParseInt(b, 10, 64)
		// Adjacent ranges are always merged, so each starts after the
		// previous one's end.
		if !ok || err1 != nil || err2 != nil || start < 0 || end <= start || (i > 0 && start <= last) {
			return nil, errors.New("damaged received ranges " + strconv.Quote(s))
		}
		out = append(out, ferry.Range{Start: start, End: end})
		last = end
	}
	return out, nil
}
