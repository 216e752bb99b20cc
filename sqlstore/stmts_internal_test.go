package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// onOneConn runs fn on one connection of a fresh SQLite store with a
// scratch table holding 1, 2 and 3, and gives it that connection's
// stmtConn to look into.
func onOneConn(t *testing.T, fn func(ctx context.Context, c *sql.Conn, sc *stmtConn)) {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	c, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sc *stmtConn
	if err := c.Raw(func(dc any) error {
		var ok bool
		sc, ok = dc.(*stmtConn)
		if !ok {
			return fmt.Errorf("the pool's connection is a %T, not a *stmtConn", dc)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE TABLE scratch (n INTEGER NOT NULL)`, `INSERT INTO scratch VALUES (1), (2), (3)`} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	fn(ctx, c, sc)
}

func TestStmtConnKeepsStatements(t *testing.T) {
	onOneConn(t, func(ctx context.Context, c *sql.Conn, sc *stmtConn) {
		const q = `SELECT count(*) FROM scratch WHERE n >= ?`
		var kept *keptStmt
		for i, want := range []int{3, 2, 1, 0} {
			var got int
			if err := c.QueryRowContext(ctx, q, i+1).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("run %d: count %d, want %d", i, got, want)
			}
			e, ok := sc.stmts[q]
			if !ok {
				t.Fatalf("run %d: the statement is not kept", i)
			}
			k := e.Value.(*keptStmt)
			if kept != nil && k != kept {
				t.Errorf("run %d: the statement was prepared again", i)
			}
			if k.busy {
				t.Errorf("run %d: the statement is still busy after its row was read", i)
			}
			kept = k
		}
		// Writes through a kept statement, inside a transaction too.
		tx, err := c.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := tx.ExecContext(ctx, `UPDATE scratch SET n = n + 10 WHERE n = ?`, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := c.QueryRowContext(ctx, `SELECT count(*) FROM scratch WHERE n > 10`).Scan(&n); err != nil || n != 0 {
			t.Errorf("after the rollback, %d rows changed (err %v); want none", n, err)
		}
	})
}

// A query run again while its first run is still being read (a nested
// loop over the same SQL) gets a statement of its own; both read right.
func TestStmtConnNestedRunsOfOneQuery(t *testing.T) {
	onOneConn(t, func(ctx context.Context, c *sql.Conn, sc *stmtConn) {
		const q = `SELECT n FROM scratch WHERE n >= ? ORDER BY n`
		outer, err := c.QueryContext(ctx, q, 1)
		if err != nil {
			t.Fatal(err)
		}
		var pairs []string
		for outer.Next() {
			var a int
			if err := outer.Scan(&a); err != nil {
				t.Fatal(err)
			}
			inner, err := c.QueryContext(ctx, q, a)
			if err != nil {
				t.Fatal(err)
			}
			for inner.Next() {
				var b int
				if err := inner.Scan(&b); err != nil {
					t.Fatal(err)
				}
				pairs = append(pairs, fmt.Sprint(a, b))
			}
			if err := inner.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := outer.Close(); err != nil {
			t.Fatal(err)
		}
		want := []string{"1 1", "1 2", "1 3", "2 2", "2 3", "3 3"}
		if fmt.Sprint(pairs) != fmt.Sprint(want) {
			t.Errorf("nested runs read %v, want %v", pairs, want)
		}
		if k := sc.stmts[q].Value.(*keptStmt); k.busy {
			t.Error("the kept statement is still busy after both runs were closed")
		}
	})
}

// A connection keeps at most stmtCacheMax statements, the most recently
// used ones.
func TestStmtConnDropsLeastRecentlyUsed(t *testing.T) {
	onOneConn(t, func(ctx context.Context, c *sql.Conn, sc *stmtConn) {
		first := `SELECT 0 FROM scratch`
		for i := range stmtCacheMax + 10 {
			q := fmt.Sprintf(`SELECT %d FROM scratch`, i)
			rows, err := c.QueryContext(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if i%10 == 0 { // the first stays recently used
				rows, err := c.QueryContext(ctx, first)
				if err != nil {
					t.Fatal(err)
				}
				rows.Close()
			}
		}
		if len(sc.stmts) != stmtCacheMax || sc.lru.Len() != stmtCacheMax {
			t.Errorf("%d statements kept (%d in the list), want %d", len(sc.stmts), sc.lru.Len(), stmtCacheMax)
		}
		if _, ok := sc.stmts[first]; !ok {
			t.Error("a recently used statement was dropped")
		}
		if _, ok := sc.stmts[`SELECT 1 FROM scratch`]; ok {
			t.Error("the least recently used statement was kept")
		}
	})
}
