package sqlstore

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
)

// Prepared statements on SQLite.
//
// Preparing (parsing and planning) an SQLite statement costs about as much
// CPU as running it, and a busy server runs the same few dozen statements
// over and over: the store's (reading a job for its monitor, every write of
// a job's life) and River's (fetching available jobs, recording finished
// ones). database/sql prepares nothing on its own: a query outside an
// explicit Prepare is prepared, run and finalized every time. So every
// SQLite connection of the pool keeps its statements prepared, by their
// SQL text, at the driver level (stmtConn), where River's statements,
// which run on the store's *sql.Tx but never through the store's code,
// benefit too. During 900 small imports (ferry-bench -small) preparing
// took 15 % of the server's CPU before this (0.60 s of 3.91 s sampled).
//
// A statement is reused only when no open result set still reads from it;
// a query that runs while an earlier run of the same SQL is still being
// read (nested loops) gets a statement of its own for that run. (A script
// of several statements is kept too, but the driver prepares all but its
// first statement again on every run, as it would anyway.) Each connection
// keeps at most stmtCacheMax statements, dropping the least recently used:
// SQL built with a varying number of placeholders would otherwise fill it.
// The pool keeps its idle connections (openSQLite), so that their
// statements stay prepared.
// PostgreSQL's driver (pgx) caches its statements itself.

// stmtCacheMax bounds the statements one connection keeps prepared.
const stmtCacheMax = 128

// stmtConnector opens SQLite connections that keep their statements.
type stmtConnector struct{ driver.Connector }

func (c stmtConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return newStmtConn(dc)
}

// base is what stmtConn needs of the driver's connection.
type base interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
}

// stmtConn is a driver connection that keeps its statements prepared. Like
// any driver.Conn it is used by one goroutine at a time.
type stmtConn struct {
	base
	stmts map[string]*list.Element // of *keptStmt, by SQL
	lru   list.List                // most recently used first
}

// keptStmt is one statement a connection keeps.
type keptStmt struct {
	query string
	st    driver.Stmt
	busy  bool // an open result set reads from it
}

// preparedStmt is what a kept statement must offer.
type preparedStmt interface {
	driver.StmtExecContext
	driver.StmtQueryContext
}

func newStmtConn(dc driver.Conn) (driver.Conn, error) {
	b, ok := dc.(base)
	if !ok {
		dc.Close()
		return nil, errors.New("sqlstore: the SQLite driver's connections lack a context method")
	}
	return &stmtConn{base: b, stmts: map[string]*list.Element{}}, nil
}

// kept returns the connection's free statement for query, preparing and
// keeping it if it has none, or nil when query is not to be kept (a
// script, or its statement is busy: the caller runs it the usual way).
func (c *stmtConn) kept(ctx context.Context, query string) (*keptStmt, error) {
	if e, ok := c.stmts[query]; ok {
		k := e.Value.(*keptStmt)
		if k.busy {
			return nil, nil
		}
		c.lru.MoveToFront(e)
		return k, nil
	}
	st, err := c.base.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if _, ok := st.(preparedStmt); !ok {
		st.Close()
		return nil, nil
	}
	k := &keptStmt{query: query, st: st}
	c.stmts[query] = c.lru.PushFront(k)
	c.evict()
	return k, nil
}

// evict drops the least recently used free statements above stmtCacheMax.
func (c *stmtConn) evict() {
	for e := c.lru.Back(); e != nil && len(c.stmts) > stmtCacheMax; {
		prev := e.Prev()
		if k := e.Value.(*keptStmt); !k.busy {
			c.lru.Remove(e)
			delete(c.stmts, k.query)
			k.st.Close()
		}
		e = prev
	}
}

func (c *stmtConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	k, err := c.kept(ctx, query)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return c.base.ExecContext(ctx, query, args)
	}
	return k.st.(preparedStmt).ExecContext(ctx, args)
}

func (c *stmtConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	k, err := c.kept(ctx, query)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return c.base.QueryContext(ctx, query, args)
	}
	rows, err := k.st.(preparedStmt).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	k.busy = true
	return &keptRows{Rows: rows, k: k}, nil
}

// Close finalizes the kept statements and closes the connection.
func (c *stmtConn) Close() error {
	for e := c.lru.Front(); e != nil; e = e.Next() {
		e.Value.(*keptStmt).st.Close()
	}
	c.stmts = nil
	c.lru.Init()
	return c.base.Close()
}

// The optional interfaces of the driver's connection that database/sql
// looks for, passed on.

func (c *stmtConn) Ping(ctx context.Context) error {
	if p, ok := c.base.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *stmtConn) ResetSession(ctx context.Context) error {
	if r, ok := c.base.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *stmtConn) IsValid() bool {
	if v, ok := c.base.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// keptRows frees its statement for the next run when closed.
type keptRows struct {
	driver.Rows
	k *keptStmt
}

func (r *keptRows) Close() error {
	err := r.Rows.Close()
	r.k.busy = false
	return err
}

// The optional interfaces of the driver's rows, passed on (database/sql
// reads column types through them). The driver's rows implement them all;
// the defaults are database/sql's for rows that do not.

func (r *keptRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *keptRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *keptRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *keptRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *keptRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
