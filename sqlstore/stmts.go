package sqlstore

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// stmtCache keeps the store's statements prepared, by their SQL, on SQLite:
// there, preparing (parsing and planning) a statement costs about as much
// CPU as running it, and the store runs the same few statements again and
// again (reading a job for its monitor, every write of a job's life).
// database/sql prepares a cached statement on each connection that runs it,
// once. PostgreSQL's driver caches its statements itself.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// stmtCacheMax bounds the statements kept: SQL built with a varying
// number of placeholders is run unprepared once the cache is full.
const stmtCacheMax = 256

// stmt returns the prepared statement of query, bound to tx if not nil, or
// nil when query is not to be prepared (more than one statement, a full
// cache, an error: the caller runs it unprepared, and learns of the error
// then).
func (c *stmtCache) stmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	if c == nil || strings.Contains(query, ";") {
		return nil
	}
	c.mu.Lock()
	st, ok := c.m[query]
	if !ok && len(c.m) < stmtCacheMax {
		// Prepared under the lock: two callers would otherwise prepare
		// the same statement twice, and preparing takes moments.
		var err error
		if st, err = c.db.PrepareContext(context.WithoutCancel(ctx), query); err == nil {
			if c.m == nil {
				c.m = map[string]*sql.Stmt{}
			}
			c.m[query] = st
		}
	}
	c.mu.Unlock()
	if st == nil || tx == nil {
		return st
	}
	// Closed with the transaction.
	return tx.StmtContext(ctx, st)
}

// close closes the cached statements.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}
