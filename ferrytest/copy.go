package ferrytest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// TreeBatch is how many items one step of a copy, or of the removal of a
// deleted folder's tree, may write in a store given to TestLargeCopies or
// TestLargeDeletes: small, so that small trees take several steps.
const TreeBatch = 3

// TestLargeCopies checks copies of trees larger than one step of the
// store writes: each step is a transaction of its own; the copy stays out
// of sight (listings, paths, search, delta, quota) until the last step
// makes it appear whole, exactly as a copy in one step would be; a copy
// resumes where its last step stopped, under a new runner, and a runner
// that lost its claim writes nothing; a copy that fails or is cancelled
// leaves nothing behind and gives back its room. It also runs the item
// suite's cases that copy. newStore must return an empty store that holds
// items and accounts too and writes at most TreeBatch items per step of a
// copy.
func TestLargeCopies(t *testing.T, newStore func(t *testing.T) JobStore) {
	runJobCases(t, newStore, []jobCase{
		{"Steps", testLargeCopySteps},
		{"TakeOver", testLargeCopyTakeOver},
		{"Abandoned", testLargeCopyAbandoned},
		{"Conflicts", testLargeCopyConflicts},
		{"Quota", testLargeCopyQuota},
		{"Items/Copy", items(testCopy)},
		{"Items/CopyFolder", items(testCopyFolder)},
		{"Items/FolderSizes", items(testFolderSizes)},
		{"Items/FolderSizesAcrossDrives", items(testFolderSizesAcrossDrives)},
		{"Items/Quota", items(testQuota)},
		{"Items/Blobs", items(testBlobRefs)},
		{"Items/ReplaceOtherKind", items(testReplaceOtherKind)},
		{"Items/DeltaChanges", items(testDeltaChanges)},
	})
}

// jobCase is one named case of a suite run on job stores.
type jobCase struct {
	name string
	fn   func(*testing.T, JobStore)
}

// runJobCases runs each case on a store of its own.
func runJobCases(t *testing.T, newStore func(t *testing.T) JobStore, cases []jobCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// items runs a case of the item suite on a job store that holds items
// and accounts too, and skips it on one that does not.
func items(fn func(*testing.T, Stores)) func(*testing.T, JobStore) {
	return func(t *testing.T, s JobStore) {
		is, ok := s.(jobItems)
		if !ok {
			t.Skip("the store holds no items")
		}
		fn(t, Stores{Items: is, Accounts: is})
	}
}

// copyDrive is the drive of a new user in a store for TestLargeCopies.
func copyDrive(t *testing.T, s JobStore, quota int64) (jobItems, *testDrive) {
	t.Helper()
	is, ok := s.(jobItems)
	if !ok {
		t.Skip("the store holds no items")
	}
	return is, newTestDrive(t, Stores{Items: is, Accounts: is}, ferry.NewID("user", 8), quota)
}

// copyFixture makes the folder "src" in parent, with 13 items in all over
// four levels: files of different sizes, two sharing a blob, an empty
// file, an empty folder, a description and fileSystemInfo times.
func copyFixture(t *testing.T, d *testDrive, parent ferry.ItemID) *ferry.Item {
	t.Helper()
	src := d.folder(t, parent, "src")
	shared := newContent(1)
	d.file(t, src.ID, "a.txt", 1)
	b := d.folder(t, src.ID, "B")
	for _, name := range []string{"b1", "b2"} {
		_, _, err := d.s.Items.CreateItem(t.Context(), ferry.NewItem{DriveID: d.drive.ID, ParentID: b.ID, Name: name,
			Content: shared, By: d.user.Name}, ferry.ConflictFail)
		if err != nil {
			t.Fatal(err)
		}
	}
	c := d.folder(t, b.ID, "C")
	d.file(t, c.ID, "c1", 8)
	d.folder(t, c.ID, "empty")
	d.file(t, b.ID, "d", 16)
	fs := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	_, _, err := d.s.Items.CreateItem(t.Context(), ferry.NewItem{DriveID: d.drive.ID, ParentID: src.ID, Name: "E",
		Content: newContent(32), FSCreated: fs, FSModified: fs.Add(time.Hour), Description: "about E", By: d.user.Name},
		ferry.ConflictFail)
	if err != nil {
		t.Fatal(err)
	}
	f := d.folder(t, src.ID, "f")
	d.file(t, f.ID, "f1", 64)
	d.file(t, src.ID, "g", 0)
	return d.item(t, src.ID)
}

// treeLines renders the subtree below folder, one line per item, sorted:
// path, kind, and what a copy must keep (size, content, fileSystemInfo,
// description).
func treeLines(t *testing.T, s ferry.ItemStore, folder ferry.ItemID) []string {
	t.Helper()
	var lines []string
	var walk func(id ferry.ItemID, prefix string)
	walk = func(id ferry.ItemID, prefix string) {
		for _, it := range allChildren(t, s, id, ferry.ListQuery{}) {
			p := prefix + "/" + it.Name
			lines = append(lines, fmt.Sprintf("%s folder=%v size=%d mime=%q hashes=%+v blob=%q fs=%v,%v desc=%q children=%d",
				p, it.Folder, it.Size, it.MimeType, it.Hashes, it.BlobKey, it.FSCreated, it.FSModified, it.Description, it.ChildCount))
			if it.Folder {
				walk(it.ID, p)
			}
		}
	}
	walk(folder, "")
	slices.Sort(lines)
	return lines
}

// blobKeys lists the blob keys used below folder.
func blobKeys(t *testing.T, s ferry.ItemStore, folder ferry.ItemID) []string {
	t.Helper()
	var keys []string
	for _, it := range snapshot(t, s, folder) {
		if it.BlobKey != "" && !slices.Contains(keys, it.BlobKey) {
			keys = append(keys, it.BlobKey)
		}
	}
	return keys
}

// copyJob queues and starts a copy of src into parent as name, with
// runner holding its claim.
func copyJob(t *testing.T, s jobItems, d *testDrive, src, parent ferry.ItemID, name string, c ferry.ConflictBehavior, runner string) *ferry.Job {
	t.Helper()
	j := newJob(string(d.user.ID))
	j.Operation, j.SourceURL, j.SourceItem = ferry.OpCopy, "", src
	j.DriveID, j.ParentID, j.Name, j.Conflict, j.UserName = d.drive.ID, parent, name, c, d.user.Name
	insertJob(t, s, j)
	running(t, s, j, runner)
	return j
}

// step runs one step of the copy job and fails the test unless it leaves
// the copy out of sight.
func step(t *testing.T, s jobItems, j *ferry.Job, runner string) {
	t.Helper()
	it, _, err := s.AdvanceJobCopy(t.Context(), j.ID, runner, "copied")
	if err != nil || it != nil {
		t.Fatalf("AdvanceJobCopy = %+v, %v; want a step that leaves more to do (is the store's copy batch %d?)", it, err, TreeBatch)
	}
}

// search returns the names of all the items below scope that Search finds
// for text.
func searchNames(t *testing.T, s ferry.ItemStore, scope ferry.ItemID, text string) []string {
	t.Helper()
	var out []string
	q := ferry.ListQuery{Limit: 2}
	for range 1000 {
		items, next, err := s.Search(t.Context(), scope, text, q)
		if err != nil {
			t.Fatalf("Search(%q): %v", text, err)
		}
		for _, it := range items {
			out = append(out, it.Name)
		}
		if next == "" {
			slices.Sort(out)
			return out
		}
		q.Cursor = next
	}
	t.Fatal("Search never reached its last page")
	return nil
}

// testLargeCopySteps copies a tree in several steps, with another writer
// in between each two, and checks after every step that nothing of the
// copy shows, and at the end that the copy is exactly the source's tree.
func testLargeCopySteps(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d := copyDrive(t, s, bigQuota)
	src := copyFixture(t, d, d.root)
	other := d.folder(t, d.root, "other")
	before := d.used(t)
	tok := delta(t, is, d.root, "", 0).token
	j := copyJob(t, is, d, src.ID, d.root, "copy", ferry.ConflictFail, "r1")

	var cp *ferry.Item
	steps, written, lastBytes := 0, int64(0), int64(0)
	for cp == nil {
		it, already, err := is.AdvanceJobCopy(ctx, j.ID, "r1", "copied")
		steps++
		if err != nil || already {
			t.Fatalf("step %d: AdvanceJobCopy = %+v, %v, %v", steps, it, already, err)
		}
		if cp = it; cp != nil {
			break
		}
		if got := itemNames(allChildren(t, is, d.root, ferry.ListQuery{})); !slices.Equal(got, []string{"other", "src"}) {
			t.Errorf("step %d: the root lists %q; want no copy yet", steps, got)
		}
		if _, err := is.ItemByPath(ctx, d.root, []string{"copy"}); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("step %d: ItemByPath(copy) = %v; want NotFound", steps, err)
		}
		for _, text := range []string{"c1", "copy", "b"} {
			want := searchNames(t, is, src.ID, text) // the source's only
			if text == "copy" {
				want = nil
			}
			if got := searchNames(t, is, d.root, text); !slices.Equal(got, want) {
				t.Errorf("step %d: Search(%q) = %q; want %q", steps, text, got, want)
			}
		}
		for _, c := range delta(t, is, d.root, tok, 0).changes {
			if !strings.HasPrefix(c.Item.Name, "w") && c.Item.ID != other.ID && c.Item.ID != d.root {
				t.Errorf("step %d: delta shows %q", steps, c.Item.Name)
			}
		}
		d.wantUsed(t, before+written)
		got := readJob(t, is, j.ID)
		if got.Status != ferry.StatusInProgress || got.Total != src.Size || got.Bytes < lastBytes || got.Bytes > got.Total {
			t.Errorf("step %d: monitor %s %d/%d; want inProgress, bytes from %d up to %d", steps, got.Status, got.Bytes, got.Total, lastBytes, src.Size)
		}
		lastBytes = got.Bytes
		// Another writer gets in between two steps.
		d.file(t, other.ID, fmt.Sprint("w", steps), 1)
		written++
	}
	if want := 13/TreeBatch + 1; steps < want {
		t.Errorf("the copy of 13 items took %d steps; want at least %d with %d items per step", steps, want, TreeBatch)
	}
	if lastBytes == 0 {
		t.Error("the monitor showed no progress before the copy completed")
	}
	if cp.Name != "copy" || cp.ParentID != d.root || !cp.Folder || cp.CreatedBy != d.user.Name || cp.Size != src.Size {
		t.Errorf("copy = %+v", cp)
	}
	if diff := cmp.Diff(treeLines(t, is, src.ID), treeLines(t, is, cp.ID)); diff != "" {
		t.Errorf("the copy's tree differs from the source's (-src +copy):\n%s", diff)
	}
	got := readJob(t, is, j.ID)
	if got.Status != ferry.StatusCompleted || got.ResourceID != cp.ID || got.Bytes != src.Size || got.Total != src.Size {
		t.Errorf("job after the copy = %+v", got)
	}
	d.wantSizes(t)
	d.wantUsed(t, before+written+src.Size)
	if got := searchNames(t, is, d.root, "c1"); !slices.Equal(got, []string{"c1", "c1"}) {
		t.Errorf("Search(c1) after the copy = %q; want the source's and the copy's", got)
	}
	// Delta shows the whole copy, parents first.
	r := delta(t, is, d.root, tok, 0)
	wantParentsFirst(t, r)
	seen := r.byID(t)
	for id, it := range snapshot(t, is, cp.ID) {
		if c, ok := seen[id]; !ok || c.Deleted {
			t.Errorf("delta after the copy lacks %q", it.Name)
		}
	}
	if again, already, err := is.AdvanceJobCopy(ctx, j.ID, "r1", "copied"); err != nil || !already || again.ID != cp.ID {
		t.Errorf("AdvanceJobCopy after completion = %+v, %v, %v; want the copy, already", again, already, err)
	}
	// The copy holds references of its own to the source's blobs.
	keys := blobKeys(t, is, src.ID)
	if err := is.DeleteItem(ctx, src.ID, ""); err != nil {
		t.Fatal(err)
	}
	removeDeleted(t, is)
	for _, k := range keys {
		wantUnreferenced(t, is, k, false)
	}
	if err := is.DeleteItem(ctx, cp.ID, ""); err != nil {
		t.Fatal(err)
	}
	removeDeleted(t, is)
	for _, k := range keys {
		wantUnreferenced(t, is, k, true)
	}
}

func itemNames(items []*ferry.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Name
	}
	slices.Sort(out)
	return out
}

// testLargeCopyTakeOver: a copy whose runner lost its claim after some
// steps is continued by the new runner from there; the old runner cannot
// write a step.
func testLargeCopyTakeOver(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d := copyDrive(t, s, bigQuota)
	src := copyFixture(t, d, d.root)
	before := d.used(t)
	j := copyJob(t, is, d, src.ID, d.root, "", ferry.ConflictRename, "r1")
	step(t, is, j, "r1")
	step(t, is, j, "r1")
	takeOver(t, is, j.ID, "r2")
	progress := readJob(t, is, j.ID).Bytes
	_, _, err := is.AdvanceJobCopy(ctx, j.ID, "r1", "copied")
	wantKind(t, "AdvanceJobCopy(lost claim)", err, ferry.Conflict)
	if got := readJob(t, is, j.ID); got.Bytes != progress || got.Status != ferry.StatusInProgress {
		t.Errorf("a refused step changed the job: %s %d, want inProgress %d", got.Status, got.Bytes, progress)
	}
	cp, already, steps, err := commitCopy(ctx, is, j.ID, "r2", "copied")
	if err != nil || already || steps < 2 {
		t.Fatalf("the new runner's copy = %+v, %v, %d steps, %v; want it in more steps", cp, already, steps, err)
	}
	if cp.Name != "src 1" {
		t.Errorf("copy named %q, want \"src 1\"", cp.Name)
	}
	if diff := cmp.Diff(treeLines(t, is, src.ID), treeLines(t, is, cp.ID)); diff != "" {
		t.Errorf("the resumed copy's tree differs from the source's (-src +copy):\n%s", diff)
	}
	d.wantSizes(t)
	d.wantUsed(t, before+src.Size)
	if again, _, err := is.AdvanceJobCopy(ctx, j.ID, "r1", "copied"); err == nil && again.ID != cp.ID {
		t.Errorf("the old runner after the copy = %+v; want the copy or an error", again)
	}
	if got := itemNames(allChildren(t, is, d.root, ferry.ListQuery{})); !slices.Equal(got, []string{"src", "src 1"}) {
		t.Errorf("root = %q, want src and one copy", got)
	}
}

// testLargeCopyAbandoned: a copy that is cancelled, fails when it would
// appear, or loses its source after some steps leaves nothing behind once
// its job has ended and its tree is dropped (by DropJobCopy or the sweep's
// DropAbandonedCopies), and releases its blob references.
func testLargeCopyAbandoned(t *testing.T, s JobStore) {
	for _, tt := range []struct {
		name string
		// upset runs after two steps; the copy then fails with kind want
		// (or, with want Internal, is cancelled without another step).
		upset func(t *testing.T, is jobItems, d *testDrive, j *ferry.Job, src *ferry.Item)
		want  ferry.Kind
		sweep bool // the sweep drops the tree, not DropJobCopy
	}{
		{"cancelled", func(t *testing.T, is jobItems, d *testDrive, j *ferry.Job, src *ferry.Item) {
			if ok, err := is.SetJobStatus(t.Context(), j.ID, ferry.StatusCancelPending, ferry.StatusInProgress); !ok || err != nil {
				t.Fatalf("cancel: %v, %v", ok, err)
			}
		}, ferry.Internal, false},
		{"name taken meanwhile", func(t *testing.T, is jobItems, d *testDrive, j *ferry.Job, src *ferry.Item) {
			d.folder(t, d.root, "COPY")
		}, ferry.NameConflict, true},
		{"source deleted meanwhile", func(t *testing.T, is jobItems, d *testDrive, j *ferry.Job, src *ferry.Item) {
			if err := is.DeleteItem(t.Context(), src.ID, ""); err != nil {
				t.Fatal(err)
			}
		}, ferry.NotFound, false},
		{"destination deleted meanwhile", func(t *testing.T, is jobItems, d *testDrive, j *ferry.Job, src *ferry.Item) {
			if err := is.DeleteItem(t.Context(), j.ParentID, ""); err != nil {
				t.Fatal(err)
			}
		}, ferry.NotFound, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			is, d := copyDrive(t, s, bigQuota)
			src := copyFixture(t, d, d.root)
			dst := d.folder(t, d.root, "dst")
			if tt.name == "name taken meanwhile" {
				dst = d.item(t, d.root)
			}
			keys := blobKeys(t, is, src.ID)
			j := copyJob(t, is, d, src.ID, dst.ID, "copy", ferry.ConflictFail, "r1")
			step(t, is, j, "r1")
			step(t, is, j, "r1")
			tt.upset(t, is, d, j, src)
			status := ferry.StatusCancelled
			if tt.want != ferry.Internal {
				status = ferry.StatusFailed
				_, _, _, err := commitCopy(ctx, is, j.ID, "r1", "copied")
				wantKind(t, "the upset copy", err, tt.want)
				if got := readJob(t, is, j.ID); got.Status != ferry.StatusInProgress {
					t.Errorf("after a failed step the job is %s, want inProgress", got.Status)
				}
			}
			err := is.DropJobCopy(ctx, j.ID)
			wantKind(t, "DropJobCopy before the job ended", err, ferry.Conflict)
			sizes := d.wantSizes(t)
			after := d.used(t)
			if err := is.FinishJob(ctx, j.ID, status, "", "", "ended"); err != nil {
				t.Fatal(err)
			}
			if it, _, err := is.AdvanceJobCopy(ctx, j.ID, "r1", "copied"); err == nil {
				t.Errorf("AdvanceJobCopy after the job ended = %+v; want an error", it)
			}
			if tt.sweep {
				if n, err := is.DropAbandonedCopies(ctx, time.Now()); err != nil || n != 1 {
					t.Errorf("DropAbandonedCopies = %d, %v; want 1", n, err)
				}
			} else if err := is.DropJobCopy(ctx, j.ID); err != nil {
				t.Errorf("DropJobCopy: %v", err)
			}
			if err := is.DropJobCopy(ctx, j.ID); err != nil {
				t.Errorf("DropJobCopy again: %v", err)
			}
			if n, err := is.DropAbandonedCopies(ctx, time.Now().Add(time.Hour)); err != nil || n != 0 {
				t.Errorf("DropAbandonedCopies when all is gone = %d, %v; want 0", n, err)
			}
			// Nothing of the copy shows, nothing was charged, and
			// nothing but the source holds the blobs.
			if diff := cmp.Diff(sizes, d.wantSizes(t)); diff != "" {
				t.Errorf("dropping the copy changed sizes (-before +after):\n%s", diff)
			}
			d.wantUsed(t, after)
			if got := searchNames(t, is, d.root, "c1"); len(got) > 1 {
				t.Errorf("Search(c1) = %q; want the source's only", got)
			}
			if _, err := is.Item(ctx, src.ID); err == nil {
				if err := is.DeleteItem(ctx, src.ID, ""); err != nil {
					t.Fatal(err)
				}
			}
			removeDeleted(t, is) // the source's tree, deleted
			for _, k := range keys {
				wantUnreferenced(t, is, k, true)
			}
		})
	}
}

// testLargeCopyConflicts: the conflict behaviour applies when the copy
// appears, to the name as it is then.
func testLargeCopyConflicts(t *testing.T, s JobStore) {
	ctx := t.Context()
	t.Run("rename", func(t *testing.T) {
		is, d := copyDrive(t, s, bigQuota)
		src := copyFixture(t, d, d.root)
		j := copyJob(t, is, d, src.ID, d.root, "copy", ferry.ConflictRename, "r1")
		step(t, is, j, "r1")
		d.file(t, d.root, "Copy", 5) // takes the name meanwhile
		cp, _, _, err := commitCopy(ctx, is, j.ID, "r1", "copied")
		if err != nil || cp.Name != "copy 1" {
			t.Fatalf("copy = %+v, %v; want \"copy 1\"", cp, err)
		}
		if diff := cmp.Diff(treeLines(t, is, src.ID), treeLines(t, is, cp.ID)); diff != "" {
			t.Errorf("copy differs (-src +copy):\n%s", diff)
		}
		d.wantSizes(t)
	})
	t.Run("replace", func(t *testing.T) {
		is, d := copyDrive(t, s, bigQuota)
		src := copyFixture(t, d, d.root)
		old := d.folder(t, d.root, "copy")
		oldFile := d.file(t, old.ID, "old", 7)
		before := d.used(t)
		j := copyJob(t, is, d, src.ID, d.root, "copy", ferry.ConflictReplace, "r1")
		step(t, is, j, "r1")
		if got := d.item(t, old.ID); got.Size != 7 {
			t.Errorf("the folder to replace changed before the copy appeared: %+v", got)
		}
		cp, _, _, err := commitCopy(ctx, is, j.ID, "r1", "copied")
		if err != nil || cp.Name != "copy" || cp.ID == old.ID {
			t.Fatalf("copy = %+v, %v; want a new \"copy\"", cp, err)
		}
		d.gone(t, old.ID)
		d.gone(t, oldFile.ID)
		wantUnreferenced(t, is, oldFile.BlobKey, true)
		if diff := cmp.Diff(treeLines(t, is, src.ID), treeLines(t, is, cp.ID)); diff != "" {
			t.Errorf("copy differs (-src +copy):\n%s", diff)
		}
		d.wantSizes(t)
		d.wantUsed(t, before-7+src.Size)
	})
	t.Run("replace a file", func(t *testing.T) {
		is, d := copyDrive(t, s, bigQuota)
		src := copyFixture(t, d, d.root)
		j := copyJob(t, is, d, src.ID, d.root, "copy", ferry.ConflictReplace, "r1")
		step(t, is, j, "r1")
		f := d.file(t, d.root, "copy", 5) // the other kind, meanwhile
		_, _, _, err := commitCopy(ctx, is, j.ID, "r1", "copied")
		wantKind(t, "a folder's copy replacing a file", err, ferry.NameConflict)
		if got := d.item(t, f.ID); got.Size != 5 {
			t.Errorf("the file in the way changed: %+v", got)
		}
		if err := is.FinishJob(ctx, j.ID, ferry.StatusFailed, "", "", "failed"); err != nil {
			t.Fatal(err)
		}
		if err := is.DropJobCopy(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		d.wantSizes(t)
	})
}

// testLargeCopyQuota: a copy that needs several steps holds the bytes it
// will need from its first step, fails at once when they do not fit, and
// gives them back when its job ends otherwise.
func testLargeCopyQuota(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d := copyDrive(t, s, bigQuota)
	src := copyFixture(t, d, d.root)
	used := d.used(t)
	setQuota := func(q int64) {
		t.Helper()
		if err := is.SetQuota(ctx, d.user.ID, q); err != nil {
			t.Fatal(err)
		}
	}
	wantQuota := func(what string, err error) {
		t.Helper()
		wantKind(t, what, err, ferry.QuotaExceeded)
		if code := ferry.CodeOf(err); err != nil && code != "quotaLimitReached" {
			t.Errorf("%s: code %q, want quotaLimitReached", what, code)
		}
	}
	setQuota(used + src.Size - 1)
	j := copyJob(t, is, d, src.ID, d.root, "copy", ferry.ConflictFail, "r1")
	_, _, err := is.AdvanceJobCopy(ctx, j.ID, "r1", "copied")
	wantQuota("a copy that cannot fit", err)
	_, err = is.CopyItem(ctx, src.ID, d.root, "copy", ferry.ConflictFail, "")
	wantQuota("CopyItem that cannot fit", err)
	if n, err := is.DropAbandonedCopies(ctx, time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("DropAbandonedCopies after refused copies = %d, %v; want 0 (nothing left behind)", n, err)
	}
	d.wantUsed(t, used)

	// The copy holds its room: 5 bytes are left beside it. Upload
	// sessions and imports are told so (their room is checked before any
	// byte).
	setQuota(used + src.Size + 5)
	step(t, is, j, "r1")
	if room, err := is.Room(ctx, d.drive.ID); err != nil || room != 5 {
		t.Errorf("Room during the copy = %d, %v; want 5", room, err)
	}
	if su, ok := s.(interface {
		SessionUsage(ctx context.Context, drive ferry.DriveID) (int64, int, error)
	}); ok {
		if b, n, err := su.SessionUsage(ctx, d.drive.ID); err != nil || b != src.Size || n != 0 {
			t.Errorf("SessionUsage during the copy = %d bytes, %d sessions, %v; want %d, 0", b, n, err, src.Size)
		}
	}
	_, _, err = is.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "six", Content: newContent(6)}, ferry.ConflictFail)
	wantQuota("a file taking the room a copy holds", err)
	d.file(t, d.root, "five", 5)
	cp, _, _, err := commitCopy(ctx, is, j.ID, "r1", "copied")
	if err != nil {
		t.Fatalf("the copy that fits: %v", err)
	}
	d.wantUsed(t, used+src.Size+5)
	d.wantSizes(t)

	// A copy that ends otherwise gives its room back at once.
	if err := is.DeleteItem(ctx, cp.ID, ""); err != nil {
		t.Fatal(err)
	}
	k := copyJob(t, is, d, src.ID, d.root, "copy", ferry.ConflictFail, "rk")
	step(t, is, k, "rk")
	_, _, err = is.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: d.root, Name: "six", Content: newContent(6)}, ferry.ConflictFail)
	wantQuota("a file taking the room a copy holds", err)
	if err := is.FinishJob(ctx, k.ID, ferry.StatusFailed, "", "", "failed"); err != nil {
		t.Fatal(err)
	}
	d.file(t, d.root, "six", 6)
	if err := is.DropJobCopy(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	d.wantUsed(t, used+5+6)
	d.wantSizes(t)
}
