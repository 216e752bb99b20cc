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
			if err := s.InsertJob(ctx, job, nil); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveJobCheckpoint(ctx, job.ID, "stage-job", nil); err != nil {
				t.Fatal(err)
			}
			mk := func(staging string, expires time.Duration) *ferry.UploadSession {
				us := &ferry.UploadSession{ID: ferry.NewID("up_", 24), UserID: "u1", DriveID: "d1", Size: -1,
					StagingID: staging, Expires: time.Now().Add(expires)}
				if err := s.CreateSession(ctx, us); err != nil {
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
