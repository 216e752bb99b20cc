// Package sqlstore keeps Ferry's metadata (users, drives, tokens, items,
// blob references, job monitors, server secrets) in SQL, on SQLite for the
// embedded default or on PostgreSQL for scale-out. One schema and one set of
// queries serve both engines; dialect.go holds the few differences.
//
// The River job queue keeps its tables in the store's database: River gets
// its driver over the store's connection pool from River, inserts its jobs
// inside transactions the store opens (see InsertJob), so that a job
// monitor and its queued work are committed together, and asks for what
// River has no API for by name (river.go). No SQL lives outside this
// package.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Store is the SQL metadata store. It implements ferry.ItemStore and
// ferry.AccountStore, and holds the job rows the jobs package uses. It is
// safe for concurrent use, also by several processes on one database.
type Store struct {
	db *sql.DB
	d  dialect
	c  conn // runs statements outside a transaction

	retries RetryCounter // nil until CountRetries
	group   grouper      // SQLite's queue of transactions (group.go)
	wakers  wakers       // River listeners to wake (riverwake.go)

	batchSize int // items per transaction of a copy or removal; 0: defaultBatch (copy.go)

	// removals receives a value, at most one waiting, after a
	// transaction that left a deleted tree to remove commits (remove.go).
	removals chan struct{}
	// wal makes SQLite's commits durable (walsync.go); nil on PostgreSQL.
	wal *walSync
}

var (
	_ ferry.ItemStore    = (*Store)(nil)
	_ ferry.AccountStore = (*Store)(nil)
)

// Open opens the database named by dsn and applies any pending migrations.
// A dsn starting with postgres:// or postgresql:// selects PostgreSQL;
// anything else is the path of a SQLite file, created with its parent
// directories if missing.
func Open(ctx context.Context, dsn string) (*Store, error) {
	d := dialect{postgres: isPostgresDSN(dsn)}
	var db *sql.DB
	var err error
	if d.postgres {
		db, err = openPostgres(dsn)
	} else {
		db, err = openSQLite(dsn)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, d: d, removals: make(chan struct{}, 1)}
	s.c = conn{q: db, d: d}
	if !d.postgres {
		s.wal = newWALSync(dsn)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connect: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// migrate applies the embedded migrations. Goose's bookkeeping table is
// called ferry_migrations so that it stays clear of River's river_* tables
// in the same database.
func (s *Store) migrate(ctx context.Context) error {
	fsys, err := s.d.migrations()
	if err != nil {
		return fmt.Errorf("sqlstore: migrations: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithTableName("ferry_migrations"),
		goose.WithDisableGlobalRegistry(true),
	}
	if s.d.postgres {
		l, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID))
		if err != nil {
			return fmt.Errorf("sqlstore: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(l))
	}
	p, err := goose.NewProvider(s.d.gooseDialect(), s.db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("sqlstore: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	if w := s.group.writer; w != nil {
		w.Close()
	}
	err := s.db.Close()
	if s.wal != nil {
		s.wal.shut()
	}
	return err
}

// Durable returns once every write the store has committed is durable. On
// SQLite a commit is visible to readers up to one flush before it is
// durable (walsync.go): whatever shows the state it read to a client waits
// for this first, so that no client sees what a power cut could undo. On
// PostgreSQL a commit is durable before anyone sees it.
func (s *Store) Durable() {
	if s.wal != nil {
		s.wal.settled() // a failed flush refuses writes; readers need not wait for it
	}
}

// DB returns the store's database handle, for tests that look at rows
// directly.
func (s *Store) DB() *sql.DB { return s.db }

// Postgres reports whether the store runs on PostgreSQL rather than SQLite.
func (s *Store) Postgres() bool { return s.d.postgres }

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn runs statements written with '?' placeholders on a database or a
// transaction, rewriting the placeholders for the engine.
type conn struct {
	q  querier
	d  dialect
	tx *txState // nil outside a transaction
	// detach runs the statements without the cancel of their context:
	// set in a group of transactions (group.go), where an interrupted
	// statement would roll back the other members' work too.
	detach bool
}

// stmtCtx is the context a statement runs on.
func (c conn) stmtCtx(ctx context.Context) context.Context {
	if c.detach {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// txState is what one attempt of a transaction remembers across its
// statements: the change sequence number it took in each drive it changed
// (see changeSeq), and whether it left a deleted tree to remove (see
// detachTree), which is announced once it commits (committed).
type txState struct {
	seqs     map[ferry.DriveID]int64
	detached bool
}

// committed does what waits for the commit of a transaction whose attempt
// had the state st.
func (s *Store) committed(st *txState) {
	if st.detached {
		s.wakeRemovals()
	}
}

// Every statement goes through exec, query or row, which makes them the
// store's error edge for text the database refuses (see badText): such an
// error becomes Invalid here, once, so that no caller can let it through
// as an internal error.

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, query = c.stmtCtx(ctx), c.d.rebind(query)
	res, err := c.q.ExecContext(ctx, query, args...)
	return res, c.d.textError(err)
}

// query runs a query. A refused argument shows in its error: both drivers
// bind the arguments, and pgx reads the first row, before it returns.
func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx, query = c.stmtCtx(ctx), c.d.rebind(query)
	rows, err := c.q.QueryContext(ctx, query, args...)
	return rows, c.d.textError(err)
}

func (c conn) row(ctx context.Context, query string, args ...any) row {
	ctx, query = c.stmtCtx(ctx), c.d.rebind(query)
	return row{r: c.q.QueryRowContext(ctx, query, args...), d: c.d}
}

// row is a *sql.Row whose Scan error has passed the error edge.
type row struct {
	r *sql.Row
	d dialect
}

func (r row) Scan(dest ...any) error { return r.d.textError(r.r.Scan(dest...)) }

// maxAttempts bounds how often a transaction is run again after a
// transient conflict.
const maxAttempts = 5

// tx runs fn in a transaction and commits it if fn returns nil. A
// transaction that fails because another one got in the way (deadlock,
// serialization failure, a lock held past busy_timeout) is run again, so fn
// must not have effects outside the transaction; once attempts run out the
// error is Unavailable.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx, c conn) error) error {
	return s.txOpts(ctx, nil, fn)
}

// snapshotTx is tx for a transaction whose reads must all see one snapshot
// of the database (REPEATABLE READ on PostgreSQL; SQLite's transactions
// are serial anyway).
func (s *Store) snapshotTx(ctx context.Context, fn func(tx *sql.Tx, c conn) error) error {
	var opts *sql.TxOptions
	if s.d.postgres {
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead}
	}
	return s.txOpts(ctx, opts, fn)
}

func (s *Store) txOpts(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx, c conn) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, opts, fn)
		if err == nil || !s.d.transient(err) || ctx.Err() != nil {
			return err
		}
		if attempt == maxAttempts {
			return &ferry.Error{Kind: ferry.Unavailable, Message: "the database is busy; try again", RetryAfter: 1, Err: err}
		}
		if s.retries != nil {
			s.retries.DBRetry()
		}
		t := time.NewTimer(time.Duration(attempt*attempt) * 10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Store) tryTx(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx, c conn) error) error {
	if !s.d.postgres {
		return s.groupTx(ctx, fn)
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	st := &txState{}
	if err := fn(tx, conn{q: tx, d: s.d, tx: st}); err != nil {
		tx.Rollback()
		// fn may hold statements that did not go through conn (River's
		// InsertTx on the same transaction).
		return s.d.textError(err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	s.committed(st)
	return nil
}

// now is the current time as the store keeps it: UTC, whole milliseconds.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// millis converts a time to the stored form, Unix milliseconds.
func millis(t time.Time) int64 { return t.UnixMilli() }

// fromMillis converts a stored time back, in UTC.
func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// nullMillis stores the zero time as NULL.
func nullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromNullMillis reads a nullable time; NULL gives the zero time.
func fromNullMillis(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMillis(v.Int64)
}

// rowsAffected reports how many rows a statement changed.
func rowsAffected(res sql.Result) (int64, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore: rows affected: %w", err)
	}
	return n, nil
}

// notFound reports whether err is sql.ErrNoRows.
func notFound(err error) bool { return errors.Is(err, sql.ErrNoRows) }
