package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// itemCols selects an item row, aliased i, in scanItem's order. The child
// count is only ever non-zero for folders.
const itemCols = itemRowCols + `,
	(SELECT count(*) FROM items ch WHERE ch.parent_id = i.id)`

// uncountedCols is itemCols with the child count left at 0, for the
// lookups that only check an item (a parent's kind, drive and ID) and
// never show it: counting a folder's children takes a step per child, so
// a folder of many files would make every file created in it slower.
const uncountedCols = itemRowCols + `, 0`

const itemRowCols = `i.id, i.drive_id, COALESCE(i.parent_id, ''), i.name, i.folder, i.size, i.mime_type,
	i.qxh, i.sha1, i.sha256, COALESCE(i.blob_key, ''), i.version, i.content_version,
	i.created, i.modified, i.fs_created, i.fs_modified, i.description, i.created_by, i.modified_by`

type scanner interface{ Scan(dest ...any) error }

// scanItem reads the columns of itemCols, and then into extra those the
// query selects after them.
func scanItem(r scanner, extra ...any) (*ferry.Item, error) {
	var it ferry.Item
	var created, modified, fsCreated, fsModified int64
	err := r.Scan(append([]any{&it.ID, &it.DriveID, &it.ParentID, &it.Name, &it.Folder, &it.Size, &it.MimeType,
		&it.Hashes.QuickXor, &it.Hashes.SHA1, &it.Hashes.SHA256, &it.BlobKey, &it.Version, &it.ContentVersion,
		&created, &modified, &fsCreated, &fsModified, &it.Description, &it.CreatedBy, &it.ModifiedBy,
		&it.ChildCount}, extra...)...)
	if err != nil {
		return nil, err
	}
	it.Created, it.Modified = fromMillis(created), fromMillis(modified)
	it.FSCreated, it.FSModified = fromMillis(fsCreated), fromMillis(fsModified)
	return &it, nil
}

func errItemNotFound(id ferry.ItemID) error {
	return ferry.Errorf(ferry.NotFound, "item %s not found", id)
}

func errModified() error {
	return ferry.Errorf(ferry.Modified, "the item has changed since the given eTag")
}

func errQuota() error {
	return ferry.Errorf(ferry.QuotaExceeded, "the drive does not have enough space left").WithCode("quotaLimitReached")
}

func errNameTaken(name string) error {
	return ferry.Errorf(ferry.NameConflict, "an item named %q already exists", name)
}

// errOtherKind refuses to let "replace" put a file in a folder's place or a
// folder in a file's: one name clash must never wipe a tree (clients such
// as rclone and the SDKs replace by default).
func errOtherKind(old *ferry.Item) error {
	if old.Folder {
		return ferry.Errorf(ferry.NameConflict, "a folder named %q already exists; replace only replaces a file with a file", old.Name)
	}
	return ferry.Errorf(ferry.NameConflict, "a file named %q already exists; replace only replaces a folder with a folder", old.Name)
}

// nullable stores "" as NULL, for parent_id and blob_key.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Item returns the item with the given ID, or NotFound.
func (s *Store) Item(ctx context.Context, id ferry.ItemID) (*ferry.Item, error) {
	return s.item(ctx, s.c, id)
}

// item reads the item id in c. An item of a deleted folder's tree whose
// rows are still being removed (remove.go) is NotFound: whether it may be
// one costs an index probe, and only in a drive with such a tree a walk up.
func (s *Store) item(ctx context.Context, c conn, id ferry.ItemID) (*ferry.Item, error) {
	return s.itemWith(ctx, c, id, itemCols)
}

// uncounted is item without the child count (see uncountedCols).
func (s *Store) uncounted(ctx context.Context, c conn, id ferry.ItemID) (*ferry.Item, error) {
	return s.itemWith(ctx, c, id, uncountedCols)
}

func (s *Store) itemWith(ctx context.Context, c conn, id ferry.ItemID, cols string) (*ferry.Item, error) {
	var removing bool
	it, err := scanItem(c.row(ctx, `SELECT `+cols+`, EXISTS (SELECT 1 FROM removals r WHERE r.drive_id = i.drive_id)
		FROM items i WHERE i.id = ?`, string(id)), &removing)
	if notFound(err) {
		return nil, errItemNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: item %s: %w", id, err)
	}
	if removing {
		gone, err := s.inRemoval(ctx, c, id)
		if err != nil {
			return nil, err
		}
		if gone {
			return nil, errItemNotFound(id)
		}
	}
	return it, nil
}

// child returns the child of parent whose name matches key, or nil.
func (s *Store) child(ctx context.Context, c conn, parent ferry.ItemID, key string) (*ferry.Item, error) {
	return s.childWith(ctx, c, parent, key, itemCols)
}

func (s *Store) childWith(ctx context.Context, c conn, parent ferry.ItemID, key, cols string) (*ferry.Item, error) {
	it, err := scanItem(c.row(ctx, `SELECT `+cols+` FROM items i WHERE i.parent_id = ? AND i.name_key = ?`, string(parent), key))
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: child of %s: %w", parent, err)
	}
	return it, nil
}

// ItemByPath resolves names below the folder base, ignoring case. The
// folders on the way are read without their child counts; only the item
// found has its own.
func (s *Store) ItemByPath(ctx context.Context, base ferry.ItemID, names []string) (*ferry.Item, error) {
	if len(names) == 0 {
		return s.Item(ctx, base)
	}
	it, err := s.uncounted(ctx, s.c, base)
	if err != nil {
		return nil, err
	}
	for i, name := range names {
		if !it.Folder {
			return nil, ferry.Errorf(ferry.NotFound, "%q is a file, not a folder", it.Name)
		}
		cols := uncountedCols
		if i == len(names)-1 {
			cols = itemCols
		}
		next, err := s.childWith(ctx, s.c, it.ID, ferry.NameKey(name), cols)
		if err != nil {
			return nil, err
		}
		if next == nil {
			return nil, ferry.Errorf(ferry.NotFound, "no item named %q in %q", name, it.Name)
		}
		it = next
	}
	return it, nil
}

// Path returns the names from the drive's root down to id.
func (s *Store) Path(ctx context.Context, id ferry.ItemID) ([]string, error) {
	rows, err := s.c.query(ctx, `
		WITH RECURSIVE up(id, parent_id, name, depth) AS (
			SELECT id, parent_id, name, 0 FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.parent_id, i.name, up.depth + 1 FROM items i JOIN up ON i.id = up.parent_id
		)
		SELECT name, parent_id IS NULL, EXISTS (SELECT 1 FROM removals r WHERE r.top_id = up.id)
		FROM up ORDER BY depth DESC`, string(id))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: path of %s: %w", id, err)
	}
	defer rows.Close()
	var names []string
	found := false
	for rows.Next() {
		var name string
		var root, removing bool
		if err := rows.Scan(&name, &root, &removing); err != nil {
			return nil, fmt.Errorf("sqlstore: path of %s: %w", id, err)
		}
		if removing {
			return nil, errItemNotFound(id) // deleted (remove.go)
		}
		found = true
		if !root {
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: path of %s: %w", id, err)
	}
	if !found {
		return nil, errItemNotFound(id)
	}
	return names, nil
}

// orderColumns maps ListQuery.OrderBy to the column it sorts on and the
// letter that stands for it in cursors.
var orderColumns = map[string]struct {
	col    string
	letter byte
}{
	"name":                 {"name_key", 'n'},
	"size":                 {"size", 's'},
	"lastModifiedDateTime": {"modified", 'm'},
}

// A cursor is the sort value and ID of the last item of a page; the next
// page starts after it. Encoded, it is base64url of
// <order letter><a|d><value>\x00<id>, where value is the name key or a
// decimal number. Names cannot hold \x00, so the split is unambiguous.

func encodeCursor(letter byte, desc bool, it *ferry.Item) string {
	dir := byte('a')
	if desc {
		dir = 'd'
	}
	var v string
	switch letter {
	case 'n':
		v = ferry.NameKey(it.Name)
	case 's':
		v = strconv.FormatInt(it.Size, 10)
	case 'm':
		v = strconv.FormatInt(millis(it.Modified), 10)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(string([]byte{letter, dir}) + v + "\x00" + string(it.ID)))
}

func decodeCursor(cur string, letter byte, desc bool) (value any, id string, err error) {
	bad := ferry.Errorf(ferry.Invalid, "the paging token is not valid for this listing")
	raw, err := base64.RawURLEncoding.DecodeString(cur)
	if err != nil || len(raw) < 3 {
		return nil, "", bad
	}
	dir := byte('a')
	if desc {
		dir = 'd'
	}
	if raw[0] != letter || raw[1] != dir {
		return nil, "", bad
	}
	v, id, ok := strings.Cut(string(raw[2:]), "\x00")
	if !ok || id == "" {
		return nil, "", bad
	}
	if letter == 'n' {
		return v, id, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, "", bad
	}
	return n, id, nil
}

// Children returns one page of a folder's children. Paging is by key set on
// (sort value, id), never by offset, so inserts and deletes between pages
// neither repeat nor skip the items that stay.
func (s *Store) Children(ctx context.Context, parent ferry.ItemID, q ferry.ListQuery) ([]*ferry.Item, string, error) {
	order := q.OrderBy
	if order == "" {
		order = "name"
	}
	oc, ok := orderColumns[order]
	if !ok {
		return nil, "", ferry.Errorf(ferry.Invalid, "cannot order by %q (use name, size or lastModifiedDateTime)", q.OrderBy)
	}
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return nil, "", err
	}
	where := `i.parent_id = ?`
	args := []any{string(parent)}
	cmp, dir := ">", "ASC"
	if q.Desc {
		cmp, dir = "<", "DESC"
	}
	if q.Cursor != "" {
		v, id, err := decodeCursor(q.Cursor, oc.letter, q.Desc)
		if err != nil {
			return nil, "", err
		}
		where += fmt.Sprintf(` AND (i.%s, i.id) %s (?, ?)`, oc.col, cmp)
		args = append(args, v, id)
	}
	p, err := s.Item(ctx, parent)
	if err != nil {
		return nil, "", err
	}
	if !p.Folder {
		return nil, "", nil
	}
	args = append(args, limit+1)
	rows, err := s.c.query(ctx, fmt.Sprintf(`SELECT %s FROM items i WHERE %s ORDER BY i.%s %s, i.id %s LIMIT ?`,
		itemCols, where, oc.col, dir, dir), args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlstore: children of %s: %w", parent, err)
	}
	defer rows.Close()
	var items []*ferry.Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, "", fmt.Errorf("sqlstore: children of %s: %w", parent, err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlstore: children of %s: %w", parent, err)
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	return items, encodeCursor(oc.letter, q.Desc, items[limit-1]), nil
}

// pageLimit checks a page size: 1..1000, where 0 means 200.
func pageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return 200, nil
	case limit < 0 || limit > 1000:
		return 0, ferry.Errorf(ferry.Invalid, "the page size must be between 1 and 1000")
	}
	return limit, nil
}

// driveOf returns the drive an item belongs to. An item never changes
// drives, so the answer may be used to lock the drive before the item is
// read again inside the transaction.
func (s *Store) driveOf(ctx context.Context, id ferry.ItemID) (ferry.DriveID, error) {
	var d ferry.DriveID
	err := s.c.row(ctx, `SELECT drive_id FROM items WHERE id = ?`, string(id)).Scan(&d)
	if notFound(err) {
		return "", errItemNotFound(id)
	}
	if err != nil {
		return "", fmt.Errorf("sqlstore: drive of %s: %w", id, err)
	}
	return d, nil
}

// lockDrives serialises this transaction with every other one that changes
// the same drives (see dialect.lockDriveSQL). Drives are locked in ID order
// so that two copies between the same drives cannot deadlock.
func (s *Store) lockDrives(ctx context.Context, c conn, ids ...ferry.DriveID) error {
	q := s.d.lockDriveSQL()
	if q == "" {
		return nil
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i, id := range ids {
		if i > 0 && id == ids[i-1] {
			continue
		}
		if _, err := c.exec(ctx, q, string(id)); err != nil {
			return fmt.Errorf("sqlstore: lock drive %s: %w", id, err)
		}
	}
	return nil
}

// addUsed changes a drive's used bytes by delta. Growth fails with
// QuotaExceeded when it would take the drive past its quota, counting as
// taken what heldSQL counts: a session that was told its file fits keeps
// its room (a session's own commit deletes its record first), and so does
// a copy under way (its last step deletes its record first). Shrinking
// always succeeds.
func (s *Store) addUsed(ctx context.Context, c conn, drive ferry.DriveID, delta int64) error {
	if delta == 0 {
		return nil
	}
	ts := millis(now())
	q := `UPDATE drives SET used = used + ?, modified = ? WHERE id = ?`
	args := []any{delta, ts, string(drive)}
	if delta > 0 {
		q += ` AND used + ? + ` + heldSQL + ` <= quota`
		args = append(args, delta, string(drive), ts, string(drive))
	}
	res, err := c.exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlstore: drive %s usage: %w", drive, err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if n == 0 {
		return errQuota()
	}
	return nil
}

// Room returns how many bytes may still be added to the drive: its quota
// less the bytes its files use and those held for its live upload sessions
// and copies under way (heldSQL), as a commit counts them; never below 0.
// NotFound if there is no such drive.
func (s *Store) Room(ctx context.Context, drive ferry.DriveID) (int64, error) {
	var room int64
	err := s.c.row(ctx, `SELECT quota - used - `+heldSQL+` FROM drives WHERE id = ?`,
		string(drive), millis(now()), string(drive), string(drive)).Scan(&room)
	if notFound(err) {
		return 0, ferry.Errorf(ferry.NotFound, "drive not found")
	}
	if err != nil {
		return 0, fmt.Errorf("sqlstore: room in drive %s: %w", drive, err)
	}
	return max(room, 0), nil
}

// heldSQL is the bytes of a drive that are taken although not used yet:
// the sizes declared by its live upload sessions and the room held by its
// copies under way (pending_copies). Its '?' are the drive ID, now (Unix
// milliseconds) and the drive ID again.
const heldSQL = `((SELECT COALESCE(SUM(size), 0) FROM upload_sessions
		WHERE drive_id = ? AND size > 0 AND expires >= ?)
	+ (SELECT COALESCE(SUM(reserved), 0) FROM pending_copies WHERE drive_id = ?))`

// addSize changes the size of the folder id and of every folder above it
// by delta. A folder's size is the total size of the files in its subtree,
// kept in step by every change to file bytes below it, so reads never sum a
// subtree. The caller holds the drive lock (lockDrives): no move can change
// the ancestor chain while it is walked.
func (s *Store) addSize(ctx context.Context, c conn, id ferry.ItemID, delta int64) error {
	if delta == 0 || id == "" {
		return nil
	}
	_, err := c.exec(ctx, `WITH RECURSIVE up(id, parent_id) AS (
			SELECT id, parent_id FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.parent_id FROM items i JOIN up ON i.id = up.parent_id
		)
		UPDATE items SET size = size + ? WHERE id IN (SELECT id FROM up)`, string(id), delta)
	if err != nil {
		return fmt.Errorf("sqlstore: size of %s: %w", id, err)
	}
	return nil
}

// charge adds delta file bytes below the folder parent of the drive: to the
// drive's usage, where growth may fail with QuotaExceeded, and to the size
// of parent and its ancestors. The root's size thus always equals the
// drive's used bytes.
func (s *Store) charge(ctx context.Context, c conn, drive ferry.DriveID, parent ferry.ItemID, delta int64) error {
	if err := s.addUsed(ctx, c, drive, delta); err != nil {
		return err
	}
	return s.addSize(ctx, c, parent, delta)
}

// refBlob records one more item using the blob key.
func (s *Store) refBlob(ctx context.Context, c conn, key string, size int64) error {
	_, err := c.exec(ctx, `INSERT INTO blobs (key, size, refs) VALUES (?, ?, 1)
		ON CONFLICT (key) DO UPDATE SET refs = blobs.refs + 1`, key, size)
	if err != nil {
		return fmt.Errorf("sqlstore: reference blob: %w", err)
	}
	return nil
}

// unrefBlob records n fewer items using the blob key.
func (s *Store) unrefBlob(ctx context.Context, c conn, key string, n int64) error {
	if _, err := c.exec(ctx, `UPDATE blobs SET refs = refs - ? WHERE key = ?`, n, key); err != nil {
		return fmt.Errorf("sqlstore: release blob: %w", err)
	}
	return nil
}

// insertItem stores a new item and takes a reference to its blob, and
// records its creation for delta; charge says whether to charge its size
// to the drive and its ancestors here (see Store.charge). A new folder's
// size must be that of the files below it that are inserted later.
func (s *Store) insertItem(ctx context.Context, c conn, it *ferry.Item, charge bool) error {
	if err := s.insertRow(ctx, c, it); err != nil {
		return err
	}
	if err := s.recordChange(ctx, c, it, changeCreated); err != nil {
		return err
	}
	if !charge {
		return nil
	}
	return s.charge(ctx, c, it.DriveID, it.ParentID, it.Size)
}

// insertRow stores a new item and takes a reference to its blob, and does
// nothing else: no change is recorded and nothing is charged. A copy under
// way builds its hidden tree with it (see copy.go).
func (s *Store) insertRow(ctx context.Context, c conn, it *ferry.Item) error {
	if it.BlobKey != "" {
		if err := s.refBlob(ctx, c, it.BlobKey, it.Size); err != nil {
			return err
		}
	}
	_, err := c.exec(ctx, `INSERT INTO items (id, drive_id, parent_id, name, name_key, folder, size, mime_type,
		qxh, sha1, sha256, blob_key, version, content_version, created, modified, fs_created, fs_modified,
		description, created_by, modified_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		string(it.ID), string(it.DriveID), nullable(string(it.ParentID)), it.Name, ferry.NameKey(it.Name), it.Folder,
		it.Size, it.MimeType, it.Hashes.QuickXor, it.Hashes.SHA1, it.Hashes.SHA256, nullable(it.BlobKey),
		it.Version, it.ContentVersion, millis(it.Created), millis(it.Modified), millis(it.FSCreated),
		millis(it.FSModified), it.Description, it.CreatedBy, it.ModifiedBy)
	if s.d.uniqueViolation(err) {
		// The drive lock makes this unreachable; keep the answer right anyway.
		return errNameTaken(it.Name)
	}
	if err != nil {
		return fmt.Errorf("sqlstore: insert item: %w", err)
	}
	return nil
}

// subtreeCTE names the subtree rooted at the first '?' as sub(id, depth).
const subtreeCTE = `WITH RECURSIVE sub(id, depth) AS (
	SELECT id, 0 FROM items WHERE id = ?
	UNION ALL
	SELECT i.id, sub.depth + 1 FROM items i JOIN sub ON i.parent_id = sub.id
)`

// deleteTree deletes it and everything below it, releasing blob references,
// drive usage and the sizes of the folders above it. Only files count: a
// folder's size already is the sum of its files. A folder of more items
// than the batch is only taken out of sight here, and its rows are removed
// later (detachTree, see remove.go).
func (s *Store) deleteTree(ctx context.Context, c conn, it *ferry.Item) error {
	if it.Folder {
		// Counting stops at one more than the batch, on both engines.
		var n int
		err := c.row(ctx, subtreeCTE+` SELECT count(*) FROM (SELECT id FROM sub LIMIT ?) big`,
			string(it.ID), s.treeBatch()+1).Scan(&n)
		if err != nil {
			return fmt.Errorf("sqlstore: delete %s: %w", it.ID, err)
		}
		if n > s.treeBatch() {
			return s.detachTree(ctx, c, it)
		}
	}
	rows, err := c.query(ctx, subtreeCTE+`
		SELECT i.blob_key, count(*), CAST(sum(i.size) AS BIGINT) FROM items i JOIN sub ON sub.id = i.id
		WHERE i.blob_key IS NOT NULL GROUP BY i.blob_key`, string(it.ID))
	if err != nil {
		return fmt.Errorf("sqlstore: delete %s: %w", it.ID, err)
	}
	type use struct {
		key string
		n   int64
	}
	var uses []use
	var total int64
	for rows.Next() {
		var u use
		var size int64
		if err := rows.Scan(&u.key, &u.n, &size); err != nil {
			rows.Close()
			return fmt.Errorf("sqlstore: delete %s: %w", it.ID, err)
		}
		uses = append(uses, u)
		total += size
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlstore: delete %s: %w", it.ID, err)
	}
	if err := s.recordDeletes(ctx, c, it); err != nil {
		return err
	}
	// One statement: foreign keys are checked at its end, when the whole
	// subtree is gone.
	if _, err := c.exec(ctx, subtreeCTE+` DELETE FROM items WHERE id IN (SELECT id FROM sub)`, string(it.ID)); err != nil {
		return fmt.Errorf("sqlstore: delete %s: %w", it.ID, err)
	}
	for _, u := range uses {
		if err := s.unrefBlob(ctx, c, u.key, u.n); err != nil {
			return err
		}
	}
	return s.charge(ctx, c, it.DriveID, it.ParentID, -total)
}

// contains reports whether the item anc is id itself or one of its
// ancestors.
func (s *Store) contains(ctx context.Context, c conn, anc, id ferry.ItemID) (bool, error) {
	var n int
	err := c.row(ctx, `
		WITH RECURSIVE up(id, parent_id) AS (
			SELECT id, parent_id FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.parent_id FROM items i JOIN up ON i.id = up.parent_id
		)
		SELECT count(*) FROM up WHERE id = ?`, string(id), string(anc)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlstore: ancestry of %s: %w", id, err)
	}
	return n > 0, nil
}

// maxRenameTries bounds the search for a free "name N".
const maxRenameTries = 10000

// freeName finds the first RenameCandidate of name that no child of parent
// uses.
func (s *Store) freeName(ctx context.Context, c conn, parent ferry.ItemID, name string, folder bool) (string, error) {
	for n := 1; n <= maxRenameTries; n++ {
		cand := ferry.RenameCandidate(name, folder, n)
		if err := ferry.ValidateName(cand, folder); err != nil {
			return "", ferry.Errorf(ferry.NameConflict, "an item named %q already exists and no other name is free", name)
		}
		other, err := s.child(ctx, c, parent, ferry.NameKey(cand))
		if err != nil {
			return "", err
		}
		if other == nil {
			return cand, nil
		}
	}
	return "", ferry.Errorf(ferry.NameConflict, "an item named %q already exists and no other name is free", name)
}

// conflictOrFail defaults an empty behaviour to fail and rejects unknown
// ones.
func conflictOrFail(c ferry.ConflictBehavior) (ferry.ConflictBehavior, error) {
	switch c {
	case "":
		return ferry.ConflictFail, nil
	case ferry.ConflictFail, ferry.ConflictRename, ferry.ConflictReplace:
		return c, nil
	}
	return "", ferry.Errorf(ferry.Invalid, "conflictBehavior must be fail, replace or rename, not %q", c)
}

func validContent(ct ferry.Content) error {
	switch {
	case ct.BlobKey == "":
		return ferry.Errorf(ferry.Invalid, "a file needs content")
	case ct.Size < 0:
		return ferry.Errorf(ferry.Invalid, "a file size cannot be negative")
	}
	return nil
}

// CreateItem creates a folder or a file; see ferry.ItemStore. An empty c
// means fail.
func (s *Store) CreateItem(ctx context.Context, n ferry.NewItem, c ferry.ConflictBehavior) (*ferry.Item, bool, error) {
	c, drive, err := s.checkNewItem(ctx, n, c)
	if err != nil {
		return nil, false, err
	}
	var it *ferry.Item
	var replaced bool
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		var err error
		it, replaced, err = s.createItem(ctx, t, drive, n, c)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return it, replaced, nil
}

// checkNewItem checks what CreateItem can check before its transaction,
// and returns the conflict behaviour to apply and the parent's drive.
func (s *Store) checkNewItem(ctx context.Context, n ferry.NewItem, c ferry.ConflictBehavior) (ferry.ConflictBehavior, ferry.DriveID, error) {
	if err := ferry.ValidateName(n.Name, n.Folder); err != nil {
		return "", "", err
	}
	if err := ferry.ValidateDescription(n.Description); err != nil {
		return "", "", err
	}
	if n.Folder && n.BlobKey != "" {
		return "", "", ferry.Errorf(ferry.Invalid, "a folder has no content")
	}
	if !n.Folder {
		if err := validContent(n.Content); err != nil {
			return "", "", err
		}
	}
	c, err := conflictOrFail(c)
	if err != nil {
		return "", "", err
	}
	drive, err := s.driveOf(ctx, n.ParentID)
	if err != nil {
		return "", "", err
	}
	if n.DriveID != "" && n.DriveID != drive {
		return "", "", errItemNotFound(n.ParentID) // another drive's items are invisible
	}
	return c, drive, nil
}

// createItem is CreateItem's work on the caller's transaction, which holds
// the drive's lock; CommitJobItem runs it too, beside completing a job.
func (s *Store) createItem(ctx context.Context, t conn, drive ferry.DriveID, n ferry.NewItem, c ferry.ConflictBehavior) (it *ferry.Item, replaced bool, err error) {
	parent, err := s.uncounted(ctx, t, n.ParentID)
	if err != nil {
		return nil, false, err
	}
	if !parent.Folder {
		return nil, false, ferry.Errorf(ferry.Invalid, "%q is a file, not a folder", parent.Name)
	}
	ts := now()
	name := n.Name
	old, err := s.child(ctx, t, parent.ID, ferry.NameKey(name))
	if err != nil {
		return nil, false, err
	}
	if old != nil {
		switch c {
		case ferry.ConflictFail:
			return nil, false, errNameTaken(old.Name)
		case ferry.ConflictRename:
			if name, err = s.freeName(ctx, t, parent.ID, name, n.Folder); err != nil {
				return nil, false, err
			}
		case ferry.ConflictReplace:
			if old.Folder != n.Folder {
				return nil, false, errOtherKind(old)
			}
			if !n.Folder {
				// A file replacing a file keeps its ID: only the bytes
				// and what describes them change.
				fsModified := n.FSModified
				if fsModified.IsZero() {
					fsModified = ts
				}
				it, err = s.replaceContent(ctx, t, old, n.Content, n.By, name, fsModified, n.Description)
				return it, true, err
			}
			if err := s.deleteTree(ctx, t, old); err != nil {
				return nil, false, err
			}
			replaced = true
		}
	}
	it = &ferry.Item{
		ID:             ferry.ItemID(ferry.NewID("", 16)),
		DriveID:        drive,
		ParentID:       parent.ID,
		Name:           name,
		Folder:         n.Folder,
		Version:        1,
		ContentVersion: 1,
		Created:        ts,
		Modified:       ts,
		Description:    n.Description,
		CreatedBy:      n.By,
		ModifiedBy:     n.By,
	}
	if !n.Folder {
		it.Size, it.MimeType, it.Hashes, it.BlobKey = n.Size, n.MimeType, n.Hashes, n.BlobKey
	}
	it.FSCreated, it.FSModified = ts, ts
	if !n.FSCreated.IsZero() {
		it.FSCreated = fromMillis(millis(n.FSCreated))
	}
	if !n.FSModified.IsZero() {
		it.FSModified = fromMillis(millis(n.FSModified))
	}
	if err := s.insertItem(ctx, t, it, true); err != nil {
		return nil, false, err
	}
	return it, replaced, nil
}

// replaceContent gives the file old new bytes and returns the result. name,
// when not empty, respells the file's name (same name key); description,
// when not empty, replaces the description.
func (s *Store) replaceContent(ctx context.Context, c conn, old *ferry.Item, ct ferry.Content, by, name string, fsModified time.Time, description string) (*ferry.Item, error) {
	if err := s.refBlob(ctx, c, ct.BlobKey, ct.Size); err != nil {
		return nil, err
	}
	if old.BlobKey != "" {
		if err := s.unrefBlob(ctx, c, old.BlobKey, 1); err != nil {
			return nil, err
		}
	}
	if err := s.charge(ctx, c, old.DriveID, old.ParentID, ct.Size-old.Size); err != nil {
		return nil, err
	}
	if name == "" {
		name = old.Name
	}
	if description == "" {
		description = old.Description
	}
	if by == "" {
		by = old.ModifiedBy
	}
	_, err := c.exec(ctx, `UPDATE items SET name = ?, size = ?, mime_type = ?, qxh = ?, sha1 = ?, sha256 = ?,
		blob_key = ?, version = version + 1, content_version = content_version + 1, modified = ?,
		fs_modified = ?, description = ?, modified_by = ? WHERE id = ?`,
		name, ct.Size, ct.MimeType, ct.Hashes.QuickXor, ct.Hashes.SHA1, ct.Hashes.SHA256, ct.BlobKey,
		millis(now()), millis(fsModified), description, by, string(old.ID))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: replace content of %s: %w", old.ID, err)
	}
	if err := s.recordChange(ctx, c, old, changeUpdated); err != nil {
		return nil, err
	}
	return s.item(ctx, c, old.ID)
}

// ReplaceContent gives the file id new bytes; see ferry.ItemStore. The
// file's fileSystemInfo modified time becomes now.
func (s *Store) ReplaceContent(ctx context.Context, id ferry.ItemID, ct ferry.Content, ifMatch, by string) (*ferry.Item, error) {
	if err := validContent(ct); err != nil {
		return nil, err
	}
	drive, err := s.driveOf(ctx, id)
	if err != nil {
		return nil, err
	}
	var it *ferry.Item
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		old, err := s.item(ctx, t, id)
		if err != nil {
			return err
		}
		if old.Folder {
			return ferry.Errorf(ferry.Invalid, "%q is a folder and has no content", old.Name)
		}
		if !old.Matches(ifMatch) {
			return errModified()
		}
		it, err = s.replaceContent(ctx, t, old, ct, by, "", now(), "")
		return err
	})
	if err != nil {
		return nil, err
	}
	return it, nil
}

// UpdateItem renames, moves or retouches an item; see ferry.ItemStore. An
// empty u.Conflict means fail. An update that names no change returns the
// item as it is.
func (s *Store) UpdateItem(ctx context.Context, id ferry.ItemID, u ferry.ItemUpdate) (*ferry.Item, error) {
	c, err := conflictOrFail(u.Conflict)
	if err != nil {
		return nil, err
	}
	if u.Description != nil {
		if err := ferry.ValidateDescription(*u.Description); err != nil {
			return nil, err
		}
	}
	drive, err := s.driveOf(ctx, id)
	if err != nil {
		return nil, err
	}
	var it *ferry.Item
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		cur, err := s.item(ctx, t, id)
		if err != nil {
			return err
		}
		if !cur.Matches(u.IfMatch) {
			return errModified()
		}
		if u.Name == nil && u.ParentID == nil && u.FSCreated == nil && u.FSModified == nil && u.Description == nil {
			it = cur
			return nil
		}
		name, parent := cur.Name, cur.ParentID
		if u.Name != nil {
			name = *u.Name
		}
		if u.ParentID != nil {
			parent = *u.ParentID
		}
		if cur.IsRoot() {
			if name != cur.Name || parent != cur.ParentID {
				return ferry.Errorf(ferry.Invalid, "the root folder cannot be renamed or moved")
			}
		} else {
			if err := ferry.ValidateName(name, cur.Folder); err != nil {
				return err
			}
		}
		if parent != cur.ParentID {
			p, err := s.uncounted(ctx, t, parent)
			if ferry.KindOf(err) == ferry.NotFound || (err == nil && p.DriveID != cur.DriveID) {
				return ferry.Errorf(ferry.NotFound, "the destination folder %s was not found", parent)
			}
			if err != nil {
				return err
			}
			if !p.Folder {
				return ferry.Errorf(ferry.Invalid, "%q is a file, not a folder", p.Name)
			}
			if cur.Folder {
				cycle, err := s.contains(ctx, t, cur.ID, p.ID)
				if err != nil {
					return err
				}
				if cycle {
					return ferry.Errorf(ferry.Invalid, "a folder cannot be moved into itself or one of its subfolders")
				}
			}
		}
		if parent != cur.ParentID || ferry.NameKey(name) != ferry.NameKey(cur.Name) {
			other, err := s.child(ctx, t, parent, ferry.NameKey(name))
			if err != nil {
				return err
			}
			if other != nil && other.ID != cur.ID {
				if name, err = s.settleClash(ctx, t, parent, name, cur, other, c); err != nil {
					return err
				}
			}
		}
		fsCreated, fsModified, desc, by := cur.FSCreated, cur.FSModified, cur.Description, cur.ModifiedBy
		if u.FSCreated != nil {
			fsCreated = *u.FSCreated
		}
		if u.FSModified != nil {
			fsModified = *u.FSModified
		}
		if u.Description != nil {
			desc = *u.Description
		}
		if u.By != "" {
			by = u.By
		}
		if parent != cur.ParentID {
			err = s.recordMove(ctx, t, cur)
		} else {
			err = s.recordChange(ctx, t, cur, changeUpdated)
		}
		if err != nil {
			return err
		}
		_, err = t.exec(ctx, `UPDATE items SET name = ?, name_key = ?, parent_id = ?, fs_created = ?,
			fs_modified = ?, description = ?, version = version + 1, modified = ?, modified_by = ? WHERE id = ?`,
			name, ferry.NameKey(name), nullable(string(parent)), millis(fsCreated), millis(fsModified), desc,
			millis(now()), by, string(cur.ID))
		if s.d.uniqueViolation(err) {
			return errNameTaken(name)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: update %s: %w", id, err)
		}
		if parent != cur.ParentID {
			// The bytes below cur leave the old ancestors and join the new
			// ones (common ancestors get both, which nets out).
			if err := s.addSize(ctx, t, cur.ParentID, -cur.Size); err != nil {
				return err
			}
			if err := s.addSize(ctx, t, parent, cur.Size); err != nil {
				return err
			}
		}
		it, err = s.item(ctx, t, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return it, nil
}

// DeleteItem deletes an item and its subtree; see ferry.ItemStore.
func (s *Store) DeleteItem(ctx context.Context, id ferry.ItemID, ifMatch string) error {
	drive, err := s.driveOf(ctx, id)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(_ *sql.Tx, t conn) error {
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		it, err := s.item(ctx, t, id)
		if err != nil {
			return err
		}
		if it.IsRoot() {
			return ferry.Errorf(ferry.Forbidden, "the root folder cannot be deleted")
		}
		if !it.Matches(ifMatch) {
			return errModified()
		}
		return s.deleteTree(ctx, t, it)
	})
}

// UnreferencedBlobs returns up to limit blob keys no item uses; limit <= 0
// means 100.
func (s *Store) UnreferencedBlobs(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.c.query(ctx, `SELECT key FROM blobs WHERE refs = 0 ORDER BY key LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: unreferenced blobs: %w", err)
	}
	return scanStrings(rows, "unreferenced blobs")
}

// ForgetBlob drops the record of an unreferenced blob. A blob some item
// still uses is left alone, so a sweep racing a copy cannot lose it.
func (s *Store) ForgetBlob(ctx context.Context, key string) error {
	if _, err := s.write(ctx, `DELETE FROM blobs WHERE key = ? AND refs = 0`, key); err != nil {
		return fmt.Errorf("sqlstore: forget blob: %w", err)
	}
	return nil
}

// BlobKnown reports whether the store records the blob key.
func (s *Store) BlobKnown(ctx context.Context, key string) (bool, error) {
	var n int
	if err := s.c.row(ctx, `SELECT count(*) FROM blobs WHERE key = ?`, key).Scan(&n); err != nil {
		return false, fmt.Errorf("sqlstore: blob known: %w", err)
	}
	return n > 0, nil
}

// settleClash applies the conflict behaviour c when item (moved, renamed
// or copied) is to take name in the folder parent, which other already
// holds, and returns the name to use: what refuseClash refuses is refused;
// rename picks a free name; replace deletes other.
func (s *Store) settleClash(ctx context.Context, t conn, parent ferry.ItemID, name string, item, other *ferry.Item, c ferry.ConflictBehavior) (string, error) {
	if err := s.refuseClash(ctx, t, item, other, c); err != nil {
		return "", err
	}
	switch c {
	case ferry.ConflictRename:
		return s.freeName(ctx, t, parent, name, item.Folder)
	case ferry.ConflictReplace:
		if err := s.deleteTree(ctx, t, other); err != nil {
			return "", err
		}
	}
	return name, nil
}

// refuseClash returns the error, if any, with which the conflict behaviour
// c refuses to let item take the name other holds: fail is NameConflict;
// replace replaces only an item of the same kind (else NameConflict) and
// never other when it is item itself or a folder holding it (Invalid).
// Rename refuses nothing.
func (s *Store) refuseClash(ctx context.Context, t conn, item, other *ferry.Item, c ferry.ConflictBehavior) error {
	switch c {
	case ferry.ConflictFail:
		return errNameTaken(other.Name)
	case ferry.ConflictReplace:
		if other.Folder != item.Folder {
			return errOtherKind(other)
		}
		inside, err := s.contains(ctx, t, other.ID, item.ID)
		if err != nil {
			return err
		}
		if inside {
			return ferry.Errorf(ferry.Invalid, "an item cannot replace itself or a folder holding it")
		}
	}
	return nil
}
