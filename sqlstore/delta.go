package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// Delta records every change to an item in the transaction that makes it
// (item_changes, see migration 00008), numbered by a per-drive sequence.
// A delta token is a position in that sequence. Reading the changes after a
// token freezes the answer at the drive's current number (the horizon) in
// delta_pages, so that all its pages show one consistent picture; the next
// token is the horizon.

// Change kinds, as stored in item_changes.kind.
const (
	changeCreated = 1
	changeUpdated = 2
	changeMoved   = 3
	changeDeleted = 4
)

// deltaSessionTTL is how long an unfinished delta listing is kept.
const deltaSessionTTL = 24 * time.Hour

// changeSeq returns the change sequence number of this transaction in the
// drive, taking the next one on the first change. The UPDATE holds the
// drive's row until commit (on PostgreSQL; SQLite's writers are serial),
// so no transaction can commit a smaller number after a larger one became
// visible: a reader that sees number N sees every change up to N.
func (s *Store) changeSeq(ctx context.Context, c conn, drive ferry.DriveID) (int64, error) {
	if c.tx != nil {
		if seq, ok := c.tx.seqs[drive]; ok {
			return seq, nil
		}
	}
	var seq int64
	err := c.row(ctx, `UPDATE drives SET delta_seq = delta_seq + 1 WHERE id = ? RETURNING delta_seq`, string(drive)).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: change sequence of %s: %w", drive, err)
	}
	if c.tx != nil {
		if c.tx.seqs == nil {
			c.tx.seqs = map[ferry.DriveID]int64{}
		}
		c.tx.seqs[drive] = seq
	}
	return seq, nil
}

// mergeChange is the ON CONFLICT clause for an item changed twice in one
// transaction: a creation stays a creation unless the item is deleted too,
// a stronger kind wins otherwise, and the first "before" (chain, place)
// is kept, which is where the item was before the transaction.
const mergeChange = ` ON CONFLICT (drive_id, seq, item_id) DO UPDATE SET
	kind = CASE WHEN item_changes.kind = 1 AND excluded.kind < 4 THEN 1
		WHEN excluded.kind > item_changes.kind THEN excluded.kind ELSE item_changes.kind END,
	parent_id = CASE WHEN item_changes.chain = '' THEN excluded.parent_id ELSE item_changes.parent_id END,
	name = CASE WHEN item_changes.chain = '' THEN excluded.name ELSE item_changes.name END,
	folder = CASE WHEN item_changes.chain = '' THEN excluded.folder ELSE item_changes.folder END,
	path = CASE WHEN item_changes.chain = '' THEN excluded.path ELSE item_changes.path END,
	chain = CASE WHEN item_changes.chain = '' THEN excluded.chain ELSE item_changes.chain END`

// recordChange records that the item it was created or changed (kind
// changeCreated or changeUpdated) in the caller's transaction.
func (s *Store) recordChange(ctx context.Context, c conn, it *ferry.Item, kind int) error {
	seq, err := s.changeSeq(ctx, c, it.DriveID)
	if err != nil {
		return err
	}
	_, err = c.exec(ctx, `INSERT INTO item_changes (drive_id, seq, item_id, kind, at) VALUES (?, ?, ?, ?, ?)`+mergeChange,
		string(it.DriveID), seq, string(it.ID), kind, millis(now()))
	if err != nil {
		return fmt.Errorf("sqlstore: record change of %s: %w", it.ID, err)
	}
	return nil
}

// recordMove records that it, as it still is, is about to move to another
// folder: where it was goes with the change.
func (s *Store) recordMove(ctx context.Context, c conn, it *ferry.Item) error {
	_, _, err := s.recordLeave(ctx, c, it, changeMoved)
	return err
}

// recordLeave records that it, as it still is, is about to leave its place
// (kind changeMoved or changeDeleted), with where it was, and returns the
// chain and names of its parent (see lineage).
func (s *Store) recordLeave(ctx context.Context, c conn, it *ferry.Item, kind int) (string, []string, error) {
	chain, names, err := s.lineage(ctx, c, it.ParentID)
	if err != nil {
		return "", nil, err
	}
	seq, err := s.changeSeq(ctx, c, it.DriveID)
	if err != nil {
		return "", nil, err
	}
	_, err = c.exec(ctx, `INSERT INTO item_changes (drive_id, seq, item_id, kind, chain, parent_id, name, folder, path, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`+mergeChange,
		string(it.DriveID), seq, string(it.ID), kind, chain, string(it.ParentID), it.Name, it.Folder,
		strings.Join(names, "/"), millis(now()))
	if err != nil {
		return "", nil, fmt.Errorf("sqlstore: record change of %s: %w", it.ID, err)
	}
	return chain, names, nil
}

// recordDeletes records the deletion of it and everything below it, each
// with where it was; it runs before the rows go.
func (s *Store) recordDeletes(ctx context.Context, c conn, it *ferry.Item) error {
	chain, names, err := s.lineage(ctx, c, it.ParentID)
	if err != nil {
		return err
	}
	seq, err := s.changeSeq(ctx, c, it.DriveID)
	if err != nil {
		return err
	}
	// The chain of a child is its parent's chain and the parent; its path
	// is the parent's path and the parent's name.
	_, err = c.exec(ctx, `WITH RECURSIVE sub(id, parent_id, name, folder, chain, path) AS (
			SELECT id, parent_id, name, folder, CAST(? AS TEXT), CAST(? AS TEXT) FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.parent_id, i.name, i.folder, `+s.d.defaultCollation(`sub.chain || sub.id || '/'`)+`,
				CASE WHEN sub.path = '' THEN sub.name ELSE sub.path || '/' || sub.name END
			FROM items i JOIN sub ON i.parent_id = sub.id
		)
		INSERT INTO item_changes (drive_id, seq, item_id, kind, chain, parent_id, name, folder, path, at)
		SELECT CAST(? AS TEXT), CAST(? AS BIGINT), id, CAST(? AS INTEGER), chain, parent_id, name, folder, path, CAST(? AS BIGINT)
		FROM sub WHERE true`+mergeChange,
		chain, strings.Join(names, "/"), string(it.ID), string(it.DriveID), seq, changeDeleted, millis(now()))
	if err != nil {
		return fmt.Errorf("sqlstore: record deletion of %s: %w", it.ID, err)
	}
	return nil
}

// lineage returns the chain (/id/…/id/, root first) of the item id and its
// ancestors, and the names of the path from the root down to id (nil for
// the root), read in the caller's transaction.
func (s *Store) lineage(ctx context.Context, c conn, id ferry.ItemID) (string, []string, error) {
	rows, err := c.query(ctx, `WITH RECURSIVE up(id, parent_id, name, depth) AS (
			SELECT id, parent_id, name, 0 FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.parent_id, i.name, up.depth + 1 FROM items i JOIN up ON i.id = up.parent_id
		)
		SELECT id, name, parent_id IS NULL FROM up ORDER BY depth DESC`, string(id))
	if err != nil {
		return "", nil, fmt.Errorf("sqlstore: lineage of %s: %w", id, err)
	}
	defer rows.Close()
	var chain strings.Builder
	chain.WriteByte('/')
	var names []string
	for rows.Next() {
		var aid, name string
		var root bool
		if err := rows.Scan(&aid, &name, &root); err != nil {
			return "", nil, fmt.Errorf("sqlstore: lineage of %s: %w", id, err)
		}
		chain.WriteString(aid)
		chain.WriteByte('/')
		if !root {
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return "", nil, fmt.Errorf("sqlstore: lineage of %s: %w", id, err)
	}
	return chain.String(), names, nil
}

// A deltaToken is a position in a drive's changes, for one scope.
type deltaToken struct {
	scope  ferry.ItemID
	seq    int64
	issued time.Time
}

func (t deltaToken) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte("t1|" + string(t.scope) + "|" +
		strconv.FormatInt(t.seq, 10) + "|" + strconv.FormatInt(millis(t.issued), 10)))
}

func errResync(msg string) error {
	return ferry.Errorf(ferry.Gone, "%s; start again without a token", msg).WithCode("resyncRequired")
}

func parseDeltaToken(s string) (deltaToken, error) {
	bad := errResync("the delta token is not valid")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return deltaToken{}, bad
	}
	p := strings.Split(string(b), "|")
	if len(p) != 4 || p[0] != "t1" || p[1] == "" {
		return deltaToken{}, bad
	}
	seq, err1 := strconv.ParseInt(p[2], 10, 64)
	ms, err2 := strconv.ParseInt(p[3], 10, 64)
	if err1 != nil || err2 != nil || seq < 0 {
		return deltaToken{}, bad
	}
	return deltaToken{scope: ferry.ItemID(p[1]), seq: seq, issued: fromMillis(ms)}, nil
}

// A deltaCursor is where the next page of a delta listing starts.
type deltaCursor struct {
	session string
	phase   int
	depth   int
	item    string
}

func (c deltaCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte("c1|" + c.session + "|" + strconv.Itoa(c.phase) + "|" +
		strconv.Itoa(c.depth) + "|" + c.item))
}

func parseDeltaCursor(s string) (deltaCursor, error) {
	bad := errResync("the delta page token is not valid")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return deltaCursor{}, bad
	}
	p := strings.Split(string(b), "|")
	if len(p) != 5 || p[0] != "c1" || p[1] == "" || p[4] == "" {
		return deltaCursor{}, bad
	}
	phase, err1 := strconv.Atoi(p[2])
	depth, err2 := strconv.Atoi(p[3])
	if err1 != nil || err2 != nil {
		return deltaCursor{}, bad
	}
	return deltaCursor{session: p[1], phase: phase, depth: depth, item: p[4]}, nil
}

// Delta returns one page of the changes below the folder scope; see
// ferry.ItemStore.
func (s *Store) Delta(ctx context.Context, scope ferry.ItemID, q ferry.DeltaQuery) (*ferry.DeltaPage, error) {
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return nil, err
	}
	top, err := s.Item(ctx, scope)
	if err != nil {
		return nil, err
	}
	if !top.Folder {
		return nil, ferry.Errorf(ferry.Invalid, "%q is a file; delta works on folders", top.Name)
	}
	if q.Cursor != "" {
		cur, err := parseDeltaCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		var page *ferry.DeltaPage
		err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
			var drive, sscope string
			var horizon int64
			err := t.row(ctx, `SELECT drive_id, scope, horizon FROM delta_sessions WHERE id = ?`, cur.session).Scan(&drive, &sscope, &horizon)
			if notFound(err) {
				return errResync("the delta listing has expired")
			}
			if err != nil {
				return fmt.Errorf("sqlstore: delta session: %w", err)
			}
			if ferry.DriveID(drive) != top.DriveID || ferry.ItemID(sscope) != scope {
				return errResync("the delta page token belongs to another folder")
			}
			page, err = s.deltaPage(ctx, t, top, horizon, cur, limit)
			return err
		})
		if err != nil {
			return nil, err
		}
		return page, nil
	}

	var tok deltaToken
	incremental := q.Token != ""
	if incremental && q.Token != ferry.LatestToken {
		if tok, err = parseDeltaToken(q.Token); err != nil {
			return nil, err
		}
		if tok.scope != scope {
			return nil, errResync("the delta token belongs to another folder")
		}
		if !q.Oldest.IsZero() && tok.issued.Before(q.Oldest) {
			return nil, errResync("the delta token has expired")
		}
	}
	var page *ferry.DeltaPage
	err = s.snapshotTx(ctx, func(_ *sql.Tx, t conn) error {
		var horizon, floor int64
		err := t.row(ctx, `SELECT delta_seq, delta_floor FROM drives WHERE id = ?`, string(top.DriveID)).Scan(&horizon, &floor)
		if err != nil {
			return fmt.Errorf("sqlstore: delta position: %w", err)
		}
		if q.Token == ferry.LatestToken {
			page = &ferry.DeltaPage{Token: deltaToken{scope: scope, seq: horizon, issued: now()}.String()}
			return nil
		}
		if incremental && (tok.seq < floor || tok.seq > horizon) {
			return errResync("the delta token has expired")
		}
		session := ferry.NewID("", 16)
		if _, err := t.exec(ctx, `INSERT INTO delta_sessions (id, drive_id, scope, horizon, created) VALUES (?, ?, ?, ?, ?)`,
			session, string(top.DriveID), string(scope), horizon, millis(now())); err != nil {
			return fmt.Errorf("sqlstore: delta session: %w", err)
		}
		if incremental {
			err = s.collectChanges(ctx, t, session, top, tok.seq, horizon)
		} else {
			err = s.collectAll(ctx, t, session, top)
		}
		if err != nil {
			return err
		}
		page, err = s.deltaPage(ctx, t, top, horizon, deltaCursor{session: session, phase: -1}, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// pageCols are the columns of delta_pages that insertPageSQL fills, in the
// order of itemCols.
const pageCols = `session, item_id, phase, depth, deleted, parent_path, drive_id, parent_id, name, folder, size,
	mime_type, qxh, sha1, sha256, blob_key, version, content_version, created, modified, fs_created, fs_modified,
	description, created_by, modified_by, child_count`

// pageItemCols selects an items row, aliased i, for pageCols after the
// first six.
const pageItemCols = `i.drive_id, i.parent_id, i.name, i.folder, i.size, i.mime_type, i.qxh, i.sha1, i.sha256,
	i.blob_key, i.version, i.content_version, i.created, i.modified, i.fs_created, i.fs_modified, i.description,
	i.created_by, i.modified_by, (SELECT count(*) FROM items ch WHERE ch.parent_id = i.id)`

// collectAll freezes the whole subtree of top, top included, as the
// listing session: parents before children.
func (s *Store) collectAll(ctx context.Context, t conn, session string, top *ferry.Item) error {
	_, names, err := s.lineage(ctx, t, top.ID)
	if err != nil {
		return err
	}
	ppath := ""
	if len(names) > 0 {
		ppath = strings.Join(names[:len(names)-1], "/")
	}
	// ppath is the path of an item's parent; a child's is its parent's
	// path and name, except below the root, whose name is not in paths.
	_, err = t.exec(ctx, `WITH RECURSIVE sub(id, name, root, depth, ppath) AS (
			SELECT id, name, parent_id IS NULL, 0, CAST(? AS TEXT) FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.name, false, sub.depth + 1,
				CASE WHEN sub.root THEN '' WHEN sub.ppath = '' THEN sub.name ELSE sub.ppath || '/' || sub.name END
			FROM items i JOIN sub ON i.parent_id = sub.id
		)
		INSERT INTO delta_pages (`+pageCols+`)
		SELECT CAST(? AS TEXT), i.id, 1, sub.depth, false, sub.ppath, `+pageItemCols+`
		FROM sub JOIN items i ON i.id = sub.id`, ppath, string(top.ID), session)
	if err != nil {
		return fmt.Errorf("sqlstore: delta of %s: %w", top.ID, err)
	}
	return nil
}

// collectChanges freezes, as the listing session, what changed below top
// after the sequence number from, up to horizon:
//
//   - every changed item now in the subtree, as it is now (phase 1, parents
//     before children);
//   - for a folder that came into the subtree by a move (it was elsewhere
//     at from, or nowhere: a copy that appeared, see publishCopy), its
//     whole subtree, which the client has never seen;
//   - every changed item that was in the subtree at from and no longer is
//     (deleted, or moved out), once, as deleted, where the client last
//     knew it (phase 0); below a large deleted folder, whether or not its
//     deletion is recorded yet (see remove.go).
//
// An item created after from and gone again is not reported. Where an
// item was at from is the "before" of its first move or deletion after
// from; an item with neither was where it is, unless a folder above it
// moved, and then that folder's entry speaks for its subtree.
func (s *Store) collectChanges(ctx context.Context, t conn, session string, top *ferry.Item, from, horizon int64) error {
	drive := string(top.DriveID)
	inside := "%/" + string(top.ID) + "/%"
	// The walk up from each changed item to the root counts its ancestors
	// (depth), gathers its parent's path, and notes whether it passed top.
	_, err := t.exec(ctx, `WITH RECURSIVE ch(item_id) AS (
			SELECT DISTINCT item_id FROM item_changes WHERE drive_id = ? AND seq > ? AND seq <= ?
		), up(start, cur, depth, ppath, inside) AS (
			SELECT i.id, i.parent_id, 0, CAST('' AS TEXT), i.id = ? FROM items i JOIN ch ON ch.item_id = i.id
			UNION ALL
			SELECT up.start, p.parent_id, up.depth + 1,
				CASE WHEN p.parent_id IS NULL THEN up.ppath WHEN up.ppath = '' THEN p.name ELSE p.name || '/' || up.ppath END,
				up.inside OR p.id = ?
			FROM items p JOIN up ON p.id = up.cur
		)
		INSERT INTO delta_pages (`+pageCols+`)
		SELECT CAST(? AS TEXT), i.id, 1, up.depth, false, up.ppath, `+pageItemCols+`
		FROM up JOIN items i ON i.id = up.start WHERE up.cur IS NULL AND up.inside`,
		drive, from, horizon, string(top.ID), string(top.ID), session)
	if err != nil {
		return fmt.Errorf("sqlstore: delta of %s: %w", top.ID, err)
	}
	// Folders that moved in bring their subtrees; rows already there
	// (the folder itself, changed items below it) stay as they are.
	// Into the root, only a copy that appeared moves in (from nowhere:
	// its chain is "/", see publishCopy); its items were never
	// recorded one by one.
	_, err = t.exec(ctx, `WITH RECURSIVE mv(id, name, depth, ppath) AS (
			SELECT dp.item_id, dp.name, dp.depth, dp.parent_path FROM delta_pages dp
			WHERE dp.session = ? AND dp.folder AND dp.item_id <> ?
			AND NOT EXISTS (SELECT 1 FROM item_changes c WHERE c.drive_id = ? AND c.item_id = dp.item_id
				AND c.seq > ? AND c.seq <= ? AND c.kind = 1)
			AND (SELECT c.chain FROM item_changes c WHERE c.drive_id = ? AND c.item_id = dp.item_id
				AND c.seq > ? AND c.seq <= ? AND c.kind >= 3 ORDER BY c.seq LIMIT 1) NOT LIKE ?
		), sub(id, name, depth, ppath) AS (
			SELECT id, name, depth, ppath FROM mv
			UNION ALL
			SELECT i.id, i.name, sub.depth + 1, CASE WHEN sub.ppath = '' THEN sub.name ELSE sub.ppath || '/' || sub.name END
			FROM items i JOIN sub ON i.parent_id = sub.id
		)
		INSERT INTO delta_pages (`+pageCols+`)
		SELECT CAST(? AS TEXT), i.id, 1, sub.depth, false, sub.ppath, `+pageItemCols+`
		FROM sub JOIN items i ON i.id = sub.id WHERE true
		ON CONFLICT (session, item_id) DO NOTHING`,
		session, string(top.ID), drive, from, horizon, drive, from, horizon, inside, session)
	if err != nil {
		return fmt.Errorf("sqlstore: delta of %s: %w", top.ID, err)
	}
	_, err = t.exec(ctx, `INSERT INTO delta_pages (session, item_id, phase, depth, deleted, parent_path, drive_id,
			parent_id, name, folder)
		SELECT CAST(? AS TEXT), c.item_id, 0, 0, true, c.path, c.drive_id, c.parent_id, c.name, c.folder
		FROM item_changes c
		WHERE c.drive_id = ? AND c.seq > ? AND c.seq <= ? AND c.kind >= 3 AND c.chain LIKE ?
		AND c.seq = (SELECT min(c2.seq) FROM item_changes c2 WHERE c2.drive_id = c.drive_id
			AND c2.item_id = c.item_id AND c2.seq > ? AND c2.seq <= ? AND c2.kind >= 3)
		AND NOT EXISTS (SELECT 1 FROM item_changes c3 WHERE c3.drive_id = c.drive_id AND c3.item_id = c.item_id
			AND c3.seq > ? AND c3.seq <= ? AND c3.kind = 1)
		AND NOT EXISTS (SELECT 1 FROM delta_pages dp WHERE dp.session = ? AND dp.item_id = c.item_id)`,
		session, drive, from, horizon, inside, from, horizon, from, horizon, session)
	if err != nil {
		return fmt.Errorf("sqlstore: delta of %s: %w", top.ID, err)
	}
	// The items below a large deleted folder whose rows are still being
	// removed (remove.go) have no deletions recorded yet: they are read
	// from its hidden tree, as recordDeletes would have recorded them with
	// the folder's change number, and under the same rules (an earlier
	// move in the range speaks for the item; one created in it is left
	// out). Those already removed were recorded as they went.
	_, err = t.exec(ctx, `WITH RECURSIVE gone(id, parent_id, name, folder, chain, path) AS (
			SELECT i.id, i.parent_id, i.name, i.folder, r.chain, r.path
			FROM removals r JOIN items i ON i.parent_id = r.top_id
			WHERE r.drive_id = ? AND r.seq > ? AND r.seq <= ? AND r.chain LIKE ?
			UNION ALL
			SELECT i.id, i.parent_id, i.name, i.folder, `+s.d.defaultCollation(`g.chain || g.id || '/'`)+`,
				CASE WHEN g.path = '' THEN g.name ELSE g.path || '/' || g.name END
			FROM items i JOIN gone g ON i.parent_id = g.id
		)
		INSERT INTO delta_pages (session, item_id, phase, depth, deleted, parent_path, drive_id, parent_id, name, folder)
		SELECT CAST(? AS TEXT), g.id, 0, 0, true, g.path, CAST(? AS TEXT), g.parent_id, g.name, g.folder FROM gone g
		WHERE NOT EXISTS (SELECT 1 FROM item_changes c WHERE c.drive_id = ? AND c.item_id = g.id
			AND c.seq > ? AND c.seq <= ? AND (c.kind = 1 OR c.kind >= 3))
		AND NOT EXISTS (SELECT 1 FROM delta_pages dp WHERE dp.session = ? AND dp.item_id = g.id)`,
		drive, from, horizon, inside, session, drive, drive, from, horizon, session)
	if err != nil {
		return fmt.Errorf("sqlstore: delta of %s: %w", top.ID, err)
	}
	return nil
}

// deltaPage reads the page of the listing session after the cursor. The
// last page ends the session and carries the next token.
func (s *Store) deltaPage(ctx context.Context, t conn, top *ferry.Item, horizon int64, cur deltaCursor, limit int) (*ferry.DeltaPage, error) {
	rows, err := t.query(ctx, `SELECT p.phase, p.depth, p.deleted, p.parent_path,
			p.item_id, p.drive_id, COALESCE(p.parent_id, ''), p.name, p.folder, p.size, p.mime_type,
			p.qxh, p.sha1, p.sha256, COALESCE(p.blob_key, ''), p.version, p.content_version,
			p.created, p.modified, p.fs_created, p.fs_modified, p.description, p.created_by, p.modified_by,
			p.child_count
		FROM delta_pages p WHERE p.session = ? AND (p.phase, p.depth, p.item_id) > (?, ?, ?)
		ORDER BY p.phase, p.depth, p.item_id LIMIT ?`, cur.session, cur.phase, cur.depth, cur.item, limit+1)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: delta page: %w", err)
	}
	defer rows.Close()
	page := &ferry.DeltaPage{Changes: []ferry.Change{}}
	last := cur
	for rows.Next() {
		if len(page.Changes) == limit {
			page.Next = last.String()
			break
		}
		var ch ferry.Change
		var ppath string
		var phase, depth int
		var it ferry.Item
		var created, modified, fsCreated, fsModified int64
		err := rows.Scan(&phase, &depth, &ch.Deleted, &ppath,
			&it.ID, &it.DriveID, &it.ParentID, &it.Name, &it.Folder, &it.Size, &it.MimeType,
			&it.Hashes.QuickXor, &it.Hashes.SHA1, &it.Hashes.SHA256, &it.BlobKey, &it.Version, &it.ContentVersion,
			&created, &modified, &fsCreated, &fsModified, &it.Description, &it.CreatedBy, &it.ModifiedBy,
			&it.ChildCount)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: delta page: %w", err)
		}
		if !ch.Deleted {
			it.Created, it.Modified = fromMillis(created), fromMillis(modified)
			it.FSCreated, it.FSModified = fromMillis(fsCreated), fromMillis(fsModified)
		}
		if ppath != "" {
			ch.ParentPath = strings.Split(ppath, "/")
		}
		ch.Item = &it
		page.Changes = append(page.Changes, ch)
		last = deltaCursor{session: cur.session, phase: phase, depth: depth, item: string(it.ID)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: delta page: %w", err)
	}
	rows.Close()
	if page.Next != "" {
		return page, nil
	}
	if err := s.endDeltaSession(ctx, t, cur.session); err != nil {
		return nil, err
	}
	page.Token = deltaToken{scope: top.ID, seq: horizon, issued: now()}.String()
	return page, nil
}

func (s *Store) endDeltaSession(ctx context.Context, t conn, session string) error {
	if _, err := t.exec(ctx, `DELETE FROM delta_pages WHERE session = ?`, session); err != nil {
		return fmt.Errorf("sqlstore: end delta listing: %w", err)
	}
	if _, err := t.exec(ctx, `DELETE FROM delta_sessions WHERE id = ?`, session); err != nil {
		return fmt.Errorf("sqlstore: end delta listing: %w", err)
	}
	return nil
}

// PruneDelta forgets the changes recorded before the given time, so that
// tokens from before it answer Gone, and delta listings left unfinished
// for a day.
func (s *Store) PruneDelta(ctx context.Context, before time.Time) error {
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		b := millis(before)
		if _, err := t.exec(ctx, `UPDATE drives SET delta_floor = (SELECT max(c.seq) FROM item_changes c
				WHERE c.drive_id = drives.id AND c.at < ?)
			WHERE EXISTS (SELECT 1 FROM item_changes c WHERE c.drive_id = drives.id AND c.at < ?)`, b, b); err != nil {
			return err
		}
		_, err := t.exec(ctx, `DELETE FROM item_changes WHERE at < ?`, b)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: prune changes: %w", err)
	}
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		old := millis(now().Add(-deltaSessionTTL))
		if _, err := t.exec(ctx, `DELETE FROM delta_pages WHERE session IN (SELECT id FROM delta_sessions WHERE created < ?)`, old); err != nil {
			return err
		}
		_, err := t.exec(ctx, `DELETE FROM delta_sessions WHERE created < ?`, old)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: prune delta listings: %w", err)
	}
	return nil
}
