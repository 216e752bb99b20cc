-- Ferry's metadata schema, PostgreSQL flavour. Keep it in step with
-- ../sqlite/00001_init.sql: the two differ only in BLOB/BYTEA and in the
-- byte-order collation PostgreSQL needs spelled out (SQLite compares bytes).
-- Times are Unix milliseconds, UTC.

-- +goose Up
CREATE TABLE users (
	id      TEXT PRIMARY KEY,
	name    TEXT NOT NULL UNIQUE,
	created BIGINT NOT NULL
);

CREATE TABLE drives (
	id       TEXT PRIMARY KEY,
	owner    TEXT NOT NULL UNIQUE REFERENCES users (id),
	root_id  TEXT NOT NULL,
	quota    BIGINT NOT NULL,
	used     BIGINT NOT NULL DEFAULT 0, -- SUM(size) of the drive's items, kept in step by every change
	created  BIGINT NOT NULL,
	modified BIGINT NOT NULL
);

-- hash is the hex SHA-256 of the bearer token; the token itself is never stored.
CREATE TABLE tokens (
	hash    TEXT PRIMARY KEY,
	user_id TEXT NOT NULL REFERENCES users (id),
	scopes  TEXT NOT NULL,
	created BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

-- refs counts the items that use a blob; at 0 the blob is unreferenced until
-- ForgetBlob drops the row.
CREATE TABLE blobs (
	key  TEXT PRIMARY KEY,
	size BIGINT NOT NULL,
	refs BIGINT NOT NULL
);
CREATE INDEX blobs_unreferenced ON blobs (key) WHERE refs = 0;

CREATE TABLE items (
	id              TEXT COLLATE "C" PRIMARY KEY,
	drive_id        TEXT NOT NULL REFERENCES drives (id),
	parent_id       TEXT COLLATE "C" REFERENCES items (id), -- NULL for a drive's root
	name            TEXT NOT NULL,
	name_key        TEXT COLLATE "C" NOT NULL, -- ferry.NameKey(name), computed in Go
	folder          BOOLEAN NOT NULL,
	size            BIGINT NOT NULL,
	mime_type       TEXT NOT NULL DEFAULT '',
	qxh             TEXT NOT NULL DEFAULT '',
	sha1            TEXT NOT NULL DEFAULT '',
	sha256          TEXT NOT NULL DEFAULT '',
	blob_key        TEXT REFERENCES blobs (key), -- NULL for folders
	version         BIGINT NOT NULL,
	content_version BIGINT NOT NULL,
	created         BIGINT NOT NULL,
	modified        BIGINT NOT NULL,
	fs_created      BIGINT NOT NULL,
	fs_modified     BIGINT NOT NULL,
	description     TEXT NOT NULL DEFAULT '',
	created_by      TEXT NOT NULL DEFAULT '',
	modified_by     TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX items_parent_name ON items (parent_id, name_key);
CREATE INDEX items_parent_size ON items (parent_id, size, id);
CREATE INDEX items_parent_modified ON items (parent_id, modified, id);
CREATE INDEX items_drive ON items (drive_id);
CREATE INDEX items_blob ON items (blob_key);

-- One row per job monitor. finished is NULL until the status is final.
CREATE TABLE ferry_jobs (
	id               TEXT PRIMARY KEY,
	operation        TEXT NOT NULL,
	user_id          TEXT NOT NULL,
	user_name        TEXT NOT NULL DEFAULT '',
	drive_id         TEXT NOT NULL DEFAULT '',
	parent_id        TEXT NOT NULL DEFAULT '',
	name             TEXT NOT NULL DEFAULT '',
	conflict         TEXT NOT NULL DEFAULT '',
	source_url       TEXT NOT NULL DEFAULT '',
	expect_sha256    TEXT NOT NULL DEFAULT '',
	source_item      TEXT NOT NULL DEFAULT '',
	status           TEXT NOT NULL,
	bytes            BIGINT NOT NULL DEFAULT 0,
	total            BIGINT NOT NULL DEFAULT -1,
	bytes_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
	resource_id      TEXT NOT NULL DEFAULT '',
	error_code       TEXT NOT NULL DEFAULT '',
	error_message    TEXT NOT NULL DEFAULT '',
	created          BIGINT NOT NULL,
	updated          BIGINT NOT NULL,
	started_at       BIGINT,
	finished         BIGINT,
	staging_id       TEXT NOT NULL DEFAULT '',
	checkpoint       BYTEA
);
CREATE INDEX ferry_jobs_user_status ON ferry_jobs (user_id, status);
CREATE INDEX ferry_jobs_finished ON ferry_jobs (finished);

-- Server-wide secrets (e.g. the key that signs download URLs), made on first use.
CREATE TABLE ferry_secrets (
	name    TEXT PRIMARY KEY,
	value   BYTEA NOT NULL,
	created BIGINT NOT NULL
);

-- +goose Down
DROP TABLE ferry_secrets;
DROP TABLE ferry_jobs;
DROP TABLE items;
DROP TABLE blobs;
DROP TABLE tokens;
DROP TABLE drives;
DROP TABLE users;
