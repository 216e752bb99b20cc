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
	"github.com/riverqueue/river/riverdriver"
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
	// enqueue fails, nothing is stored. With rate > 0 it first takes a
	// token from the user's bucket (at most burst, refilled at rate per
	// second), or fails with Throttled and stores nothing.
	InsertJob(ctx context.Context, j *ferry.Job, rate float64, burst int, enqueue func(tx *sql.Tx) error) error
	// Job returns a job, or NotFound.
	Job(ctx context.Context, id string) (*ferry.Job, error)
	// SetJobStatus moves a job to status to only if its status is one of
	// from, and reports whether it did.
	SetJobStatus(ctx context.Context, id string, to ferry.JobStatus, from ...ferry.JobStatus) (bool, error)
	// StartJob moves a notStarted or waiting job to inProgress if its user
	// has fewer than limit jobs in progress (limit <= 0: no limit).
	StartJob(ctx context.Context, id string, limit int) (bool, error)
	// StartClaimJob is StartJob that also makes runner the started job's
	// runner (ClaimJob), atomically.
	StartClaimJob(ctx context.Context, id string, limit int, runner string) (bool, error)
	// UpdateJobProgress records progress of a job that has not ended.
	UpdateJobProgress(ctx context.Context, id string, bytes, total int64, bytesPerSecond float64) error
	// FinishJob ends a job and forgets its checkpoint.
	FinishJob(ctx context.Context, id string, status ferry.JobStatus, resource ferry.ItemID, code ferry.JobErrorCode, msg string) error
	// SaveJobCheckpoint records a job's staging area and resume state,
	// for the runner holding the job's claim only (else Conflict).
	SaveJobCheckpoint(ctx context.Context, id, runner, stagingID string, data []byte) error
	// JobCheckpoint returns what SaveJobCheckpoint recorded.
	JobCheckpoint(ctx context.Context, id string) (stagingID string, data []byte, err error)
	// DeleteJobsFinishedBefore removes jobs that ended before t.
	DeleteJobsFinishedBefore(ctx context.Context, t time.Time) (int, error)
	// StagingInUse lists staging areas of jobs that have not ended.
	StagingInUse(ctx context.Context) ([]string, error)

	// ClaimJob makes runner the one attempt running an inProgress or
	// cancelPending job, unless another runner's heartbeat is not older
	// than staleBefore.
	ClaimJob(ctx context.Context, id, runner string, staleBefore time.Time) (bool, error)
	// Heartbeat records that runner still runs the job; false once it
	// does not hold it.
	Heartbeat(ctx context.Context, id, runner string) (bool, error)
	// ReleaseJob drops runner's claim on the job (any claim if "").
	ReleaseJob(ctx context.Context, id, runner string) error
	// StaleJobs lists inProgress and cancelPending jobs whose heartbeat
	// is older than before.
	StaleJobs(ctx context.Context, before time.Time, limit int) ([]string, error)
	// HoldJobBlob records a published blob a job has not committed, for
	// the runner holding the job's claim only (else Conflict).
	HoldJobBlob(ctx context.Context, id, runner, key string, data []byte) error
	// UnknownBlobs returns the keys no item uses and no live job holds.
	UnknownBlobs(ctx context.Context, keys []string) ([]string, error)
	// CommitJobItem creates a file and completes its job atomically;
	// idempotent by job; for the runner holding the claim only.
	CommitJobItem(ctx context.Context, jobID, runner string, n ferry.NewItem, c ferry.ConflictBehavior, msg string) (*ferry.Item, bool, error)
	// AdvanceJobCopy runs one bounded step of a copy job, out of sight,
	// and returns the copy once the step that makes it appear, all at
	// once, has completed the job (nil before); idempotent by job; for
	// the runner holding the claim only.
	AdvanceJobCopy(ctx context.Context, jobID, runner, msg string) (*ferry.Item, bool, error)
	// DropJobCopy removes what the copy job, which has ended otherwise,
	// built out of sight (Conflict while the job has not ended).
	DropJobCopy(ctx context.Context, jobID string) error
	// DropAbandonedCopies removes what copies that will never appear
	// built: those of ended jobs, and of CopyItem calls idle since before.
	DropAbandonedCopies(ctx context.Context, before time.Time) (int, error)
	// RemoveDeleted removes, in transactions of a bounded size, what the
	// deletion of folders too large for one left out of sight; at most
	// steps transactions (<= 0: all), reporting the trees it finished.
	RemoveDeleted(ctx context.Context, steps int) (int, error)
	// Room reports how many bytes may still be added to a drive: its
	// quota less its used bytes and what upload sessions and copies under
	// way hold.
	Room(ctx context.Context, drive ferry.DriveID) (int64, error)

	// River brings River's tables up to date and returns River's driver
	// over the store's database.
	River(ctx context.Context) (riverdriver.Driver[*sql.Tx], error)
	// RequeueInterruptedJobs makes the River jobs that River client node
	// was running available again and releases their claims.
	RequeueInterruptedJobs(ctx context.Context, node string) (int, error)
	// RescueStaleJobs hands jobs with a stale heartbeat back to River
	// (resumed) and lists those River has no work for (orphaned).
	RescueStaleJobs(ctx context.Context, before time.Time, limit int) (resumed, orphaned []string, err error)
}

// jobItems is a JobStore that also holds the item trees the commits
// write to; the commit cases need it.
type jobItems interface {
	JobStore
	ferry.ItemStore
	ferry.AccountStore
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
		{"StartJobCountsDownloads", testStartJobCountsDownloads},
		{"FinishOnce", testFinishOnce},
		{"Claim", testClaimJob},
		{"StartClaim", testStartClaimJob},
		{"StaleJobs", testStaleJobs},
		{"HeldBlobs", testHeldBlobs},
		{"CommitJobItem", testCommitJobItem},
		{"CommitJobCopy", testCommitJobCopy},
		{"JobRate", testJobRate},
		{"Fencing", testFencing},
		{"FencedCopy", testFencedCopy},
		{"RequeueInterruptedJobs", testRequeueInterrupted},
		{"RescueStaleJobs", testRescueStale},
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
	if err := s.InsertJob(t.Context(), j, 0, 0, nil); err != nil {
		t.Fatalf("InsertJob: %v", err)
	}
	return j
}

// running starts j and makes runner its claim holder.
func running(t *testing.T, s JobStore, j *ferry.Job, runner string) {
	t.Helper()
	if j.Status == "" || j.Status == ferry.StatusNotStarted {
		if ok, err := s.StartJob(t.Context(), j.ID, 0); !ok || err != nil {
			t.Fatalf("StartJob = %v, %v", ok, err)
		}
		j.Status = ferry.StatusInProgress
	}
	if ok, err := s.ClaimJob(t.Context(), j.ID, runner, time.Now().Add(time.Hour)); !ok || err != nil {
		t.Fatalf("ClaimJob(%s) = %v, %v", runner, ok, err)
	}
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
	err := s.InsertJob(ctx, j, 0, 0, func(tx *sql.Tx) error {
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
	err := s.InsertJob(t.Context(), j, 0, 0, func(*sql.Tx) error { return boom })
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
	running(t, s, ok, "r1")
	if err := s.SaveJobCheckpoint(ctx, ok.ID, "r1", "stage-1", []byte("state")); err != nil {
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
	running(t, s, a, "ra")
	running(t, s, b, "rb")
	if err := s.SaveJobCheckpoint(ctx, a.ID, "ra", "stage-a", blob); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveJobCheckpoint(ctx, b.ID, "rb", "stage-b", []byte("b")); err != nil {
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
	err = s.SaveJobCheckpoint(ctx, b.ID, "rb", "stage-b", nil)
	wantKind(t, "SaveJobCheckpoint(ended job)", err, ferry.Conflict)
	err = s.SaveJobCheckpoint(ctx, a.ID, "", "stage-a", nil)
	wantKind(t, "SaveJobCheckpoint(no runner)", err, ferry.Invalid)
	err = s.SaveJobCheckpoint(ctx, "mon_NOSUCHJOB", "r", "x", nil)
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

func testStartJobCountsDownloads(t *testing.T, s JobStore) {
	ctx := t.Context()
	cp := newJob("u1")
	cp.Operation, cp.SourceURL, cp.SourceItem = ferry.OpCopy, "", "SRC"
	insertJob(t, s, cp)
	if ok, err := s.StartJob(ctx, cp.ID, 0); !ok || err != nil {
		t.Fatalf("StartJob(copy) = %v, %v", ok, err)
	}
	a, b := insertJob(t, s, newJob("u1")), insertJob(t, s, newJob("u1"))
	if ok, err := s.StartJob(ctx, a.ID, 1); !ok || err != nil {
		t.Errorf("StartJob(download) beside a running copy under a limit of 1 = %v, %v; want true", ok, err)
	}
	if ok, err := s.StartJob(ctx, b.ID, 1); ok || err != nil {
		t.Errorf("StartJob(second download) under a limit of 1 = %v, %v; want false", ok, err)
	}
}

func testFinishOnce(t *testing.T, s JobStore) {
	ctx := t.Context()
	j := insertJob(t, s, newJob("u1"))
	if err := s.FinishJob(ctx, j.ID, ferry.StatusCompleted, "ITEM", "", "done"); err != nil {
		t.Fatal(err)
	}
	err := s.FinishJob(ctx, j.ID, ferry.StatusFailed, "", "generalException", "late")
	wantKind(t, "FinishJob(ended job)", err, ferry.Conflict)
	if got := readJob(t, s, j.ID); got.Status != ferry.StatusCompleted || got.ResourceID != "ITEM" {
		t.Errorf("a second FinishJob changed the job: %s, resource %q", got.Status, got.ResourceID)
	}
}

func testClaimJob(t *testing.T, s JobStore) {
	ctx := t.Context()
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	j := insertJob(t, s, newJob("u1"))
	claim := func(runner string, staleBefore time.Time, want bool) {
		t.Helper()
		if ok, err := s.ClaimJob(ctx, j.ID, runner, staleBefore); ok != want || err != nil {
			t.Errorf("ClaimJob(%s) = %v, %v; want %v", runner, ok, err, want)
		}
	}
	beat := func(runner string, want bool) {
		t.Helper()
		if ok, err := s.Heartbeat(ctx, j.ID, runner); ok != want || err != nil {
			t.Errorf("Heartbeat(%s) = %v, %v; want %v", runner, ok, err, want)
		}
	}
	claim("r1", past, false) // notStarted: nothing runs it
	if ok, err := s.StartJob(ctx, j.ID, 0); !ok || err != nil {
		t.Fatalf("StartJob = %v, %v", ok, err)
	}
	claim("r1", past, true)  // started, no runner yet
	claim("r1", past, true)  // its own claim again
	claim("r2", past, false) // r1's heartbeat is fresh
	beat("r1", true)
	beat("r2", false)
	claim("r2", future, true) // r1's heartbeat counts as stale
	beat("r1", false)         // r1 lost the job
	beat("r2", true)
	if err := s.ReleaseJob(ctx, j.ID, "r1"); err != nil { // not r1's any more: no effect
		t.Fatal(err)
	}
	claim("r3", past, false)
	if err := s.ReleaseJob(ctx, j.ID, "r2"); err != nil {
		t.Fatal(err)
	}
	claim("r3", past, true)
	if err := s.ReleaseJob(ctx, j.ID, ""); err != nil {
		t.Fatal(err)
	}
	claim("r4", past, true)
	if ok, err := s.SetJobStatus(ctx, j.ID, ferry.StatusCancelPending, ferry.StatusInProgress); !ok || err != nil {
		t.Fatalf("SetJobStatus = %v, %v", ok, err)
	}
	beat("r4", true) // cancelPending still runs
	if err := s.FinishJob(ctx, j.ID, ferry.StatusCancelled, "", "", "cancelled"); err != nil {
		t.Fatal(err)
	}
	beat("r4", false)
	claim("r5", future, false)
	_, err := s.ClaimJob(ctx, "mon_NOSUCHJOB", "r", past)
	wantKind(t, "ClaimJob(missing)", err, ferry.NotFound)
	if ok, err := s.Heartbeat(ctx, "mon_NOSUCHJOB", "r"); ok || err != nil {
		t.Errorf("Heartbeat(missing) = %v, %v; want false", ok, err)
	}
}

func testStartClaimJob(t *testing.T, s JobStore) {
	ctx := t.Context()
	past := time.Now().Add(-time.Hour)
	a, b := insertJob(t, s, newJob("u1")), insertJob(t, s, newJob("u1"))
	if ok, err := s.StartClaimJob(ctx, a.ID, 1, "r1"); !ok || err != nil {
		t.Fatalf("StartClaimJob(a) = %v, %v; want true", ok, err)
	}
	if got := readJob(t, s, a.ID).Status; got != ferry.StatusInProgress {
		t.Errorf("a is %s, want inProgress", got)
	}
	if ok, err := s.Heartbeat(ctx, a.ID, "r1"); !ok || err != nil {
		t.Errorf("Heartbeat(a, r1) = %v, %v; want true: r1 holds the claim", ok, err)
	}
	if ok, err := s.ClaimJob(ctx, a.ID, "r2", past); ok || err != nil {
		t.Errorf("ClaimJob(a, r2) = %v, %v; want false: r1's heartbeat is fresh", ok, err)
	}
	// The user is at the limit: b neither starts nor is claimed.
	if ok, err := s.StartClaimJob(ctx, b.ID, 1, "r3"); ok || err != nil {
		t.Errorf("StartClaimJob(b) = %v, %v; want false", ok, err)
	}
	if ok, err := s.Heartbeat(ctx, b.ID, "r3"); ok || err != nil {
		t.Errorf("Heartbeat(b, r3) = %v, %v; want false", ok, err)
	}
	// A started job is not started, nor claimed, again.
	if ok, err := s.StartClaimJob(ctx, a.ID, 0, "r4"); ok || err != nil {
		t.Errorf("StartClaimJob(a again) = %v, %v; want false", ok, err)
	}
	if ok, err := s.Heartbeat(ctx, a.ID, "r1"); !ok || err != nil {
		t.Errorf("Heartbeat(a, r1) = %v, %v; want true: r1 still holds the claim", ok, err)
	}
	_, err := s.StartClaimJob(ctx, a.ID, 0, "")
	wantKind(t, "StartClaimJob(no runner)", err, ferry.Invalid)
	_, err = s.StartClaimJob(ctx, "mon_NOSUCHJOB", 0, "r")
	wantKind(t, "StartClaimJob(missing)", err, ferry.NotFound)
}

func testStaleJobs(t *testing.T, s JobStore) {
	ctx := t.Context()
	running := insertJob(t, s, newJob("u1"))
	cancelling := insertJob(t, s, newJob("u1"))
	queued := insertJob(t, s, newJob("u1"))
	for _, j := range []*ferry.Job{running, cancelling} {
		if ok, err := s.StartJob(ctx, j.ID, 0); !ok || err != nil {
			t.Fatalf("StartJob = %v, %v", ok, err)
		}
	}
	if ok, err := s.SetJobStatus(ctx, cancelling.ID, ferry.StatusCancelPending, ferry.StatusInProgress); !ok || err != nil {
		t.Fatalf("SetJobStatus = %v, %v", ok, err)
	}
	stale := func(before time.Time, want ...string) {
		t.Helper()
		got, err := s.StaleJobs(ctx, before, 10)
		slices.Sort(got)
		slices.Sort(want)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("StaleJobs = %q, %v; want %q", got, err, want)
		}
	}
	stale(time.Now().Add(-time.Hour))
	stale(time.Now().Add(time.Hour), running.ID, cancelling.ID)
	if err := s.FinishJob(ctx, running.ID, ferry.StatusFailed, "", "x", "y"); err != nil {
		t.Fatal(err)
	}
	stale(time.Now().Add(time.Hour), cancelling.ID)
	readJob(t, s, queued.ID)
}

func testHeldBlobs(t *testing.T, s JobStore) {
	ctx := t.Context()
	j := insertJob(t, s, newJob("u1"))
	running(t, s, j, "r1")
	if err := s.SaveJobCheckpoint(ctx, j.ID, "r1", "stage-1", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := s.HoldJobBlob(ctx, j.ID, "r1", "KEY1", []byte("published")); err != nil {
		t.Fatalf("HoldJobBlob: %v", err)
	}
	if st, data, err := s.JobCheckpoint(ctx, j.ID); err != nil || st != "" || string(data) != "published" {
		t.Errorf("checkpoint after HoldJobBlob = %q, %q, %v; want no staging and the new data", st, data, err)
	}
	unknown := func(keys []string, want ...string) {
		t.Helper()
		got, err := s.UnknownBlobs(ctx, keys)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("UnknownBlobs(%d keys) = %q, %v; want %q", len(keys), got, err, want)
		}
	}
	unknown([]string{"KEY2", "KEY1", "KEY3"}, "KEY2", "KEY3")
	unknown(nil)
	var many []string
	for i := range 1200 {
		many = append(many, fmt.Sprintf("K%04d", i))
	}
	unknown(append(many, "KEY1"), many...)
	if err := s.FinishJob(ctx, j.ID, ferry.StatusFailed, "", "x", "y"); err != nil {
		t.Fatal(err)
	}
	unknown([]string{"KEY1"}, "KEY1")
	err := s.HoldJobBlob(ctx, j.ID, "r1", "KEY4", nil)
	wantKind(t, "HoldJobBlob(ended job)", err, ferry.Conflict)
	err = s.HoldJobBlob(ctx, "mon_NOSUCHJOB", "r1", "KEY4", nil)
	wantKind(t, "HoldJobBlob(missing)", err, ferry.NotFound)
}

// itemJob returns a store with items, a user's drive and an inProgress
// job of op for that user, or skips when the store holds no items.
func itemJob(t *testing.T, s JobStore, op ferry.Operation) (jobItems, *ferry.Drive, *ferry.Job) {
	t.Helper()
	is, ok := s.(jobItems)
	if !ok {
		t.Skip("the store holds no items")
	}
	u, _, err := is.EnsureUser(t.Context(), "alice", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d, err := is.DriveOf(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	return is, d, newItemJob(t, is, d, op)
}

func newItemJob(t *testing.T, s jobItems, d *ferry.Drive, op ferry.Operation) *ferry.Job {
	t.Helper()
	j := newJob(string(d.Owner))
	j.Operation, j.DriveID, j.ParentID, j.UserName = op, d.ID, d.RootID, "alice"
	insertJob(t, s, j)
	running(t, s, j, "runner-"+j.ID)
	return j
}

func testCommitJobItem(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d, j := itemJob(t, s, ferry.OpDownloadURL)
	file := func(key string) ferry.NewItem {
		return ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: "x.bin", By: "alice",
			Content: ferry.Content{Size: 10, BlobKey: key, Hashes: ferry.Hashes{QuickXor: "Q"}}}
	}
	it, already, err := is.CommitJobItem(ctx, j.ID, "runner-"+j.ID, file("K1"), ferry.ConflictFail, "done")
	if err != nil || already || it.Name != "x.bin" || it.BlobKey != "K1" {
		t.Fatalf("CommitJobItem = %+v, %v, %v; want a new x.bin", it, already, err)
	}
	got := readJob(t, is, j.ID)
	if got.Status != ferry.StatusCompleted || got.ResourceID != it.ID || got.ErrorMessage != "done" ||
		got.Bytes != 10 || got.Total != 10 || got.Finished.IsZero() {
		t.Errorf("job after its commit = %+v", got)
	}
	again, already, err := is.CommitJobItem(ctx, j.ID, "runner-"+j.ID, file("K2"), ferry.ConflictRename, "done")
	if err != nil || !already || again.ID != it.ID {
		t.Errorf("CommitJobItem again = %+v, %v, %v; want the first item, already", again, already, err)
	}
	if kids, _, err := is.Children(ctx, d.RootID, ferry.ListQuery{}); err != nil || len(kids) != 1 {
		t.Errorf("root has %d children (%v), want 1", len(kids), err)
	}
	if u, _ := is.UnknownBlobs(ctx, []string{"K1", "K2"}); !slices.Equal(u, []string{"K2"}) {
		t.Errorf("UnknownBlobs = %q, want [K2]", u)
	}

	// A taken name with fail changes nothing; rename commits.
	k := newItemJob(t, is, d, ferry.OpDownloadURL)
	_, _, err = is.CommitJobItem(ctx, k.ID, "runner-"+k.ID, file("K3"), ferry.ConflictFail, "done")
	wantKind(t, "CommitJobItem(name taken)", err, ferry.NameConflict)
	if got := readJob(t, is, k.ID); got.Status != ferry.StatusInProgress {
		t.Errorf("after a failed commit the job is %s, want inProgress", got.Status)
	}
	if it, _, err := is.CommitJobItem(ctx, k.ID, "runner-"+k.ID, file("K3"), ferry.ConflictRename, "done"); err != nil || it.Name != "x 1.bin" {
		t.Errorf("CommitJobItem(rename) = %+v, %v; want x 1.bin", it, err)
	}

	// A job that ended otherwise commits nothing.
	f := newItemJob(t, is, d, ferry.OpDownloadURL)
	if err := is.FinishJob(ctx, f.ID, ferry.StatusCancelled, "", "", "cancelled"); err != nil {
		t.Fatal(err)
	}
	n := file("K4")
	n.Name = "y.bin"
	_, _, err = is.CommitJobItem(ctx, f.ID, "runner-"+f.ID, n, ferry.ConflictFail, "done")
	wantKind(t, "CommitJobItem(cancelled job)", err, ferry.Conflict)
	if _, err := is.ItemByPath(ctx, d.RootID, []string{"y.bin"}); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("a cancelled job's commit created y.bin (%v)", err)
	}
	_, _, err = is.CommitJobItem(ctx, "mon_NOSUCHJOB", "r", n, ferry.ConflictFail, "done")
	wantKind(t, "CommitJobItem(missing)", err, ferry.NotFound)
}

// commitCopy advances the copy job id until it completes or fails, as the
// copy worker does, and reports the copy, whether an earlier call had
// completed the job, and the steps it took.
func commitCopy(ctx context.Context, s JobStore, id, runner, msg string) (it *ferry.Item, already bool, steps int, err error) {
	for steps = 1; steps <= 10000; steps++ {
		it, already, err = s.AdvanceJobCopy(ctx, id, runner, msg)
		if err != nil || it != nil {
			return it, already, steps, err
		}
	}
	return nil, false, steps, errors.New("the copy never completed")
}

func testCommitJobCopy(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d, j := itemJob(t, s, ferry.OpCopy)
	src, _, err := is.CreateItem(ctx, ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: "a.bin",
		Content: ferry.Content{Size: 7, BlobKey: "KA"}}, ferry.ConflictFail)
	if err != nil {
		t.Fatal(err)
	}
	// The job row names what to copy; newItemJob made one without a
	// source, so make the real one here.
	j = newJob(string(d.Owner))
	j.Operation, j.SourceURL, j.SourceItem = ferry.OpCopy, "", src.ID
	j.DriveID, j.ParentID, j.Name, j.Conflict, j.UserName = d.ID, d.RootID, "", ferry.ConflictRename, "alice"
	insertJob(t, is, j)
	running(t, is, j, "rc")
	it, already, steps, err := commitCopy(ctx, is, j.ID, "rc", "copied")
	if err != nil || already || steps != 1 || it.Name != "a 1.bin" || it.BlobKey != "KA" || it.CreatedBy != "alice" {
		t.Fatalf("copy = %+v, %v, %d steps, %v; want a new a 1.bin by alice in one step", it, already, steps, err)
	}
	got := readJob(t, is, j.ID)
	if got.Status != ferry.StatusCompleted || got.ResourceID != it.ID || got.Bytes != 7 || got.ErrorMessage != "copied" {
		t.Errorf("job after its copy = %+v", got)
	}
	again, already, err := is.AdvanceJobCopy(ctx, j.ID, "rc", "copied")
	if err != nil || !already || again.ID != it.ID {
		t.Errorf("AdvanceJobCopy again = %+v, %v, %v; want the first copy, already", again, already, err)
	}
	if kids, _, err := is.Children(ctx, d.RootID, ferry.ListQuery{}); err != nil || len(kids) != 2 {
		t.Errorf("root has %d children (%v), want 2", len(kids), err)
	}
	if dr, err := is.Drive(ctx, d.ID); err != nil || dr.Used != 14 {
		t.Errorf("drive used = %+v, %v; want 14", dr, err)
	}
	// fail: the name is taken, nothing changes.
	k := newJob(string(d.Owner))
	k.Operation, k.SourceURL, k.SourceItem = ferry.OpCopy, "", src.ID
	k.DriveID, k.ParentID, k.Name, k.Conflict = d.ID, d.RootID, "a.bin", ferry.ConflictFail
	insertJob(t, is, k)
	running(t, is, k, "rk")
	_, _, err = is.AdvanceJobCopy(ctx, k.ID, "rk", "copied")
	wantKind(t, "AdvanceJobCopy(name taken)", err, ferry.NameConflict)
	if got := readJob(t, is, k.ID); got.Status.Final() {
		t.Errorf("after a failed copy the job is %s", got.Status)
	}
	_, _, err = is.AdvanceJobCopy(ctx, "mon_NOSUCHJOB", "r", "copied")
	wantKind(t, "AdvanceJobCopy(missing)", err, ferry.NotFound)
}
