package ferrytest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// JobListStore is a JobStore that also lists a user's jobs and holds the
// items their names come from. endedAfter leaves out jobs that ended
// before it.
type JobListStore interface {
	jobItems
	UserJobs(ctx context.Context, user ferry.UserID, q ferry.JobPage, endedAfter time.Time) ([]*ferry.Job, string, error)
	JobChanges(ctx context.Context, user ferry.UserID, after ferry.ChangeMark, limit int, endedAfter time.Time) ([]*ferry.Job, error)
}

// TestJobListing checks the listings of a JobListStore: pages newest first,
// only the user's own jobs, item names, retention, and changes in order.
// newStore must return an empty store each time it is called.
func TestJobListing(t *testing.T, newStore func(t *testing.T) JobListStore) {
	for _, tt := range []struct {
		name string
		fn   func(*testing.T, JobListStore)
	}{
		{"Pages", testUserJobsPages},
		{"ItemNames", testUserJobsNames},
		{"Retention", testUserJobsRetention},
		{"Changes", testJobChanges},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func jobIDs(js []*ferry.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

func testUserJobsPages(t *testing.T, s JobListStore) {
	ctx := t.Context()
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var want []string // newest first
	for i := range 5 {
		j := newJob("alice")
		// Two jobs share a creation time: the id breaks the tie.
		j.Created = base.Add(time.Duration(min(i, 3)) * time.Second)
		insertJob(t, s, j)
		want = append(want, j.ID)
	}
	slices.Reverse(want)
	if want[0] < want[1] { // the two newest share a time: the greater id comes first
		want[0], want[1] = want[1], want[0]
	}
	insertJob(t, s, newJob("bob"))

	var got []string
	cursor := ""
	for page := 0; ; page++ {
		js, next, err := s.UserJobs(ctx, "alice", ferry.JobPage{Limit: 2, Cursor: cursor}, time.Time{})
		if err != nil {
			t.Fatalf("UserJobs page %d: %v", page, err)
		}
		if len(js) > 2 {
			t.Fatalf("page %d has %d jobs, want at most 2", page, len(js))
		}
		got = append(got, jobIDs(js)...)
		if next == "" {
			break
		}
		if page > 5 {
			t.Fatal("the pages do not end")
		}
		cursor = next
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages of alice's jobs = %q, want %q (newest first)", got, want)
	}
	all, next, err := s.UserJobs(ctx, "alice", ferry.JobPage{}, time.Time{})
	if err != nil || next != "" || !slices.Equal(jobIDs(all), want) {
		t.Errorf("UserJobs(default page) = %q, %q, %v; want %q and no next page", jobIDs(all), next, err, want)
	}
	if all[0].SourceURL == "" || all[0].UserID != "alice" || all[0].Total != -1 {
		t.Errorf("a listed job lost its fields: %+v", all[0])
	}
	if js, _, err := s.UserJobs(ctx, "carol", ferry.JobPage{}, time.Time{}); err != nil || len(js) != 0 {
		t.Errorf("UserJobs(carol) = %q, %v; want none", jobIDs(js), err)
	}
	for _, c := range []string{"junk", "~", "12~", "x~mon_A"} {
		_, _, err := s.UserJobs(ctx, "alice", ferry.JobPage{Cursor: c}, time.Time{})
		wantKind(t, "UserJobs(cursor "+c+")", err, ferry.Invalid)
	}
}

func testUserJobsNames(t *testing.T, s JobListStore) {
	ctx := t.Context()
	_, d, named := itemJob(t, s, ferry.OpDownloadURL) // Name big.iso, running
	unnamed := newItemJob(t, s, d, ferry.OpDownloadURL)
	unnamed.Name = ""
	if err := s.FinishJob(ctx, unnamed.ID, ferry.StatusCancelled, "", "", "x"); err != nil {
		t.Fatal(err)
	}
	// Reinsert a nameless one: newItemJob names every job.
	anon := newJob(string(d.Owner))
	anon.Name, anon.DriveID, anon.ParentID = "", d.ID, d.RootID
	insertJob(t, s, anon)
	done := newJob(string(d.Owner))
	done.Name, done.DriveID, done.ParentID = "", d.ID, d.RootID
	insertJob(t, s, done)
	running(t, s, done, "runner-"+done.ID)
	it, _, err := s.CommitJobItem(ctx, done.ID, "runner-"+done.ID, ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: "chosen.bin",
		Content: ferry.Content{Size: 3, BlobKey: "K1"}}, ferry.ConflictFail, "done")
	if err != nil {
		t.Fatal(err)
	}
	src, _, err := s.CreateItem(ctx, ferry.NewItem{DriveID: d.ID, ParentID: d.RootID, Name: "source.txt",
		Content: ferry.Content{Size: 1, BlobKey: "K2"}}, ferry.ConflictFail)
	if err != nil {
		t.Fatal(err)
	}
	cp := newJob(string(d.Owner))
	cp.Operation, cp.Name, cp.SourceURL, cp.SourceItem, cp.DriveID, cp.ParentID = ferry.OpCopy, "", "", src.ID, d.ID, d.RootID
	insertJob(t, s, cp)

	js, _, err := s.UserJobs(ctx, d.Owner, ferry.JobPage{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, j := range js {
		got[j.ID] = j.ItemName
	}
	for _, tt := range []struct {
		what, id, want string
	}{
		{"a running job with a requested name", named.ID, "big.iso"},
		{"a job with no name yet", anon.ID, ""},
		{"a completed job", done.ID, it.Name},
		{"a copy keeping its source's name", cp.ID, "source.txt"},
	} {
		if got[tt.id] != tt.want {
			t.Errorf("ItemName of %s = %q, want %q", tt.what, got[tt.id], tt.want)
		}
	}
	// The completed item's name is its current one.
	if _, err := s.UpdateItem(ctx, it.ID, ferry.ItemUpdate{Name: ptr("renamed.bin")}); err != nil {
		t.Fatal(err)
	}
	js, _, _ = s.UserJobs(ctx, d.Owner, ferry.JobPage{}, time.Time{})
	for _, j := range js {
		if j.ID == done.ID && j.ItemName != "renamed.bin" {
			t.Errorf("ItemName after a rename = %q, want renamed.bin", j.ItemName)
		}
	}
}

func testUserJobsRetention(t *testing.T, s JobListStore) {
	ctx := t.Context()
	old := insertJob(t, s, newJob("alice"))
	live := insertJob(t, s, newJob("alice"))
	if err := s.FinishJob(ctx, old.ID, ferry.StatusFailed, "", "itemNotFound", "gone"); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	js, _, err := s.UserJobs(ctx, "alice", ferry.JobPage{}, later)
	if err != nil || !slices.Equal(jobIDs(js), []string{live.ID}) {
		t.Errorf("UserJobs(ended after a minute from now) = %q, %v; want only the live job %s", jobIDs(js), err, live.ID)
	}
	js, _, err = s.UserJobs(ctx, "alice", ferry.JobPage{}, time.Time{})
	if err != nil || len(js) != 2 {
		t.Errorf("UserJobs(no retention) = %q, %v; want both", jobIDs(js), err)
	}
	ch, err := s.JobChanges(ctx, "alice", ferry.ChangeMark{}, 10, later)
	if err != nil || !slices.Equal(jobIDs(ch), []string{live.ID}) {
		t.Errorf("JobChanges(ended after a minute from now) = %q, %v; want only %s", jobIDs(ch), err, live.ID)
	}
}

func testJobChanges(t *testing.T, s JobListStore) {
	ctx := t.Context()
	a := insertJob(t, s, newJob("alice"))
	b := insertJob(t, s, newJob("alice"))
	insertJob(t, s, newJob("bob"))
	all, err := s.JobChanges(ctx, "alice", ferry.ChangeMark{}, 10, time.Time{})
	if err != nil || len(all) != 2 {
		t.Fatalf("JobChanges(from the start) = %q, %v; want alice's two jobs", jobIDs(all), err)
	}
	mark := ferry.MarkOf(all[len(all)-1])
	if js, err := s.JobChanges(ctx, "alice", mark, 10, time.Time{}); err != nil || len(js) != 0 {
		t.Errorf("JobChanges(after the last change) = %q, %v; want none", jobIDs(js), err)
	}
	time.Sleep(5 * time.Millisecond) // the next change gets a later millisecond
	if err := s.UpdateJobProgress(ctx, a.ID, 10, 100, 5); err != nil {
		t.Fatal(err)
	}
	js, err := s.JobChanges(ctx, "alice", mark, 10, time.Time{})
	if err != nil || !slices.Equal(jobIDs(js), []string{a.ID}) {
		t.Fatalf("JobChanges(after progress of %s) = %q, %v; want just it", a.ID, jobIDs(js), err)
	}
	if js[0].Bytes != 10 || js[0].Total != 100 {
		t.Errorf("the changed job shows %d of %d bytes, want 10 of 100", js[0].Bytes, js[0].Total)
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.FinishJob(ctx, b.ID, ferry.StatusCancelled, "", "", "stop"); err != nil {
		t.Fatal(err)
	}
	js, err = s.JobChanges(ctx, "alice", mark, 10, time.Time{})
	if err != nil || !slices.Equal(jobIDs(js), []string{a.ID, b.ID}) {
		t.Errorf("JobChanges = %q, %v; want %s then %s, in the order of their changes", jobIDs(js), err, a.ID, b.ID)
	}
	if js, err := s.JobChanges(ctx, "alice", mark, 1, time.Time{}); err != nil || !slices.Equal(jobIDs(js), []string{a.ID}) {
		t.Errorf("JobChanges(limit 1) = %q, %v; want just %s", jobIDs(js), err, a.ID)
	}
}
