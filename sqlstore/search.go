package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferrydrive/ferry"
)

// likeEscaper makes text match itself literally in a LIKE pattern with
// ESCAPE '!'.
var likeEscaper = strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")

// Search returns one page of the items below scope whose names contain
// text, ignoring case; see ferry.ItemStore. Names are compared by their
// name keys, so "ignoring case" means what NameKey means.
func (s *Store) Search(ctx context.Context, scope ferry.ItemID, text string, q ferry.ListQuery) ([]*ferry.Item, string, error) {
	if text == "" {
		return nil, "", ferry.Errorf(ferry.Invalid, "the search text must not be empty")
	}
	if q.OrderBy != "" && q.OrderBy != "name" {
		return nil, "", ferry.Errorf(ferry.Invalid, "search results are ordered by name only")
	}
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return nil, "", err
	}
	top, err := s.Item(ctx, scope)
	if err != nil {
		return nil, "", err
	}
	if !top.Folder {
		return nil, "", nil
	}
	pattern := "%" + likeEscaper.Replace(ferry.NameKey(text)) + "%"
	where := `i.name_key LIKE ? ESCAPE '!'`
	args := []any{pattern}
	if q.Cursor != "" {
		v, id, err := decodeCursor(q.Cursor, 'n', false)
		if err != nil {
			return nil, "", err
		}
		where += ` AND (i.name_key, i.id) > (?, ?)`
		args = append(args, v, id)
	}
	var query string
	if top.IsRoot() {
		// The whole drive: the index on (drive_id, name_key, id) serves it.
		// That reaches the hidden trees of copies under way and of deleted
		// folders being removed too (see copy.go and remove.go), which are
		// left out: hidden holds their items, found from their tops, and is
		// empty unless a large copy or removal runs.
		query = `WITH RECURSIVE hidden(id) AS (
				SELECT top_id FROM (SELECT top_id, drive_id FROM pending_copies
					UNION ALL SELECT top_id, drive_id FROM removals) tops WHERE drive_id = ?
				UNION ALL
				SELECT h.id FROM items h JOIN hidden ON h.parent_id = hidden.id
			)
			SELECT ` + itemCols + ` FROM items i LEFT JOIN hidden ON hidden.id = i.id
			WHERE i.drive_id = ? AND i.parent_id IS NOT NULL AND hidden.id IS NULL AND ` + where
		args = append([]any{string(top.DriveID), string(top.DriveID)}, args...)
	} else {
		query = subtreeCTE + ` SELECT ` + itemCols + ` FROM items i JOIN sub ON sub.id = i.id WHERE sub.depth > 0 AND ` + where
		args = append([]any{string(top.ID)}, args...)
	}
	query += ` ORDER BY i.name_key, i.id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.c.query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlstore: search: %w", err)
	}
	defer rows.Close()
	var items []*ferry.Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, "", fmt.Errorf("sqlstore: search: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlstore: search: %w", err)
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	return items, encodeCursor('n', false, items[limit-1]), nil
}
