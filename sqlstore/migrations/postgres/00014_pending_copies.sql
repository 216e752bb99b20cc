-- Copies too large for one transaction (issue 8): a copy of more items
-- than the store writes per transaction is built out of sight, below a top
-- item that has no parent yet, in transactions of a bounded size, and
-- appears in one short last transaction that gives the top its place. One
-- row per such copy while its hidden tree exists: what it has built, where
-- its walk of the source stands, and the bytes it holds against the
-- destination drive's quota meanwhile. A row whose job has ended is
-- garbage: the copy's tree is removed and then the row. Times are Unix
-- milliseconds, UTC. The same in both engines; keep
-- ../sqlite/00014_pending_copies.sql in step.

-- +goose Up
CREATE TABLE IF NOT EXISTS pending_copies (
	id       TEXT PRIMARY KEY,  -- the copy job's ID, or a synchronous copy's own
	job      BOOLEAN NOT NULL,  -- whether id is a job's (its claim fences each step)
	drive_id TEXT NOT NULL,     -- the destination drive
	top_id   TEXT COLLATE "C" NOT NULL, -- the hidden top of the copy: an item with no parent
	reserved BIGINT NOT NULL,   -- bytes counted as taken in the drive until the copy appears or ends
	state    TEXT NOT NULL,     -- where the walk of the source stands (JSON, versioned)
	updated  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_copies_drive ON pending_copies (drive_id);

-- +goose Down
DROP TABLE pending_copies;
