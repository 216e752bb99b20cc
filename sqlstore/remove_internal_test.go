package sqlstore

import (
	"testing"
)

// TestDeleteCommitsInSteps: deleting a folder of at most three items, the
// batch, is one SQLite transaction that leaves nothing to remove; deleting
// one of 13 is one too, which leaves its tree to RemoveDeleted and says so
// on Removals; RemoveDeleted then commits several transactions.
func TestDeleteCommitsInSteps(t *testing.T) {
	s, _, src := copyStore(t)
	ctx := t.Context()
	count := func(q string) int { t.Helper(); return countRows(t, s, q) }
	signalled := func() bool {
		select {
		case <-s.Removals():
			return true
		default:
			return false
		}
	}
	f, err := s.ItemByPath(ctx, src.ID, []string{"f1"})
	if err != nil {
		t.Fatal(err)
	}
	before := s.group.commits.Load()
	if err := s.DeleteItem(ctx, f.ID, ""); err != nil {
		t.Fatal(err)
	}
	if n := s.group.commits.Load() - before; n != 1 {
		t.Errorf("DeleteItem of 3 items committed %d transactions; want 1", n)
	}
	if signalled() || count(`SELECT count(*) FROM removals`) != 0 {
		t.Error("DeleteItem of 3 items left a tree to remove")
	}
	if n := count(`SELECT count(*) FROM items`); n != 1+13-3 {
		t.Errorf("%d items after deleting 3 of 14; want 11", n)
	}

	before = s.group.commits.Load()
	if err := s.DeleteItem(ctx, src.ID, ""); err != nil {
		t.Fatal(err)
	}
	if n := s.group.commits.Load() - before; n != 1 {
		t.Errorf("DeleteItem of 10 items committed %d transactions; want 1", n)
	}
	if !signalled() || count(`SELECT count(*) FROM removals`) != 1 {
		t.Error("DeleteItem of 10 items left no tree to remove, or did not say so")
	}
	if n := count(`SELECT count(*) FROM items`); n != 11 {
		t.Errorf("%d items right after the delete; want the 11 rows still there", n)
	}
	before = s.group.commits.Load()
	if n, err := s.RemoveDeleted(ctx, 0); err != nil || n != 1 {
		t.Fatalf("RemoveDeleted = %d, %v; want 1", n, err)
	}
	if n := s.group.commits.Load() - before; n < 4 {
		t.Errorf("RemoveDeleted of 10 items committed %d transactions; want at least 4 of 3 items", n)
	}
	if n := count(`SELECT count(*) FROM items`); n != 1 {
		t.Errorf("%d items after the removal; want the root only", n)
	}
	if n := count(`SELECT count(*) FROM item_changes WHERE kind = 4`); n != 13 {
		t.Errorf("%d deletions recorded; want 13", n)
	}
}
