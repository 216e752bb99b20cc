-- Operations (issue 11) and user e-mail addresses (issue 10): tokens get a
-- public id (what `ferry token list` shows and `ferry token revoke` takes;
-- never derived from the secret), a label, an expiry and the time they were
-- last used; users may have an e-mail address, unique (ignoring case) when
-- set; a job remembers the id of the API request that created it, so that
-- its log lines lead back to that request. Revoking deletes the token's row.
-- Keep ../sqlite/00007_accounts_ops.sql in step; they differ only in how
-- the ids of existing tokens are drawn.

-- +goose Up
ALTER TABLE tokens ADD COLUMN id TEXT;
UPDATE tokens SET id = 'tok_' || substr(md5(random()::text || hash), 1, 16);
CREATE UNIQUE INDEX tokens_id ON tokens (id);
ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN expires BIGINT;   -- NULL: never
ALTER TABLE tokens ADD COLUMN last_used BIGINT; -- NULL: not yet; written at most once a minute
ALTER TABLE users ADD COLUMN email TEXT;        -- NULL: none
CREATE UNIQUE INDEX users_email ON users (lower(email)) WHERE email IS NOT NULL;
ALTER TABLE ferry_jobs ADD COLUMN request_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE ferry_jobs DROP COLUMN request_id;
DROP INDEX users_email;
ALTER TABLE users DROP COLUMN email;
ALTER TABLE tokens DROP COLUMN last_used;
ALTER TABLE tokens DROP COLUMN expires;
ALTER TABLE tokens DROP COLUMN name;
DROP INDEX tokens_id;
ALTER TABLE tokens DROP COLUMN id;
