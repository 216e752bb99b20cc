package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/ferrydrive/ferry"
)

// BeginFragment claims the range r of session id for a fragment about to
// be written, until the time until; see ferry.SessionStore. The check and
// the claim are one transaction holding the session's row, so two
// overlapping fragments never both pass, whichever nodes they reach.
func (s *Store) BeginFragment(ctx context.Context, id string, r ferry.Range, until time.Time) error {
	if r.Start < 0 || r.End <= r.Start {
		return ferry.Errorf(ferry.Invalid, "the fragment %d-%d is empty", r.Start, r.End)
	}
	return s.tx(ctx, func(_ *sql.Tx, t conn) error {
		us, busy, err := s.sessionBusy(ctx, t, id)
		if err != nil {
			return err
		}
		if busy {
			return errSessionBusy()
		}
		for _, x := range us.Received {
			if x.Overlaps(r) {
				return errFragmentOverlap()
			}
		}
		ts := millis(now())
		if _, err := t.exec(ctx, `DELETE FROM upload_fragments WHERE session_id = ? AND until < ?`, id, ts); err != nil {
			return fmt.Errorf("sqlstore: begin fragment: %w", err)
		}
		var n int
		err = t.row(ctx, `SELECT COUNT(*) FROM upload_fragments WHERE session_id = ? AND start_at < ? AND end_at > ?`,
			id, r.End, r.Start).Scan(&n)
		if err != nil {
			return fmt.Errorf("sqlstore: begin fragment: %w", err)
		}
		if n > 0 {
			return errFragmentOverlap()
		}
		_, err = t.exec(ctx, `INSERT INTO upload_fragments (session_id, start_at, end_at, until) VALUES (?, ?, ?, ?)`,
			id, r.Start, r.End, millis(until))
		if s.d.uniqueViolation(err) {
			return errFragmentOverlap()
		}
		if err != nil {
			return fmt.Errorf("sqlstore: begin fragment: %w", err)
		}
		return nil
	})
}

// EndFragment drops the claim of r; see ferry.SessionStore.
func (s *Store) EndFragment(ctx context.Context, id string, r ferry.Range) error {
	if _, err := s.write(ctx, `DELETE FROM upload_fragments WHERE session_id = ? AND start_at = ? AND end_at = ?`,
		id, r.Start, r.End); err != nil {
		return fmt.Errorf("sqlstore: end fragment: %w", err)
	}
	return nil
}

// BeginCommit marks session id as being committed or cancelled until the
// time until; see ferry.SessionStore.
func (s *Store) BeginCommit(ctx context.Context, id string, until time.Time) (bool, error) {
	ok := false
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		_, busy, err := s.sessionBusy(ctx, t, id)
		if err != nil || busy {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE upload_sessions SET busy_until = ? WHERE id = ?`, millis(until), id); err != nil {
			return fmt.Errorf("sqlstore: begin commit: %w", err)
		}
		ok = true
		return nil
	})
	return ok, err
}

// EndCommit clears the mark BeginCommit set; see ferry.SessionStore.
func (s *Store) EndCommit(ctx context.Context, id string) error {
	if _, err := s.write(ctx, `UPDATE upload_sessions SET busy_until = 0 WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlstore: end commit: %w", err)
	}
	return nil
}

// sessionBusy reads the live session id, holding its row, and whether a
// commit or cancel holds it.
func (s *Store) sessionBusy(ctx context.Context, t conn, id string) (*ferry.UploadSession, bool, error) {
	us, err := s.session(ctx, t, id, s.d.forUpdate())
	if err != nil {
		return nil, false, err
	}
	var until int64
	if err := t.row(ctx, `SELECT busy_until FROM upload_sessions WHERE id = ?`, id).Scan(&until); err != nil {
		return nil, false, fmt.Errorf("sqlstore: upload session: %w", err)
	}
	return us, until > millis(now()), nil
}

// SaveSessionHash records the hash state of the session's first to bytes,
// if the state stored is still that of its first from bytes; see
// ferry.SessionStore.
func (s *Store) SaveSessionHash(ctx context.Context, id string, from, to int64, state []byte) error {
	if to < from {
		return ferry.Errorf(ferry.Invalid, "a hash state cannot go back from %d to %d bytes", from, to)
	}
	_, err := s.write(ctx, `UPDATE upload_sessions SET hashed = ?, hash_state = ? WHERE id = ? AND hashed = ?`,
		to, base64.StdEncoding.EncodeToString(state), id, from)
	if err != nil {
		return fmt.Errorf("sqlstore: save session hash: %w", err)
	}
	return nil
}

// HoldSessionBlob records the published content of the complete session
// id; see ferry.SessionStore.
func (s *Store) HoldSessionBlob(ctx context.Context, id string, c ferry.Content) error {
	if err := validContent(c); err != nil {
		return err
	}
	data, err := encodeHeld(&c)
	if err != nil {
		return err
	}
	res, err := s.write(ctx, `UPDATE upload_sessions SET held = ? WHERE id = ? AND expires >= ?`, data, id, millis(now()))
	if err != nil {
		return fmt.Errorf("sqlstore: hold session blob: %w", err)
	}
	if n, err := rowsAffected(res); err != nil || n == 1 {
		return err
	}
	return errSessionNotFound()
}

// CommitSession makes the file of the complete session id with content c
// and deletes the session, in one transaction; see ferry.SessionStore.
// The session's record goes first, inside the transaction, so that the
// room the quota keeps for live sessions' declared sizes is not held
// against the session's own file.
func (s *Store) CommitSession(ctx context.Context, id string, c ferry.Content) (*ferry.Item, bool, error) {
	us, err := s.Session(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if err := validContent(c); err != nil {
		return nil, false, err
	}
	n := ferry.NewItem{
		DriveID: us.DriveID, ParentID: us.ParentID, Name: us.Name, Content: c,
		FSCreated: us.FSCreated, FSModified: us.FSModified, Description: us.Description, By: us.UserName,
	}
	conflict, drive := us.Conflict, us.DriveID
	if us.ItemID == "" {
		if conflict, drive, err = s.checkNewItem(ctx, n, us.Conflict); err != nil {
			return nil, false, err
		}
	}
	var it *ferry.Item
	var created bool
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		cur, err := s.session(ctx, t, id, s.d.forUpdate())
		if err != nil {
			return err
		}
		if !cur.Complete() {
			return ferry.Errorf(ferry.Invalid, "the upload session is not complete").WithCode("uploadSessionIncomplete")
		}
		if err := s.deleteSession(ctx, t, id); err != nil {
			return err
		}
		if cur.ItemID == "" {
			var replaced bool
			it, replaced, err = s.createItem(ctx, t, drive, n, conflict)
			created = !replaced
			return err
		}
		old, err := s.item(ctx, t, cur.ItemID)
		if ferry.KindOf(err) == ferry.NotFound {
			return ferry.Errorf(ferry.NotFound, "the file this upload session replaces no longer exists")
		}
		if err != nil {
			return err
		}
		switch {
		case old.Folder:
			return ferry.Errorf(ferry.Invalid, "%q is now a folder", old.Name)
		case !old.Matches(cur.IfMatch):
			return ferry.Errorf(ferry.Modified, "the file has changed since the upload session was created (If-Match)")
		}
		fsModified := cur.FSModified
		if fsModified.IsZero() {
			fsModified = now()
		}
		if !cur.FSCreated.IsZero() {
			if _, err := t.exec(ctx, `UPDATE items SET fs_created = ? WHERE id = ?`, millis(cur.FSCreated), string(old.ID)); err != nil {
				return fmt.Errorf("sqlstore: commit session: %w", err)
			}
		}
		it, err = s.replaceContent(ctx, t, old, c, cur.UserName, "", fsModified, cur.Description)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return it, created, nil
}

func errSessionBusy() error {
	return ferry.Errorf(ferry.Conflict, "the upload session is being committed or cancelled")
}

func errFragmentOverlap() error {
	return ferry.Errorf(ferry.InvalidRange, "Uploaded fragment overlaps with existing data.").WithCode("fragmentOverlap")
}
