package sqlstore

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockFlushes replaces s's WAL flush with one that reports each flush on
// started and then waits for a value on release.
func blockFlushes(s *Store) (started chan struct{}, release chan error) {
	started, release = make(chan struct{}, 16), make(chan error)
	s.wal.sync = func(f *os.File) error {
		started <- struct{}{}
		if err := <-release; err != nil {
			return err
		}
		return datasync(f)
	}
	return started, release
}

// waitRows waits until scratch holds want rows, as any reader sees it.
func waitRows(t *testing.T, s *Store, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(scratch(t, s)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("scratch has %d rows, want %d", len(scratch(t, s)), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWALFlushOutsideTheLock: a write is committed (readers see it) before
// its flush, is told its outcome only after the flush, and the next write
// commits while the first one's flush is still under way; one flush then
// covers every commit before it began.
func TestWALFlushOutsideTheLock(t *testing.T) {
	s := groupStore(t)
	started, release := blockFlushes(s)
	done := make(chan error, 2)
	go func() { done <- s.tx(t.Context(), insert(1)) }()
	<-started // the first write's flush has begun
	waitRows(t, s, 1)
	go func() { done <- s.tx(t.Context(), insert(2)) }()
	waitRows(t, s, 2) // committed beside the first flush
	select {
	case err := <-done:
		t.Fatalf("a write returned (%v) before its flush ended", err)
	case <-time.After(50 * time.Millisecond):
	}
	release <- nil // the first flush ends: only the first write is durable
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-started // the second write's flush
	select {
	case err := <-done:
		t.Fatalf("the second write returned (%v) before its own flush", err)
	case <-time.After(50 * time.Millisecond):
	}
	release <- nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Commits that wait behind a flush share the next one.
	go func() { done <- s.tx(t.Context(), insert(3)) }()
	<-started
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if err := s.tx(t.Context(), insert(10+i)); err != nil {
				t.Error(err)
			}
		})
	}
	waitRows(t, s, 8)
	s.wal.mu.Lock()
	before := s.wal.flushes
	s.wal.mu.Unlock()
	release <- nil
	<-done
	<-started
	release <- nil
	wg.Wait()
	s.wal.mu.Lock()
	defer s.wal.mu.Unlock()
	if got := s.wal.flushes - before; got != 2 {
		t.Errorf("%d flushes for the six writes, want 2 (one under way, one for the five behind it)", got)
	}
	if s.wal.synced != s.wal.committed {
		t.Errorf("%d of %d commits durable", s.wal.synced, s.wal.committed)
	}
}

// TestWALFlushFails: a write whose flush fails is told so, and every write
// after it is refused: what reached the disk is unknown until a restart.
func TestWALFlushFails(t *testing.T) {
	s := groupStore(t)
	started, release := blockFlushes(s)
	done := make(chan error, 1)
	go func() { done <- s.tx(t.Context(), insert(1)) }()
	<-started
	release <- errors.New("EIO")
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("write after a failed flush: %v", err)
	}
	if err := s.tx(t.Context(), insert(2)); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a later write: %v, want it refused", err)
	}
	if got := scratch(t, s); len(got) != 1 {
		t.Fatalf("rows %v: the refused write must not commit", got)
	}
}

// TestWALFlushFollowsANewFile: SQLite deletes the WAL when its last
// connection closes and starts a new one later; the flush then syncs the
// new file, not the deleted one it had open.
func TestWALFlushFollowsANewFile(t *testing.T) {
	s := groupStore(t)
	if err := s.tx(t.Context(), insert(1)); err != nil {
		t.Fatal(err)
	}
	var synced []os.FileInfo
	s.wal.sync = func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		synced = append(synced, fi)
		return datasync(f)
	}
	if err := s.tx(t.Context(), insert(2)); err != nil {
		t.Fatal(err)
	}
	// Close every connection, the groups' writer too: SQLite
	// checkpoints and deletes the WAL.
	s.group.writer.Close()
	s.group.writer = nil
	s.db.SetMaxIdleConns(0)
	s.db.SetMaxIdleConns(64)
	if _, err := os.Stat(s.wal.path); err == nil {
		t.Fatal("SQLite kept the WAL file with every connection closed")
	}
	if err := s.tx(t.Context(), insert(3)); err != nil {
		t.Fatal(err)
	}
	cur, err := os.Stat(s.wal.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(synced) != 2 || os.SameFile(synced[0], synced[1]) || !os.SameFile(synced[1], cur) {
		t.Fatalf("flushed %d files; the last must be the new WAL", len(synced))
	}
	if got := scratch(t, s); len(got) != 3 {
		t.Fatalf("rows %v", got)
	}
}
