package sqlstore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// copyStore opens a SQLite store that copies three items per transaction,
// with a user whose root holds the folder "src" of 1 + 4 × (a folder and
// its 2 files) = 13 items, and returns the store, the root and src.
func copyStore(t *testing.T) (*Store, ferry.ItemID, *ferry.Item) {
	t.Helper()
	ctx := t.Context()
	s, d := aliceStore(t, 1<<30)
	s.SetTreeBatch(3)
	mk := func(parent ferry.ItemID, name string, size int64) *ferry.Item {
		n := ferry.NewItem{DriveID: d.ID, ParentID: parent, Name: name, Folder: size < 0}
		if size >= 0 {
			n.Content = ferry.Content{Size: size, BlobKey: ferry.NewID("blob-", 8)}
		}
		it, _, err := s.CreateItem(ctx, n, ferry.ConflictFail)
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	src := mk(d.RootID, "src", -1)
	for i := range 4 {
		f := mk(src.ID, fmt.Sprint("f", i), -1)
		mk(f.ID, "a", int64(i))
		mk(f.ID, "b", 10)
	}
	src, err := s.Item(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s, d.RootID, src
}

// TestCopyItemCommitsInSteps: CopyItem of 13 items, three per
// transaction, commits several SQLite transactions (groups), not one.
func TestCopyItemCommitsInSteps(t *testing.T) {
	s, root, src := copyStore(t)
	before := s.group.commits.Load()
	cp, err := s.CopyItem(t.Context(), src.ID, root, "copy", ferry.ConflictFail, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.group.commits.Load() - before; n < 5 {
		t.Errorf("CopyItem of 13 items committed %d transactions; want at least 5 of 3 items", n)
	}
	if cp.Size != src.Size || cp.ChildCount != 4 {
		t.Errorf("copy = %+v, want the source's size %d and 4 children", cp, src.Size)
	}
	// A copy of no more items than one transaction holds is one.
	f, err := s.ItemByPath(t.Context(), src.ID, []string{"f1"})
	if err != nil {
		t.Fatal(err)
	}
	before = s.group.commits.Load()
	if _, err := s.CopyItem(t.Context(), f.ID, root, "", ferry.ConflictFail, ""); err != nil {
		t.Fatal(err)
	}
	if n := s.group.commits.Load() - before; n != 1 {
		t.Errorf("CopyItem of 3 items committed %d transactions; want 1", n)
	}
}

// TestAbandonedCopyItem: what a CopyItem whose process died left (here:
// one step run, then nothing) is removed by DropAbandonedCopies once it
// has made no step for the given time, not before.
func TestAbandonedCopyItem(t *testing.T) {
	s, root, src := copyStore(t)
	ctx := t.Context()
	spec := copySpec{src: src.ID, parent: root, name: "copy", conflict: ferry.ConflictFail}
	if it, _, err := s.copyStep(ctx, spec, copyOwner{id: "copy_test"}); err != nil || it != nil {
		t.Fatalf("copyStep = %+v, %v; want a step that leaves more to do", it, err)
	}
	count := func(q string) int { t.Helper(); return countRows(t, s, q) }
	if n := count(`SELECT count(*) FROM items`); n != 1+13+3 {
		t.Errorf("%d items after one step; want the root, the source's 13 and 3 hidden", n)
	}
	if n, err := s.DropAbandonedCopies(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("DropAbandonedCopies(an hour ago) = %d, %v; want 0: the copy is recent", n, err)
	}
	if n, err := s.DropAbandonedCopies(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Errorf("DropAbandonedCopies(now) = %d, %v; want 1", n, err)
	}
	if n := count(`SELECT count(*) FROM items`); n != 1+13 {
		t.Errorf("%d items after the drop; want the root and the source's 13", n)
	}
	if n := count(`SELECT count(*) FROM pending_copies`); n != 0 {
		t.Errorf("%d copies under way after the drop; want 0", n)
	}
	if n := count(`SELECT count(*) FROM blobs WHERE refs <> 1`); n != 0 {
		t.Errorf("%d blobs without exactly the source's reference", n)
	}
}

// countRows runs q, a query for one count, on s's database.
func countRows(t *testing.T, s *Store, q string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(t.Context(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// aliceStore opens a SQLite store in a temporary folder, closed when tb
// ends, with the user alice and her drive of the given quota.
func aliceStore(tb testing.TB, quota int64) (*Store, *ferry.Drive) {
	tb.Helper()
	ctx := tb.Context()
	s, err := Open(ctx, filepath.Join(tb.TempDir(), "ferry.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	u, _, err := s.EnsureUser(ctx, "alice", quota)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := s.DriveOf(ctx, u.ID)
	if err != nil {
		tb.Fatal(err)
	}
	return s, d
}
