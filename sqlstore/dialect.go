package sqlstore

import (
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// This file is the only place where SQLite and PostgreSQL differ: how a
// database is opened, placeholders, error codes, row locking, and which
// migration directory applies. Queries elsewhere are written once, with '?'
// placeholders, in SQL both engines accept.

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// dialect describes one engine.
type dialect struct {
	postgres bool
}

// isPostgresDSN reports whether dsn names a PostgreSQL database rather than
// a SQLite file.
func isPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// openSQLite opens the SQLite file at path, creating it and its parent
// directories. The drivers are used directly (sql.OpenDB with a connector),
// so nothing needs to register them by name.
//
// WAL lets readers run beside the one writer. _txlock=immediate makes every
// transaction take the write lock at BEGIN, where busy_timeout applies: a
// transaction that read first and upgraded later could instead fail at once
// with SQLITE_BUSY. River shares this pool and its transactions, so the same
// settings protect it too.
func openSQLite(path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("sqlstore: empty database path")
	}
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		// The driver reads '?' as the start of its parameters.
		return nil, fmt.Errorf("sqlstore: the SQLite path %q must be a plain file path", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sqlstore: create the database directory: %w", err)
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "10000")
	// NORMAL: in WAL mode a commit then writes the WAL without syncing
	// it, and checkpoints sync. The store syncs the WAL itself after each
	// group of transactions commits and before it acknowledges them
	// (walsync.go): an acknowledged commit survives power loss, as with
	// FULL, but the flush no longer holds the write lock.
	q.Set("_synchronous", "NORMAL")
	// SQLite's own flushes (checkpoints) use fdatasync(2) rather than
	// fsync(2), as SQLite's own builds do on Linux: the data and what is
	// needed to read it back (the size) are as durable, only timestamps
	// are not flushed. Where fdatasync does not exist this fails and
	// fsync stays.
	_, _ = sqlite.Fdatasync(true)
	// Temporary files in memory: above all the sub-journal of the
	// savepoints each member of a group runs in (group.go), which spilled
	// to a new temporary file (created, written, deleted) in nearly every
	// group once it passed 64 KiB.
	q.Add("_pragma", "temp_store(memory)")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	c, err := sqlite.NewConnector(path + "?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: sqlite: %w", err)
	}
	// Each connection keeps its statements prepared (stmts.go).
	db := sql.OpenDB(stmtConnector{c})
	// Writers queue on the file lock anyway; more connections let reads
	// proceed beside a write and let a caller run a read outside its write
	// transaction (River does). With 8, a busy server stalled for 20 s and
	// more (ferry-bench -small: 3 runs in 10), most likely because the
	// connections were all taken by writers waiting on the file lock
	// (River's elector and maintenance, outside the group commit) while
	// the transaction holding the lock wanted one more; with 64, no stall
	// in 16 runs. Idle connections are kept (closed after 5 minutes
	// unused), with the statements they keep prepared: with 8 kept, the
	// pool closed and reopened connections all through a burst of
	// monitor polls, preparing every statement again on each.
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// openPostgres opens a PostgreSQL database through pgx's database/sql
// adapter.
func openPostgres(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The parse error may repeat the DSN, password included.
		return nil, errors.New("sqlstore: the PostgreSQL DSN is not valid")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// gooseDialect names the engine for goose.
func (d dialect) gooseDialect() goose.Dialect {
	if d.postgres {
		return goose.DialectPostgres
	}
	return goose.DialectSQLite3
}

// migrations returns the engine's migration files.
func (d dialect) migrations() (fs.FS, error) {
	dir := "migrations/sqlite"
	if d.postgres {
		dir = "migrations/postgres"
	}
	return fs.Sub(migrations, dir)
}

// migrationLockID is the PostgreSQL advisory lock that keeps two nodes from
// migrating at once ("ferrymig" in ASCII).
const migrationLockID = 0x66657272796d6967

// rebind turns '?' placeholders into PostgreSQL's $1, $2, …. Queries in this
// package never contain '?' inside literals.
func (d dialect) rebind(q string) string {
	if !d.postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// uniqueViolation reports whether err is a UNIQUE or PRIMARY KEY violation.
func (d dialect) uniqueViolation(err error) bool {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Code == "23505"
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// badText reports whether err is PostgreSQL refusing text it was given:
// bytes that are not UTF-8, or a NUL, which its text type cannot hold
// (22021 character_not_in_repertoire), or a character it cannot convert,
// such as \u0000 in jsonb (22P05 untranslatable_character). Such text can
// only come from a client (an ID or a name in a URL or a body); SQLite
// stores any bytes and never refuses it.
func (d dialect) badText(err error) bool {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Code == "22021" || pe.Code == "22P05"
	}
	return false
}

// textError turns an error of badText into Invalid, with a message safe
// for clients (the database's own names the bytes and the statement), and
// passes every other error through unchanged. An error that already has a
// Kind keeps it, so translating twice changes nothing.
func (d dialect) textError(err error) error {
	if err == nil || !d.badText(err) {
		return err
	}
	if _, ok := errors.AsType[*ferry.Error](err); ok {
		return err
	}
	return &ferry.Error{Kind: ferry.Invalid, Message: "the request holds text that is not valid UTF-8 or contains a NUL character", Err: err}
}

// transient reports whether err means "another transaction got in the way;
// run yours again": a serialization failure or deadlock on PostgreSQL, a
// lock that outlasted busy_timeout on SQLite.
func (d dialect) transient(err error) bool {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}

// lockDriveSQL is run at the start of every transaction that changes a
// drive's items; it has one '?' for the drive ID, or is empty.
//
// On SQLite every write transaction already holds the database's single
// write lock (_txlock=immediate), so writes are serial. PostgreSQL runs them
// side by side, and checks such as "is this name free", "would this move
// make a cycle" and "is there quota left" are only sound if no other
// transaction changes the same drive meanwhile: locking the drive's row
// serialises writers per drive, and readers are not blocked.
func (d dialect) lockDriveSQL() string {
	if d.postgres {
		return `SELECT 1 FROM drives WHERE id = ? FOR UPDATE`
	}
	return ""
}

// lockUserSQL serialises transactions that count a user's running jobs; it
// has one '?' for the user ID, or is empty (see lockDriveSQL). It is an
// advisory lock, so it works whether or not the users row exists; the
// two-key form keeps it apart from River's one-key advisory locks.
func (d dialect) lockUserSQL() string {
	if d.postgres {
		return `SELECT pg_advisory_xact_lock(1717924466, hashtext(?))`
	}
	return ""
}

// lockSessionsSQL serialises transactions that count a drive's upload
// sessions before adding one; one '?' for the drive ID, or empty (see
// lockDriveSQL). Advisory, like lockUserSQL, so that it holds whether or
// not the drive's row exists, under its own first key.
func (d dialect) lockSessionsSQL() string {
	if d.postgres {
		return `SELECT pg_advisory_xact_lock(1717924467, hashtext(?))`
	}
	return ""
}

// forUpdate is appended to a SELECT of one row that the transaction goes on
// to change from what it read (read, check, write back). On PostgreSQL it
// locks the row, so concurrent transactions on that row queue and each sees
// the previous one's result; SQLite needs nothing, since its write
// transactions are serial (see lockDriveSQL).
func (d dialect) forUpdate() string {
	if d.postgres {
		return ` FOR UPDATE`
	}
	return ""
}

// defaultCollation wraps a text expression that mixes columns of the "C"
// collation (PostgreSQL's item IDs) with other text, giving it the default
// collation, as a recursive query's column must have one collation in
// both of its terms. SQLite has a single collation here.
func (d dialect) defaultCollation(expr string) string {
	if d.postgres {
		return "(" + expr + `) COLLATE "default"`
	}
	return expr
}
