package ferrytest

import (
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// wantSizes checks every folder of the drive against a brute-force sum of
// the files below it, through each read path (Children, Item, ItemByPath),
// and the root's size against the drive's Used. It returns the expected
// size of every item, for checking the items a change returned.
func (d *testDrive) wantSizes(t *testing.T) map[ferry.ItemID]int64 {
	t.Helper()
	ctx := t.Context()
	want := map[ferry.ItemID]int64{}
	listed := map[ferry.ItemID]*ferry.Item{} // as Children showed it
	paths := map[ferry.ItemID][]string{}
	var walk func(id ferry.ItemID, path []string) int64
	walk = func(id ferry.ItemID, path []string) int64 {
		var total int64
		for _, it := range allChildren(t, d.s.Items, id, ferry.ListQuery{Limit: 1000}) {
			p := append(path[:len(path):len(path)], it.Name)
			listed[it.ID], paths[it.ID] = it, p
			size := it.Size
			if it.Folder {
				size = walk(it.ID, p)
			}
			want[it.ID] = size
			total += size
		}
		return total
	}
	want[d.root] = walk(d.root, nil)
	for id, it := range listed {
		if it.Size != want[id] {
			t.Errorf("Children: %q has size %d, want %d", paths[id], it.Size, want[id])
		}
		if !it.Folder {
			continue
		}
		if got := d.item(t, id).Size; got != want[id] {
			t.Errorf("Item: folder %q has size %d, want %d", paths[id], got, want[id])
		}
		got, err := d.s.Items.ItemByPath(ctx, d.root, paths[id])
		if err != nil {
			t.Fatalf("ItemByPath(%q): %v", paths[id], err)
		}
		if got.Size != want[id] {
			t.Errorf("ItemByPath: folder %q has size %d, want %d", paths[id], got.Size, want[id])
		}
	}
	if got := d.item(t, d.root).Size; got != want[d.root] {
		t.Errorf("root size = %d, want %d (the sum of all files)", got, want[d.root])
	}
	d.wantUsed(t, want[d.root])
	return want
}

// wantResultSize checks the size of an item a change returned.
func wantResultSize(t *testing.T, what string, it *ferry.Item, sizes map[ferry.ItemID]int64) {
	t.Helper()
	if it.Size != sizes[it.ID] {
		t.Errorf("%s returned size %d, want %d", what, it.Size, sizes[it.ID])
	}
}

func testFolderSizes(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	root := d.root
	a := d.folder(t, d.root, "A")
	d.file(t, a.ID, "a1", 10)
	b := d.folder(t, a.ID, "B")
	b1 := d.file(t, b.ID, "b1", 20)
	c := d.folder(t, b.ID, "C")
	c1 := d.file(t, c.ID, "c1", 40)
	dd := d.folder(t, d.root, "D")
	d.file(t, dd.ID, "d1", 1)
	r := d.file(t, d.root, "r", 100)
	d.folder(t, c.ID, "empty")
	sizes := d.wantSizes(t)
	if sizes[a.ID] != 70 || sizes[d.root] != 171 {
		t.Fatalf("the fixture sums to A=%d, root=%d; want 70, 171", sizes[a.ID], sizes[d.root])
	}

	// Children ordered by size sorts folders by their totals.
	items := allChildren(t, s.Items, d.root, ferry.ListQuery{OrderBy: "size"})
	if diff := cmp.Diff(sortedIDs(items, "size", false), itemIDs(items)); diff != "" {
		t.Errorf("root by size (-want +got):\n%s", diff)
	}
	if got := itemIDs(items); len(got) != 3 || got[0] != dd.ID || got[1] != a.ID || got[2] != r.ID {
		t.Errorf("root by size = %v, want D (1), A (70), r (100)", got)
	}

	steps := []struct {
		what string
		do   func(t *testing.T) *ferry.Item // the item the change returned, or nil
	}{
		{"create a file deep down", func(t *testing.T) *ferry.Item {
			it, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: c.ID, Name: "c2", Content: newContent(5)}, ferry.ConflictFail)
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"create an empty folder", func(t *testing.T) *ferry.Item {
			it, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: c.ID, Name: "E", Folder: true}, ferry.ConflictFail)
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"ReplaceContent growing", func(t *testing.T) *ferry.Item {
			it, err := s.Items.ReplaceContent(ctx, c1.ID, newContent(47), "", "")
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"replace a file through CreateItem, shrinking", func(t *testing.T) *ferry.Item {
			it, replaced, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: b.ID, Name: "B1", Content: newContent(3)}, ferry.ConflictReplace)
			if err != nil || !replaced {
				t.Fatalf("replace: %v, replaced %v", err, replaced)
			}
			return it
		}},
		{"delete a file", func(t *testing.T) *ferry.Item {
			if err := s.Items.DeleteItem(ctx, b1.ID, ""); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"rename a folder", func(t *testing.T) *ferry.Item {
			it, err := s.Items.UpdateItem(ctx, c.ID, ferry.ItemUpdate{Name: ptr("Cee")})
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"move a folder to another branch", func(t *testing.T) *ferry.Item {
			it, err := s.Items.UpdateItem(ctx, c.ID, ferry.ItemUpdate{ParentID: &dd.ID})
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"move a file up", func(t *testing.T) *ferry.Item {
			it, err := s.Items.UpdateItem(ctx, c1.ID, ferry.ItemUpdate{ParentID: &root})
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"move a file down, replacing a file", func(t *testing.T) *ferry.Item {
			x := d.file(t, a.ID, "x", 9)
			d.file(t, c.ID, "X", 4)
			it, err := s.Items.UpdateItem(ctx, x.ID, ferry.ItemUpdate{ParentID: &c.ID, Conflict: ferry.ConflictReplace})
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"move a folder, replacing a folder", func(t *testing.T) *ferry.Item {
			e := d.folder(t, d.root, "E")
			d.file(t, e.ID, "e1", 6)
			ae := d.folder(t, a.ID, "e")
			d.file(t, ae.ID, "e2", 2)
			it, err := s.Items.UpdateItem(ctx, ae.ID, ferry.ItemUpdate{ParentID: &root, Conflict: ferry.ConflictReplace})
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"copy a folder", func(t *testing.T) *ferry.Item {
			it, err := s.Items.CopyItem(ctx, dd.ID, a.ID, "D copy", ferry.ConflictFail, "")
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"copy a file", func(t *testing.T) *ferry.Item {
			it, err := s.Items.CopyItem(ctx, r.ID, b.ID, "r2", ferry.ConflictFail, "")
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"copy a folder, replacing a folder", func(t *testing.T) *ferry.Item {
			it, err := s.Items.CopyItem(ctx, b.ID, d.root, "d", ferry.ConflictReplace, "")
			if err != nil {
				t.Fatal(err)
			}
			return it
		}},
		{"delete a folder", func(t *testing.T) *ferry.Item {
			if err := s.Items.DeleteItem(ctx, a.ID, ""); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
	for _, step := range steps {
		t.Run(step.what, func(t *testing.T) {
			it := step.do(t)
			sizes := d.wantSizes(t)
			if it != nil {
				wantResultSize(t, step.what, it, sizes)
			}
		})
	}
	// Deleting what is left brings every size back to zero.
	for _, it := range allChildren(t, s.Items, d.root, ferry.ListQuery{}) {
		if err := s.Items.DeleteItem(ctx, it.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.wantSizes(t)[d.root]; got != 0 {
		t.Errorf("root size after deleting everything = %d, want 0", got)
	}
}

// testFolderSizesAcrossDrives copies a folder into another drive: the
// destination's folders grow, the source's stay.
func testFolderSizesAcrossDrives(t *testing.T, s Stores) {
	alice := newTestDrive(t, s, "alice", bigQuota)
	bob := newTestDrive(t, s, "bob", bigQuota)
	ctx := t.Context()
	src := alice.folder(t, alice.root, "src")
	alice.file(t, src.ID, "one", 11)
	deep := alice.folder(t, src.ID, "deep")
	alice.file(t, deep.ID, "two", 22)
	dst := bob.folder(t, bob.root, "in")
	bob.file(t, dst.ID, "mine", 3)
	before := alice.wantSizes(t)
	cp, err := s.Items.CopyItem(ctx, src.ID, dst.ID, "", ferry.ConflictFail, "bob")
	if err != nil {
		t.Fatalf("copy into another drive: %v", err)
	}
	sizes := bob.wantSizes(t)
	wantResultSize(t, "CopyItem", cp, sizes)
	if sizes[dst.ID] != 36 || sizes[bob.root] != 36 {
		t.Errorf("bob's folder and root = %d, %d; want 36, 36", sizes[dst.ID], sizes[bob.root])
	}
	if diff := cmp.Diff(before, alice.wantSizes(t)); diff != "" {
		t.Errorf("the source drive's sizes changed (-before +after):\n%s", diff)
	}
}

func ptr[T any](v T) *T { return &v }
