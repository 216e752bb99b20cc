package sqlstore_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/ferrytest"
)

func TestSessionStore(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ferrytest.TestSessionStore(t, func(t *testing.T) ferry.SessionStore { return open(t, e.newDSN(t)) })
		})
	}
}

// TestStagingInUseSessions checks that the staging areas of upload
// sessions, expired ones included until they are deleted, are reported in
// use beside those of running jobs, so the orphan sweep leaves their bytes
// alone.
func TestStagingInUseSessions(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t, e.newDSN(t))
			inUse := func(want ...string) {
				t.Helper()
				got, err := s.StagingInUse(ctx)
				slices.Sort(want)
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("StagingInUse = %q, %v; want %q", got, err, want)
				}
			}
			inUse()
			job := &ferry.Job{ID: ferry.NewID("mon_", 16), Operation: ferry.OpDownloadURL, UserID: "u1", Total: -1}
			if err := s.InsertJob(ctx, job, 0, 0, nil); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.StartJob(ctx, job.ID, 0); !ok || err != nil {
				t.Fatalf("StartJob = %v, %v", ok, err)
			}
			if ok, err := s.ClaimJob(ctx, job.ID, "r1", time.Now()); !ok || err != nil {
				t.Fatalf("ClaimJob = %v, %v", ok, err)
			}
			if err := s.SaveJobCheckpoint(ctx, job.ID, "r1", "stage-job", nil); err != nil {
				t.Fatal(err)
			}
			mk := func(staging string, expires time.Duration) *ferry.UploadSession {
				us := &ferry.UploadSession{ID: ferry.NewID("up_", 24), UserID: "u1", DriveID: "d1", Size: -1,
					StagingID: staging, Expires: time.Now().Add(expires)}
				if err := s.CreateSession(ctx, us, 0); err != nil {
					t.Fatal(err)
				}
				return us
			}
			live := mk("stage-live", time.Hour)
			expired := mk("stage-expired", -time.Hour)
			// A job and a session never share an area, but if they did the
			// area is listed once.
			mk("stage-job", time.Hour)
			inUse("stage-job", "stage-live", "stage-expired")
			if err := s.DeleteSession(ctx, expired.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteSession(ctx, live.ID); err != nil {
				t.Fatal(err)
			}
			inUse("stage-job")
		})
	}
}

// TestSessionsKeepTheirRoom: the sizes declared by a drive's live upload
// sessions count against its quota for every other write, until the
// session's record goes (its commit deletes it first).
func TestSessionsKeepTheirRoom(t *testing.T) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t, e.newDSN(t))
			u, _, err := s.EnsureUser(ctx, "quota", 10000)
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.DriveOf(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			sess := &ferry.UploadSession{ID: ferry.NewID("up_", 20), UserID: u.ID, DriveID: d.ID, ParentID: d.RootID,
				Name: "big.bin", Conflict: ferry.ConflictReplace, Size: 6000, StagingID: ferry.NewID("st_", 16),
				Expires: time.Now().Add(time.Hour)}
			if err := s.CreateSession(ctx, sess, 0); err != nil {
				t.Fatal(err)
			}
			file := func(name string, size int64) error {
				_, _, err := s.CreateItem(ctx, ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: name,
					Content: ferry.Content{Size: size, BlobKey: "k" + name}}, ferry.ConflictFail)
				return err
			}
			if err := file("a", 4001); ferry.KindOf(err) != ferry.QuotaExceeded {
				t.Fatalf("a file into the session's room: %v, want QuotaExceeded", err)
			}
			if err := file("b", 4000); err != nil {
				t.Fatalf("a file beside the session's room: %v", err)
			}
			if err := s.DeleteSession(ctx, sess.ID); err != nil {
				t.Fatal(err)
			}
			if err := file("c", 6000); err != nil {
				t.Fatalf("the session's file once its record is gone: %v", err)
			}
			// An expired session keeps nothing.
			old := *sess
			old.ID, old.Expires = ferry.NewID("up_", 20), time.Now().Add(-time.Minute)
			if err := s.CreateSession(ctx, &old, 0); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteItem(ctx, mustItem(t, s, d.RootID, "c").ID, ""); err != nil {
				t.Fatal(err)
			}
			if err := file("d", 6000); err != nil {
				t.Fatalf("an expired session held room: %v", err)
			}
		})
	}
}

func mustItem(t *testing.T, s ferry.ItemStore, parent ferry.ItemID, name string) *ferry.Item {
	t.Helper()
	it, err := s.ItemByPath(t.Context(), parent, []string{name})
	if err != nil {
		t.Fatal(err)
	}
	return it
}
