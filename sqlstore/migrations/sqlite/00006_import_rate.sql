-- The per-user token bucket that limits how fast a user may queue new
-- jobs (imports and copies), kept in the database so that it holds across
-- every node sharing it: tokens left at updated (Unix milliseconds); the
-- bucket refills at the configured rate up to the configured burst, and a
-- user without a row has a full bucket. InsertJob takes a token in the
-- transaction that queues the job. The running-job limit needs no table:
-- StartJob counts the user's inProgress jobs. Keep
-- ../postgres/00006_import_rate.sql in step.

-- +goose Up
CREATE TABLE IF NOT EXISTS ferry_job_rates (
	user_id TEXT PRIMARY KEY,
	tokens  REAL NOT NULL,
	updated BIGINT NOT NULL
);

-- +goose Down
DROP TABLE ferry_job_rates;
