package ferrytest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// TestLargeDeletes checks deletions of folders larger than one step of the
// store writes, by DeleteItem and by a replace: the folder and everything
// below it vanish at once from every read (Item, listings, paths, search,
// delta, grants), the drive's usage and the folders above drop at once,
// and delta reports the deletion exactly as it reports one made in a
// single transaction, while RemoveDeleted removes the rows, TreeBatch per
// transaction, releasing exactly their blob references, and finishes a
// removal an earlier call left half done. It also runs the item suite's
// cases that delete or replace folders. newStore must return an empty
// store that holds items and accounts too and writes at most TreeBatch
// items per step of a removal.
func TestLargeDeletes(t *testing.T, newStore func(t *testing.T) JobStore) {
	runJobCases(t, newStore, []jobCase{
		{"Delete", testLargeDelete},
		{"Resume", testLargeDeleteResume},
		{"Replace", testLargeReplace},
		{"Items/ConflictReplace", items(testConflictReplace)},
		{"Items/Move", items(testMove)},
		{"Items/FolderSizes", items(testFolderSizes)},
		{"Items/DeltaChanges", items(testDeltaChanges)},
		{"Items/DeltaWhileChanging", items(testDeltaWhileChanging)},
		{"Items/Search", items(testSearch)},
	})
}

// removeDeleted removes what deletions left, as the sweep does.
func removeDeleted(t *testing.T, s JobStore) {
	t.Helper()
	if _, err := s.RemoveDeleted(t.Context(), 0); err != nil {
		t.Fatalf("RemoveDeleted: %v", err)
	}
}

// goneEntries returns the deleted entries delta must show for the
// deletion of the folder top, which is not deleted yet, as the store
// reports any deleted item: the folder and every item below it, each
// under its parent as it is now.
func goneEntries(t *testing.T, s ferry.ItemStore, top ferry.ItemID) map[ferry.ItemID]ferry.Change {
	t.Helper()
	out := map[ferry.ItemID]ferry.Change{}
	for id, it := range snapshot(t, s, top) {
		path, err := s.Path(t.Context(), it.ParentID)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = ferry.Change{Deleted: true, ParentPath: path,
			Item: &ferry.Item{ID: id, DriveID: it.DriveID, ParentID: it.ParentID, Name: it.Name, Folder: it.Folder}}
	}
	return out
}

// deletedEntries returns the deleted entries of a delta round.
func deletedEntries(t *testing.T, r deltaRound) map[ferry.ItemID]ferry.Change {
	t.Helper()
	out := map[ferry.ItemID]ferry.Change{}
	for id, c := range r.byID(t) {
		if c.Deleted {
			if len(c.ParentPath) == 0 {
				c.ParentPath = nil
			}
			out[id] = c
		}
	}
	return out
}

// wantHidden checks that no read reaches the items of a deleted tree
// (those of gone, the top's path below the root being topPath) and that
// nothing can be written into it.
func wantHidden(t *testing.T, is jobItems, d *testDrive, when string, gone map[ferry.ItemID]*ferry.Item, topPath []string) {
	t.Helper()
	ctx := t.Context()
	for id, it := range gone {
		if _, err := is.Item(ctx, id); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("%s: Item(%q) = %v; want NotFound", when, it.Name, err)
		}
		if _, err := is.Path(ctx, id); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("%s: Path(%q) = %v; want NotFound", when, it.Name, err)
		}
		if err := is.DeleteItem(ctx, id, ""); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("%s: DeleteItem(%q) = %v; want NotFound", when, it.Name, err)
		}
		if !it.Folder {
			continue
		}
		if _, _, err := is.Children(ctx, id, ferry.ListQuery{}); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("%s: Children(%q) = %v; want NotFound", when, it.Name, err)
		}
		if _, err := is.Delta(ctx, id, ferry.DeltaQuery{}); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("%s: Delta(%q) = %v; want NotFound", when, it.Name, err)
		}
		_, _, err := is.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: id, Name: "late", Folder: true}, ferry.ConflictFail)
		wantKind(t, when+": CreateItem in a deleted folder", err, ferry.NotFound)
	}
	if _, err := is.ItemByPath(ctx, d.root, topPath); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("%s: ItemByPath(%q) = %v; want NotFound", when, topPath, err)
	}
	for _, text := range []string{"src", "c1", "b"} {
		if got := searchNames(t, is, d.root, text); len(got) > 0 {
			t.Errorf("%s: Search(%q) = %q; want nothing", when, text, got)
		}
	}
	for _, c := range delta(t, is, d.root, "", 0).changes {
		if _, ok := gone[c.Item.ID]; ok {
			t.Errorf("%s: a full delta lists %q", when, c.Item.Name)
		}
	}
}

// testLargeDelete deletes a folder of 13 items, three per step, and checks
// after the deletion and after every step of its removal that none of it
// shows, that the usage and sizes dropped, and that delta reports the
// deletion as for a small folder; at the end, that exactly the tree's
// blob references went.
func testLargeDelete(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d := copyDrive(t, s, bigQuota)
	top := d.folder(t, d.root, "top")
	src := copyFixture(t, d, top.ID)
	b1, err := is.ItemByPath(ctx, src.ID, []string{"B", "b1"})
	if err != nil {
		t.Fatal(err)
	}
	// A blob shared with a file outside the tree stays referenced.
	_, _, err = is.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "outside",
		Content: ferry.Content{Size: b1.Size, BlobKey: b1.BlobKey}}, ferry.ConflictFail)
	if err != nil {
		t.Fatal(err)
	}
	moved := d.file(t, d.root, "moved", 3)
	var guest *ferry.User
	shares, sharing := s.(ferry.ShareStore)
	if sharing {
		if guest, _, err = is.EnsureUser(ctx, "guest", bigQuota); err != nil {
			t.Fatal(err)
		}
		if _, err := shares.Grant(ctx, b1.ParentID, guest.ID, "", ferry.RoleRead, d.user.ID); err != nil {
			t.Fatal(err)
		}
	}
	rootTok := delta(t, is, d.root, "", 0).token
	topTok := delta(t, is, top.ID, "", 0).token
	// Changes after the tokens: a file created in the tree (created and
	// deleted since: not reported) and one moved into it from the root
	// (reported once, where the client knew it).
	d.file(t, src.ID, "new", 2)
	if _, err := is.UpdateItem(ctx, moved.ID, ferry.ItemUpdate{ParentID: &b1.ParentID}); err != nil {
		t.Fatal(err)
	}
	want := goneEntries(t, is, src.ID)
	for id, c := range want {
		switch c.Item.Name {
		case "new":
			delete(want, id)
		case "moved":
			c.ParentPath, c.Item.ParentID = nil, d.root
			want[id] = c
		}
	}
	wantTop := filterChanges(want, func(c ferry.Change) bool { return c.Item.ID != moved.ID })
	gone := snapshot(t, is, src.ID)
	keys := blobKeys(t, is, src.ID)
	used := d.used(t)
	src = d.item(t, src.ID)

	if err := is.DeleteItem(ctx, src.ID, src.ETag()); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		wantHidden(t, is, d, when, gone, []string{"top", "src"})
		if got := itemNames(allChildren(t, is, top.ID, ferry.ListQuery{})); len(got) > 0 {
			t.Errorf("%s: top lists %q; want nothing", when, got)
		}
		d.wantUsed(t, used-src.Size)
		if got := d.item(t, top.ID).Size; got != 0 {
			t.Errorf("%s: the deleted folder's parent has size %d, want 0", when, got)
		}
		d.wantSizes(t)
		if diff := cmp.Diff(want, deletedEntries(t, delta(t, is, d.root, rootTok, 2))); diff != "" {
			t.Errorf("%s: delta of the root (-want +got):\n%s", when, diff)
		}
		if diff := cmp.Diff(wantTop, deletedEntries(t, delta(t, is, top.ID, topTok, 0))); diff != "" {
			t.Errorf("%s: delta of the deleted folder's parent (-want +got):\n%s", when, diff)
		}
		if sharing {
			if grants, err := shares.SharedWith(ctx, guest.ID); err != nil || len(grants) != 0 {
				t.Errorf("%s: SharedWith = %v, %v; want no grant", when, grants, err)
			}
		}
	}
	check("after the delete")
	steps := 0
	for {
		n, err := is.RemoveDeleted(ctx, 1)
		steps++
		if err != nil {
			t.Fatalf("RemoveDeleted step %d: %v", steps, err)
		}
		if n == 1 {
			break
		}
		check(fmt.Sprint("after removal step ", steps))
		if steps == 100 {
			t.Fatal("RemoveDeleted never finished")
		}
	}
	if min := 15 / TreeBatch; steps < min {
		t.Errorf("the removal of 15 items took %d steps; want at least %d of %d items", steps, min, TreeBatch)
	}
	check("after the removal")
	if n, err := is.RemoveDeleted(ctx, 0); err != nil || n != 0 {
		t.Errorf("RemoveDeleted with nothing left = %d, %v; want 0", n, err)
	}
	for _, k := range append(keys, moved.BlobKey) {
		wantUnreferenced(t, is, k, k != b1.BlobKey)
	}
}

// filterChanges returns the entries of m that keep accepts.
func filterChanges(m map[ferry.ItemID]ferry.Change, keep func(ferry.Change) bool) map[ferry.ItemID]ferry.Change {
	out := map[ferry.ItemID]ferry.Change{}
	for id, c := range m {
		if keep(c) {
			out[id] = c
		}
	}
	return out
}

// testLargeDeleteResume: a removal stopped after one step (as by a crash)
// is finished by the next call, and shows nothing meanwhile.
func testLargeDeleteResume(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d := copyDrive(t, s, bigQuota)
	src := copyFixture(t, d, d.root)
	gone := snapshot(t, is, src.ID)
	keys := blobKeys(t, is, src.ID)
	if err := is.DeleteItem(ctx, src.ID, ""); err != nil {
		t.Fatal(err)
	}
	if n, err := is.RemoveDeleted(ctx, 1); err != nil || n != 0 {
		t.Fatalf("one step of RemoveDeleted = %d, %v; want 0 trees finished", n, err)
	}
	wantHidden(t, is, d, "after one step", gone, []string{"src"})
	d.wantUsed(t, 0)
	if n, err := is.RemoveDeleted(ctx, 0); err != nil || n != 1 {
		t.Fatalf("RemoveDeleted after the stop = %d, %v; want 1", n, err)
	}
	wantHidden(t, is, d, "after the removal", gone, []string{"src"})
	for _, k := range keys {
		wantUnreferenced(t, is, k, true)
	}
	d.wantSizes(t)
}

// testLargeReplace: a replace that deletes a large folder (by a copy, a
// new folder, or a move) hides it at once, as DeleteItem does.
func testLargeReplace(t *testing.T, s JobStore) {
	for _, tt := range []struct {
		name string
		// replace puts an item named "src" in the root, replacing the
		// large folder there, and returns it; other is a folder of the
		// drive it may use.
		replace func(t *testing.T, is jobItems, d *testDrive, other *ferry.Item) (*ferry.Item, error)
	}{
		{"copy", func(t *testing.T, is jobItems, d *testDrive, other *ferry.Item) (*ferry.Item, error) {
			return is.CopyItem(t.Context(), other.ID, d.root, "src", ferry.ConflictReplace, "")
		}},
		{"create", func(t *testing.T, is jobItems, d *testDrive, other *ferry.Item) (*ferry.Item, error) {
			it, replaced, err := is.CreateItem(t.Context(), ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "SRC", Folder: true}, ferry.ConflictReplace)
			if err == nil && !replaced {
				t.Error("CreateItem replaced nothing")
			}
			return it, err
		}},
		{"move", func(t *testing.T, is jobItems, d *testDrive, other *ferry.Item) (*ferry.Item, error) {
			name := "src"
			return is.UpdateItem(t.Context(), other.ID, ferry.ItemUpdate{ParentID: &d.root, Name: &name, Conflict: ferry.ConflictReplace})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			is, d := copyDrive(t, s, bigQuota)
			dir := d.folder(t, d.root, "dir")
			src := copyFixture(t, d, d.root)
			other := d.folder(t, dir.ID, "other")
			d.file(t, other.ID, "o1", 100)
			other = d.item(t, other.ID)
			tok := delta(t, is, d.root, "", 0).token
			want := goneEntries(t, is, src.ID)
			gone := snapshot(t, is, src.ID)
			keys := blobKeys(t, is, src.ID)
			used := d.used(t)

			it, err := tt.replace(t, is, d, other)
			if err != nil {
				t.Fatal(err)
			}
			if it.ID == src.ID || it.ParentID != d.root || !strings.EqualFold(it.Name, "src") {
				t.Errorf("replaced by %+v; want a new item named src in the root", it)
			}
			wantUsed := used - src.Size
			if tt.name == "copy" {
				wantUsed += other.Size
			}
			check := func(when string) {
				t.Helper()
				for id, g := range gone {
					if _, err := is.Item(ctx, id); ferry.KindOf(err) != ferry.NotFound {
						t.Errorf("%s: Item(%q) = %v; want NotFound", when, g.Name, err)
					}
				}
				if got, err := is.ItemByPath(ctx, d.root, []string{"src"}); err != nil || got.ID != it.ID {
					t.Errorf("%s: ItemByPath(src) = %+v, %v; want the replacement", when, got, err)
				}
				if got := searchNames(t, is, d.root, "c1"); len(got) > 0 {
					t.Errorf("%s: Search(c1) = %q; want nothing", when, got)
				}
				d.wantUsed(t, wantUsed)
				d.wantSizes(t)
				if diff := cmp.Diff(want, deletedEntries(t, delta(t, is, d.root, tok, 0))); diff != "" {
					t.Errorf("%s: deleted entries of delta (-want +got):\n%s", when, diff)
				}
			}
			check("after the replace")
			removeDeleted(t, is)
			check("after the removal")
			for _, k := range keys {
				wantUnreferenced(t, is, k, true)
			}
		})
	}
}
