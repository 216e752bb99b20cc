package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/jobs"
	"github.com/ferrydrive/ferry/sqlstore"
)

// faultyStore is the real store with faults injected into some methods.
type faultyStore struct {
	*sqlstore.Store
	failCheckpoint func(data []byte) bool // SaveJobCheckpoint fails when it reports true
	driveFault     func()                 // runs in Room (may panic)
	commitFaults   atomic.Int32           // CommitJobItem/AdvanceJobCopy calls left to fail with Unavailable
	advanceHook    func(job string)       // runs before every AdvanceJobCopy
	commitFirst    bool                   // whether the failing calls commit before failing
	holdFaults     atomic.Int32           // HoldJobBlob calls left to fail with Unavailable
}

func (s *faultyStore) SaveJobCheckpoint(ctx context.Context, id, runner, staging string, data []byte) error {
	if s.failCheckpoint != nil && s.failCheckpoint(data) {
		return errors.New("simulated database failure")
	}
	return s.Store.SaveJobCheckpoint(ctx, id, runner, staging, data)
}

func (s *faultyStore) Room(ctx context.Context, id ferry.DriveID) (int64, error) {
	if s.driveFault != nil {
		s.driveFault()
		return 0, errors.New("simulated database failure")
	}
	return s.Store.Room(ctx, id)
}

func (s *faultyStore) commitFault() bool { return s.commitFaults.Add(-1) >= 0 }

var errUnavailable = &ferry.Error{Kind: ferry.Unavailable, Message: "simulated: the database is busy"}

func (s *faultyStore) CommitJobItem(ctx context.Context, id, runner string, n ferry.NewItem, c ferry.ConflictBehavior, msg string) (*ferry.Item, bool, error) {
	if !s.commitFault() {
		return s.Store.CommitJobItem(ctx, id, runner, n, c, msg)
	}
	if s.commitFirst {
		if _, _, err := s.Store.CommitJobItem(ctx, id, runner, n, c, msg); err != nil {
			return nil, false, err
		}
	}
	return nil, false, errUnavailable
}

// AdvanceJobCopy fails the step that would complete the copy while
// commitFaults lasts (after running it, with commitFirst); advanceHook, if
// set, runs before every step.
func (s *faultyStore) AdvanceJobCopy(ctx context.Context, id, runner, msg string) (*ferry.Item, bool, error) {
	if s.advanceHook != nil {
		s.advanceHook(id)
	}
	if s.commitFirst && s.commitFaults.Load() > 0 {
		it, already, err := s.Store.AdvanceJobCopy(ctx, id, runner, msg)
		if err != nil || it == nil {
			return it, already, err
		}
		s.commitFaults.Add(-1)
		return nil, false, errUnavailable
	}
	if !s.commitFault() {
		return s.Store.AdvanceJobCopy(ctx, id, runner, msg)
	}
	return nil, false, errUnavailable
}

// HoldJobBlob fails, without writing, while holdFaults lasts.
func (s *faultyStore) HoldJobBlob(ctx context.Context, id, runner, key string, data []byte) error {
	if s.holdFaults.Add(-1) >= 0 {
		return errUnavailable
	}
	return s.Store.HoldJobBlob(ctx, id, runner, key, data)
}

// undeletable is a blob store whose Delete fails while deleteFaults lasts,
// as if the node died before it could tidy up.
type undeletable struct {
	ferry.BlobStore
	deleteFaults atomic.Int32
}

func (b *undeletable) Delete(ctx context.Context, key string) error {
	if b.deleteFaults.Add(-1) >= 0 {
		return errors.New("simulated: the node died")
	}
	return b.BlobStore.Delete(ctx, key)
}

// TestPublishedBlobAdopted: a runner publishes the staged file and then
// fails to record the blob, and to delete it (as a node that dies between
// the two would): the next attempt finds the blob under the staging
// area's ID, rehashes it from the store and commits it. The origin sends
// the file once, and only the item's blob is left.
func TestPublishedBlobAdopted(t *testing.T) {
	data := randomBytes(5<<20+77, 9) // above smallImport, whose blob is held before its commit
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		fs := &faultyStore{Store: h.store}
		fs.holdFaults.Store(1)
		blobs := &undeletable{BlobStore: h.blobs}
		blobs.deleteFaults.Store(1)
		var err error
		if h.q, err = jobs.New(t.Context(), h.cfg, fs, blobs, h.fetch); err != nil {
			t.Fatal(err)
		}
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, data) })
		h.run()
		j := h.waitFinal(h.enqueue(o.url("/x.bin"), "x.bin").ID)
		h.wantCompleted(j, data, "x.bin")
		// A connection that idles under load is retried from where it
		// stopped; fetching the file again would serve it twice.
		t.Logf("origin: %d requests, %d bytes", o.requests.Load(), o.served.Load())
		if got := o.served.Load(); got >= 2*int64(len(data)) {
			t.Errorf("origin served %d bytes for a file of %d: the published blob was not adopted", got, len(data))
		}
		if fs.holdFaults.Load() > 0 || blobs.deleteFaults.Load() > 0 {
			t.Fatal("the faults were not hit: the test tested nothing")
		}
		if n := h.blobCount(); n != 1 {
			t.Errorf("%d blobs, want 1", n)
		}
	})
}

// useStore rebuilds the harness's queue on s, before Run.
func (h *harness) useStore(s jobs.Store) {
	h.t.Helper()
	var err error
	if h.q, err = jobs.New(h.t.Context(), h.cfg, s, h.blobs, h.fetch); err != nil {
		h.t.Fatal(err)
	}
}

// storedBytes returns the bytes of a completed job's item.
func (h *harness) storedBytes(j *ferry.Job) (*ferry.Item, []byte) {
	h.t.Helper()
	it, err := h.store.Item(h.t.Context(), j.ResourceID)
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := h.blobs.Open(h.t.Context(), it.BlobKey)
	if err != nil {
		h.t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		h.t.Fatal(err)
	}
	return it, got
}

// TestRestartFromZeroIsDurable: a download that must start over (the
// origin sent another version) moves to a fresh staging area, recorded
// before the first byte is written. Here that record fails (as if the node
// died before its next checkpoint), and a later attempt resumes the first
// version from the old checkpoint: the old staged bytes must still be that
// version's, so that the item's bytes and hashes agree.
func TestRestartFromZeroIsDurable(t *testing.T) {
	const size = 2 << 20
	v1, v2 := randomBytes(size, 1), randomBytes(size, 2)
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		h.useStore(&faultyStore{Store: h.store,
			failCheckpoint: func(data []byte) bool { return bytes.Contains(data, []byte(`\"v2\"`)) }})
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			start := rangeStart(r.Header)
			partial := func(etag string, data []byte) {
				w.Header().Set("ETag", etag)
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, size-1, size))
				w.Header().Set("Content-Length", strconv.Itoa(size-int(start)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(data[start:])
			}
			switch n {
			case 1: // v1, cut at 1 MiB
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Length", strconv.Itoa(size))
				w.WriteHeader(http.StatusOK)
				w.Write(v1[:1<<20])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			case 2: // an edge with v2 that ignores If-Range
				partial(`"v2"`, v2)
			case 3: // all of v2, cut at 512 KiB
				w.Header().Set("ETag", `"v2"`)
				w.Header().Set("Content-Length", strconv.Itoa(size))
				w.WriteHeader(http.StatusOK)
				w.Write(v2[:512<<10])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			default: // an edge with v1 honours the resume
				partial(`"v1"`, v1)
			}
		})
		h.run()
		j := h.waitFinal(h.enqueue(o.url("/f.bin"), "f.bin").ID)
		if j.Status != ferry.StatusCompleted {
			t.Fatalf("job = %s (%s: %s), want completed", j.Status, j.ErrorCode, j.ErrorMessage)
		}
		it, got := h.storedBytes(j)
		if !bytes.Equal(got, v1) && !bytes.Equal(got, v2) {
			t.Errorf("stored bytes are neither version (first 512 KiB from v2: %v)", bytes.Equal(got[:512<<10], v2[:512<<10]))
		}
		if it.Hashes != hashes(got) {
			t.Errorf("item hashes %+v describe other bytes than the stored ones (%+v)", it.Hashes, hashes(got))
		}
		h.wantNoStaging()
	})
}

// TestPartialOfOtherSizeRestarts: an origin without validators answers a
// resumed request with a 206 whose total differs from the first answer's:
// the file changed, and the download must start over, not fail.
func TestPartialOfOtherSizeRestarts(t *testing.T) {
	v1, v2 := randomBytes(2<<20, 1), randomBytes(3<<20, 2)
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			start := rangeStart(r.Header)
			switch {
			case n == 1:
				w.Header().Set("Content-Length", strconv.Itoa(len(v1)))
				w.WriteHeader(http.StatusOK)
				w.Write(v1[:1<<20])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			case start > 0:
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(v2)-1, len(v2)))
				w.Header().Set("Content-Length", strconv.Itoa(len(v2)-int(start)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(v2[start:])
			default:
				w.Header().Set("Content-Length", strconv.Itoa(len(v2)))
				w.WriteHeader(http.StatusOK)
				w.Write(v2)
			}
		})
		h.run()
		j := h.waitFinal(h.enqueue(o.url("/f.bin"), "f.bin").ID)
		h.wantCompleted(j, v2, "f.bin")
	})
}

// TestAbandonedJobResumesElsewhere: a node dies (kill -9) while it runs a
// download and never comes back; another node, with another NodeID, must
// find the job by its stale heartbeat and finish it from its checkpoint.
func TestAbandonedJobResumesElsewhere(t *testing.T) {
	data := randomBytes(4<<20, 7)
	half := len(data) / 2
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.NodeID = "node-a"
		h := newHarness(t, dsn, testQuota, cfg)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				serveDrip(w, r, data, half)
				return
			}
			serveFile(w, r, data)
		})
		h.run()
		j := h.enqueue(o.url("/big.iso"), "")
		h.wait(j.ID, "half fetched", func(j *ferry.Job) bool { return j.Bytes >= int64(half)-(256<<10) })
		h.stop()
		// What kill -9 of node-a leaves: River's row running, last
		// attempted by node-a; the monitor inProgress, claimed by
		// node-a's attempt.
		if _, err := h.store.DB().ExecContext(t.Context(), `UPDATE river_job SET state = 'running'`); err != nil {
			t.Fatal(err)
		}
		if ok, err := h.store.SetJobStatus(t.Context(), j.ID, ferry.StatusInProgress, ferry.StatusWaiting); !ok || err != nil {
			t.Fatalf("SetJobStatus = %v, %v", ok, err)
		}
		if ok, err := h.store.ClaimJob(t.Context(), j.ID, "node-a/attempt", time.Now()); !ok || err != nil {
			t.Fatalf("ClaimJob = %v, %v", ok, err)
		}

		h.fetch.Close()
		h.fetch = newFetch()
		cfg.NodeID = "node-b"
		cfg.StaleAfter = 300 * time.Millisecond
		h.reopen(cfg)
		h.run()
		sent := int(o.served.Load())
		h.wantCompleted(h.waitFinal(j.ID), data, "big.iso")
		wantResumed(t, o, data, sent)
	})
}

// TestCopyHoldsNoDownloadSlot: a copy left inProgress with no work in
// River (as a copy whose monitor could not be finished was) must neither
// keep the user's downloads queued nor stay inProgress for ever.
func TestCopyHoldsNoDownloadSlot(t *testing.T) {
	data := randomBytes(5000, 2)
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.PerUserRunning = 1
		cfg.StaleAfter = 300 * time.Millisecond
		h := newHarness(t, dsn, testQuota, cfg)
		src := h.putFile(h.drive.RootID, "a.bin", randomBytes(1000, 1))
		cp := h.enqueueCopy(src.ID, h.drive.RootID, "b.bin", ferry.ConflictFail)
		if ok, err := h.store.StartJob(t.Context(), cp.ID, 0); !ok || err != nil {
			t.Fatalf("StartJob = %v, %v", ok, err)
		}
		if _, err := h.store.DB().ExecContext(t.Context(), `DELETE FROM river_job`); err != nil {
			t.Fatal(err)
		}
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, data) })
		h.run()
		d := h.enqueue(o.url("/x.bin"), "x.bin")
		h.wantCompleted(h.waitFinal(d.ID), data, "x.bin")
		wantCopyFailed(t, h.waitFinal(cp.ID), "generalException")
	})
}

// TestLastAttemptEndsJob: when River's last attempt of a job fails before
// the job's own bookkeeping (here the store fails, or the worker panics),
// the job must still end, as failed, with its staging freed.
func TestLastAttemptEndsJob(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault func()
	}{
		{"error", func() {}},
		{"panic", func() { panic("simulated bug") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				h := newHarness(t, dsn, testQuota, testConfig(t))
				h.useStore(&faultyStore{Store: h.store, driveFault: tt.fault})
				o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, []byte("x")) })
				j := h.enqueue(o.url("/x.bin"), "x.bin")
				if _, err := h.store.DB().ExecContext(t.Context(), `UPDATE river_job SET max_attempts = 2`); err != nil {
					t.Fatal(err)
				}
				h.run()
				h.wantFailed(h.waitFinal(j.ID), "generalException", o)
			})
		})
	}
}

// TestCommitRetried: a commit that reports a passing database error is
// tried again with the bytes already published, not downloaded again, and
// whether or not the failed call had committed, exactly one item results.
func TestCommitRetried(t *testing.T) {
	data := randomBytes(100<<10, 3)
	for _, committed := range []bool{false, true} {
		t.Run(fmt.Sprint("committed=", committed), func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				h := newHarness(t, dsn, testQuota, testConfig(t))
				fs := &faultyStore{Store: h.store, commitFirst: committed}
				fs.commitFaults.Store(1)
				h.useStore(fs)
				o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, data) })
				h.run()
				j := h.waitFinal(h.enqueue(o.url("/x.bin"), "x.bin").ID)
				h.wantCompleted(j, data, "x.bin")
				if got := o.requests.Load(); got != 1 {
					t.Errorf("origin got %d requests, want 1 (the retried commit downloads nothing)", got)
				}
				if got := h.names(h.drive.RootID); !slices.Equal(got, []string{"x.bin"}) {
					t.Errorf("root holds %q, want one x.bin", got)
				}
				if n := h.blobCount(); n != 1 {
					t.Errorf("%d blobs, want 1", n)
				}
			})
		})
	}
}

// TestCopyCommitRetried: a copy whose commit reports a passing database
// error after it did commit is completed by its next attempt without a
// second copy.
func TestCopyCommitRetried(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		fs := &faultyStore{Store: h.store, commitFirst: true}
		fs.commitFaults.Store(1)
		h.useStore(fs)
		src := h.putFile(h.drive.RootID, "a.bin", randomBytes(1000, 1))
		h.run()
		j := h.waitFinal(h.enqueueCopy(src.ID, h.drive.RootID, "", ferry.ConflictRename).ID)
		if j.Status != ferry.StatusCompleted || j.ResourceID == "" {
			t.Fatalf("copy = %s (%s: %s), want completed", j.Status, j.ErrorCode, j.ErrorMessage)
		}
		if got, want := h.names(h.drive.RootID), []string{"a 1.bin", "a.bin"}; !slices.Equal(got, want) {
			t.Errorf("root holds %q, want %q", got, want)
		}
	})
}
