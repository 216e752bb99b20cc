package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/ferrydrive/ferry"
)

// Deleting large folders.
//
// Deleting a folder deletes one row per item below it, and on SQLite one
// long transaction holds the database's write lock while every other
// writer waits (see copy.go and group.go). So a folder of more items than
// the batch (treeBatch) is deleted in two parts:
//
//   - In the caller's transaction (DeleteItem, or a replace in CreateItem,
//     UpdateItem or a copy), detachTree does everything clients see, in
//     time that does not grow with the tree: it takes the folder off its
//     parent, which hides its tree as a copy under way is hidden (no
//     listing, path, search or delta reaches it, and Item answers NotFound
//     for any item of it), records the folder's deletion for delta, takes
//     the tree's bytes off the drive's usage and the folders above it,
//     deletes the links and grants set in the tree, and records the tree
//     in the removals table (migration 00015).
//   - RemoveDeleted then deletes the tree's rows, at most the batch per
//     transaction, deepest first (removeBelow), releasing their blob
//     references and recording each item's deletion for delta as it goes.
//     The jobs sweep runs it when such a transaction commits (Removals)
//     and in every round, which finishes what a crash interrupted.
//
// A folder of at most the batch of items is deleted in one transaction, as
// it always was (deleteTree). Delta reports a large deleted folder exactly
// as a small one: the folder and each item below it as deleted, where they
// were. The deletions of items still waiting for removal are read from the
// hidden tree (collectChanges), with the folder's change number; those
// already removed were recorded with that same number, time and place.
// Blob references, and so the blobs' bytes, are released only as the rows
// go.

// defaultTreeBatch is how many items one transaction writes at most when
// it copies a tree (the top, the copied items) or removes one (copy.go,
// and above), and how many a folder may hold, itself included, to be
// deleted in one transaction: such a step holds SQLite's write lock for
// about as long as 500 small inserts take.
const defaultTreeBatch = 500

// SetTreeBatch sets how many items one transaction writes at most when it
// copies or removes a tree, and so the largest folder deleted in one
// transaction; n <= 0 restores the default (500). Tests lower it to have
// small trees copied and removed in several steps. Call it before the
// store is shared.
func (s *Store) SetTreeBatch(n int) { s.batchSize = n }

func (s *Store) treeBatch() int {
	if s.batchSize <= 0 {
		return defaultTreeBatch
	}
	return s.batchSize
}

// Removals returns a channel that receives a value after a transaction
// of this store that left the tree of a deleted folder to remove has
// committed (at most one value waits): the signal to call RemoveDeleted.
// Trees left by other processes on the same database, or by a crash, are
// not signalled.
func (s *Store) Removals() <-chan struct{} { return s.removals }

func (s *Store) wakeRemovals() {
	select {
	case s.removals <- struct{}{}:
	default: // one waits already
	}
}

// removal is a deleted folder whose tree is left to remove: its removals
// row.
type removal struct {
	top   ferry.ItemID
	drive ferry.DriveID
	seq   int64  // the change number of the folder's deletion
	chain string // the chain and path of the folder's children then
	path  string
	at    int64 // when it was deleted, Unix milliseconds
}

// detachTree deletes, as far as clients can see, the folder it, whose tree
// holds more items than the batch, in the caller's transaction, which
// holds the drive's lock (see the comment at the top of the file), and
// leaves its rows to RemoveDeleted.
func (s *Store) detachTree(ctx context.Context, c conn, it *ferry.Item) error {
	// Links and grants in the tree stop working at once, as they do when
	// their items go. Each of the drive's permissions is walked up from
	// its item: a cost of the drive's permissions and depth, not of the
	// tree's size.
	_, err := c.exec(ctx, `WITH RECURSIVE up(pid, id) AS (
			SELECT p.id, i.id FROM permissions p JOIN items i ON i.id = p.item_id WHERE p.drive_id = ?
			UNION ALL
			SELECT up.pid, i.parent_id FROM items i JOIN up ON i.id = up.id WHERE i.parent_id IS NOT NULL
		)
		DELETE FROM permissions WHERE id IN (SELECT pid FROM up WHERE id = ?)`, string(it.DriveID), string(it.ID))
	if err != nil {
		return fmt.Errorf("sqlstore: delete %s: permissions: %w", it.ID, err)
	}
	chain, names, err := s.recordLeave(ctx, c, it, changeDeleted)
	if err != nil {
		return err
	}
	seq, err := s.changeSeq(ctx, c, it.DriveID) // the one recordLeave took
	if err != nil {
		return err
	}
	if err := s.charge(ctx, c, it.DriveID, it.ParentID, -it.Size); err != nil {
		return err
	}
	if _, err := c.exec(ctx, `UPDATE items SET parent_id = NULL WHERE id = ?`, string(it.ID)); err != nil {
		return fmt.Errorf("sqlstore: delete %s: %w", it.ID, err)
	}
	_, err = c.exec(ctx, `INSERT INTO removals (top_id, drive_id, seq, chain, path, at) VALUES (?, ?, ?, ?, ?, ?)`,
		string(it.ID), string(it.DriveID), seq, chain+string(it.ID)+"/", joinPath(names, it.Name), millis(now()))
	if err != nil {
		return fmt.Errorf("sqlstore: delete %s: %w", it.ID, err)
	}
	c.tx.detached = true
	return nil
}

// joinPath is the path of the children of a folder named name whose
// parent's path is names.
func joinPath(names []string, name string) string {
	return childPath(strings.Join(names, "/"), name)
}

// childPath is the path of the children of a folder named name whose own
// path (that of its parent) is path, as recordDeletes builds it.
func childPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "/" + name
}

// inRemoval reports whether the item id belongs to the tree of a deleted
// folder whose rows are still being removed: whether its topmost ancestor,
// which has no parent, is such a folder. A walk up the tree, bounded by
// its depth; item runs it only in drives with such a tree.
func (s *Store) inRemoval(ctx context.Context, c conn, id ferry.ItemID) (bool, error) {
	var n int
	err := c.row(ctx, `WITH RECURSIVE up(id, parent_id) AS (
			SELECT id, parent_id FROM items WHERE id = ?
			UNION ALL
			SELECT i.id, i.parent_id FROM items i JOIN up ON i.id = up.parent_id
		)
		SELECT count(*) FROM up JOIN removals r ON r.top_id = up.id`, string(id)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlstore: item %s: %w", id, err)
	}
	return n > 0, nil
}

// RemoveDeleted removes the rows of the trees that deleting large folders
// left (see the comment at the top of the file), in transactions of at
// most the batch of items each, oldest deletion first; it runs at most
// steps transactions (steps <= 0: as many as it takes) and reports how
// many trees it saw to their end. Several calls may run at once, here or
// in other processes: each step takes the drive's lock and walks what is
// left.
func (s *Store) RemoveDeleted(ctx context.Context, steps int) (int, error) {
	rows, err := s.c.query(ctx, `SELECT top_id FROM removals ORDER BY at, top_id`)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: deleted trees: %w", err)
	}
	tops, err := scanStrings(rows, "deleted trees")
	if err != nil {
		return 0, err
	}
	done, n := 0, 0
	for _, top := range tops {
		for {
			if steps > 0 && n == steps {
				return done, nil
			}
			n++
			gone, err := s.removeStep(ctx, ferry.ItemID(top))
			if err != nil {
				return done, err
			}
			if gone {
				done++
				break
			}
			if err := ctx.Err(); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// removeStep deletes up to the batch of items of the tree of the deleted
// folder top, and its removals row with the folder itself, last; it
// reports whether they are gone.
func (s *Store) removeStep(ctx context.Context, top ferry.ItemID) (gone bool, err error) {
	var drive ferry.DriveID
	err = s.c.row(ctx, `SELECT drive_id FROM removals WHERE top_id = ?`, string(top)).Scan(&drive)
	if notFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: remove %s: %w", top, err)
	}
	err = s.tx(ctx, func(_ *sql.Tx, t conn) error {
		gone = false
		if err := s.lockDrives(ctx, t, drive); err != nil {
			return err
		}
		r := &removal{top: top, drive: drive}
		err := t.row(ctx, `SELECT seq, chain, path, at FROM removals WHERE top_id = ?`+s.d.forUpdate(), string(top)).
			Scan(&r.seq, &r.chain, &r.path, &r.at)
		if notFound(err) {
			gone = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("sqlstore: remove %s: %w", top, err)
		}
		done, err := s.removeBelow(ctx, t, top, s.treeBatch(), r)
		if err != nil || !done {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM removals WHERE top_id = ?`, string(top)); err != nil {
			return fmt.Errorf("sqlstore: remove %s: %w", top, err)
		}
		gone = true
		return nil
	})
	return gone, err
}

// removeBelow deletes up to budget items of the hidden tree below top,
// deepest first (a folder goes once it is empty, top last), releasing
// their blob references, and reports whether top went too. It walks down
// from top afresh in every step: what earlier steps deleted is not there
// to be walked. With rec, the tree is that of the deleted folder top, and
// the deletion of each item below top is recorded for delta as rec says
// (top's own was recorded when it was deleted); without, nothing is
// recorded: the tree is a copy's, which no client has seen.
func (s *Store) removeBelow(ctx context.Context, t conn, top ferry.ItemID, budget int, rec *removal) (gone bool, err error) {
	// A folder of the walk, with the chain and path of its children.
	type frame struct {
		id          ferry.ItemID
		name        string
		chain, path string
	}
	stack := []frame{{id: top}}
	if rec != nil {
		stack[0].chain, stack[0].path = rec.chain, rec.path
	}
	for budget > 0 && len(stack) > 0 {
		f := stack[len(stack)-1]
		rows, err := t.query(ctx, `SELECT id, name, folder, COALESCE(blob_key, '') FROM items WHERE parent_id = ? LIMIT ?`,
			string(f.id), budget)
		if err != nil {
			return false, fmt.Errorf("sqlstore: remove below %s: %w", top, err)
		}
		var files []droppedItem
		var sub *frame
		n := 0
		for rows.Next() {
			var it droppedItem
			if err := rows.Scan(&it.id, &it.name, &it.folder, &it.blob); err != nil {
				rows.Close()
				return false, fmt.Errorf("sqlstore: remove below %s: %w", top, err)
			}
			n++
			switch {
			case !it.folder:
				it.parent, it.chain, it.path = f.id, f.chain, f.path
				files = append(files, it)
			case sub == nil:
				sub = &frame{id: it.id, name: it.name, chain: f.chain + string(it.id) + "/", path: childPath(f.path, it.name)}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("sqlstore: remove below %s: %w", top, err)
		}
		r := rec
		switch {
		case n == 0 && len(stack) == 1:
			// The tree is empty: top goes.
			files, r, gone = []droppedItem{{id: top}}, nil, true
			stack = stack[:0]
		case n == 0:
			// f is empty: it goes.
			stack = stack[:len(stack)-1]
			p := stack[len(stack)-1]
			files = []droppedItem{{id: f.id, name: f.name, folder: true, parent: p.id, chain: p.chain, path: p.path}}
		case sub != nil:
			stack = append(stack, *sub)
		}
		if err := s.deleteRows(ctx, t, files, r); err != nil {
			return false, fmt.Errorf("sqlstore: remove below %s: %w", top, err)
		}
		budget -= len(files)
	}
	return gone, nil
}

// droppedItem is an item of a hidden tree about to be deleted: its ID and
// blob key ("" for a folder), and for its deletion's record its parent,
// name, kind and the chain and path of its parent.
type droppedItem struct {
	id          ferry.ItemID
	blob        string
	parent      ferry.ItemID
	name        string
	folder      bool
	chain, path string
}

// deleteRows deletes the given items, which have no children, and
// releases their blob references. With rec it records their deletions
// as rec says (see removeBelow). One statement per item, not one IN list:
// a list of varying length would be a new statement to prepare each time.
func (s *Store) deleteRows(ctx context.Context, t conn, items []droppedItem, rec *removal) error {
	uses := map[string]int64{}
	for _, it := range items {
		if rec != nil {
			_, err := t.exec(ctx, `INSERT INTO item_changes (drive_id, seq, item_id, kind, chain, parent_id, name, folder, path, at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`+mergeChange,
				string(rec.drive), rec.seq, string(it.id), changeDeleted, it.chain, string(it.parent), it.name, it.folder,
				it.path, rec.at)
			if err != nil {
				return err
			}
		}
		if _, err := t.exec(ctx, `DELETE FROM items WHERE id = ?`, string(it.id)); err != nil {
			return err
		}
		if it.blob != "" {
			uses[it.blob]++
		}
	}
	for key, n := range uses {
		if err := s.unrefBlob(ctx, t, key, n); err != nil {
			return err
		}
	}
	return nil
}
