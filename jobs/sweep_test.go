package jobs_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// TestSessionSweep checks that Run removes an expired upload session, its
// staged bytes first, while a live session's staging survives the orphan
// sweep, however old its bytes.
func TestSessionSweep(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.SweepEvery = 20 * time.Millisecond
		cfg.StagingGrace = time.Nanosecond
		h := newHarness(t, dsn, testQuota, cfg)
		ctx := t.Context()
		session := func(name string, expires time.Time) *ferry.UploadSession {
			st, err := h.blobs.Stage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.WriteAt([]byte("staged bytes of "+name), 0); err != nil {
				t.Fatal(err)
			}
			st.Close()
			s := &ferry.UploadSession{
				ID: ferry.NewID("", 16), UserID: h.user.ID, UserName: h.user.Name, DriveID: h.drive.ID,
				ParentID: h.drive.RootID, Name: name, Conflict: ferry.ConflictReplace,
				Size: 100, StagingID: st.ID(), Received: []ferry.Range{{Start: 0, End: 20}}, Expires: expires,
			}
			if err := h.store.CreateSession(ctx, s, 0); err != nil {
				t.Fatal(err)
			}
			return s
		}
		expired := session("old.bin", time.Now().Add(-time.Minute))
		live := session("new.bin", time.Now().Add(time.Hour))
		orphan, err := h.blobs.Stage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		orphan.Close()

		h.run()
		// Once the orphan is gone, a whole round has run: sessions first,
		// then orphaned staging.
		for i := 0; ; i++ {
			if !h.hasStaging(orphan.ID()) && !h.hasStaging(expired.StagingID) {
				break
			}
			if i == 3000 {
				t.Fatal("the sweep never removed the orphan and the expired session's staging")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The record goes right after its bytes, in the same round; a
		// round may be in flight, so look until it is gone.
		for i := 0; ; i++ {
			left, err := h.store.ExpiredSessions(ctx, time.Now().Add(2*time.Hour), 10)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(left, func(s *ferry.UploadSession) bool { return s.ID == expired.ID }) {
				if len(left) != 1 || left[0].ID != live.ID {
					t.Fatalf("sessions left = %d, want only the live one", len(left))
				}
				break
			}
			if i == 3000 {
				t.Fatal("the expired session's record was never deleted")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !h.hasStaging(live.StagingID) {
			t.Error("the live session's staging was swept")
		}
		got, err := h.store.Session(ctx, live.ID)
		if err != nil {
			t.Fatalf("live session: %v", err)
		}
		if got.StagingID != live.StagingID {
			t.Errorf("live session's staging = %q, want %q", got.StagingID, live.StagingID)
		}
		st, err := h.blobs.OpenStaging(ctx, live.StagingID)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		buf := make([]byte, 20)
		if _, err := st.ReadAt(buf, 0); err != nil || string(buf) != "staged bytes of new." {
			t.Errorf("live staging holds %q, %v; want its bytes", buf, err)
		}
	})
}

// hasStaging reports whether the staging area id exists.
func (h *harness) hasStaging(id string) bool {
	h.t.Helper()
	areas, err := h.blobs.ListStaging(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return slices.ContainsFunc(areas, func(a ferry.BlobInfo) bool { return a.ID == id })
}

// TestDeletedTreeSweep: the rows of a large deleted folder, which its
// deletion only took out of sight, are removed and its blobs' bytes
// deleted by the sweep Run starts with (a tree left before, as by a
// crash) and, for a deletion made while Run runs, right after it rather
// than at the next round.
func TestDeletedTreeSweep(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.SweepEvery = time.Hour
		h := newHarness(t, dsn, testQuota, cfg)
		h.store.SetTreeBatch(2)
		ctx := t.Context()
		blobs := h.blobCount()
		left := h.stepTree(h.mkdir(h.drive.RootID, "left").ID)
		leftBlobs := h.blobCount() - blobs
		later := h.stepTree(h.mkdir(h.drive.RootID, "later").ID)
		wantRemoved := func(what string, blobs int) {
			t.Helper()
			for i := 0; ; i++ {
				hidden, _, _ := h.leftovers()
				if hidden == 0 && h.blobCount() == blobs {
					return
				}
				if i == 3000 {
					t.Fatalf("%s: %d items and %d blobs left, want 0 and %d", what, hidden, h.blobCount(), blobs)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if err := h.store.DeleteItem(ctx, left.ID, ""); err != nil {
			t.Fatal(err)
		}
		if hidden, _, _ := h.leftovers(); hidden != 9 {
			t.Fatalf("the deleted tree of 9 items left %d hidden; want all (two per step)", hidden)
		}
		h.run()
		wantRemoved("the tree deleted before Run", h.blobCount()-leftBlobs)
		if err := h.store.DeleteItem(ctx, later.ID, ""); err != nil {
			t.Fatal(err)
		}
		wantRemoved("the tree deleted while Run runs", blobs)
		if used := h.used(); used != 0 {
			t.Errorf("used = %d, want 0", used)
		}
	})
}
