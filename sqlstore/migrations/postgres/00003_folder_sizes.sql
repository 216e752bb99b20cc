-- A folder's size becomes the total size of the files in its subtree, as
-- OneDrive reports it; the root's size then equals the drive's used bytes.
-- The store keeps it in step from here on (sqlstore.addSize); this computes
-- it once for the folders that exist. The same in both engines; keep
-- ../sqlite/00003_folder_sizes.sql in step.
--
-- up pairs every file with each folder above it (UNION ALL: two files of
-- one size below one folder are two rows), totals sums per folder.

-- +goose Up
UPDATE items SET size = 0 WHERE folder;

WITH RECURSIVE up(folder_id, size) AS (
	SELECT parent_id, size FROM items WHERE NOT folder AND parent_id IS NOT NULL
	UNION ALL
	SELECT i.parent_id, up.size FROM up JOIN items i ON i.id = up.folder_id WHERE i.parent_id IS NOT NULL
),
totals(id, size) AS (
	SELECT folder_id, CAST(sum(size) AS BIGINT) FROM up GROUP BY folder_id
)
UPDATE items SET size = totals.size FROM totals WHERE totals.id = items.id;

-- +goose Down
UPDATE items SET size = 0 WHERE folder;
