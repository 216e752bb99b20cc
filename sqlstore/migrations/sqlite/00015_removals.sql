-- Deleted folders too large for one transaction (issue 8): deleting a
-- folder of more items than the store writes per transaction takes its
-- top item off its parent (a hidden tree, as a copy under way builds one)
-- in one short transaction, which does everything clients see, and the
-- rows are removed afterwards in transactions of a bounded size. One row
-- per such tree while any of it is left. The deletions of the items below
-- the top are recorded for delta as their rows go, with the deletion's
-- change number, time and place, which this row keeps: chain and path are
-- those of the top's children (see item_changes in 00008_delta.sql).
-- Times are Unix milliseconds, UTC. The same in both engines; keep
-- ../postgres/00015_removals.sql in step.

-- +goose Up
CREATE TABLE IF NOT EXISTS removals (
	top_id   TEXT PRIMARY KEY, -- the deleted item, now without a parent
	drive_id TEXT NOT NULL,
	seq      BIGINT NOT NULL,  -- the drive's change number of the deletion
	chain    TEXT NOT NULL,    -- /id/…/id/ of the top's children when deleted
	path     TEXT NOT NULL,    -- their parent's path then (names below the root, joined by /)
	at       BIGINT NOT NULL   -- when the folder was deleted
);
CREATE INDEX IF NOT EXISTS removals_drive ON removals (drive_id);

-- +goose Down
DROP TABLE removals;
