package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// groupStore opens a SQLite store with a scratch table.
func groupStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.db.Exec(`CREATE TABLE scratch (n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return s
}

// inGroup runs fns as transactions that all wait behind one that is
// running, so that they form the next group together, and returns their
// errors.
func inGroup(t *testing.T, s *Store, fns []func(tx *sql.Tx, c conn) error) []error {
	t.Helper()
	var wg sync.WaitGroup
	release := holdGroup(t, s, &wg, func(c conn) error {
		_, err := c.exec(t.Context(), `INSERT INTO scratch (n) VALUES (-1)`)
		return err
	})
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Go(func() { errs[i] = s.tx(t.Context(), fn) })
	}
	waitQueued(s, len(fns))
	release()
	wg.Wait()
	return errs
}

// holdGroup starts, on wg, a transaction that runs then once released and
// returns when that transaction runs: the transactions started meanwhile
// wait in the queue for the next group.
func holdGroup(t *testing.T, s *Store, wg *sync.WaitGroup, then func(c conn) error) (release func()) {
	t.Helper()
	hold, running := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		err := s.tx(t.Context(), func(_ *sql.Tx, c conn) error {
			close(running)
			<-hold
			return then(c)
		})
		if err != nil {
			t.Errorf("the holding transaction: %v", err)
		}
	})
	<-running
	return func() { close(hold) }
}

// waitQueued returns once n transactions wait in the queue.
func waitQueued(s *Store, n int) {
	for {
		s.group.mu.Lock()
		queued := len(s.group.queue)
		s.group.mu.Unlock()
		if queued == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func scratch(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.db.Query(`SELECT n FROM scratch ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ns []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	return ns
}

func insert(n int) func(tx *sql.Tx, c conn) error {
	return func(_ *sql.Tx, c conn) error {
		_, err := c.exec(context.Background(), `INSERT INTO scratch (n) VALUES (?)`, n)
		return err
	}
}

// Transactions that wait together commit together, and one that fails is
// undone alone.
func TestGroupCommit(t *testing.T) {
	s := groupStore(t)
	boom := errors.New("boom")
	var fns []func(tx *sql.Tx, c conn) error
	for i := range 20 {
		fn := insert(i)
		if i == 7 {
			fn = func(tx *sql.Tx, c conn) error {
				if err := insert(7)(tx, c); err != nil {
					return err
				}
				return boom
			}
		}
		fns = append(fns, fn)
	}
	errs := inGroup(t, s, fns)
	for i, err := range errs {
		if want := error(nil); i == 7 {
			if !errors.Is(err, boom) {
				t.Errorf("transaction 7: %v, want boom", err)
			}
		} else if err != want {
			t.Errorf("transaction %d: %v", i, err)
		}
	}
	want := []int{-1}
	for i := range 20 {
		if i != 7 {
			want = append(want, i)
		}
	}
	if got := scratch(t, s); !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if n := s.group.commits.Load(); n != 2 {
		t.Errorf("%d commits for 21 transactions, want 2 (the first, then the 20 that waited)", n)
	}
}

// When the database drops the whole transaction under one member, the
// others are run again, once each, and only that member fails.
func TestGroupLostTransaction(t *testing.T) {
	s := groupStore(t)
	errs := inGroup(t, s, []func(tx *sql.Tx, c conn) error{
		insert(1),
		func(tx *sql.Tx, c conn) error {
			if _, err := tx.Exec(`ROLLBACK`); err != nil {
				return err
			}
			return errors.New("rolled back")
		},
		insert(3),
	})
	if errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Errorf("errors %v, want only the second", errs)
	}
	if got, want := scratch(t, s), []int{-1, 1, 3}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

// A transaction whose context ends while it waits is not run.
func TestGroupCancelledMember(t *testing.T) {
	s := groupStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	ran := false
	var wg sync.WaitGroup
	release := holdGroup(t, s, &wg, func(conn) error { return nil })
	var err error
	wg.Go(func() {
		err = s.tx(ctx, func(*sql.Tx, conn) error {
			ran = true
			return nil
		})
	})
	waitQueued(s, 1)
	cancel()
	release()
	wg.Wait()
	if ran || !errors.Is(err, context.Canceled) {
		t.Errorf("ran %v, err %v; want not run, context.Canceled", ran, err)
	}
}

// A transaction that panics is undone, and the panic is raised in its own
// goroutine; the others of its group commit.
func TestGroupPanic(t *testing.T) {
	s := groupStore(t)
	var recovered any
	var wg sync.WaitGroup
	release := holdGroup(t, s, &wg, func(conn) error { return nil })
	var err1, err3 error
	wg.Go(func() { err1 = s.tx(t.Context(), insert(1)) })
	wg.Go(func() {
		defer func() { recovered = recover() }()
		s.tx(t.Context(), func(tx *sql.Tx, c conn) error {
			if err := insert(2)(tx, c); err != nil {
				return err
			}
			panic("oops")
		})
	})
	wg.Go(func() { err3 = s.tx(t.Context(), insert(3)) })
	waitQueued(s, 3)
	release()
	wg.Wait()
	if msg, ok := recovered.(string); !ok || !strings.Contains(msg, "oops") {
		t.Errorf("recovered %v, want the panic", recovered)
	}
	if err1 != nil || err3 != nil {
		t.Errorf("errors %v, %v; want none", err1, err3)
	}
	if got, want := scratch(t, s), []int{1, 3}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

// TestGroupsShareTheWriter: every group runs on the one writer connection
// (its page cache stays warm); a writer connection that can no longer
// begin is replaced at once.
func TestGroupsShareTheWriter(t *testing.T) {
	s := groupStore(t)
	if err := s.tx(t.Context(), insert(1)); err != nil {
		t.Fatal(err)
	}
	w := s.group.writer
	if w == nil {
		t.Fatal("no writer connection after a group")
	}
	if err := s.tx(t.Context(), insert(2)); err != nil {
		t.Fatal(err)
	}
	if s.group.writer != w {
		t.Fatal("the second group took another connection")
	}
	w.Close() // as if the connection broke
	if err := s.tx(t.Context(), insert(3)); err != nil {
		t.Fatalf("after the writer broke: %v", err)
	}
	if s.group.writer == nil || s.group.writer == w {
		t.Fatal("the broken writer connection was not replaced")
	}
	if got := scratch(t, s); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("rows %v, want [1 2 3]", got)
	}
}

// TestGroupSubJournalInMemory: the savepoints of a group's members keep
// their sub-journal in memory (temp_store=MEMORY); otherwise SQLite spills
// it to a new temporary file once it passes 64 KiB, nearly every group.
func TestGroupSubJournalInMemory(t *testing.T) {
	s := groupStore(t)
	var mode int
	if err := s.db.QueryRow(`PRAGMA temp_store`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 {
		t.Fatalf("temp_store = %d, want 2 (MEMORY)", mode)
	}
}
