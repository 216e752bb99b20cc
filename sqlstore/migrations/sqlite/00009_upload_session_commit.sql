-- Upload sessions that hold across nodes and survive a failed commit. The
-- same in both engines; keep ../postgres/00009_upload_session_commit.sql in
-- step. Times are Unix milliseconds, UTC.
--
-- hashed and hash_state: the hash state (base64 of blob.Hasher's binary
-- form) of the session's first hashed bytes, which grow with the
-- contiguous prefix received, so that completing a file hashes only what
-- is not hashed yet. held: the published content (JSON) of a complete
-- session whose commit failed for a passing reason, for the retry; '' until
-- then. busy_until: a commit or cancel of the session runs until then.
-- upload_fragments: the byte ranges being written right now, each claimed
-- until its lease runs out, so that two fragments overlapping each other
-- are refused (416) whichever nodes they reach.

-- +goose Up
ALTER TABLE upload_sessions ADD COLUMN hashed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE upload_sessions ADD COLUMN hash_state TEXT NOT NULL DEFAULT '';
ALTER TABLE upload_sessions ADD COLUMN held TEXT NOT NULL DEFAULT '';
ALTER TABLE upload_sessions ADD COLUMN busy_until BIGINT NOT NULL DEFAULT 0;
CREATE TABLE upload_fragments (
	session_id TEXT NOT NULL,
	start_at   BIGINT NOT NULL,
	end_at     BIGINT NOT NULL,
	until      BIGINT NOT NULL,
	PRIMARY KEY (session_id, start_at)
);

-- +goose Down
DROP TABLE upload_fragments;
ALTER TABLE upload_sessions DROP COLUMN busy_until;
ALTER TABLE upload_sessions DROP COLUMN held;
ALTER TABLE upload_sessions DROP COLUMN hash_state;
ALTER TABLE upload_sessions DROP COLUMN hashed;
