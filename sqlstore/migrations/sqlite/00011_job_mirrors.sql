-- The mirrors of an upload from URL ("@ferry.mirrors"): more URLs of the
-- same file, one per line, in the order given; empty for none. Never shown
-- on the monitor, like source_url. The same in both engines; keep the other
-- engine's 00011_job_mirrors.sql in step.

-- +goose Up
ALTER TABLE ferry_jobs ADD COLUMN mirrors TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE ferry_jobs DROP COLUMN mirrors;
