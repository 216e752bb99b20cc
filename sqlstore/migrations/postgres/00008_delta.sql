-- Delta (change tracking) and what it needs. Keep it in step with
-- ../sqlite/00008_delta.sql; the two differ only in collations.
--
-- drives.delta_seq is the last change sequence number handed out in the
-- drive. A transaction takes the next one when it first changes the drive
-- (UPDATE … RETURNING, which holds the drive's row lock until commit), so
-- sequence numbers become visible in the order they were handed out.
-- Changes at or below delta_floor have been pruned: tokens older than that
-- answer 410 resyncRequired.

-- +goose Up
ALTER TABLE drives ADD COLUMN delta_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE drives ADD COLUMN delta_floor BIGINT NOT NULL DEFAULT 0;

-- One row per item per changing transaction. kind: 1 created, 2 changed
-- (content, name, metadata), 3 moved, 4 deleted. Moves and deletes also
-- keep where the item was before: chain holds the IDs of its ancestors then,
-- root first, as /id/id/…/ (so that "was it below folder F" is a LIKE), and
-- parent_id, name, folder and path (the parent's names below the root,
-- joined by /) describe it as a deleted entry.
CREATE TABLE item_changes (
	drive_id  TEXT NOT NULL,
	seq       BIGINT NOT NULL,
	item_id   TEXT COLLATE "C" NOT NULL,
	kind      INTEGER NOT NULL,
	chain     TEXT NOT NULL DEFAULT '',
	parent_id TEXT COLLATE "C" NOT NULL DEFAULT '',
	name      TEXT NOT NULL DEFAULT '',
	folder    BOOLEAN NOT NULL DEFAULT false,
	path      TEXT NOT NULL DEFAULT '',
	at        BIGINT NOT NULL,
	PRIMARY KEY (drive_id, seq, item_id)
);
CREATE INDEX item_changes_item ON item_changes (drive_id, item_id, seq);
CREATE INDEX item_changes_at ON item_changes (at);

-- A delta listing in progress: its result, frozen at the drive's sequence
-- number horizon when the first page was asked for, so that the pages are
-- one consistent picture however the drive changes meanwhile. Rows go when
-- the last page is read, or when the listing is abandoned (pruned by age).
CREATE TABLE delta_sessions (
	id       TEXT PRIMARY KEY,
	drive_id TEXT NOT NULL,
	scope    TEXT NOT NULL,
	horizon  BIGINT NOT NULL,
	created  BIGINT NOT NULL
);
CREATE INDEX delta_sessions_created ON delta_sessions (created);

-- phase 0 holds deleted entries, phase 1 items, parents before children
-- (depth counts the ancestors). The item columns are those of items.
CREATE TABLE delta_pages (
	session         TEXT COLLATE "C" NOT NULL,
	item_id         TEXT COLLATE "C" NOT NULL,
	phase           INTEGER NOT NULL,
	depth           INTEGER NOT NULL,
	deleted         BOOLEAN NOT NULL,
	parent_path     TEXT NOT NULL,
	drive_id        TEXT NOT NULL,
	parent_id       TEXT COLLATE "C",
	name            TEXT NOT NULL,
	folder          BOOLEAN NOT NULL,
	size            BIGINT NOT NULL DEFAULT 0,
	mime_type       TEXT NOT NULL DEFAULT '',
	qxh             TEXT NOT NULL DEFAULT '',
	sha1            TEXT NOT NULL DEFAULT '',
	sha256          TEXT NOT NULL DEFAULT '',
	blob_key        TEXT,
	version         BIGINT NOT NULL DEFAULT 0,
	content_version BIGINT NOT NULL DEFAULT 0,
	created         BIGINT NOT NULL DEFAULT 0,
	modified        BIGINT NOT NULL DEFAULT 0,
	fs_created      BIGINT NOT NULL DEFAULT 0,
	fs_modified     BIGINT NOT NULL DEFAULT 0,
	description     TEXT NOT NULL DEFAULT '',
	created_by      TEXT NOT NULL DEFAULT '',
	modified_by     TEXT NOT NULL DEFAULT '',
	child_count     BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (session, item_id)
);
CREATE INDEX delta_pages_order ON delta_pages (session, phase, depth, item_id);

-- Search matches name_key (lower case) within a drive.
CREATE INDEX items_drive_name ON items (drive_id, name_key, id);

-- +goose Down
DROP INDEX items_drive_name;
DROP TABLE delta_pages;
DROP TABLE delta_sessions;
DROP TABLE item_changes;
ALTER TABLE drives DROP COLUMN delta_floor;
ALTER TABLE drives DROP COLUMN delta_seq;
