-- Indexes for listing a user's jobs (GET /me/drive/operations): newest
-- first by creation, and in the order of their last change for the
-- operations' event stream, which follows changes by (updated, id). IF NOT
-- EXISTS makes the migration safe to run again. The same in both engines;
-- keep ../postgres/00012_job_listing.sql in step.

-- +goose Up
CREATE INDEX IF NOT EXISTS ferry_jobs_user_created ON ferry_jobs (user_id, created, id);
CREATE INDEX IF NOT EXISTS ferry_jobs_user_updated ON ferry_jobs (user_id, updated, id);

-- +goose Down
DROP INDEX ferry_jobs_user_updated;
DROP INDEX ferry_jobs_user_created;
