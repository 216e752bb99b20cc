package ferrytest

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferrydrive/ferry"
)

// takeOver makes runner the job's claim holder as a node that finds the
// current holder's heartbeat stale does.
func takeOver(t *testing.T, s JobStore, id, runner string) {
	t.Helper()
	if ok, err := s.ClaimJob(t.Context(), id, runner, time.Now().Add(time.Hour)); !ok || err != nil {
		t.Fatalf("ClaimJob(%s) = %v, %v; want a take-over", runner, ok, err)
	}
}

// testFencing: a runner that lost its claim (another attempt took the
// job over) can neither checkpoint, nor hold a blob, nor commit, and the
// live runner's checkpoint and commit are untouched.
func testFencing(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d, j := itemJob(t, s, ferry.OpDownloadURL)
	old, live := "runner-"+j.ID, "live-runner"
	if err := s.SaveJobCheckpoint(ctx, j.ID, old, "stage-old", []byte("old")); err != nil {
		t.Fatalf("SaveJobCheckpoint(holder) = %v", err)
	}
	takeOver(t, s, j.ID, live)
	if err := s.SaveJobCheckpoint(ctx, j.ID, live, "stage-live", []byte("live")); err != nil {
		t.Fatalf("SaveJobCheckpoint(new holder) = %v", err)
	}

	err := s.SaveJobCheckpoint(ctx, j.ID, old, "stage-old", []byte("old again"))
	wantKind(t, "SaveJobCheckpoint(lost claim)", err, ferry.Conflict)
	err = s.HoldJobBlob(ctx, j.ID, old, "KOLD", []byte("old blob"))
	wantKind(t, "HoldJobBlob(lost claim)", err, ferry.Conflict)
	if st, data, err := s.JobCheckpoint(ctx, j.ID); err != nil || st != "stage-live" || string(data) != "live" {
		t.Errorf("checkpoint = %q, %q, %v; want the live runner's", st, data, err)
	}
	if u, err := s.UnknownBlobs(ctx, []string{"KOLD"}); err != nil || !slices.Equal(u, []string{"KOLD"}) {
		t.Errorf("UnknownBlobs(KOLD) = %q, %v; the refused hold must not count", u, err)
	}
	file := func(name, key string) ferry.NewItem {
		return ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: name, By: "alice",
			Content: ferry.Content{Size: 3, BlobKey: key, Hashes: ferry.Hashes{QuickXor: "Q"}}}
	}
	_, _, err = is.CommitJobItem(ctx, j.ID, old, file("old.bin", "KOLD"), ferry.ConflictFail, "done")
	wantKind(t, "CommitJobItem(lost claim)", err, ferry.Conflict)
	if got := readJob(t, s, j.ID); got.Status != ferry.StatusInProgress {
		t.Errorf("after a refused commit the job is %s, want inProgress", got.Status)
	}
	// A released claim fences too: nobody holds the job until the next
	// claim.
	if err := s.ReleaseJob(ctx, j.ID, live); err != nil {
		t.Fatal(err)
	}
	err = s.SaveJobCheckpoint(ctx, j.ID, live, "stage-live", []byte("after release"))
	wantKind(t, "SaveJobCheckpoint(released claim)", err, ferry.Conflict)
	takeOver(t, s, j.ID, live)

	it, already, err := is.CommitJobItem(ctx, j.ID, live, file("live.bin", "KLIVE"), ferry.ConflictFail, "done")
	if err != nil || already || it.Name != "live.bin" {
		t.Fatalf("CommitJobItem(holder) = %+v, %v, %v; want live.bin", it, already, err)
	}
	// After the live commit, the old runner's commit adds nothing: at
	// most it learns the job's item.
	if again, _, err := is.CommitJobItem(ctx, j.ID, old, file("old.bin", "KOLD"), ferry.ConflictFail, "done"); err == nil && again.ID != it.ID {
		t.Errorf("CommitJobItem(lost claim, after the commit) = %+v; want the live item or an error", again)
	}
	err = s.SaveJobCheckpoint(ctx, j.ID, live, "stage-live", nil)
	wantKind(t, "SaveJobCheckpoint(after the commit)", err, ferry.Conflict)
	if kids, _, err := is.Children(ctx, d.RootID, ferry.ListQuery{}); err != nil || len(kids) != 1 || kids[0].ID != it.ID {
		t.Errorf("root holds %d items (%v); want only live.bin", len(kids), err)
	}
}

// testFencedCopy: a copy runner that lost its claim copies nothing.
func testFencedCopy(t *testing.T, s JobStore) {
	ctx := t.Context()
	is, d, _ := itemJob(t, s, ferry.OpCopy)
	src, _, err := is.CreateItem(ctx, ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: "a.bin",
		Content: ferry.Content{Size: 7, BlobKey: "KA"}}, ferry.ConflictFail)
	if err != nil {
		t.Fatal(err)
	}
	j := newJob(string(d.Owner))
	j.Operation, j.SourceURL, j.SourceItem = ferry.OpCopy, "", src.ID
	j.DriveID, j.ParentID, j.Name, j.Conflict, j.UserName = d.ID, d.RootID, "b.bin", ferry.ConflictFail, "alice"
	insertJob(t, is, j)
	running(t, is, j, "old")
	takeOver(t, is, j.ID, "live")
	_, _, err = is.AdvanceJobCopy(ctx, j.ID, "old", "copied")
	wantKind(t, "AdvanceJobCopy(lost claim)", err, ferry.Conflict)
	if _, err := is.ItemByPath(ctx, d.RootID, []string{"b.bin"}); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("a refused copy created b.bin (%v)", err)
	}
	if it, _, _, err := commitCopy(ctx, is, j.ID, "live", "copied"); err != nil || it.Name != "b.bin" {
		t.Errorf("copy by the holder = %+v, %v; want b.bin", it, err)
	}
}

// riverArgs is a River job of the shape Ferry's job kinds have: the
// monitor ID in job_id.
type riverArgs struct {
	JobID string `json:"job_id"`
}

func (riverArgs) Kind() string { return "ferrytest_job" }

// riverJobs inserts a monitor row for each job with its River job, in one
// transaction each as the queue does, and returns River's driver and the
// River job IDs by monitor ID.
func riverJobs(t *testing.T, s JobStore, jobs ...*ferry.Job) (riverdriver.Driver[*sql.Tx], map[string]int64) {
	t.Helper()
	ctx := t.Context()
	driver, err := s.River(ctx)
	if err != nil {
		t.Fatalf("River: %v", err)
	}
	if _, err := s.River(ctx); err != nil {
		t.Fatalf("River again: %v", err)
	}
	client, err := river.NewClient(driver, &river.Config{}) // inserts only
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, j := range jobs {
		err := s.InsertJob(ctx, j, 0, 0, func(tx *sql.Tx) error {
			res, err := client.InsertTx(ctx, tx, riverArgs{JobID: j.ID}, nil)
			if err == nil {
				ids[j.ID] = res.Job.ID
			}
			return err
		})
		if err != nil {
			t.Fatalf("InsertJob with a River job: %v", err)
		}
	}
	return driver, ids
}

// fetchAs makes River client node take up to n available River jobs, as
// its producer does (they become running, attempted by node).
func fetchAs(t *testing.T, driver riverdriver.Driver[*sql.Tx], node string, n int) {
	t.Helper()
	got, err := driver.GetExecutor().JobGetAvailable(t.Context(), &riverdriver.JobGetAvailableParams{
		ClientID: node, MaxAttemptedBy: 100, MaxToLock: n, Queue: river.QueueDefault,
	})
	if err != nil || len(got.Jobs) != n {
		t.Fatalf("JobGetAvailable(%s) = %v, %v; want %d jobs", node, got, err, n)
	}
}

func riverState(t *testing.T, driver riverdriver.Driver[*sql.Tx], id int64) rivertype.JobState {
	t.Helper()
	row, err := driver.GetExecutor().JobGetByID(context.WithoutCancel(t.Context()), &riverdriver.JobGetByIDParams{ID: id})
	if err != nil {
		t.Fatalf("JobGetByID: %v", err)
	}
	return row.State
}

// testRequeueInterrupted: the River jobs a node was running when it
// stopped become available again, with their claims released; another
// node's running jobs stay as they are.
func testRequeueInterrupted(t *testing.T, s JobStore) {
	ctx := t.Context()
	a1, a2, b1 := newJob("u1"), newJob("u1"), newJob("u1")
	driver, rids := riverJobs(t, s, a1, a2, b1)
	fetchAs(t, driver, "node-a", 2) // oldest first: a1, a2
	fetchAs(t, driver, "node-b", 1)
	for _, j := range []*ferry.Job{a1, a2, b1} {
		running(t, s, j, "runner-"+j.ID)
	}
	n, err := s.RequeueInterruptedJobs(ctx, "node-a")
	if err != nil || n != 2 {
		t.Fatalf("RequeueInterruptedJobs(node-a) = %d, %v; want 2", n, err)
	}
	for _, tt := range []struct {
		j     *ferry.Job
		state rivertype.JobState
		free  bool
	}{
		{a1, rivertype.JobStateAvailable, true},
		{a2, rivertype.JobStateAvailable, true},
		{b1, rivertype.JobStateRunning, false},
	} {
		if got := riverState(t, driver, rids[tt.j.ID]); got != tt.state {
			t.Errorf("River job of %s is %s, want %s", tt.j.ID, got, tt.state)
		}
		// A released claim lets a new runner in at once, although the
		// old heartbeat is fresh.
		ok, err := s.ClaimJob(ctx, tt.j.ID, "next", time.Now().Add(-time.Hour))
		if ok != tt.free || err != nil {
			t.Errorf("ClaimJob after requeue of %s = %v, %v; want %v", tt.j.ID, ok, err, tt.free)
		}
	}
	if n, err := s.RequeueInterruptedJobs(ctx, "node-a"); err != nil || n != 0 {
		t.Errorf("RequeueInterruptedJobs again = %d, %v; want 0", n, err)
	}
}

// testRescueStale: a stale job whose River job still runs for a dead node
// is handed back to River; one whose River job is gone is orphaned; a
// fresh one is left alone.
func testRescueStale(t *testing.T, s JobStore) {
	ctx := t.Context()
	dead, gone, fresh := newJob("u1"), newJob("u1"), newJob("u1")
	driver, rids := riverJobs(t, s, dead, fresh)
	fetchAs(t, driver, "node-dead", 2)
	insertJob(t, s, gone) // River has no work for it
	for _, j := range []*ferry.Job{dead, gone, fresh} {
		running(t, s, j, "runner-"+j.ID)
	}
	if r, o, err := s.RescueStaleJobs(ctx, time.Now().Add(-time.Hour), 10); err != nil || len(r)+len(o) != 0 {
		t.Errorf("RescueStaleJobs(nothing stale) = %q, %q, %v; want none", r, o, err)
	}
	time.Sleep(5 * time.Millisecond)
	before := time.Now()
	if ok, err := s.Heartbeat(ctx, fresh.ID, "runner-"+fresh.ID); !ok || err != nil {
		t.Fatalf("Heartbeat = %v, %v", ok, err)
	}
	resumed, orphaned, err := s.RescueStaleJobs(ctx, before, 10)
	if err != nil || !slices.Equal(resumed, []string{dead.ID}) || !slices.Equal(orphaned, []string{gone.ID}) {
		t.Errorf("RescueStaleJobs = %q, %q, %v; want resumed %q, orphaned %q", resumed, orphaned, err, dead.ID, gone.ID)
	}
	if got := riverState(t, driver, rids[dead.ID]); got != rivertype.JobStateAvailable {
		t.Errorf("River job of the dead node's job is %s, want available", got)
	}
	if got := riverState(t, driver, rids[fresh.ID]); got != rivertype.JobStateRunning {
		t.Errorf("River job of the fresh job is %s, want running", got)
	}
}

// testJobRate: InsertJob takes a token per job from the user's bucket;
// an empty bucket refuses with Throttled and a whole-second Retry-After
// and stores nothing; the bucket refills at the rate; users do not share
// buckets; rate 0 means no limit.
func testJobRate(t *testing.T, s JobStore) {
	ctx := t.Context()
	insert := func(user string, rate float64, burst int) (*ferry.Job, error) {
		j := newJob(user)
		return j, s.InsertJob(ctx, j, rate, burst, nil)
	}
	for i := range 3 {
		if _, err := insert("u1", 0.1, 3); err != nil {
			t.Fatalf("job %d of a burst of 3: %v", i+1, err)
		}
	}
	j, err := insert("u1", 0.1, 3)
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Kind != ferry.Throttled || fe.RetryAfter < 1 || fe.RetryAfter > 10 {
		t.Fatalf("4th job = %v; want Throttled with Retry-After in [1, 10]", err)
	}
	if _, err := s.Job(ctx, j.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("a refused job was stored (%v)", err)
	}
	if _, err := insert("u2", 0.1, 3); err != nil {
		t.Errorf("another user's first job: %v", err)
	}
	if _, err := insert("u1", 0, 3); err != nil {
		t.Errorf("a job without a rate: %v", err)
	}
	// 50 per second: one token is back within 20 ms.
	for range 2 {
		if _, err := insert("u3", 50, 1); err != nil {
			if ferry.KindOf(err) != ferry.Throttled {
				t.Fatal(err)
			}
			time.Sleep(40 * time.Millisecond)
			if _, err := insert("u3", 50, 1); err != nil {
				t.Errorf("after the bucket refilled: %v", err)
			}
		}
	}
}
