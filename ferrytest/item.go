package ferrytest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// Stores is one metadata store seen through the interfaces the item and
// account suites test.
type Stores struct {
	Items    ferry.ItemStore
	Accounts ferry.AccountStore
	// Dump, if set, returns everything the store persists, as text. The
	// account suite searches it for bearer tokens, which must never be
	// stored in clear. Nil skips that check.
	Dump func(t *testing.T) string
}

// TestItemStore checks that an ItemStore keeps its contract. newStore must
// return an empty store each time it is called; the suite makes its users
// and drives through Accounts.
func TestItemStore(t *testing.T, newStore func(t *testing.T) Stores) {
	for _, tt := range []struct {
		name string
		fn   func(*testing.T, Stores)
	}{
		{"Root", testRoot},
		{"Create", testCreate},
		{"CreateErrors", testCreateErrors},
		{"NamesIgnoreCase", testNamesIgnoreCase},
		{"ConflictRename", testConflictRename},
		{"ConflictReplace", testConflictReplace},
		{"ReplaceOtherKind", testReplaceOtherKind},
		{"ItemByPath", testItemByPath},
		{"Path", testPath},
		{"ChildCount", testChildCount},
		{"ChildrenOrder", testChildrenOrder},
		{"ChildrenPagingWhileChanging", testChildrenPagingWhileChanging},
		{"ChildrenErrors", testChildrenErrors},
		{"ReplaceContent", testReplaceContent},
		{"Rename", testRename},
		{"Move", testMove},
		{"Delete", testDelete},
		{"Blobs", testBlobRefs},
		{"Quota", testQuota},
		{"Copy", testCopy},
		{"CopyFolder", testCopyFolder},
		{"FolderSizes", testFolderSizes},
		{"FolderSizesAcrossDrives", testFolderSizesAcrossDrives},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentMoves", testConcurrentMoves},
		{"ConcurrentQuota", testConcurrentQuota},
		{"DeltaEnumerate", testDeltaEnumerate},
		{"DeltaChanges", testDeltaChanges},
		{"DeltaTokens", testDeltaTokens},
		{"DeltaWhileChanging", testDeltaWhileChanging},
		{"Search", testSearch},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// testDrive is one user's drive in a store under test.
type testDrive struct {
	s     Stores
	user  *ferry.User
	drive *ferry.Drive
	root  ferry.ItemID
}

const bigQuota = 1 << 40

func newTestDrive(t *testing.T, s Stores, user string, quota int64) *testDrive {
	t.Helper()
	u, _, err := s.Accounts.EnsureUser(t.Context(), user, quota)
	if err != nil {
		t.Fatalf("EnsureUser(%q): %v", user, err)
	}
	d, err := s.Accounts.DriveOf(t.Context(), u.ID)
	if err != nil {
		t.Fatalf("DriveOf(%s): %v", u.ID, err)
	}
	return &testDrive{s: s, user: u, drive: d, root: d.RootID}
}

// newContent describes a file of size bytes with a blob key of its own.
func newContent(size int64) ferry.Content {
	key := ferry.NewID("blob-", 16)
	return ferry.Content{
		Size:     size,
		MimeType: "application/octet-stream",
		Hashes:   ferry.Hashes{QuickXor: "qx" + key, SHA1: "S1" + key, SHA256: "S256" + key},
		BlobKey:  key,
	}
}

func (d *testDrive) folder(t *testing.T, parent ferry.ItemID, name string) *ferry.Item {
	t.Helper()
	it, _, err := d.s.Items.CreateItem(t.Context(), ferry.NewItem{DriveID: d.drive.ID, ParentID: parent, Name: name, Folder: true, By: d.user.Name}, ferry.ConflictFail)
	if err != nil {
		t.Fatalf("create folder %q: %v", name, err)
	}
	return it
}

func (d *testDrive) file(t *testing.T, parent ferry.ItemID, name string, size int64) *ferry.Item {
	t.Helper()
	it, _, err := d.s.Items.CreateItem(t.Context(), ferry.NewItem{DriveID: d.drive.ID, ParentID: parent, Name: name, Content: newContent(size), By: d.user.Name}, ferry.ConflictFail)
	if err != nil {
		t.Fatalf("create file %q: %v", name, err)
	}
	return it
}

func (d *testDrive) item(t *testing.T, id ferry.ItemID) *ferry.Item {
	t.Helper()
	it, err := d.s.Items.Item(t.Context(), id)
	if err != nil {
		t.Fatalf("Item(%s): %v", id, err)
	}
	return it
}

func (d *testDrive) gone(t *testing.T, id ferry.ItemID) {
	t.Helper()
	_, err := d.s.Items.Item(t.Context(), id)
	wantKind(t, fmt.Sprintf("Item(%s) of a removed item", id), err, ferry.NotFound)
}

func (d *testDrive) used(t *testing.T) int64 {
	t.Helper()
	dr, err := d.s.Accounts.Drive(t.Context(), d.drive.ID)
	if err != nil {
		t.Fatalf("Drive(%s): %v", d.drive.ID, err)
	}
	return dr.Used
}

func (d *testDrive) wantUsed(t *testing.T, want int64) {
	t.Helper()
	if got := d.used(t); got != want {
		t.Errorf("drive Used = %d, want %d", got, want)
	}
}

// allChildren lists a folder completely with the given query.
func allChildren(t *testing.T, s ferry.ItemStore, parent ferry.ItemID, q ferry.ListQuery) []*ferry.Item {
	t.Helper()
	var out []*ferry.Item
	for range 10000 {
		page, next, err := s.Children(t.Context(), parent, q)
		if err != nil {
			t.Fatalf("Children(%s, %+v): %v", parent, q, err)
		}
		if q.Limit > 0 && len(page) > q.Limit {
			t.Fatalf("Children returned %d items for limit %d", len(page), q.Limit)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		q.Cursor = next
	}
	t.Fatal("Children never returned an empty cursor")
	return nil
}

// snapshot returns every item below the folder base (base included), as
// Item reads it, keyed by ID: two snapshots are equal only if nothing in
// the subtree changed, not even a version.
func snapshot(t *testing.T, s ferry.ItemStore, base ferry.ItemID) map[ferry.ItemID]*ferry.Item {
	t.Helper()
	top, err := s.Item(t.Context(), base)
	if err != nil {
		t.Fatalf("Item(%s): %v", base, err)
	}
	out := map[ferry.ItemID]*ferry.Item{base: top}
	queue := []ferry.ItemID{base}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, it := range allChildren(t, s, id, ferry.ListQuery{Limit: 1000}) {
			out[it.ID] = it
			if it.Folder {
				queue = append(queue, it.ID)
			}
		}
	}
	return out
}

func itemIDs(items []*ferry.Item) []ferry.ItemID {
	out := make([]ferry.ItemID, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func unreferenced(t *testing.T, s ferry.ItemStore) []string {
	t.Helper()
	keys, err := s.UnreferencedBlobs(t.Context(), 1000)
	if err != nil {
		t.Fatalf("UnreferencedBlobs: %v", err)
	}
	return keys
}

func wantUnreferenced(t *testing.T, s ferry.ItemStore, key string, want bool) {
	t.Helper()
	if got := slices.Contains(unreferenced(t, s), key); got != want {
		t.Errorf("blob %s unreferenced = %v, want %v", key, got, want)
	}
}

func wantUTC(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if tm.IsZero() || tm.Location() != time.UTC {
		t.Errorf("%s = %v, want a UTC time", what, tm)
	}
}

func testRoot(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	root := d.item(t, d.root)
	if !root.Folder || !root.IsRoot() || root.DriveID != d.drive.ID || root.ChildCount != 0 {
		t.Errorf("root = %+v, want an empty root folder of drive %s", root, d.drive.ID)
	}
	wantUTC(t, "root Created", root.Created)
	path, err := s.Items.Path(t.Context(), d.root)
	if err != nil || len(path) != 0 {
		t.Errorf("Path(root) = %q, %v; want none", path, err)
	}
	items, next, err := s.Items.Children(t.Context(), d.root, ferry.ListQuery{})
	if err != nil || len(items) != 0 || next != "" {
		t.Errorf("Children(empty root) = %d items, %q, %v; want none", len(items), next, err)
	}
	_, err = s.Items.Item(t.Context(), "NOSUCHITEM")
	wantKind(t, "Item(missing)", err, ferry.NotFound)
	_, err = s.Items.Path(t.Context(), "NOSUCHITEM")
	wantKind(t, "Path(missing)", err, ferry.NotFound)
	_, err = s.Items.ItemByPath(t.Context(), "NOSUCHITEM", []string{"a"})
	wantKind(t, "ItemByPath(missing base)", err, ferry.NotFound)
}

func testCreate(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	zone := time.FixedZone("X", 5*3600)
	fsC := time.Date(2020, 1, 2, 3, 4, 5, 678e6, zone)
	fsM := time.Date(2021, 6, 7, 8, 9, 10, 111e6, zone)
	c := newContent(42)
	f, replaced, err := s.Items.CreateItem(ctx, ferry.NewItem{
		DriveID: d.drive.ID, ParentID: d.root, Name: "100% #1.txt", Content: c,
		FSCreated: fsC, FSModified: fsM, Description: "a file", By: "alice",
	}, ferry.ConflictFail)
	if err != nil {
		t.Fatalf("CreateItem(file): %v", err)
	}
	if replaced {
		t.Error("CreateItem of a new file reported replaced")
	}
	want := &ferry.Item{
		ID: f.ID, DriveID: d.drive.ID, ParentID: d.root, Name: "100% #1.txt",
		Size: 42, MimeType: c.MimeType, Hashes: c.Hashes, BlobKey: c.BlobKey,
		Version: f.Version, ContentVersion: f.ContentVersion, Created: f.Created, Modified: f.Modified,
		FSCreated: fsC.UTC(), FSModified: fsM.UTC(), Description: "a file", CreatedBy: "alice", ModifiedBy: "alice",
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("created file (-want +got):\n%s", diff)
	}
	if f.ID == "" || strings.ContainsAny(string(f.ID), "#/?%:") || f.ID == ferry.RootAlias {
		t.Errorf("item ID %q is not a safe ID", f.ID)
	}
	if f.Version < 1 || f.ContentVersion < 1 {
		t.Errorf("Version, ContentVersion = %d, %d; want >= 1", f.Version, f.ContentVersion)
	}
	wantUTC(t, "Created", f.Created)
	wantUTC(t, "Modified", f.Modified)
	wantUTC(t, "FSCreated", f.FSCreated)
	if got := d.item(t, f.ID); !cmp.Equal(got, f) {
		t.Errorf("Item after CreateItem differs (-created +read):\n%s", cmp.Diff(f, got))
	}

	dir, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "Docs", Folder: true, By: "alice"}, ferry.ConflictFail)
	if err != nil {
		t.Fatalf("CreateItem(folder): %v", err)
	}
	if !dir.Folder || dir.Size != 0 || dir.BlobKey != "" || dir.ChildCount != 0 || dir.ParentID != d.root {
		t.Errorf("created folder = %+v", dir)
	}
	if !dir.FSCreated.Equal(dir.Created) || !dir.FSModified.Equal(dir.Modified) {
		t.Errorf("folder fileSystemInfo = %v, %v; want the server times %v, %v", dir.FSCreated, dir.FSModified, dir.Created, dir.Modified)
	}
	if dir.ID == f.ID {
		t.Error("two items share an ID")
	}
	if got := d.item(t, d.root).ChildCount; got != 2 {
		t.Errorf("root ChildCount = %d, want 2", got)
	}
	// A file may end in '.', a folder may not (checked in CreateErrors).
	d.file(t, dir.ID, "ends with dot.", 1)
}

func testCreateErrors(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	other := newTestDrive(t, s, "bob", bigQuota)
	ctx := t.Context()
	f := d.file(t, d.root, "file.txt", 1)
	for _, name := range []string{"", ".", "..", "a/b", `a\b`, "a:b", "a*b", "a?b", "a|b", "a<b", "a>b", `a"b`,
		" lead", "trail ", "ctl\x01", "bad\xffutf8", strings.Repeat("x", ferry.MaxNameLength+1)} {
		for _, folder := range []bool{true, false} {
			n := ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: name, Folder: folder}
			if !folder {
				n.Content = newContent(1)
			}
			_, _, err := s.Items.CreateItem(ctx, n, ferry.ConflictFail)
			wantKind(t, fmt.Sprintf("CreateItem(%q, folder=%v)", name, folder), err, ferry.Invalid)
		}
	}
	_, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "dots.", Folder: true}, ferry.ConflictFail)
	wantKind(t, "folder ending in '.'", err, ferry.Invalid)
	_, _, err = s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: "NOSUCHITEM", Name: "x", Folder: true}, ferry.ConflictFail)
	wantKind(t, "missing parent", err, ferry.NotFound)
	_, _, err = s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: f.ID, Name: "x", Folder: true}, ferry.ConflictFail)
	wantKind(t, "parent is a file", err, ferry.Invalid)
	_, _, err = s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "nocontent.txt"}, ferry.ConflictFail)
	wantKind(t, "file without a blob", err, ferry.Invalid)
	_, _, err = s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: other.root, Name: "x", Folder: true}, ferry.ConflictFail)
	wantKind(t, "parent in another drive", err, ferry.NotFound)
	if got := d.item(t, d.root).ChildCount; got != 1 {
		t.Errorf("root ChildCount after failed creates = %d, want 1", got)
	}
}

func testNamesIgnoreCase(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	f := d.file(t, d.root, "Report.PDF", 1)
	_, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "report.pdf", Content: newContent(1)}, ferry.ConflictFail)
	wantKind(t, "file differing only in case", err, ferry.NameConflict)
	_, _, err = s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "REPORT.pdf", Folder: true}, ferry.ConflictFail)
	wantKind(t, "folder differing only in case", err, ferry.NameConflict)
	got, err := s.Items.ItemByPath(ctx, d.root, []string{"rEPORT.pdf"})
	if err != nil || got.ID != f.ID || got.Name != "Report.PDF" {
		t.Errorf("ItemByPath(other case) = %+v, %v; want %s named Report.PDF", got, err, f.ID)
	}
	name := "REPORT.pdf"
	up, err := s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &name})
	if err != nil || up.Name != name {
		t.Fatalf("rename changing only case = %+v, %v", up, err)
	}
	items := allChildren(t, s.Items, d.root, ferry.ListQuery{})
	if len(items) != 1 || items[0].Name != name {
		t.Errorf("children after case rename = %v, want one named %q", itemIDs(items), name)
	}
}

func testConflictRename(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	d.folder(t, d.root, "Folder")
	d.file(t, d.root, "report.pdf", 1)
	d.file(t, d.root, "noext", 1)
	for _, tt := range []struct {
		name   string
		folder bool
		want   string
	}{
		{"Folder", true, "Folder 1"},
		{"Folder", true, "Folder 2"},
		{"FOLDER", true, "FOLDER 3"},
		{"report.pdf", false, "report 1.pdf"},
		{"Report.pdf", false, "Report 2.pdf"},
		{"noext", false, "noext 1"},
	} {
		n := ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: tt.name, Folder: tt.folder}
		if !tt.folder {
			n.Content = newContent(1)
		}
		it, replaced, err := s.Items.CreateItem(ctx, n, ferry.ConflictRename)
		if err != nil {
			t.Fatalf("CreateItem(%q, rename): %v", tt.name, err)
		}
		if it.Name != tt.want || replaced {
			t.Errorf("CreateItem(%q, rename) = %q, replaced %v; want %q, false", tt.name, it.Name, replaced, tt.want)
		}
	}
}

func testConflictReplace(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()

	t.Run("FileOverFile", func(t *testing.T) {
		old := d.file(t, d.root, "a.txt", 10)
		c := newContent(25)
		it, replaced, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "A.TXT", Content: c, By: "bob"}, ferry.ConflictReplace)
		if err != nil {
			t.Fatalf("replace: %v", err)
		}
		if !replaced || it.ID != old.ID {
			t.Errorf("replace a file with a file: ID %s, replaced %v; want the old ID %s, true", it.ID, replaced, old.ID)
		}
		if it.Size != 25 || it.BlobKey != c.BlobKey || it.Hashes != c.Hashes || it.ModifiedBy != "bob" {
			t.Errorf("replaced file = %+v, want the new content", it)
		}
		if it.Version <= old.Version || it.ContentVersion <= old.ContentVersion || it.ETag() == old.ETag() || it.CTag() == old.CTag() {
			t.Errorf("versions %d/%d after replace, were %d/%d; want both to grow", it.Version, it.ContentVersion, old.Version, old.ContentVersion)
		}
		if !it.Created.Equal(old.Created) {
			t.Errorf("Created changed on replace: %v, was %v", it.Created, old.Created)
		}
		wantUnreferenced(t, s.Items, old.BlobKey, true)
		wantUnreferenced(t, s.Items, c.BlobKey, false)
		d.wantUsed(t, 25)
	})

	t.Run("FolderOverFile", func(t *testing.T) {
		old := d.file(t, d.root, "b", 5)
		d.wantUsed(t, 30)
		_, replaced, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "b", Folder: true}, ferry.ConflictReplace)
		wantKind(t, "replace a file with a folder", err, ferry.NameConflict)
		if replaced {
			t.Error("a refused replace reported replaced")
		}
		if got := d.item(t, old.ID); !cmp.Equal(got, old) {
			t.Errorf("the file changed (-before +after):\n%s", cmp.Diff(old, got))
		}
		wantUnreferenced(t, s.Items, old.BlobKey, false)
		d.wantUsed(t, 30)
	})

	t.Run("FileOverFolder", func(t *testing.T) {
		dir := d.folder(t, d.root, "c")
		sub := d.folder(t, dir.ID, "sub")
		inner := d.file(t, sub.ID, "inner.bin", 7)
		d.wantUsed(t, 37)
		before := snapshot(t, s.Items, d.root)
		_, replaced, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "C", Content: newContent(3)}, ferry.ConflictReplace)
		wantKind(t, "replace a folder with a file", err, ferry.NameConflict)
		if replaced {
			t.Error("a refused replace reported replaced")
		}
		if diff := cmp.Diff(before, snapshot(t, s.Items, d.root)); diff != "" {
			t.Errorf("the drive changed (-before +after):\n%s", diff)
		}
		d.item(t, inner.ID)
		wantUnreferenced(t, s.Items, inner.BlobKey, false)
		d.wantUsed(t, 37)
	})

	// A folder "replacing" a folder is a new, empty folder: the old one goes
	// with its subtree.
	t.Run("FolderOverFolder", func(t *testing.T) {
		dir := d.folder(t, d.root, "d")
		inner := d.file(t, dir.ID, "x", 2)
		it, replaced, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "D", Folder: true}, ferry.ConflictReplace)
		if err != nil {
			t.Fatalf("replace: %v", err)
		}
		if !replaced || it.ID == dir.ID || it.ChildCount != 0 || it.Name != "D" || it.Size != 0 {
			t.Errorf("folder over folder = %+v, replaced %v; want a new empty folder", it, replaced)
		}
		d.gone(t, dir.ID)
		d.gone(t, inner.ID)
		wantUnreferenced(t, s.Items, inner.BlobKey, true)
		d.wantUsed(t, 37)
	})

	t.Run("NoConflict", func(t *testing.T) {
		_, replaced, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "fresh", Folder: true}, ferry.ConflictReplace)
		if err != nil || replaced {
			t.Errorf("replace without a conflict: replaced %v, %v; want false, nil", replaced, err)
		}
	})
}

// testReplaceOtherKind checks that replace never puts a file where a folder
// is, or a folder where a file is, through any of the three methods that
// take a conflict behaviour: the clash is NameConflict and nothing changes.
func testReplaceOtherKind(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	tree := d.folder(t, d.root, "tree")
	sub := d.folder(t, tree.ID, "sub")
	d.file(t, tree.ID, "t1", 3)
	d.file(t, sub.ID, "t2", 4)
	file := d.file(t, d.root, "f.txt", 5)
	other := d.folder(t, d.root, "other")
	loose := d.file(t, other.ID, "TREE", 6) // a file named like the folder
	inner := d.folder(t, other.ID, "F.txt") // a folder named like the file
	d.file(t, inner.ID, "inside", 1)        // a folder with something in it
	const used = 3 + 4 + 5 + 6 + 1
	d.wantUsed(t, used)
	before := snapshot(t, s.Items, d.root)
	name := func(s string) *string { return &s }
	for _, tt := range []struct {
		what string
		do   func() error
	}{
		{"CreateItem: a file over a folder", func() error {
			_, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "Tree", Content: newContent(2)}, ferry.ConflictReplace)
			return err
		}},
		{"CreateItem: a folder over a file", func() error {
			_, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "f.txt", Folder: true}, ferry.ConflictReplace)
			return err
		}},
		{"CopyItem: a file over a folder", func() error {
			_, err := s.Items.CopyItem(ctx, file.ID, d.root, "TREE", ferry.ConflictReplace, "")
			return err
		}},
		{"CopyItem: a file over a folder, keeping its name", func() error {
			_, err := s.Items.CopyItem(ctx, loose.ID, d.root, "", ferry.ConflictReplace, "")
			return err
		}},
		{"CopyItem: a folder over a file", func() error {
			_, err := s.Items.CopyItem(ctx, inner.ID, d.root, "", ferry.ConflictReplace, "")
			return err
		}},
		{"UpdateItem: rename a file over a folder", func() error {
			_, err := s.Items.UpdateItem(ctx, file.ID, ferry.ItemUpdate{Name: name("tree"), Conflict: ferry.ConflictReplace})
			return err
		}},
		{"UpdateItem: move a file over a folder", func() error {
			_, err := s.Items.UpdateItem(ctx, loose.ID, ferry.ItemUpdate{ParentID: &d.root, Conflict: ferry.ConflictReplace})
			return err
		}},
		{"UpdateItem: rename a folder over a file", func() error {
			_, err := s.Items.UpdateItem(ctx, tree.ID, ferry.ItemUpdate{Name: name("F.TXT"), Conflict: ferry.ConflictReplace})
			return err
		}},
		{"UpdateItem: move a folder over a file", func() error {
			_, err := s.Items.UpdateItem(ctx, inner.ID, ferry.ItemUpdate{ParentID: &d.root, Conflict: ferry.ConflictReplace})
			return err
		}},
	} {
		err := tt.do()
		wantKind(t, tt.what, err, ferry.NameConflict)
		if msg := ferry.Message(err); err != nil && !strings.Contains(msg, "already exists") {
			t.Errorf("%s: message %q does not say the name exists", tt.what, msg)
		}
		if diff := cmp.Diff(before, snapshot(t, s.Items, d.root)); diff != "" {
			t.Fatalf("%s changed the drive (-before +after):\n%s", tt.what, diff)
		}
		d.wantUsed(t, used)
	}
	// The same names still replace items of their own kind.
	if _, err := s.Items.CopyItem(ctx, file.ID, other.ID, "tree", ferry.ConflictReplace, ""); err != nil {
		t.Errorf("replace a file with a copied file: %v", err)
	}
	d.gone(t, loose.ID)
	d.wantUsed(t, used-6+5)
}

func testItemByPath(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	a := d.folder(t, d.root, "a")
	b := d.folder(t, a.ID, "B")
	c := d.file(t, b.ID, "c.txt", 1)
	for _, tt := range []struct {
		base  ferry.ItemID
		names []string
		want  ferry.ItemID
	}{
		{d.root, nil, d.root},
		{d.root, []string{"a"}, a.ID},
		{d.root, []string{"A", "b", "C.TXT"}, c.ID},
		{a.ID, []string{"b", "c.txt"}, c.ID},
		{b.ID, nil, b.ID},
	} {
		got, err := s.Items.ItemByPath(ctx, tt.base, tt.names)
		if err != nil || got.ID != tt.want {
			t.Errorf("ItemByPath(%s, %q) = %v, %v; want %s", tt.base, tt.names, got, err, tt.want)
		}
	}
	// The folders on the way are read without counting their children;
	// the one found has its count, at any depth.
	for _, names := range [][]string{nil, {"a"}, {"A", "b"}} {
		if got, err := s.Items.ItemByPath(ctx, d.root, names); err != nil || got.ChildCount != 1 {
			t.Errorf("ItemByPath(%q) = %v, %v; want ChildCount 1", names, got, err)
		}
	}
	for _, names := range [][]string{{"missing"}, {"a", "missing"}, {"a", "B", "c.txt", "x"}, {"a", "B", "c.txt", "x", "y"}} {
		_, err := s.Items.ItemByPath(ctx, d.root, names)
		wantKind(t, fmt.Sprintf("ItemByPath(%q)", names), err, ferry.NotFound)
	}
}

func testPath(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	a := d.folder(t, d.root, "a")
	b := d.folder(t, a.ID, "B")
	c := d.file(t, b.ID, "c.txt", 1)
	want := func(id ferry.ItemID, names ...string) {
		t.Helper()
		got, err := s.Items.Path(ctx, id)
		if err != nil || !slices.Equal(got, names) {
			t.Errorf("Path(%s) = %q, %v; want %q", id, got, err, names)
		}
	}
	want(a.ID, "a")
	want(c.ID, "a", "B", "c.txt")
	name := "Bee"
	if _, err := s.Items.UpdateItem(ctx, b.ID, ferry.ItemUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}
	want(c.ID, "a", "Bee", "c.txt")
}

func testChildCount(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	dir := d.folder(t, d.root, "dir")
	d.file(t, dir.ID, "1", 1)
	d.folder(t, dir.ID, "2")
	three := d.file(t, dir.ID, "3", 1)
	check := func(want int64) {
		t.Helper()
		if got := d.item(t, dir.ID).ChildCount; got != want {
			t.Errorf("Item ChildCount = %d, want %d", got, want)
		}
		if got, err := s.Items.ItemByPath(ctx, d.root, []string{"dir"}); err != nil || got.ChildCount != want {
			t.Errorf("ItemByPath ChildCount = %v, %v; want %d", got, err, want)
		}
		items := allChildren(t, s.Items, d.root, ferry.ListQuery{})
		if len(items) != 1 || items[0].ChildCount != want {
			t.Errorf("Children ChildCount = %v; want one folder with %d", items, want)
		}
	}
	check(3)
	if err := s.Items.DeleteItem(ctx, three.ID, ""); err != nil {
		t.Fatal(err)
	}
	check(2)
}

// childrenFixture makes files whose names, sizes and times sort
// differently, with ties on size so that the ID tie-break shows.
func childrenFixture(t *testing.T, d *testDrive) (ferry.ItemID, []*ferry.Item) {
	dir := d.folder(t, d.root, "list")
	names := []string{"b.txt", "A.txt", "c.txt", "B2.txt", "a1.txt", "Zed", "_under", "10.txt", "9.txt", "sub"}
	sizes := []int64{5, 3, 5, 0, 9, 3, 1, 7, 2, 0}
	for i, n := range names {
		if n == "sub" {
			d.folder(t, dir.ID, n)
			continue
		}
		d.file(t, dir.ID, n, sizes[i])
	}
	return dir.ID, allChildren(t, d.s.Items, dir.ID, ferry.ListQuery{Limit: 1000})
}

func sortedIDs(items []*ferry.Item, order string, desc bool) []ferry.ItemID {
	items = slices.Clone(items)
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		var c int
		switch order {
		case "", "name":
			c = strings.Compare(ferry.NameKey(a.Name), ferry.NameKey(b.Name))
		case "size":
			c = compareInt(a.Size, b.Size)
		case "lastModifiedDateTime":
			c = a.Modified.Compare(b.Modified)
		}
		if c == 0 {
			c = strings.Compare(string(a.ID), string(b.ID))
		}
		if desc {
			return c > 0
		}
		return c < 0
	})
	return itemIDs(items)
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testChildrenOrder(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	dir, items := childrenFixture(t, d)
	if len(items) != 10 {
		t.Fatalf("listed %d children, want 10", len(items))
	}
	for _, order := range []string{"", "name", "size", "lastModifiedDateTime"} {
		for _, desc := range []bool{false, true} {
			want := sortedIDs(items, order, desc)
			for _, limit := range []int{0, 1, 2, 3, 10, 1000} {
				q := ferry.ListQuery{OrderBy: order, Desc: desc, Limit: limit}
				got := itemIDs(allChildren(t, s.Items, dir, q))
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Children(%+v) order (-want +got):\n%s", q, diff)
				}
			}
		}
	}
}

func testChildrenPagingWhileChanging(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	for _, q := range []ferry.ListQuery{
		{OrderBy: "name", Limit: 7},
		{OrderBy: "name", Desc: true, Limit: 7},
		{OrderBy: "size", Limit: 5},
		{OrderBy: "lastModifiedDateTime", Desc: true, Limit: 6},
	} {
		t.Run(fmt.Sprintf("%s desc=%v", q.OrderBy, q.Desc), func(t *testing.T) {
			dir := d.folder(t, d.root, fmt.Sprintf("paging %s %v", q.OrderBy, q.Desc))
			var all []*ferry.Item
			for i := range 40 {
				all = append(all, d.file(t, dir.ID, fmt.Sprintf("f%02d", i), int64(i%9)))
			}
			stable := map[ferry.ItemID]bool{}
			for _, it := range all {
				stable[it.ID] = true
			}
			seen := map[ferry.ItemID]int{}
			var seenOrder []ferry.ItemID
			for page := 0; ; page++ {
				items, next, err := s.Items.Children(ctx, dir.ID, q)
				if err != nil {
					t.Fatalf("page %d: %v", page, err)
				}
				for _, it := range items {
					seen[it.ID]++
					seenOrder = append(seenOrder, it.ID)
				}
				if next == "" {
					break
				}
				if page > 100 {
					t.Fatal("paging does not end")
				}
				q.Cursor = next
				// Between pages: add items that sort before and after the
				// current position, and delete one item already seen and
				// one not yet seen.
				d.file(t, dir.ID, fmt.Sprintf("a%02d", page), int64(page%9))
				d.file(t, dir.ID, fmt.Sprintf("z%02d", page), int64(page%9))
				for _, del := range []bool{true, false} {
					for _, it := range all {
						if len(stable) > 24 && stable[it.ID] && (seen[it.ID] > 0) == del {
							if err := s.Items.DeleteItem(ctx, it.ID, ""); err != nil {
								t.Fatal(err)
							}
							delete(stable, it.ID)
							break
						}
					}
				}
			}
			for id, n := range seen {
				if n > 1 {
					t.Errorf("item %s listed %d times", id, n)
				}
			}
			for id := range stable {
				if seen[id] != 1 {
					t.Errorf("item %s, present throughout, listed %d times", id, seen[id])
				}
			}
		})
	}
}

func testChildrenErrors(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	dir, _ := childrenFixture(t, d)
	_, _, err := s.Items.Children(ctx, "NOSUCHITEM", ferry.ListQuery{})
	wantKind(t, "Children(missing)", err, ferry.NotFound)
	_, next, err := s.Items.Children(ctx, dir, ferry.ListQuery{OrderBy: "name", Limit: 2})
	if err != nil || next == "" {
		t.Fatalf("first page: cursor %q, %v", next, err)
	}
	for _, q := range []ferry.ListQuery{
		{OrderBy: "bogus"},
		{OrderBy: "name desc"},
		{Limit: -1},
		{Limit: 1001},
		{Cursor: "!!!"},
		{Cursor: "bm90IGEgY3Vyc29y"},
		{OrderBy: "size", Cursor: next},
	} {
		_, _, err := s.Items.Children(ctx, dir, q)
		wantKind(t, fmt.Sprintf("Children(%+v)", q), err, ferry.Invalid)
	}
}

func testReplaceContent(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	f := d.file(t, d.root, "f.bin", 10)
	dir := d.folder(t, d.root, "dir")
	c := newContent(20)
	c.MimeType = "text/plain"
	got, err := s.Items.ReplaceContent(ctx, f.ID, c, f.ETag(), "carol")
	if err != nil {
		t.Fatalf("ReplaceContent: %v", err)
	}
	if got.ID != f.ID || got.Size != 20 || got.BlobKey != c.BlobKey || got.Hashes != c.Hashes || got.MimeType != "text/plain" || got.ModifiedBy != "carol" {
		t.Errorf("after ReplaceContent: %+v", got)
	}
	if got.Version <= f.Version || got.ContentVersion <= f.ContentVersion {
		t.Errorf("versions %d/%d, were %d/%d; want both to grow", got.Version, got.ContentVersion, f.Version, f.ContentVersion)
	}
	wantUnreferenced(t, s.Items, f.BlobKey, true)
	d.wantUsed(t, 20)

	_, err = s.Items.ReplaceContent(ctx, f.ID, newContent(30), f.ETag(), "")
	wantKind(t, "ReplaceContent with a stale eTag", err, ferry.Modified)
	if now := d.item(t, f.ID); now.BlobKey != c.BlobKey {
		t.Error("a failed ReplaceContent changed the item")
	}
	for _, tag := range []string{"cTag", "eTag", "*", ""} {
		cur := d.item(t, f.ID)
		ifMatch := tag
		switch tag {
		case "cTag":
			ifMatch = cur.CTag()
		case "eTag":
			ifMatch = cur.ETag()
		}
		if _, err := s.Items.ReplaceContent(ctx, f.ID, newContent(5), ifMatch, ""); err != nil {
			t.Errorf("ReplaceContent(If-Match %q): %v", ifMatch, err)
		}
	}
	_, err = s.Items.ReplaceContent(ctx, dir.ID, newContent(1), "", "")
	wantKind(t, "ReplaceContent(folder)", err, ferry.Invalid)
	_, err = s.Items.ReplaceContent(ctx, "NOSUCHITEM", newContent(1), "", "")
	wantKind(t, "ReplaceContent(missing)", err, ferry.NotFound)
	d.wantUsed(t, 5)
}

func testRename(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	f := d.file(t, d.root, "a.txt", 1)
	sib := d.file(t, d.root, "c.txt", 2)
	name := "b.txt"
	got, err := s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &name, IfMatch: f.ETag(), By: "dave"})
	if err != nil {
		t.Fatalf("rename: %v", err)
	}
	if got.Name != "b.txt" || got.ID != f.ID || got.ModifiedBy != "dave" {
		t.Errorf("renamed item = %+v", got)
	}
	if got.ETag() == f.ETag() || got.CTag() != f.CTag() {
		t.Errorf("rename: eTag %s (was %s), cTag %s (was %s); want a new eTag and the same cTag", got.ETag(), f.ETag(), got.CTag(), f.CTag())
	}
	if _, err := s.Items.ItemByPath(ctx, d.root, []string{"a.txt"}); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("old name still resolves: %v", err)
	}
	_, err = s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &name, IfMatch: f.ETag()})
	wantKind(t, "update with a stale eTag", err, ferry.Modified)
	bad := "x/y"
	_, err = s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &bad})
	wantKind(t, "rename to an invalid name", err, ferry.Invalid)

	taken := "C.TXT"
	_, err = s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &taken})
	wantKind(t, "rename to a taken name", err, ferry.NameConflict)
	_, err = s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &taken, Conflict: ferry.ConflictFail})
	wantKind(t, "rename to a taken name, fail", err, ferry.NameConflict)
	got, err = s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &taken, Conflict: ferry.ConflictRename})
	if err != nil || got.Name != "C 1.TXT" {
		t.Errorf("rename with conflict rename = %v, %v; want C 1.TXT", got, err)
	}
	got, err = s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{Name: &taken, Conflict: ferry.ConflictReplace})
	if err != nil || got.Name != taken {
		t.Fatalf("rename with conflict replace = %v, %v", got, err)
	}
	d.gone(t, sib.ID)
	wantUnreferenced(t, s.Items, sib.BlobKey, true)
	d.wantUsed(t, 1)

	fsC := time.Date(2001, 2, 3, 4, 5, 6, 7e6, time.UTC)
	fsM := time.Date(2002, 3, 4, 5, 6, 7, 8e6, time.UTC)
	desc := "described"
	got, err = s.Items.UpdateItem(ctx, f.ID, ferry.ItemUpdate{FSCreated: &fsC, FSModified: &fsM, Description: &desc})
	if err != nil {
		t.Fatal(err)
	}
	if !got.FSCreated.Equal(fsC) || !got.FSModified.Equal(fsM) || got.Description != desc || got.Name != taken {
		t.Errorf("after retouch: %+v", got)
	}
	if reread := d.item(t, f.ID); !cmp.Equal(reread, got) {
		t.Errorf("Item after UpdateItem differs:\n%s", cmp.Diff(got, reread))
	}
	_, err = s.Items.UpdateItem(ctx, "NOSUCHITEM", ferry.ItemUpdate{Name: &name})
	wantKind(t, "UpdateItem(missing)", err, ferry.NotFound)
}

func testMove(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	other := newTestDrive(t, s, "bob", bigQuota)
	ctx := t.Context()
	a := d.folder(t, d.root, "A")
	b := d.folder(t, a.ID, "B")
	c := d.folder(t, b.ID, "C")
	f := d.file(t, d.root, "f.txt", 1)
	move := func(id, to ferry.ItemID, u ferry.ItemUpdate) (*ferry.Item, error) {
		u.ParentID = &to
		return s.Items.UpdateItem(ctx, id, u)
	}
	got, err := move(f.ID, c.ID, ferry.ItemUpdate{})
	if err != nil || got.ParentID != c.ID {
		t.Fatalf("move file = %v, %v", got, err)
	}
	if p, _ := s.Items.Path(ctx, f.ID); !slices.Equal(p, []string{"A", "B", "C", "f.txt"}) {
		t.Errorf("Path after move = %q", p)
	}
	if got := d.item(t, d.root).ChildCount; got != 1 {
		t.Errorf("root ChildCount after moving out = %d, want 1", got)
	}
	for _, tt := range []struct {
		what   string
		id, to ferry.ItemID
		kind   ferry.Kind
	}{
		{"folder into itself", a.ID, a.ID, ferry.Invalid},
		{"folder into its child", a.ID, b.ID, ferry.Invalid},
		{"folder into its grandchild", a.ID, c.ID, ferry.Invalid},
		{"folder into a file", b.ID, f.ID, ferry.Invalid},
		{"root", d.root, a.ID, ferry.Invalid},
		{"into a missing folder", b.ID, "NOSUCHITEM", ferry.NotFound},
		{"into another drive", b.ID, other.root, ferry.NotFound},
	} {
		_, err := move(tt.id, tt.to, ferry.ItemUpdate{})
		wantKind(t, "move "+tt.what, err, tt.kind)
	}
	rootName := "newroot"
	_, err = s.Items.UpdateItem(ctx, d.root, ferry.ItemUpdate{Name: &rootName})
	wantKind(t, "rename the root", err, ferry.Invalid)
	if got := d.item(t, b.ID); got.ParentID != a.ID {
		t.Errorf("B moved to %s by a failed move", got.ParentID)
	}

	// Name collisions on move.
	d.file(t, d.root, "f.txt", 1)
	_, err = move(f.ID, d.root, ferry.ItemUpdate{})
	wantKind(t, "move onto a taken name", err, ferry.NameConflict)
	got, err = move(f.ID, d.root, ferry.ItemUpdate{Conflict: ferry.ConflictRename})
	if err != nil || got.Name != "f 1.txt" || got.ParentID != d.root {
		t.Errorf("move with rename = %v, %v; want f 1.txt in the root", got, err)
	}
	// Moving C out of A with replace must not delete the folder holding C.
	name := "A"
	_, err = move(c.ID, d.root, ferry.ItemUpdate{Name: &name, Conflict: ferry.ConflictReplace})
	if err == nil {
		t.Error("moving an item over a folder that holds it succeeded")
	}
	d.item(t, a.ID)
	d.item(t, c.ID)
}

func testDelete(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	dir := d.folder(t, d.root, "dir")
	sub := d.folder(t, dir.ID, "sub")
	f1 := d.file(t, dir.ID, "1", 3)
	f2 := d.file(t, sub.ID, "2", 4)
	keep := d.file(t, d.root, "keep", 5)
	d.wantUsed(t, 12)

	err := s.Items.DeleteItem(ctx, d.root, "")
	wantKind(t, "DeleteItem(root)", err, ferry.Forbidden)
	err = s.Items.DeleteItem(ctx, "NOSUCHITEM", "")
	wantKind(t, "DeleteItem(missing)", err, ferry.NotFound)
	err = s.Items.DeleteItem(ctx, dir.ID, `"{`+string(dir.ID)+`},999"`)
	wantKind(t, "DeleteItem(stale eTag)", err, ferry.Modified)
	d.item(t, dir.ID)

	if err := s.Items.DeleteItem(ctx, dir.ID, dir.ETag()); err != nil {
		t.Fatalf("DeleteItem: %v", err)
	}
	for _, id := range []ferry.ItemID{dir.ID, sub.ID, f1.ID, f2.ID} {
		d.gone(t, id)
	}
	d.item(t, keep.ID)
	wantUnreferenced(t, s.Items, f1.BlobKey, true)
	wantUnreferenced(t, s.Items, f2.BlobKey, true)
	wantUnreferenced(t, s.Items, keep.BlobKey, false)
	d.wantUsed(t, 5)
	err = s.Items.DeleteItem(ctx, dir.ID, "")
	wantKind(t, "DeleteItem twice", err, ferry.NotFound)
}

func testBlobRefs(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	f := d.file(t, d.root, "f", 8)
	known := func(key string, want bool) {
		t.Helper()
		got, err := s.Items.BlobKnown(ctx, key)
		if err != nil || got != want {
			t.Errorf("BlobKnown(%s) = %v, %v; want %v", key, got, err, want)
		}
	}
	known(f.BlobKey, true)
	known("never-seen", false)
	wantUnreferenced(t, s.Items, f.BlobKey, false)

	// A second item on the same blob (a copy, or content stored twice).
	cp, err := s.Items.CopyItem(ctx, f.ID, d.root, "g", ferry.ConflictFail, "")
	if err != nil {
		t.Fatal(err)
	}
	same, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "h", Content: ferry.Content{Size: 8, BlobKey: f.BlobKey}}, ferry.ConflictFail)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []ferry.ItemID{f.ID, cp.ID} {
		if err := s.Items.DeleteItem(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		wantUnreferenced(t, s.Items, f.BlobKey, false)
	}
	if err := s.Items.ForgetBlob(ctx, f.BlobKey); err != nil {
		t.Fatal(err)
	}
	known(f.BlobKey, true) // still used by h: ForgetBlob leaves it
	if err := s.Items.DeleteItem(ctx, same.ID, ""); err != nil {
		t.Fatal(err)
	}
	wantUnreferenced(t, s.Items, f.BlobKey, true)
	known(f.BlobKey, true)
	if err := s.Items.ForgetBlob(ctx, f.BlobKey); err != nil {
		t.Fatal(err)
	}
	known(f.BlobKey, false)
	wantUnreferenced(t, s.Items, f.BlobKey, false)

	for i := range 3 {
		g := d.file(t, d.root, fmt.Sprint("x", i), 1)
		if err := s.Items.DeleteItem(ctx, g.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	if keys, err := s.Items.UnreferencedBlobs(ctx, 2); err != nil || len(keys) != 2 {
		t.Errorf("UnreferencedBlobs(2) = %q, %v; want 2 keys", keys, err)
	}
}

func testQuota(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", 100)
	ctx := t.Context()
	wantQuota := func(what string, err error) {
		t.Helper()
		wantKind(t, what, err, ferry.QuotaExceeded)
		if code := ferry.CodeOf(err); err != nil && code != "quotaLimitReached" {
			t.Errorf("%s: code %q, want quotaLimitReached", what, code)
		}
	}
	a := d.file(t, d.root, "a", 60)
	_, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "b", Content: newContent(41)}, ferry.ConflictFail)
	wantQuota("create over quota", err)
	if _, err := s.Items.ItemByPath(ctx, d.root, []string{"b"}); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("a file refused for quota exists: %v", err)
	}
	b := d.file(t, d.root, "b", 40) // exactly full
	d.wantUsed(t, 100)
	if dr, _ := s.Accounts.Drive(ctx, d.drive.ID); dr == nil || dr.Remaining() != 0 {
		t.Errorf("Remaining = %v, want 0", dr)
	}
	d.folder(t, d.root, "folders cost nothing")

	_, err = s.Items.ReplaceContent(ctx, a.ID, newContent(61), "", "")
	wantQuota("ReplaceContent growing past the quota", err)
	if _, err := s.Items.ReplaceContent(ctx, a.ID, newContent(10), "", ""); err != nil {
		t.Fatalf("shrinking ReplaceContent: %v", err)
	}
	d.wantUsed(t, 50)
	// Replacing b (40) counts only the difference.
	if _, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "b", Content: newContent(90)}, ferry.ConflictReplace); err != nil {
		t.Fatalf("replace within quota: %v", err)
	}
	d.wantUsed(t, 100)
	_, _, err = s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "b", Content: newContent(91)}, ferry.ConflictReplace)
	wantQuota("replace over quota", err)
	_, err = s.Items.CopyItem(ctx, a.ID, d.root, "a2", ferry.ConflictFail, "")
	wantQuota("copy over quota", err)
	if _, err := s.Items.ItemByPath(ctx, d.root, []string{"a2"}); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("a copy refused for quota exists: %v", err)
	}
	if err := s.Items.DeleteItem(ctx, b.ID, ""); err != nil {
		t.Fatal(err)
	}
	d.wantUsed(t, 10)
	if _, err := s.Items.CopyItem(ctx, a.ID, d.root, "a2", ferry.ConflictFail, ""); err != nil {
		t.Fatal(err)
	}
	d.wantUsed(t, 20) // a shared blob counts once per item
}

func testCopy(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	bob := newTestDrive(t, s, "bob", bigQuota)
	ctx := t.Context()
	dir := d.folder(t, d.root, "dir")
	f := d.file(t, d.root, "x.txt", 10)
	cp, err := s.Items.CopyItem(ctx, f.ID, d.root, "copy.txt", ferry.ConflictFail, "erin")
	if err != nil {
		t.Fatalf("CopyItem: %v", err)
	}
	if cp.ID == f.ID || cp.Name != "copy.txt" || cp.ParentID != d.root || cp.BlobKey != f.BlobKey ||
		cp.Size != f.Size || cp.Hashes != f.Hashes || cp.MimeType != f.MimeType || cp.CreatedBy != "erin" || cp.DriveID != d.drive.ID {
		t.Errorf("copy = %+v\nof %+v", cp, f)
	}
	if reread := d.item(t, cp.ID); !cmp.Equal(reread, cp) {
		t.Errorf("Item after CopyItem differs:\n%s", cmp.Diff(cp, reread))
	}
	d.wantUsed(t, 20)
	got, err := s.Items.CopyItem(ctx, f.ID, dir.ID, "", ferry.ConflictFail, "")
	if err != nil || got.Name != "x.txt" || got.ParentID != dir.ID {
		t.Errorf("copy keeping the name = %v, %v", got, err)
	}
	_, err = s.Items.CopyItem(ctx, f.ID, d.root, "", ferry.ConflictFail, "")
	wantKind(t, "copy onto its own name", err, ferry.NameConflict)
	got, err = s.Items.CopyItem(ctx, f.ID, d.root, "", ferry.ConflictRename, "")
	if err != nil || got.Name != "x 1.txt" {
		t.Errorf("copy with rename = %v, %v; want x 1.txt", got, err)
	}
	got, err = s.Items.CopyItem(ctx, f.ID, d.root, "COPY.txt", ferry.ConflictReplace, "")
	if err != nil || got.ID == cp.ID || got.Name != "COPY.txt" {
		t.Errorf("copy with replace = %v, %v", got, err)
	}
	d.gone(t, cp.ID)
	d.wantUsed(t, 40)
	bad := "a:b"
	_, err = s.Items.CopyItem(ctx, f.ID, d.root, bad, ferry.ConflictFail, "")
	wantKind(t, "copy to an invalid name", err, ferry.Invalid)
	_, err = s.Items.CopyItem(ctx, "NOSUCHITEM", d.root, "", ferry.ConflictFail, "")
	wantKind(t, "copy of a missing item", err, ferry.NotFound)
	_, err = s.Items.CopyItem(ctx, f.ID, "NOSUCHITEM", "", ferry.ConflictFail, "")
	wantKind(t, "copy into a missing folder", err, ferry.NotFound)
	_, err = s.Items.CopyItem(ctx, f.ID, f.ID, "y", ferry.ConflictFail, "")
	wantKind(t, "copy into a file", err, ferry.Invalid)

	// Into another drive: the copy counts against that drive.
	got, err = s.Items.CopyItem(ctx, f.ID, bob.root, "", ferry.ConflictFail, "bob")
	if err != nil || got.DriveID != bob.drive.ID {
		t.Fatalf("copy into another drive = %v, %v", got, err)
	}
	bob.wantUsed(t, 10)
	d.wantUsed(t, 40)
}

func testCopyFolder(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	a := d.folder(t, d.root, "A")
	a1 := d.file(t, a.ID, "a1.txt", 1)
	b := d.folder(t, a.ID, "B")
	b1 := d.file(t, b.ID, "b1.txt", 2)
	d.folder(t, b.ID, "empty")
	cp, err := s.Items.CopyItem(ctx, a.ID, d.root, "A2", ferry.ConflictFail, "")
	if err != nil {
		t.Fatalf("copy folder: %v", err)
	}
	if cp.ID == a.ID || !cp.Folder || cp.Name != "A2" || cp.ChildCount != 2 {
		t.Errorf("folder copy = %+v", cp)
	}
	for _, tt := range []struct {
		path []string
		src  *ferry.Item
	}{
		{[]string{"A2", "a1.txt"}, a1},
		{[]string{"A2", "b", "B1.TXT"}, b1},
	} {
		got, err := s.Items.ItemByPath(ctx, d.root, tt.path)
		if err != nil {
			t.Errorf("ItemByPath(%q): %v", tt.path, err)
			continue
		}
		if got.ID == tt.src.ID || got.BlobKey != tt.src.BlobKey || got.Size != tt.src.Size || got.Name != tt.src.Name {
			t.Errorf("copied %q = %+v\nof %+v", tt.path, got, tt.src)
		}
	}
	if _, err := s.Items.ItemByPath(ctx, d.root, []string{"A2", "B", "empty"}); err != nil {
		t.Errorf("empty subfolder not copied: %v", err)
	}
	d.item(t, b1.ID) // the source stays
	d.wantUsed(t, 6)
	_, err = s.Items.CopyItem(ctx, a.ID, a.ID, "again", ferry.ConflictFail, "")
	wantKind(t, "copy a folder into itself", err, ferry.Invalid)
	_, err = s.Items.CopyItem(ctx, a.ID, b.ID, "again", ferry.ConflictFail, "")
	wantKind(t, "copy a folder into its subfolder", err, ferry.Invalid)
	_, err = s.Items.CopyItem(ctx, a.ID, d.root, "a2", ferry.ConflictFail, "")
	wantKind(t, "copy a folder onto a taken name", err, ferry.NameConflict)
	// Deleting the source keeps the copy's blobs referenced.
	if err := s.Items.DeleteItem(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	wantUnreferenced(t, s.Items, b1.BlobKey, false)
	d.wantUsed(t, 3)
}

// concurrently starts n goroutines at once and waits for them.
func concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func testConcurrentCreate(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	const n = 10
	errs := make([]error, n)
	concurrently(n, func(i int) {
		_, _, errs[i] = s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "same", Folder: true}, ferry.ConflictFail)
	})
	ok := 0
	for _, err := range errs {
		switch ferry.KindOf(err) {
		case ferry.NameConflict:
		default:
			if err != nil {
				t.Errorf("concurrent create: %v", err)
				continue
			}
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent creates of one name succeeded, want 1", ok, n)
	}
	names := make([]string, n)
	concurrently(n, func(i int) {
		it, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "same", Folder: true}, ferry.ConflictRename)
		if err != nil {
			t.Errorf("concurrent create with rename: %v", err)
			return
		}
		names[i] = it.Name
	})
	slices.Sort(names)
	if got := slices.Compact(slices.Clone(names)); len(got) != n {
		t.Errorf("concurrent renames gave names %q, want %d distinct", names, n)
	}
	if got := len(allChildren(t, s.Items, d.root, ferry.ListQuery{})); got != n+1 {
		t.Errorf("root has %d children, want %d", got, n+1)
	}
}

func testConcurrentMoves(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	ctx := t.Context()
	x := d.folder(t, d.root, "X")
	y := d.folder(t, d.root, "Y")
	d.file(t, x.ID, "in x", 3)
	d.file(t, y.ID, "in y", 5)
	root := d.root
	for round := range 5 {
		var errX, errY error
		concurrently(2, func(i int) {
			if i == 0 {
				_, errX = s.Items.UpdateItem(ctx, x.ID, ferry.ItemUpdate{ParentID: &y.ID})
			} else {
				_, errY = s.Items.UpdateItem(ctx, y.ID, ferry.ItemUpdate{ParentID: &x.ID})
			}
		})
		if errX == nil && errY == nil {
			t.Fatalf("round %d: X into Y and Y into X both succeeded", round)
		}
		gx, gy := d.item(t, x.ID), d.item(t, y.ID)
		if gx.ParentID == y.ID && gy.ParentID == x.ID {
			t.Fatalf("round %d: X and Y are each other's parent", round)
		}
		for _, it := range []*ferry.Item{gx, gy} {
			if _, err := s.Items.UpdateItem(ctx, it.ID, ferry.ItemUpdate{ParentID: &root}); err != nil {
				t.Fatalf("round %d: move back: %v", round, err)
			}
		}
		d.wantSizes(t)
	}
}

func testConcurrentQuota(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", 100)
	ctx := t.Context()
	const n = 10
	var mu sync.Mutex
	ok := 0
	concurrently(n, func(i int) {
		_, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: fmt.Sprint("f", i), Content: newContent(20)}, ferry.ConflictFail)
		switch {
		case err == nil:
			mu.Lock()
			ok++
			mu.Unlock()
		case ferry.KindOf(err) != ferry.QuotaExceeded:
			t.Errorf("concurrent create: %v", err)
		}
	})
	if ok != 5 {
		t.Errorf("%d creates of 20 bytes fit in a quota of 100, want 5", ok)
	}
	d.wantUsed(t, 100)
	d.wantSizes(t)
}
