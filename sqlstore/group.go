package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Group commit on SQLite.
//
// SQLite has one writer at a time, and with synchronous=FULL every commit
// syncs the WAL file: a commit costs a disk flush however little it
// writes. Transactions that arrive while another one runs therefore wait
// in a queue in process (not on the file lock, whose busy handler sleeps)
// and the next of them to lead runs all of them, up to groupMax, in one
// SQLite transaction: each in a savepoint of its own, so that one that
// fails is rolled back alone, and one commit makes the whole group durable
// with one flush. Each caller learns its own outcome only after that
// commit: a transaction that was acknowledged is as durable as before.
// Members see the effects of the members before them, as if they had run
// one after the other, which is what SQLite's single writer does anyway.
// The commit writes the group's WAL frames; the flush that makes them
// durable runs beside the next group (walsync.go), and the members learn
// their outcome after it.
//
// A member's statements run on a context without its cancel (conn.detach):
// an interrupted statement would make SQLite roll back the whole
// transaction, the other members' work with it. A member whose context
// has ended before its turn is not run. Should the transaction be lost all
// the same (the database rolled it back under a member, e.g. on a full
// disk), the members that had not failed are run again in a new group,
// which their fn allows: like any fn of Store.tx, it has no effects
// outside the transaction.
//
// PostgreSQL runs transactions side by side and groups its own commits;
// there each transaction is its own.

// groupMax bounds the members of one group, so that the first of them
// waits for a bounded amount of others' work.
const groupMax = 64

// grouper queues the transactions of one store.
type grouper struct {
	mu      sync.Mutex
	queue   []*member
	leading bool // a member runs groups now

	commits atomic.Int64 // groups committed, for tests
	// writer is the connection the groups run on (beginGroup); only the
	// member that leads uses it.
	writer *sql.Conn
}

// member is one transaction waiting for its group.
type member struct {
	ctx  context.Context
	fn   func(tx *sql.Tx, c conn) error
	st   *txState      // its attempt's state in the group that runs it
	done chan error    // its outcome, once the group committed or failed
	lead chan struct{} // closed when this member is to run the next groups
	// ran: a group ran the member and its outcome is sent or on its way
	// (the flush). Only the goroutine that leads reads and writes it.
	ran bool
}

// groupTx runs fn as a member of the next group and returns its outcome.
func (s *Store) groupTx(ctx context.Context, fn func(tx *sql.Tx, c conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := &member{ctx: ctx, fn: fn, done: make(chan error, 1), lead: make(chan struct{})}
	g := &s.group
	g.mu.Lock()
	g.queue = append(g.queue, m)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		select {
		case err := <-m.done:
			return rethrow(err)
		case <-m.lead:
		}
	}
	// This member leads: it runs groups from the queue, its own among
	// them, then hands the lead to the first member still waiting.
	for {
		g.mu.Lock()
		n := min(len(g.queue), groupMax)
		batch := append([]*member(nil), g.queue[:n]...)
		g.queue = g.queue[n:]
		g.mu.Unlock()
		s.runGroup(batch)
		if m.ran {
			break
		}
		// Not yet in a group: more than groupMax were ahead.
	}
	g.mu.Lock()
	if len(g.queue) > 0 {
		close(g.queue[0].lead)
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return rethrow(<-m.done)
}

// settle tells m its outcome.
func (m *member) settle(err error) {
	m.ran = true
	m.done <- err
}

// beginGroup begins a group's transaction on the store's writer
// connection, which runs every group: SQLite keeps a page cache per
// connection and empties it when another connection has written since, so
// groups spread over the pool's connections each read their pages again
// (a system call per page), while the writer's cache stays warm from one
// group to the next. A connection that is broken is dropped for a new
// one, once.
func (s *Store) beginGroup(ctx context.Context) (*sql.Tx, error) {
	g := &s.group
	var err error
	for range 2 {
		if g.writer == nil {
			if g.writer, err = s.db.Conn(ctx); err != nil {
				break
			}
		}
		var tx *sql.Tx
		if tx, err = g.writer.BeginTx(ctx, nil); err == nil {
			return tx, nil
		}
		if !errors.Is(err, sql.ErrConnDone) && !errors.Is(err, driver.ErrBadConn) {
			break // not the connection's fault (a lock held too long)
		}
		g.writer.Close()
		g.writer = nil
	}
	return nil, fmt.Errorf("sqlstore: begin: %w", err)
}

// runGroup runs the members in one transaction and tells each its outcome.
func (s *Store) runGroup(batch []*member) {
	for len(batch) > 0 {
		batch = s.tryGroup(batch)
	}
}

// tryGroup runs batch in one transaction and reports the outcome to every
// member, unless the transaction was lost under a member: then it reports
// to that member and returns the others, to be run again.
func (s *Store) tryGroup(batch []*member) (again []*member) {
	// The transaction belongs to no member: none's cancel may end it.
	bg := context.Background()
	err := s.wal.err() // a failed flush refuses every write after it
	var tx *sql.Tx
	if err == nil {
		tx, err = s.beginGroup(bg)
	}
	if err != nil {
		for _, m := range batch {
			m.settle(err)
		}
		return nil
	}
	var ok []*member
	for i, m := range batch {
		if err := m.ctx.Err(); err != nil {
			m.settle(err)
			continue
		}
		if _, err := tx.ExecContext(bg, `SAVEPOINT member`); err != nil {
			tx.Rollback()
			m.settle(fmt.Errorf("sqlstore: savepoint: %w", err))
			return append(ok, batch[i+1:]...)
		}
		m.st = &txState{}
		err := m.run(tx, conn{q: tx, d: s.d, tx: m.st, detach: true})
		if err == nil {
			if _, err := tx.ExecContext(bg, `RELEASE member`); err != nil {
				tx.Rollback()
				m.settle(fmt.Errorf("sqlstore: release savepoint: %w", err))
				return append(ok, batch[i+1:]...)
			}
			ok = append(ok, m)
			continue
		}
		// fn may hold statements that did not go through conn (River's
		// InsertTx on the same transaction).
		m.settle(s.d.textError(err))
		_, rerr := tx.ExecContext(bg, `ROLLBACK TO member`)
		if rerr == nil {
			_, rerr = tx.ExecContext(bg, `RELEASE member`)
		}
		if rerr != nil {
			// The database rolled the whole transaction back.
			tx.Rollback()
			return append(ok, batch[i+1:]...)
		}
	}
	if len(ok) == 0 {
		tx.Rollback()
		return nil
	}
	if err := tx.Commit(); err != nil {
		for _, m := range ok {
			m.settle(fmt.Errorf("sqlstore: commit: %w", err))
		}
		return nil
	}
	s.group.commits.Add(1)
	n := s.wal.commit()
	for _, m := range ok {
		m.ran = true
	}
	// The members learn their outcome once the commit is durable; the
	// leader goes on with the next group meanwhile.
	go func() {
		err := s.wal.wait(n)
		for _, m := range ok {
			if err == nil {
				s.committed(m.st)
			}
			m.done <- err
		}
	}()
	return nil
}

// write runs one statement that writes, outside any transaction of the
// caller's: on SQLite as a member of a group (see above), so that it
// neither costs a flush of its own nor waits on the file lock; on
// PostgreSQL on its own.
func (s *Store) write(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s.d.postgres {
		return s.c.exec(ctx, query, args...)
	}
	var res sql.Result
	err := s.tx(ctx, func(_ *sql.Tx, t conn) error {
		var err error
		res, err = t.exec(ctx, query, args...)
		return err
	})
	return res, err
}

// run runs the member's fn. A panic in fn is undone like a failure and
// raised again in the member's own goroutine (rethrow), not in the one
// that runs the group.
func (m *member) run(tx *sql.Tx, c conn) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &memberPanic{v: v, stack: debug.Stack()}
		}
	}()
	return m.fn(tx, c)
}

// memberPanic carries a member's panic to its goroutine.
type memberPanic struct {
	v     any
	stack []byte
}

func (p *memberPanic) Error() string {
	return fmt.Sprintf("sqlstore: panic in a transaction: %v\n%s", p.v, p.stack)
}

// rethrow raises a member's panic again; other errors it returns.
func rethrow(err error) error {
	if p, ok := err.(*memberPanic); ok {
		panic(p.Error())
	}
	return err
}
