-- SessionUsage totals the live upload sessions of one drive whenever a
-- session is created or learns its size; this index keeps that a range
-- scan. The same in both engines; keep ../sqlite/00004_upload_sessions_drive.sql
-- in step.

-- +goose Up
CREATE INDEX upload_sessions_drive ON upload_sessions (drive_id, expires);

-- +goose Down
DROP INDEX upload_sessions_drive;
