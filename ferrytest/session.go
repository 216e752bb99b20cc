package ferrytest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// TestSessionStore checks that a ferry.SessionStore keeps its contract.
// newStore must return an empty store each time it is called. The store
// judges expiry by the real clock, so the suite uses expiries far from now
// (hours) and never sleeps.
func TestSessionStore(t *testing.T, newStore func(t *testing.T) ferry.SessionStore) {
	for _, tt := range []struct {
		name string
		fn   func(*testing.T, ferry.SessionStore)
	}{
		{"CreateAndRead", testCreateSession},
		{"CreateErrors", testCreateSessionErrors},
		{"NotFound", testSessionNotFound},
		{"Expired", testSessionExpired},
		{"FragmentsOutOfOrder", testFragmentsOutOfOrder},
		{"KnownSize", testFragmentKnownSize},
		{"Overlap", testFragmentOverlap},
		{"LengthMismatch", testFragmentLengthMismatch},
		{"RangeOutsideTotal", testFragmentOutsideTotal},
		{"ExpiryExtended", testFragmentExtendsExpiry},
		{"ConcurrentFragments", testConcurrentFragments},
		{"ConcurrentSameFragment", testConcurrentSameFragment},
		{"Delete", testDeleteSession},
		{"ExpiredSessions", testExpiredSessions},
		{"Usage", testSessionUsage},
		{"Limit", testSessionLimit},
		{"ConcurrentLimit", testSessionLimitConcurrent},
		{"FragmentClaims", testFragmentClaims},
		{"ConcurrentClaims", testConcurrentClaims},
		{"CommitMark", testCommitMark},
		{"HashState", testSessionHashState},
		{"Hold", testHoldSessionBlob},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// wholeSecond is a time the store can keep exactly, however it rounds.
func wholeSecond(d time.Duration) time.Time {
	return time.Now().Add(d).UTC().Truncate(time.Second)
}

func newSession(size int64) *ferry.UploadSession {
	return &ferry.UploadSession{
		ID:        ferry.NewID("up_", 24),
		UserID:    "u1",
		UserName:  "Alice",
		DriveID:   "d1",
		ParentID:  "P1",
		Name:      "big.iso",
		Conflict:  ferry.ConflictReplace,
		Size:      size,
		StagingID: ferry.NewID("stage_", 16),
		Expires:   wholeSecond(24 * time.Hour),
	}
}

func createSession(t *testing.T, s ferry.SessionStore, us *ferry.UploadSession) *ferry.UploadSession {
	t.Helper()
	if err := s.CreateSession(t.Context(), us, 0); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return us
}

func readSession(t *testing.T, s ferry.SessionStore, id string) *ferry.UploadSession {
	t.Helper()
	us, err := s.Session(t.Context(), id)
	if err != nil {
		t.Fatalf("Session(%s): %v", id, err)
	}
	return us
}

// addFragment adds [start, end) of a file of total bytes, keeping the
// session's expiry, and fails the test on error.
func addFragment(t *testing.T, s ferry.SessionStore, us *ferry.UploadSession, start, end, total int64) *ferry.UploadSession {
	t.Helper()
	got, err := s.AddFragment(t.Context(), us.ID, ferry.Range{Start: start, End: end}, total, us.Expires)
	if err != nil {
		t.Fatalf("AddFragment(%d-%d/%d): %v", start, end, total, err)
	}
	return got
}

// wantCode checks err's kind and detailed Graph code.
func wantCode(t *testing.T, what string, err error, kind ferry.Kind, code string) {
	t.Helper()
	wantKind(t, what, err, kind)
	if err != nil && ferry.CodeOf(err) != code {
		t.Errorf("%s: error %q has code %q, want %q", what, err, ferry.CodeOf(err), code)
	}
}

// wantReceived checks the ranges a session records, as returned and as
// read back.
func wantReceived(t *testing.T, s ferry.SessionStore, us *ferry.UploadSession, want ...ferry.Range) {
	t.Helper()
	if diff := cmp.Diff(want, us.Received, cmp.Comparer(rangesEqual)); diff != "" {
		t.Errorf("returned Received (-want +got):\n%s", diff)
	}
	got := readSession(t, s, us.ID)
	if diff := cmp.Diff(want, got.Received, cmp.Comparer(rangesEqual)); diff != "" {
		t.Errorf("stored Received (-want +got):\n%s", diff)
	}
}

// rangesEqual treats nil and empty range lists alike.
func rangesEqual(a, b []ferry.Range) bool { return slices.Equal(a, b) }

func testCreateSession(t *testing.T, s ferry.SessionStore) {
	us := newSession(-1)
	us.ItemID = "ITEM1"
	us.IfMatch = `"{ITEM1},3"`
	us.Description = "the backup"
	us.FSCreated = wholeSecond(-48 * time.Hour)
	us.FSModified = wholeSecond(-24 * time.Hour)
	us.DeferCommit = true
	us.Created = wholeSecond(-time.Minute)
	want := *us
	createSession(t, s, us)
	got := readSession(t, s, us.ID)
	if diff := cmp.Diff(&want, got, cmp.Comparer(rangesEqual)); diff != "" {
		t.Errorf("session as read (-want +got):\n%s", diff)
	}
	wantUTC(t, "Expires", got.Expires)
	wantUTC(t, "Created", got.Created)
	if got.Complete() || got.ReceivedBytes() != 0 {
		t.Errorf("a new session is complete or has bytes: %+v", got)
	}

	// Defaults: no fileSystemInfo times, no Created given, size known.
	bare := newSession(1000)
	createSession(t, s, bare)
	got = readSession(t, s, bare.ID)
	if !got.FSCreated.IsZero() || !got.FSModified.IsZero() {
		t.Errorf("FSCreated, FSModified = %v, %v; want zero", got.FSCreated, got.FSModified)
	}
	wantUTC(t, "Created (defaulted)", got.Created)
	if d := time.Since(got.Created); d < -time.Minute || d > time.Minute {
		t.Errorf("Created defaulted to %v, want about now", got.Created)
	}
	if got.Size != 1000 || got.DeferCommit || len(got.Received) != 0 {
		t.Errorf("session = %+v, want size 1000, no deferred commit, nothing received", got)
	}
	// Changing the caller's struct afterwards changes nothing stored.
	bare.Name = "changed"
	if got := readSession(t, s, bare.ID); got.Name != "big.iso" {
		t.Errorf("stored name changed with the caller's struct: %q", got.Name)
	}
}

func testCreateSessionErrors(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(-1))
	again := newSession(5)
	again.ID = us.ID
	wantKind(t, "CreateSession(taken ID)", s.CreateSession(ctx, again, 0), ferry.Conflict)
	if got := readSession(t, s, us.ID); got.Size != -1 || got.StagingID != us.StagingID {
		t.Errorf("a rejected CreateSession changed the session: %+v", got)
	}
	for _, tt := range []struct {
		name   string
		modify func(*ferry.UploadSession)
	}{
		{"NoID", func(us *ferry.UploadSession) { us.ID = "" }},
		{"NoStaging", func(us *ferry.UploadSession) { us.StagingID = "" }},
		{"NoExpiry", func(us *ferry.UploadSession) { us.Expires = time.Time{} }},
	} {
		us := newSession(-1)
		tt.modify(us)
		wantKind(t, "CreateSession("+tt.name+")", s.CreateSession(ctx, us, 0), ferry.Invalid)
	}
}

func testSessionNotFound(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	createSession(t, s, newSession(-1))
	_, err := s.Session(ctx, "up_NOSUCHSESSION")
	wantCode(t, "Session(missing)", err, ferry.NotFound, "uploadSessionNotFound")
	_, err = s.AddFragment(ctx, "up_NOSUCHSESSION", ferry.Range{Start: 0, End: 10}, 10, wholeSecond(time.Hour))
	wantCode(t, "AddFragment(missing session)", err, ferry.NotFound, "uploadSessionNotFound")
}

func testSessionExpired(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := newSession(-1)
	us.Expires = wholeSecond(-time.Hour)
	us.Created = wholeSecond(-25 * time.Hour)
	createSession(t, s, us)
	_, err := s.Session(ctx, us.ID)
	wantCode(t, "Session(expired)", err, ferry.NotFound, "uploadSessionNotFound")
	// A late fragment does not bring an expired session back.
	_, err = s.AddFragment(ctx, us.ID, ferry.Range{Start: 0, End: 10}, 10, wholeSecond(24*time.Hour))
	wantCode(t, "AddFragment(expired session)", err, ferry.NotFound, "uploadSessionNotFound")
	_, err = s.Session(ctx, us.ID)
	wantCode(t, "Session(expired, after a late fragment)", err, ferry.NotFound, "uploadSessionNotFound")
	// Another, live session is unaffected.
	readSession(t, s, createSession(t, s, newSession(-1)).ID)
}

func testFragmentsOutOfOrder(t *testing.T, s ferry.SessionStore) {
	us := createSession(t, s, newSession(-1))
	got := addFragment(t, s, us, 200, 300, 300)
	if got.Size != 300 {
		t.Errorf("Size after the first fragment = %d, want 300 (its total)", got.Size)
	}
	wantReceived(t, s, got, ferry.Range{Start: 200, End: 300})
	if diff := cmp.Diff([]string{"0-199"}, got.NextExpectedRanges()); diff != "" {
		t.Errorf("NextExpectedRanges (-want +got):\n%s", diff)
	}
	got = addFragment(t, s, us, 0, 50, 300)
	wantReceived(t, s, got, ferry.Range{Start: 0, End: 50}, ferry.Range{Start: 200, End: 300})
	got = addFragment(t, s, us, 100, 150, 300)
	wantReceived(t, s, got, ferry.Range{Start: 0, End: 50}, ferry.Range{Start: 100, End: 150}, ferry.Range{Start: 200, End: 300})
	if got.Complete() {
		t.Error("a session with gaps is Complete")
	}
	// Filling the gaps merges everything into one range.
	got = addFragment(t, s, us, 150, 200, 300)
	wantReceived(t, s, got, ferry.Range{Start: 0, End: 50}, ferry.Range{Start: 100, End: 300})
	got = addFragment(t, s, us, 50, 100, 300)
	wantReceived(t, s, got, ferry.Range{Start: 0, End: 300})
	if !got.Complete() || !readSession(t, s, us.ID).Complete() {
		t.Error("a session with every byte is not Complete")
	}
	// The rest of the session is untouched by fragments.
	want := *us
	want.Size, want.Received = 300, []ferry.Range{{Start: 0, End: 300}}
	if diff := cmp.Diff(&want, readSession(t, s, us.ID), cmp.Comparer(rangesEqual)); diff != "" {
		t.Errorf("session after the fragments (-want +got):\n%s", diff)
	}
}

func testFragmentKnownSize(t *testing.T, s ferry.SessionStore) {
	us := createSession(t, s, newSession(100))
	got := addFragment(t, s, us, 0, 60, 100)
	if got.Size != 100 || got.Complete() {
		t.Errorf("after 60 of 100 bytes: size %d, complete %v", got.Size, got.Complete())
	}
	got = addFragment(t, s, us, 60, 100, 100)
	if !got.Complete() {
		t.Errorf("after 100 of 100 bytes: not complete: %+v", got)
	}
}

func testFragmentOverlap(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(-1))
	addFragment(t, s, us, 100, 200, 1000)
	addFragment(t, s, us, 400, 500, 1000)
	for _, r := range []ferry.Range{
		{Start: 100, End: 200}, // the same fragment again
		{Start: 120, End: 180}, // inside one
		{Start: 50, End: 101},  // the first byte of one
		{Start: 199, End: 300}, // the last byte of one
		{Start: 0, End: 1000},  // all of them
		{Start: 150, End: 450}, // parts of two
	} {
		what := fmt.Sprintf("AddFragment(%d-%d) over 100-200 and 400-500", r.Start, r.End)
		_, err := s.AddFragment(ctx, us.ID, r, 1000, wholeSecond(48*time.Hour))
		wantCode(t, what, err, ferry.InvalidRange, "fragmentOverlap")
		if err != nil {
			if got, want := ferry.Message(err), "Uploaded fragment overlaps with existing data."; got != want {
				t.Errorf("%s: message %q, want %q", what, got, want)
			}
		}
	}
	got := readSession(t, s, us.ID)
	wantReceived(t, s, got, ferry.Range{Start: 100, End: 200}, ferry.Range{Start: 400, End: 500})
	if !got.Expires.Equal(us.Expires) {
		t.Errorf("a rejected fragment moved the expiry from %v to %v", us.Expires, got.Expires)
	}
	// Touching ranges do not overlap.
	got = addFragment(t, s, us, 200, 400, 1000)
	wantReceived(t, s, got, ferry.Range{Start: 100, End: 500})
}

func testFragmentLengthMismatch(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	// The size comes from the first fragment.
	us := createSession(t, s, newSession(-1))
	addFragment(t, s, us, 0, 10, 100)
	for _, total := range []int64{99, 101, 10_000} {
		_, err := s.AddFragment(ctx, us.ID, ferry.Range{Start: 10, End: 20}, total, us.Expires)
		wantCode(t, fmt.Sprintf("AddFragment(total %d of a 100-byte upload)", total), err, ferry.Invalid, "fragmentLengthMismatch")
	}
	got := readSession(t, s, us.ID)
	if got.Size != 100 {
		t.Errorf("Size = %d after rejected totals, want 100", got.Size)
	}
	wantReceived(t, s, got, ferry.Range{Start: 0, End: 10})

	// The size was declared at creation (fileSize).
	known := createSession(t, s, newSession(500))
	_, err := s.AddFragment(ctx, known.ID, ferry.Range{Start: 0, End: 10}, 400, known.Expires)
	wantCode(t, "AddFragment(total 400 of a 500-byte upload)", err, ferry.Invalid, "fragmentLengthMismatch")
	if got := readSession(t, s, known.ID); got.Size != 500 || len(got.Received) != 0 {
		t.Errorf("session after a rejected total = %+v", got)
	}
}

func testFragmentOutsideTotal(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(-1))
	for _, tt := range []struct {
		r     ferry.Range
		total int64
	}{
		{ferry.Range{Start: 90, End: 101}, 100},
		{ferry.Range{Start: 100, End: 110}, 100},
		{ferry.Range{Start: -1, End: 10}, 100},
		{ferry.Range{Start: 10, End: 10}, 100}, // empty
		{ferry.Range{Start: 10, End: 5}, 100},  // backwards
		{ferry.Range{Start: 0, End: 0}, 0},     // a zero-byte file
	} {
		_, err := s.AddFragment(ctx, us.ID, tt.r, tt.total, us.Expires)
		wantKind(t, fmt.Sprintf("AddFragment(%d-%d/%d)", tt.r.Start, tt.r.End, tt.total), err, ferry.Invalid)
	}
	got := readSession(t, s, us.ID)
	if got.Size != -1 || len(got.Received) != 0 {
		t.Errorf("rejected fragments changed the session: size %d, received %v", got.Size, got.Received)
	}
}

func testFragmentExtendsExpiry(t *testing.T, s ferry.SessionStore) {
	us := newSession(-1)
	us.Expires = wholeSecond(time.Hour)
	createSession(t, s, us)
	later := wholeSecond(30 * time.Hour)
	got, err := s.AddFragment(t.Context(), us.ID, ferry.Range{Start: 0, End: 10}, 20, later)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Expires.Equal(later) {
		t.Errorf("returned Expires = %v, want %v", got.Expires, later)
	}
	wantUTC(t, "returned Expires", got.Expires)
	if read := readSession(t, s, us.ID); !read.Expires.Equal(later) {
		t.Errorf("stored Expires = %v, want %v", read.Expires, later)
	}
}

func testConcurrentFragments(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(-1))
	const n, each = 16, 1000
	// Shuffled so the ranges do not arrive in order.
	order := []int{7, 3, 12, 0, 15, 9, 1, 14, 5, 10, 2, 13, 8, 4, 11, 6}
	concurrently(n, func(i int) {
		k := int64(order[i])
		if _, err := s.AddFragment(ctx, us.ID, ferry.Range{Start: k * each, End: (k + 1) * each}, n*each, us.Expires); err != nil {
			t.Errorf("AddFragment(%d-%d): %v", k*each, (k+1)*each, err)
		}
	})
	got := readSession(t, s, us.ID)
	wantReceived(t, s, got, ferry.Range{Start: 0, End: n * each})
	if !got.Complete() || got.Size != n*each {
		t.Errorf("after %d disjoint concurrent fragments: size %d, complete %v", n, got.Size, got.Complete())
	}
}

func testConcurrentSameFragment(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(-1))
	const n = 8
	errs := make([]error, n)
	concurrently(n, func(i int) {
		_, errs[i] = s.AddFragment(ctx, us.ID, ferry.Range{Start: 0, End: 4096}, 8192, us.Expires)
	})
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		wantCode(t, "AddFragment(the same range, racing)", err, ferry.InvalidRange, "fragmentOverlap")
	}
	if won != 1 {
		t.Errorf("%d of %d racing fragments for the same range succeeded, want exactly 1", won, n)
	}
	wantReceived(t, s, readSession(t, s, us.ID), ferry.Range{Start: 0, End: 4096})
}

func testDeleteSession(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(-1))
	other := createSession(t, s, newSession(-1))
	addFragment(t, s, us, 0, 10, 100)
	if err := s.DeleteSession(ctx, us.ID); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	_, err := s.Session(ctx, us.ID)
	wantCode(t, "Session(deleted)", err, ferry.NotFound, "uploadSessionNotFound")
	_, err = s.AddFragment(ctx, us.ID, ferry.Range{Start: 10, End: 20}, 100, us.Expires)
	wantCode(t, "AddFragment(deleted session)", err, ferry.NotFound, "uploadSessionNotFound")
	if err := s.DeleteSession(ctx, us.ID); err != nil {
		t.Errorf("DeleteSession again: %v", err)
	}
	if err := s.DeleteSession(ctx, "up_NOSUCHSESSION"); err != nil {
		t.Errorf("DeleteSession(never existed): %v", err)
	}
	readSession(t, s, other.ID)
	// The ID of a deleted session may be used again (it never is in
	// practice; it is random), which shows the record is really gone.
	again := newSession(-1)
	again.ID = us.ID
	createSession(t, s, again)
	if got := readSession(t, s, us.ID); len(got.Received) != 0 {
		t.Errorf("a new session under a deleted one's ID inherited %v", got.Received)
	}
}

func testExpiredSessions(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	mk := func(expires time.Duration) *ferry.UploadSession {
		us := newSession(-1)
		us.Expires = wholeSecond(expires)
		return createSession(t, s, us)
	}
	old := mk(-3 * time.Hour)
	recent := mk(-time.Hour)
	live := mk(time.Hour)
	idsOf := func(list []*ferry.UploadSession) []string {
		var out []string
		for _, us := range list {
			out = append(out, us.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }

	got, err := s.ExpiredSessions(ctx, time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(old.ID, recent.ID), idsOf(got)); diff != "" {
		t.Errorf("ExpiredSessions(now) IDs (-want +got):\n%s", diff)
	}
	for _, us := range got {
		if us.ID == old.ID {
			if diff := cmp.Diff(old, us, cmp.Comparer(rangesEqual)); diff != "" {
				t.Errorf("expired session as listed (-want +got):\n%s", diff)
			}
		}
	}
	got, err = s.ExpiredSessions(ctx, wholeSecond(-2*time.Hour), 10)
	if err != nil || !slices.Equal(idsOf(got), []string{old.ID}) {
		t.Errorf("ExpiredSessions(2 hours ago) = %q, %v; want %q", idsOf(got), err, old.ID)
	}
	got, err = s.ExpiredSessions(ctx, time.Now(), 1)
	if err != nil || len(got) != 1 || (got[0].ID != old.ID && got[0].ID != recent.ID) {
		t.Errorf("ExpiredSessions(now, limit 1) = %q, %v; want one of the two expired", idsOf(got), err)
	}
	got, err = s.ExpiredSessions(ctx, wholeSecond(2*time.Hour), 10)
	if err != nil || !slices.Equal(idsOf(got), sorted(old.ID, recent.ID, live.ID)) {
		t.Errorf("ExpiredSessions(in 2 hours) = %q, %v; want all three", idsOf(got), err)
	}
	// A sweep deletes what it found; then nothing is left to find.
	for _, us := range []*ferry.UploadSession{old, recent} {
		if err := s.DeleteSession(ctx, us.ID); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.ExpiredSessions(ctx, time.Now(), 10)
	if err != nil || len(got) != 0 {
		t.Errorf("ExpiredSessions after the sweep = %q, %v; want none", idsOf(got), err)
	}
	readSession(t, s, live.ID)
}

func testSessionUsage(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	want := func(what string, drive ferry.DriveID, bytes int64, count int) {
		t.Helper()
		b, n, err := s.SessionUsage(ctx, drive)
		if err != nil || b != bytes || n != count {
			t.Errorf("%s: SessionUsage(%s) = %d bytes, %d sessions, %v; want %d bytes, %d sessions", what, drive, b, n, err, bytes, count)
		}
	}
	want("no sessions", "d1", 0, 0)

	declared := createSession(t, s, newSession(1000)) // counts its whole declared size
	want("a declared size", "d1", 1000, 1)
	addFragment(t, s, declared, 0, 10, 1000)
	want("a declared size, part received", "d1", 1000, 1)

	// A session whose size is unknown counts the bytes it holds.
	partial := newSession(-1)
	partial.Received = []ferry.Range{{Start: 0, End: 100}, {Start: 200, End: 250}}
	createSession(t, s, partial)
	want("size unknown, 150 bytes received", "d1", 1150, 2)
	empty := createSession(t, s, newSession(-1))
	want("size unknown, nothing received", "d1", 1150, 3)
	// A fragment tells the size: from then on the session counts all of it.
	addFragment(t, s, empty, 0, 10, 5000)
	want("size learnt from a fragment", "d1", 6150, 3)

	// Other drives, expired and deleted sessions count for nothing.
	other := newSession(777)
	other.DriveID = "d2"
	createSession(t, s, other)
	expired := newSession(99)
	expired.Expires = wholeSecond(-time.Hour)
	createSession(t, s, expired)
	want("beside another drive's and an expired session", "d1", 6150, 3)
	want("the other drive", "d2", 777, 1)
	if err := s.DeleteSession(ctx, declared.ID); err != nil {
		t.Fatal(err)
	}
	want("after a deletion", "d1", 5150, 2)
	want("a drive without sessions", "d9", 0, 0)
}
