-- Sharing: links anyone may open and grants to other users of the server.
-- A permission belongs to one item (and reaches its subtree); it goes away
-- with the item. Times are Unix milliseconds, UTC.

-- +goose Up
CREATE TABLE permissions (
	id            TEXT PRIMARY KEY,
	drive_id      TEXT NOT NULL,
	item_id       TEXT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
	role          TEXT NOT NULL,            -- read | write
	link_type     TEXT NOT NULL DEFAULT '', -- view | edit; '' for a grant
	link_token    TEXT UNIQUE,              -- a link's capability; NULL for a grant
	password      BLOB,                    -- salt + derived key of a link's password
	expires       BIGINT,                   -- NULL: never
	grantee_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
	grantee_email TEXT NOT NULL DEFAULT '',
	created_by    TEXT NOT NULL,
	created       BIGINT NOT NULL
);
CREATE INDEX permissions_item ON permissions (item_id, created);
CREATE UNIQUE INDEX permissions_grant ON permissions (item_id, grantee_id) WHERE grantee_id IS NOT NULL;
CREATE INDEX permissions_grantee ON permissions (grantee_id, created);

-- +goose Down
DROP TABLE permissions;
