-- What the current run of a job holds, apart from its monitor row: the
-- runner token of the attempt that runs it and that attempt's heartbeat,
-- written every few seconds, so that any node can tell a job whose node
-- died (the heartbeat goes stale) from one still running elsewhere and hand
-- it to River again; and blob_key, a blob a download has published but not
-- yet committed, so that a retried commit reuses it and the unknown-blob
-- sweep spares it. A row exists only while the job has not ended. A table
-- of its own rather than columns of ferry_jobs: IF NOT EXISTS makes this
-- migration safe to run again. The same in both engines; keep
-- ../sqlite/00005_job_runs.sql in step.

-- +goose Up
CREATE TABLE IF NOT EXISTS ferry_job_runs (
	job_id    TEXT PRIMARY KEY,
	runner    TEXT NOT NULL DEFAULT '',
	heartbeat BIGINT NOT NULL,
	blob_key  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ferry_job_runs_blob ON ferry_job_runs (blob_key) WHERE blob_key <> '';
CREATE INDEX IF NOT EXISTS ferry_jobs_status ON ferry_jobs (status);

-- +goose Down
DROP INDEX ferry_jobs_status;
DROP TABLE ferry_job_runs;
