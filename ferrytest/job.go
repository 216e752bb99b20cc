package ferrytest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// JobStore is what the jobs package needs from the metadata store: job
// monitor rows, their checkpoints, and server secrets. The domain declares
// no interface for it (the queue is the interface clients see), so it is
// declared here, for the suite.
type JobStore interface {
	// Secret returns the named server secret, creating n random bytes on
	// first use (atomic across processes).
	Secret(ctx context.Context, name string, n int) ([]byte, error)
	// InsertJob stores j and, in the same transaction, calls enqueue; if
	// enqueue fails, nothing is stored.
	InsertJob(ctx context.Context, j *ferry.Job, enqueue func(tx *sql.Tx) error) error
	// Job returns a job, or NotFound.
	Job(ctx context.Context, id string) (*ferry.Job, error)
	// SetJobStatus moves a job to status to only if its status is one of
	// from, and reports whether it did.
	SetJobStatus(ctx context.Context, id string, to ferry.JobStatus, from ...ferry.JobStatus) (bool, error)
	// StartJob moves a notStarted or waiting job to inProgress if its user
	// has fewer than limit jobs in progress (limit <= 0: no limit).
	StartJob(ctx context.Context, id string, limit int) (bool, error)
	// UpdateJobProgress records progress of a job that has not ended.
	UpdateJobProgress(ctx context.Context, id string, bytes, total int64, bytesPerSecond float64) error
	// FinishJob ends a job and forgets its checkpoint.
	FinishJob(ctx context.Context, id string, status ferry.JobStatus, resource ferry.ItemID, code, msg string) error
	// SaveJobCheckpoint records a job's staging area and resume state.
	SaveJobCheckpoint(ctx context.Context, id, stagingID string, data []byte) error
	// JobCheckpoint returns what SaveJobCheckpoint recorded.
	JobCheckpoint(ctx context.Context, id string) (stagingID string, data []byte, err error)
	// DeleteJobsFinishedBefore removes jobs that ended before t.
	DeleteJobsFinishedBefore(ctx context.Context, t time.Time) (int, error)
	// StagingInUse lists staging areas of jobs that have not ended.
	StagingInUse(ctx context.Context) ([]string, error)
}

// TestJobStore checks a JobStore. newStore must return an empty store each
// time it is called.
func TestJobStore(t *testing.T, newStore func(t *testing.T) JobStore) {
	for _, tt := range []struct {
		name string
		fn   func(*testing.T, JobStore)
	}{
		{"InsertAndRead", testInsertJob},
		{"InsertRollsBack", testInsertJobRollback},
		{"SetJobStatus", testSetJobStatus},
		{"StartJobLimit", testStartJobLimit},
		{"StartJobStates", testStartJobStates},
		{"Progress", testJobProgress},
		{"Finish", testFinishJob},
		{"Checkpoint", testJobCheckpoint},
		{"Retention", testJobRetention},
		{"Secret", testSecret},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func newJob(user string) *ferry.Job {
	return &ferry.Job{
		ID:        ferry.NewID("mon_", 16),
		Operation: ferry.OpDownloadURL,
		UserID:    ferry.UserID(user),
		UserName:  "name of " + user,
		DriveID:   "d1",
		ParentID:  "P1",
		Name:      "big.iso",
		Conflict:  ferry.ConflictFail,
		SourceURL: "https://example.org/big.iso?sig=secret",
		Total:     -1,
	}
}

func insertJob(t *testing.T, s JobStore, j *ferry.Job) *ferry.Job {
	t.Helper()
	if err := s.InsertJob(t.Context(), j, nil); err != nil {
		t.Fatalf("InsertJob: %v", err)
	}
	return j
}

func readJob(t *testing.T, s JobStore, id string) *ferry.Job {
	t.Helper()
	j, err := s.Job(t.Context(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

func testInsertJob(t *testing.T, s JobStore) {
	ctx := t.Context()
	j := newJob("u1")
	j.ExpectSHA256 = "AB12"
	calls := 0
	err := s.InsertJob(ctx, j, func(tx *sql.Tx) error {
		calls++
		if tx == nil {
			t.Error("enqueue got a nil transaction")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InsertJob: %v", err)
	}
	if calls != 1 {
		t.Errorf("enqueue called %d times, want 1", calls)
	}
	got := readJob(t, s, j.ID)
	want := *j
	want.Status = ferry.StatusNotStarted
	want.Created, want.Updated = got.Created, got.Updated
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("job as read (-want +got):\n%s", diff)
	}
	wantUTC(t, "job Created", got.Created)
	if !got.Finished.IsZero() {
		t.Errorf("Finished = %v for a new job", got.Finished)
	}
	cp := newJob("u1")
	cp.ID, cp.Operation, cp.SourceURL, cp.SourceItem = ferry.NewID("mon_", 16), ferry.OpCopy, "", "SRC"
	insertJob(t, s, cp)
	if got := readJob(t, s, cp.ID); got.Operation != ferry.OpCopy || got.SourceItem != "SRC" {
		t.Errorf("copy job = %+v", got)
	}
	_, err = s.Job(ctx, "mon_NOSUCHJOB")
	wantKind(t, "Job(missing)", err, ferry.NotFound)
}

func testInsertJobRollback(t *testing.T, s JobStore) {
	j := newJob("u1")
	boom := errors.New("queue is full")
	err := s.InsertJob(t.Context(), j, func(*sql.Tx) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("InsertJob with a failing enqueue = %v, want it to wrap %v", err, boom)
	}
	_, err = s.Job(t.Context(), j.ID)
	wantKind(t, "Job after a failed enqueue", err, ferry.NotFound)
	// The ID is free again.
	insertJob(t, s, j)
}

func testSetJobStatus(t *testing.T, s JobStore) {
	ctx := t.Context()
	j := insertJob(t, s, newJob("u1"))
	ok, err := s.SetJobStatus(ctx, j.ID, ferry.StatusWaiting, ferry.StatusInProgress)
	if err != nil || ok {
		t.Errorf("SetJobStatus from a status the job is not in = %v, %v; want false", ok, err)
	}
	if got := readJob(t, s, j.ID).Status; got != ferry.StatusNotStarted {
		t.Errorf("status = %s, want notStarted", got)
	}
	ok, err = s.SetJobStatus(ctx, j.ID, ferry.StatusCancelled, ferry.StatusInProgress, ferry.StatusNotStarted)
	if err != nil || !ok {
		t.Fatalf("SetJobStatus = %v, %v; want true", ok, err)
	}
	got := readJob(t, s, j.ID)
	if got.Status != ferry.StatusCancelled || got.Finished.IsZero() {
		t.Errorf("after cancel: status %s, finished %v; want cancelled with a finish time", got.Status, got.Finished)
	}
	_, err = s.SetJobStatus(ctx, "mon_NOSUCHJOB", ferry.StatusCancelled, ferry.StatusNotStarted)
	wantKind(t, "SetJobStatus(missing)", err, ferry.NotFound)
}

func testStartJobLimit(t *testing.T, s JobStore) {
	ctx := t.Context()
	const n, limit = 20, 3
	var jobs []*ferry.Job
	for range n {
		jobs = append(jobs, insertJob(t, s, newJob("busy")))
	}
	other := insertJob(t, s, newJob("idle"))
	var started atomic.Int32
	concurrently(n, func(i int) {
		ok, err := s.StartJob(ctx, jobs[i].ID, limit)
		if err != nil {
			t.Errorf("StartJob: %v", err)
		}
		if ok {
			started.Add(1)
		}
	})
	if got := started.Load(); got != limit {
		t.Errorf("%d jobs of one user started under a limit of %d", got, limit)
	}
	running := 0
	for _, j := range jobs {
		if readJob(t, s, j.ID).Status == ferry.StatusInProgress {
			running++
		}
	}
	if running != limit {
		t.Errorf("%d jobs in progress, want %d", running, limit)
	}
	// Another user's jobs are not held back.
	if ok, err := s.StartJob(ctx, other.ID, limit); err != nil || !ok {
		t.Errorf("StartJob(other user) = %v, %v; want true", ok, err)
	}
	// A finished job frees its slot.
	for _, j := range jobs {
		if readJob(t, s, j.ID).Status == ferry.StatusInProgress {
			if err := s.FinishJob(ctx, j.ID, ferry.StatusCompleted, "IT", "", ""); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	startedNow := 0
	for _, j := range jobs {
		if ok, err := s.StartJob(ctx, j.ID, limit); err != nil {
			t.Fatal(err)
		} else if ok {
			startedNow++
		}
	}
	if startedNow != 1 {
		t.Errorf("after one job finished, %d more started, want 1", startedNow)
	}
	// No limit.
	for _, j := range jobs {
		if _, err := s.StartJob(ctx, j.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range jobs {
		if st := readJob(t, s, j.ID).Status; st != ferry.StatusInProgress && st != ferry.StatusCompleted {
			t.Errorf("job %s is %s after StartJob without a limit", j.ID, st)
		}
	}
}

func testStartJobStates(t *testing.T, s JobStore) {
	ctx := t.Context()
	for _, tt := range []struct {
		from ferry.JobStatus
		want bool
	}{
		{ferry.StatusNotStarted, true},
		{ferry.StatusWaiting, true},
		{ferry.StatusInProgress, false},
		{ferry.StatusCancelPending, false},
		{ferry.StatusCompleted, false},
		{ferry.StatusFailed, false},
		{ferry.StatusCancelled, false},
	} {
		j := newJob(fmt.Sprint("user-", tt.from))
		j.Status = tt.from
		insertJob(t, s, j)
		ok, err := s.StartJob(ctx, j.ID, 5)
		if err != nil || ok != tt.want {
			t.Errorf("StartJob(job in %s) = %v, %v; want %v", tt.from, ok, err, tt.want)
		}
		want := tt.from
		if tt.want {
			want = ferry.StatusInProgress
		}
		if got := readJob(t, s, j.ID).Status; got != want {
			t.Errorf("after StartJob(job in %s): %s, want %s", tt.from, got, want)
		}
	}
	_, err := s.StartJob(ctx, "mon_NOSUCHJOB", 1)
	wantKind(t, "StartJob(missing)", err, ferry.NotFound)
}

func testJobProgress(t *testing.T, s JobStore) {
	ctx := t.Context()
	j := insertJob(t, s, newJob("u1"))
	if ok, err := s.StartJob(ctx, j.ID, 0); err != nil || !ok {
		t.Fatalf("StartJob = %v, %v", ok, err)
	}
	if err := s.UpdateJobProgress(ctx, j.ID, 500, 1000, 123.5); err != nil {
		t.Fatalf("UpdateJobProgress: %v", err)
	}
	got := readJob(t, s, j.ID)
	if got.Bytes != 500 || got.Total != 1000 || got.BytesPerSecond != 123.5 || got.Percentage() != 50 {
		t.Errorf("progress = %d/%d at %v, want 500/1000 at 123.5", got.Bytes, got.Total, got.BytesPerSecond)
	}
	if err := s.FinishJob(ctx, j.ID, ferry.StatusCompleted, "ITEM", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateJobProgress(ctx, j.ID, 1, 2, 3); err != nil {
		t.Errorf("UpdateJobProgress after the end: %v", err)
	}
	if got := readJob(t, s, j.ID); got.Bytes != 500 || got.Status != ferry.StatusCompleted {
		t.Errorf("a late progress update changed a finished job: %+v", got)
	}
	err := s.UpdateJobProgress(ctx, "mon_NOSUCHJOB", 1, 2, 3)
	wantKind(t, "UpdateJobProgress(missing)", err, ferry.NotFound)
}

func testFinishJob(t *testing.T, s JobStore) {
	ctx := t.Context()
	ok := insertJob(t, s, newJob("u1"))
	if err := s.SaveJobCheckpoint(ctx, ok.ID, "stage-1", []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishJob(ctx, ok.ID, ferry.StatusCompleted, "NEWITEM", "", ""); err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	got := readJob(t, s, ok.ID)
	if got.Status != ferry.StatusCompleted || got.ResourceID != "NEWITEM" || got.Finished.IsZero() || got.Percentage() != 100 {
		t.Errorf("completed job = %+v", got)
	}
	wantUTC(t, "Finished", got.Finished)
	if st, data, err := s.JobCheckpoint(ctx, ok.ID); err != nil || st != "" || len(data) != 0 {
		t.Errorf("checkpoint after finish = %q, %q, %v; want none", st, data, err)
	}
	bad := insertJob(t, s, newJob("u1"))
	if err := s.FinishJob(ctx, bad.ID, ferry.StatusFailed, "", "quotaLimitReached", "the drive is full"); err != nil {
		t.Fatal(err)
	}
	if got := readJob(t, s, bad.ID); got.Status != ferry.StatusFailed || got.ErrorCode != "quotaLimitReached" || got.ErrorMessage != "the drive is full" {
		t.Errorf("failed job = %+v", got)
	}
	err := s.FinishJob(ctx, bad.ID, ferry.StatusInProgress, "", "", "")
	wantKind(t, "FinishJob(not a final status)", err, ferry.Invalid)
	err = s.FinishJob(ctx, "mon_NOSUCHJOB", ferry.StatusCompleted, "", "", "")
	wantKind(t, "FinishJob(missing)", err, ferry.NotFound)
}

func testJobCheckpoint(t *testing.T, s JobStore) {
	ctx := t.Context()
	a := insertJob(t, s, newJob("u1"))
	b := insertJob(t, s, newJob("u1"))
	if st, data, err := s.JobCheckpoint(ctx, a.ID); err != nil || st != "" || len(data) != 0 {
		t.Errorf("checkpoint of a new job = %q, %q, %v; want none", st, data, err)
	}
	blob := []byte{0, 1, 2, 255, 'x'}
	if err := s.SaveJobCheckpoint(ctx, a.ID, "stage-a", blob); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveJobCheckpoint(ctx, b.ID, "stage-b", []byte("b")); err != nil {
		t.Fatal(err)
	}
	st, data, err := s.JobCheckpoint(ctx, a.ID)
	if err != nil || st != "stage-a" || !bytes.Equal(data, blob) {
		t.Errorf("JobCheckpoint = %q, %v, %v; want stage-a, %v", st, data, err, blob)
	}
	inUse := func(want ...string) {
		t.Helper()
		got, err := s.StagingInUse(ctx)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("StagingInUse = %q, %v; want %q", got, err, want)
		}
	}
	inUse("stage-a", "stage-b")
	if err := s.FinishJob(ctx, b.ID, ferry.StatusCancelled, "", "", "cancelled"); err != nil {
		t.Fatal(err)
	}
	inUse("stage-a")
	err = s.SaveJobCheckpoint(ctx, "mon_NOSUCHJOB", "x", nil)
	wantKind(t, "SaveJobCheckpoint(missing)", err, ferry.NotFound)
	_, _, err = s.JobCheckpoint(ctx, "mon_NOSUCHJOB")
	wantKind(t, "JobCheckpoint(missing)", err, ferry.NotFound)
}

func testJobRetention(t *testing.T, s JobStore) {
	ctx := t.Context()
	done := insertJob(t, s, newJob("u1"))
	running := insertJob(t, s, newJob("u1"))
	if err := s.FinishJob(ctx, done.ID, ferry.StatusCompleted, "X", "", ""); err != nil {
		t.Fatal(err)
	}
	finished := readJob(t, s, done.ID).Finished
	if n, err := s.DeleteJobsFinishedBefore(ctx, finished.Add(-time.Second)); err != nil || n != 0 {
		t.Errorf("DeleteJobsFinishedBefore(before the end) = %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteJobsFinishedBefore(ctx, finished.Add(time.Second)); err != nil || n != 1 {
		t.Errorf("DeleteJobsFinishedBefore(after the end) = %d, %v; want 1", n, err)
	}
	_, err := s.Job(ctx, done.ID)
	wantKind(t, "Job(past retention)", err, ferry.NotFound)
	readJob(t, s, running.ID)
}

func testSecret(t *testing.T, s JobStore) {
	ctx := t.Context()
	const n = 8
	got := make([][]byte, n)
	concurrently(n, func(i int) {
		var err error
		if got[i], err = s.Secret(ctx, "download-key", 32); err != nil {
			t.Errorf("Secret: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if len(got[0]) != 32 || bytes.Equal(got[0], make([]byte, 32)) {
		t.Errorf("secret = %x, want 32 random bytes", got[0])
	}
	for _, g := range got {
		if !bytes.Equal(g, got[0]) {
			t.Errorf("concurrent first uses of a secret gave %x and %x", g, got[0])
		}
	}
	again, err := s.Secret(ctx, "download-key", 32)
	if err != nil || !bytes.Equal(again, got[0]) {
		t.Errorf("Secret again = %x, %v; want %x", again, err, got[0])
	}
	other, err := s.Secret(ctx, "other", 32)
	if err != nil || bytes.Equal(other, got[0]) {
		t.Errorf("two secrets are equal: %x, %v", other, err)
	}
}
