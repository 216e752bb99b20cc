-- Upload sessions (createUploadSession). The same in both engines; keep
-- ../postgres/00002_upload_sessions.sql in step. Times are Unix milliseconds,
-- UTC; fs_created and fs_modified are NULL when the client gave none.
--
-- received holds the byte ranges already staged, sorted and merged, as
-- half-open "start-end" pairs joined by commas ("0-327680,655360-983040"),
-- or '' when nothing has arrived. The id is the capability in the upload
-- URL.

-- +goose Up
CREATE TABLE upload_sessions (
	id           TEXT PRIMARY KEY,
	user_id      TEXT NOT NULL,
	user_name    TEXT NOT NULL DEFAULT '',
	drive_id     TEXT NOT NULL,
	parent_id    TEXT NOT NULL DEFAULT '',
	name         TEXT NOT NULL DEFAULT '',
	item_id      TEXT NOT NULL DEFAULT '',
	conflict     TEXT NOT NULL DEFAULT '',
	if_match     TEXT NOT NULL DEFAULT '',
	description  TEXT NOT NULL DEFAULT '',
	fs_created   BIGINT,
	fs_modified  BIGINT,
	defer_commit BOOLEAN NOT NULL DEFAULT FALSE,
	size         BIGINT NOT NULL DEFAULT -1,
	staging_id   TEXT NOT NULL,
	received     TEXT NOT NULL DEFAULT '',
	expires      BIGINT NOT NULL,
	created      BIGINT NOT NULL
);
CREATE INDEX upload_sessions_expires ON upload_sessions (expires);

-- +goose Down
DROP TABLE upload_sessions;
