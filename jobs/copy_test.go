package jobs_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

// putFile stores data as a new blob and creates a file for it, as an
// upload would.
func (h *harness) putFile(parent ferry.ItemID, name string, data []byte) *ferry.Item {
	h.t.Helper()
	c, err := blob.Ingest(h.t.Context(), h.blobs, bytes.NewReader(data), -1)
	if err != nil {
		h.t.Fatal(err)
	}
	it, _, err := h.store.CreateItem(h.t.Context(), ferry.NewItem{
		DriveID: h.drive.ID, ParentID: parent, Name: name, Content: c, By: h.user.Name,
	}, ferry.ConflictFail)
	if err != nil {
		h.t.Fatal(err)
	}
	return it
}

// mkdir creates a folder.
func (h *harness) mkdir(parent ferry.ItemID, name string) *ferry.Item {
	h.t.Helper()
	it, _, err := h.store.CreateItem(h.t.Context(), ferry.NewItem{
		DriveID: h.drive.ID, ParentID: parent, Name: name, Folder: true, By: h.user.Name,
	}, ferry.ConflictFail)
	if err != nil {
		h.t.Fatal(err)
	}
	return it
}

// enqueueCopy queues a copy of src into the folder parent, the way the
// copy route does.
func (h *harness) enqueueCopy(src, parent ferry.ItemID, name string, c ferry.ConflictBehavior) *ferry.Job {
	h.t.Helper()
	j := &ferry.Job{
		Operation:  ferry.OpCopy,
		UserID:     h.user.ID,
		UserName:   h.user.Name,
		DriveID:    h.drive.ID,
		ParentID:   parent,
		Name:       name,
		Conflict:   c,
		SourceItem: src,
	}
	if err := h.q.Enqueue(h.t.Context(), j); err != nil {
		h.t.Fatalf("Enqueue(copy): %v", err)
	}
	return j
}

// used reports the drive's quota.used.
func (h *harness) used() int64 {
	h.t.Helper()
	d, err := h.store.Drive(h.t.Context(), h.drive.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return d.Used
}

// blobCount reports how many blobs the blob store holds.
func (h *harness) blobCount() int {
	h.t.Helper()
	bl, err := h.blobs.List(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return len(bl)
}

// wantCopyFailed checks a failed copy: the code, a message, no resource.
func wantCopyFailed(t *testing.T, j *ferry.Job, code ferry.JobErrorCode) {
	t.Helper()
	if j.Status != ferry.StatusFailed || j.ErrorCode != code {
		t.Fatalf("copy = %s (%q: %s), want failed with %q", j.Status, j.ErrorCode, j.ErrorMessage, code)
	}
	if j.ErrorMessage == "" {
		t.Error("failed copy has no statusDescription")
	}
	if j.ResourceID != "" {
		t.Errorf("failed copy has resource %q", j.ResourceID)
	}
	if j.Percentage() != 0 {
		t.Errorf("failed copy at %v%%, want 0", j.Percentage())
	}
}

// names lists a folder's children's names.
func (h *harness) names(folder ferry.ItemID) []string {
	h.t.Helper()
	items, _, err := h.store.Children(h.t.Context(), folder, ferry.ListQuery{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, it := range items {
		out = append(out, it.Name)
	}
	return out
}

// TestCopyBigFile copies a 64 MiB file: the copy shares the blob (one blob
// file, quota.used doubled) and has the same size and hashes. The blob's
// bytes stay while either item uses them and go with the last one.
func TestCopyBigFile(t *testing.T) {
	data := randomBytes(64<<20, 20)
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.SweepEvery = 20 * time.Millisecond
		cfg.StagingGrace = time.Nanosecond // for waitSweeps
		h := newHarness(t, dsn, testQuota, cfg)
		src := h.putFile(h.drive.RootID, "big.bin", data)
		dst := h.mkdir(h.drive.RootID, "dst")
		if got, want := h.used(), int64(len(data)); got != want {
			t.Fatalf("used before the copy = %d, want %d", got, want)
		}
		h.run()
		j := h.waitFinal(h.enqueueCopy(src.ID, dst.ID, "", ferry.ConflictFail).ID)
		if j.Status != ferry.StatusCompleted || j.ResourceID == "" || j.ResourceID == src.ID {
			t.Fatalf("copy = %s (%s: %s), resource %q; want completed with a new item", j.Status, j.ErrorCode, j.ErrorMessage, j.ResourceID)
		}
		if j.Operation != ferry.OpCopy || j.Percentage() != 100 || j.Bytes != int64(len(data)) || j.Total != int64(len(data)) {
			t.Errorf("monitor = %s, %v%%, %d/%d; want ItemCopy, 100%%, %d/%d", j.Operation, j.Percentage(), j.Bytes, j.Total, len(data), len(data))
		}
		cp, err := h.store.Item(t.Context(), j.ResourceID)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Name != "big.bin" || cp.ParentID != dst.ID || cp.Size != src.Size || cp.Hashes != hashes(data) || cp.BlobKey != src.BlobKey {
			t.Errorf("copy = %q in %s, %d bytes, %+v, blob %s; want big.bin in %s, %d bytes, %+v, blob %s",
				cp.Name, cp.ParentID, cp.Size, cp.Hashes, cp.BlobKey, dst.ID, src.Size, hashes(data), src.BlobKey)
		}
		if got, want := h.used(), 2*int64(len(data)); got != want {
			t.Errorf("used after the copy = %d, want %d", got, want)
		}
		if got := h.blobCount(); got != 1 {
			t.Errorf("%d blobs after the copy, want 1 (shared)", got)
		}
		h.wantNoStaging()

		// Deleting the source keeps the shared bytes for the copy …
		if err := h.store.DeleteItem(t.Context(), src.ID, ""); err != nil {
			t.Fatal(err)
		}
		waitSweeps(t, h)
		if got := h.blobCount(); got != 1 {
			t.Fatalf("%d blobs after deleting the source, want 1", got)
		}
		rc, err := h.blobs.Open(t.Context(), cp.BlobKey)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if got, want := h.used(), int64(len(data)); got != want {
			t.Errorf("used after deleting the source = %d, want %d", got, want)
		}
		// … and deleting the copy, the last user, frees them.
		if err := h.store.DeleteItem(t.Context(), cp.ID, ""); err != nil {
			t.Fatal(err)
		}
		for range 3000 {
			if h.blobCount() == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Error("the blob outlived its last item")
	})
}

// waitSweeps waits until the sweep has run at least twice more, by
// planting orphaned staging areas one after the other and waiting for
// each to go. It needs a tiny StagingGrace: it ages nothing.
func waitSweeps(t *testing.T, h *harness) {
	t.Helper()
	for range 2 {
		st, err := h.blobs.Stage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		id := st.ID()
		st.Close()
		for i := 0; ; i++ {
			areas, err := h.blobs.ListStaging(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(areas, func(a ferry.BlobInfo) bool { return a.ID == id }) {
				break
			}
			if i == 3000 {
				t.Fatal("the sweep never ran")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestCopyFolder copies a folder's whole subtree; the copies share blobs
// and the source is unchanged.
func TestCopyFolder(t *testing.T) {
	a, b := randomBytes(100_000, 21), randomBytes(3000, 22)
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		dir := h.mkdir(h.drive.RootID, "dir")
		h.putFile(dir.ID, "a.bin", a)
		sub := h.mkdir(dir.ID, "sub")
		h.putFile(sub.ID, "b.txt", b)
		h.mkdir(sub.ID, "empty")
		blobsBefore := h.blobCount()
		h.run()
		j := h.waitFinal(h.enqueueCopy(dir.ID, h.drive.RootID, "dir copy", ferry.ConflictFail).ID)
		if j.Status != ferry.StatusCompleted || j.ResourceID == "" {
			t.Fatalf("copy = %s (%s: %s); want completed", j.Status, j.ErrorCode, j.ErrorMessage)
		}
		top, err := h.store.Item(t.Context(), j.ResourceID)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(len(a) + len(b)); top.Size != want || j.Bytes != want || j.Total != want || j.Percentage() != 100 {
			t.Errorf("folder copy: size %d, monitor %d/%d, %v%%; want %d everywhere and 100%%", top.Size, j.Bytes, j.Total, j.Percentage(), want)
		}
		if !top.Folder || top.Name != "dir copy" || top.ParentID != h.drive.RootID {
			t.Fatalf("copy = %+v, want folder \"dir copy\" in the root", top)
		}
		if got, want := treeOf(t, h, top.ID), treeOf(t, h, dir.ID); got != want {
			t.Errorf("copied tree:\n%s\nwant:\n%s", got, want)
		}
		if got, want := h.names(h.drive.RootID), []string{"dir", "dir copy"}; !slices.Equal(got, want) {
			t.Errorf("root = %q, want %q", got, want)
		}
		if got, want := h.used(), 2*int64(len(a)+len(b)); got != want {
			t.Errorf("used = %d, want %d", got, want)
		}
		if got := h.blobCount(); got != blobsBefore {
			t.Errorf("%d blobs after the copy, want %d (shared)", got, blobsBefore)
		}
	})
}

// treeOf renders the subtree below folder, one line per item: path,
// kind, size, SHA-256 and blob key; sorted by path.
func treeOf(t *testing.T, h *harness, folder ferry.ItemID) string {
	t.Helper()
	var lines []string
	var walk func(id ferry.ItemID, prefix string)
	walk = func(id ferry.ItemID, prefix string) {
		items, _, err := h.store.Children(t.Context(), id, ferry.ListQuery{})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			p := prefix + "/" + it.Name
			if it.Folder {
				lines = append(lines, p+" folder")
				walk(it.ID, p)
				continue
			}
			lines = append(lines, p+" file "+strconv.FormatInt(it.Size, 10)+" "+it.Hashes.SHA256+" "+it.BlobKey)
		}
	}
	walk(folder, "")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestCopyConflict copies x.bin into the folder that holds it, and onto
// another file, under each conflict behaviour.
func TestCopyConflict(t *testing.T) {
	x, y := randomBytes(10_000, 23), randomBytes(5000, 24)
	for _, tt := range []struct {
		name     string
		as       string // "" keeps the source name
		behavior ferry.ConflictBehavior
		wantCode ferry.JobErrorCode // "" means completed
		wantName string
		wantRoot []string
	}{
		{"fail", "", ferry.ConflictFail, "nameAlreadyExists", "", []string{"x.bin", "y.bin"}},
		{"fail case-insensitive", "Y.BIN", ferry.ConflictFail, "nameAlreadyExists", "", []string{"x.bin", "y.bin"}},
		{"rename", "", ferry.ConflictRename, "", "x 1.bin", []string{"x 1.bin", "x.bin", "y.bin"}},
		{"replace another file", "y.bin", ferry.ConflictReplace, "", "y.bin", []string{"x.bin", "y.bin"}},
		{"replace its own source", "", ferry.ConflictReplace, "invalidRequest", "", []string{"x.bin", "y.bin"}},
		{"invalid name", "a:b", ferry.ConflictFail, "invalidRequest", "", []string{"x.bin", "y.bin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				h := newHarness(t, dsn, testQuota, testConfig(t))
				src := h.putFile(h.drive.RootID, "x.bin", x)
				h.putFile(h.drive.RootID, "y.bin", y)
				h.run()
				j := h.waitFinal(h.enqueueCopy(src.ID, h.drive.RootID, tt.as, tt.behavior).ID)
				if tt.wantCode != "" {
					wantCopyFailed(t, j, tt.wantCode)
					if got, want := h.used(), int64(len(x)+len(y)); got != want {
						t.Errorf("used = %d, want %d", got, want)
					}
				} else {
					if j.Status != ferry.StatusCompleted {
						t.Fatalf("copy = %s (%s: %s), want completed", j.Status, j.ErrorCode, j.ErrorMessage)
					}
					it, err := h.store.Item(t.Context(), j.ResourceID)
					if err != nil {
						t.Fatal(err)
					}
					if it.Name != tt.wantName || it.Hashes != hashes(x) {
						t.Errorf("copy = %q with %+v, want %q with the source's hashes", it.Name, it.Hashes, tt.wantName)
					}
				}
				if got := h.names(h.drive.RootID); !slices.Equal(got, tt.wantRoot) {
					t.Errorf("root = %q, want %q", got, tt.wantRoot)
				}
			})
		})
	}
}

// TestCopyQuota fails a copy that would take the drive over its quota,
// and leaves the drive as it was.
func TestCopyQuota(t *testing.T) {
	data := randomBytes(1<<20, 25)
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, 3<<19, testConfig(t)) // 1.5 MiB
		src := h.putFile(h.drive.RootID, "x.bin", data)
		dir := h.mkdir(h.drive.RootID, "dir")
		h.run()
		j := h.waitFinal(h.enqueueCopy(src.ID, dir.ID, "", ferry.ConflictFail).ID)
		wantCopyFailed(t, j, "quotaLimitReached")
		if got, want := h.used(), int64(len(data)); got != want {
			t.Errorf("used = %d, want %d", got, want)
		}
		if got := h.names(dir.ID); len(got) != 0 {
			t.Errorf("destination holds %q, want nothing", got)
		}
	})
}

// TestCopyGone fails a copy whose source, or destination, was deleted
// after it was queued.
func TestCopyGone(t *testing.T) {
	for _, gone := range []string{"source", "destination"} {
		t.Run(gone, func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				h := newHarness(t, dsn, testQuota, testConfig(t))
				src := h.putFile(h.drive.RootID, "x.bin", []byte("hello"))
				dir := h.mkdir(h.drive.RootID, "dir")
				j := h.enqueueCopy(src.ID, dir.ID, "", ferry.ConflictFail)
				del := src.ID
				if gone == "destination" {
					del = dir.ID
				}
				if err := h.store.DeleteItem(t.Context(), del, ""); err != nil {
					t.Fatal(err)
				}
				h.run()
				wantCopyFailed(t, h.waitFinal(j.ID), "itemNotFound")
				if got := len(h.names(h.drive.RootID)); got != 1 {
					t.Errorf("root holds %d items, want 1", got)
				}
			})
		})
	}
}

// TestCopyCancelQueued cancels a copy before it runs: it ends cancelled
// at once, and River running its work later copies nothing.
func TestCopyCancelQueued(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		src := h.putFile(h.drive.RootID, "x.bin", []byte("hello"))
		j := h.enqueueCopy(src.ID, h.drive.RootID, "", ferry.ConflictRename)
		got, err := h.q.Cancel(t.Context(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != ferry.StatusCancelled || got.Finished.IsZero() {
			t.Fatalf("Cancel of a queued copy: %s, finished %v; want cancelled at once", got.Status, got.Finished)
		}
		h.run()
		waitRiverDone(t, h)
		got, err = h.q.Job(t.Context(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != ferry.StatusCancelled || got.ResourceID != "" {
			t.Errorf("after River ran: %s, resource %q; want cancelled, none", got.Status, got.ResourceID)
		}
		if got, want := h.names(h.drive.RootID), []string{"x.bin"}; !slices.Equal(got, want) {
			t.Errorf("root = %q, want %q", got, want)
		}
	})
}

// TestCopyBesideDownloads runs a copy while the user's only download slot
// and the node's only download worker are held by a download that does not
// end: the copy must not wait for either.
func TestCopyBesideDownloads(t *testing.T) {
	data := randomBytes(1<<20, 26)
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.Workers, cfg.PerUserRunning = 1, 1
		h := newHarness(t, dsn, testQuota, cfg)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			serveDrip(w, r, data, 100<<10)
		})
		src := h.putFile(h.drive.RootID, "x.bin", []byte("hello"))
		h.run()
		dl := h.enqueue(o.url("/f"), "dl.bin")
		h.wait(dl.ID, "running", func(j *ferry.Job) bool { return j.Status == ferry.StatusInProgress && j.Bytes > 0 })
		cp := h.waitFinal(h.enqueueCopy(src.ID, h.drive.RootID, "y.bin", ferry.ConflictFail).ID)
		if cp.Status != ferry.StatusCompleted {
			t.Fatalf("copy = %s (%s: %s), want completed", cp.Status, cp.ErrorCode, cp.ErrorMessage)
		}
		if d, err := h.q.Job(t.Context(), dl.ID); err != nil || d.Status != ferry.StatusInProgress {
			t.Fatalf("download = %v, %v; want still inProgress", d, err)
		}
		if _, err := h.q.Cancel(t.Context(), dl.ID); err != nil {
			t.Fatal(err)
		}
		if d := h.waitFinal(dl.ID); d.Status != ferry.StatusCancelled {
			t.Errorf("download = %s, want cancelled", d.Status)
		}
	})
}

func TestEnqueueCopyInvalid(t *testing.T) {
	h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, testConfig(t))
	for _, tt := range []struct {
		name string
		job  ferry.Job
	}{
		{"no source", ferry.Job{Operation: ferry.OpCopy, ParentID: h.drive.RootID}},
		{"no destination", ferry.Job{Operation: ferry.OpCopy, SourceItem: h.drive.RootID}},
		{"a source URL", ferry.Job{Operation: ferry.OpCopy, SourceItem: "x", ParentID: h.drive.RootID, SourceURL: "http://127.0.0.1/"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.job
			j.UserID, j.DriveID = h.user.ID, h.drive.ID
			if err := h.q.Enqueue(t.Context(), &j); ferry.KindOf(err) != ferry.Invalid || j.ID != "" {
				t.Errorf("Enqueue = %v (ID %q), want Invalid and no job", err, j.ID)
			}
		})
	}
}

// stepTree makes below parent a folder of 9 items over three levels, for
// copies in steps of two items.
func (h *harness) stepTree(parent ferry.ItemID) *ferry.Item {
	h.t.Helper()
	dir := h.mkdir(parent, "tree")
	h.putFile(dir.ID, "a.bin", randomBytes(3000, 31))
	sub := h.mkdir(dir.ID, "sub")
	h.putFile(sub.ID, "b.bin", randomBytes(2000, 32))
	h.putFile(sub.ID, "c.bin", randomBytes(1000, 33))
	deep := h.mkdir(sub.ID, "deep")
	h.putFile(deep.ID, "d.bin", randomBytes(500, 34))
	h.mkdir(dir.ID, "empty")
	h.putFile(dir.ID, "e.bin", randomBytes(100, 35))
	return dir
}

// leftovers counts what a copy that never appeared may leave: items out
// of reach of their drive's root, copies under way, and the blob
// references in all.
func (h *harness) leftovers() (hidden, pending, refs int) {
	h.t.Helper()
	ctx := h.t.Context()
	db := h.store.DB()
	for _, c := range []struct {
		n *int
		q string
	}{
		{&hidden, `WITH RECURSIVE r(id) AS (
				SELECT i.id FROM items i JOIN drives d ON d.root_id = i.id
				UNION ALL
				SELECT i.id FROM items i JOIN r ON i.parent_id = r.id
			)
			SELECT count(*) FROM items WHERE id NOT IN (SELECT id FROM r)`},
		{&pending, `SELECT count(*) FROM pending_copies`},
		{&refs, `SELECT COALESCE(SUM(refs), 0) FROM blobs`},
	} {
		if err := db.QueryRowContext(ctx, c.q).Scan(c.n); err != nil {
			h.t.Fatal(err)
		}
	}
	return hidden, pending, refs
}

// TestCopyInSteps copies a folder two items per step: the copy appears
// whole, equal to its source, and a copy whose attempt dies between two
// steps is continued by the next attempt.
func TestCopyInSteps(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprint("crash=", crash), func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				h := newHarness(t, dsn, testQuota, testConfig(t))
				h.store.SetTreeBatch(2)
				dir := h.stepTree(h.drive.RootID)
				var steps atomic.Int32
				h.useStore(&faultyStore{Store: h.store, advanceHook: func(string) {
					if steps.Add(1) == 3 && crash {
						panic("simulated: the attempt dies between two steps")
					}
				}})
				_, _, refs := h.leftovers()
				h.run()
				j := h.waitFinal(h.enqueueCopy(dir.ID, h.drive.RootID, "tree copy", ferry.ConflictFail).ID)
				if j.Status != ferry.StatusCompleted || j.Percentage() != 100 {
					t.Fatalf("copy = %s (%s: %s), %v%%; want completed", j.Status, j.ErrorCode, j.ErrorMessage, j.Percentage())
				}
				if n := steps.Load(); n < 5 {
					t.Errorf("the copy of 9 items took %d steps; want at least 5 of 2 items", n)
				}
				if got, want := treeOf(t, h, j.ResourceID), treeOf(t, h, dir.ID); got != want {
					t.Errorf("copied tree:\n%s\nwant:\n%s", got, want)
				}
				if got, want := h.used(), 2*int64(3000+2000+1000+500+100); got != want {
					t.Errorf("used = %d, want %d", got, want)
				}
				if hidden, pending, after := h.leftovers(); hidden != 0 || pending != 0 || after != refs+5 {
					t.Errorf("after the copy: %d hidden items, %d copies under way, %d blob references; want 0, 0, %d", hidden, pending, after, refs+5)
				}
			})
		})
	}
}

// TestCopyCancelledBetweenSteps cancels a copy after some of its steps:
// it ends cancelled, and nothing of it stays: no item, no blob
// reference, no quota.
func TestCopyCancelledBetweenSteps(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		h.store.SetTreeBatch(2)
		dir := h.stepTree(h.drive.RootID)
		var steps atomic.Int32
		h.useStore(&faultyStore{Store: h.store, advanceHook: func(id string) {
			if steps.Add(1) == 2 {
				if _, err := h.q.Cancel(context.Background(), id); err != nil {
					t.Errorf("Cancel: %v", err)
				}
			}
		}})
		used := h.used()
		hidden, pending, refs := h.leftovers()
		h.run()
		j := h.waitFinal(h.enqueueCopy(dir.ID, h.drive.RootID, "tree copy", ferry.ConflictFail).ID)
		if j.Status != ferry.StatusCancelled || j.ResourceID != "" {
			t.Fatalf("copy = %s, resource %q; want cancelled, none", j.Status, j.ResourceID)
		}
		if n := steps.Load(); n != 2 {
			t.Errorf("the cancelled copy ran %d steps, want 2", n)
		}
		if got := h.names(h.drive.RootID); !slices.Equal(got, []string{"tree"}) {
			t.Errorf("root = %q, want only the source", got)
		}
		if got := h.used(); got != used {
			t.Errorf("used = %d, want %d", got, used)
		}
		// The job ends first, then what it built goes; its row goes last.
		for i := 0; ; i++ {
			if _, p, _ := h.leftovers(); p == pending {
				break
			}
			if i == 1000 {
				t.Fatal("the cancelled copy's hidden tree was never removed")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if h2, p2, r2 := h.leftovers(); h2 != hidden || p2 != pending || r2 != refs {
			t.Errorf("after the cancel: %d hidden items, %d copies under way, %d blob references; want %d, %d, %d", h2, p2, r2, hidden, pending, refs)
		}
	})
}
