package ferrytest

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// What a session store keeps so that upload sessions hold across nodes:
// the cap on live sessions, fragment claims, the commit mark, the hash
// state and a published blob awaiting its commit.

func testSessionLimit(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	for range 3 {
		if err := s.CreateSession(ctx, newSession(-1), 3); err != nil {
			t.Fatalf("CreateSession under the limit: %v", err)
		}
	}
	err := s.CreateSession(ctx, newSession(-1), 3)
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Kind != ferry.Throttled || fe.RetryAfter <= 0 {
		t.Fatalf("CreateSession over the limit = %v, want Throttled with a Retry-After", err)
	}
	other := newSession(-1)
	other.DriveID = "d2"
	if err := s.CreateSession(ctx, other, 3); err != nil {
		t.Errorf("CreateSession on another drive: %v", err)
	}
	expired := newSession(-1)
	expired.Expires = wholeSecond(-time.Hour)
	createSession(t, s, expired) // limit 0: no cap
	if _, n, err := s.SessionUsage(ctx, "d1"); err != nil || n != 3 {
		t.Errorf("SessionUsage(d1) count = %d, %v; want 3", n, err)
	}
}

// testSessionLimitConcurrent: simultaneous creations never pass the limit.
func testSessionLimitConcurrent(t *testing.T, s ferry.SessionStore) {
	const limit, tries = 5, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range tries {
		wg.Go(func() {
			err := s.CreateSession(t.Context(), newSession(-1), limit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case ferry.KindOf(err) != ferry.Throttled:
				t.Errorf("CreateSession: %v", err)
			}
		})
	}
	wg.Wait()
	if created != limit {
		t.Errorf("%d of %d simultaneous creations succeeded, want exactly %d", created, tries, limit)
	}
}

func testFragmentClaims(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(100))
	until := time.Now().Add(time.Minute)
	a := ferry.Range{Start: 0, End: 10}
	if err := s.BeginFragment(ctx, us.ID, a, until); err != nil {
		t.Fatalf("BeginFragment(0-10): %v", err)
	}
	wantCode(t, "BeginFragment(5-15) while 0-10 is claimed", s.BeginFragment(ctx, us.ID, ferry.Range{Start: 5, End: 15}, until),
		ferry.InvalidRange, "fragmentOverlap")
	if err := s.BeginFragment(ctx, us.ID, ferry.Range{Start: 10, End: 20}, until); err != nil {
		t.Errorf("BeginFragment(10-20) beside a claim: %v", err)
	}
	// Recording a fragment drops its claim; received bytes refuse claims.
	addFragment(t, s, us, 0, 10, 100)
	wantCode(t, "BeginFragment(0-10) once received", s.BeginFragment(ctx, us.ID, a, until), ferry.InvalidRange, "fragmentOverlap")
	// A dropped claim frees its range.
	if err := s.EndFragment(ctx, us.ID, ferry.Range{Start: 10, End: 20}); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginFragment(ctx, us.ID, ferry.Range{Start: 10, End: 30}, until); err != nil {
		t.Errorf("BeginFragment(10-30) after the claim of 10-20 ended: %v", err)
	}
	// A lapsed claim (its writer died) does not block.
	if err := s.BeginFragment(ctx, us.ID, ferry.Range{Start: 50, End: 60}, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginFragment(ctx, us.ID, ferry.Range{Start: 50, End: 60}, until); err != nil {
		t.Errorf("BeginFragment over a lapsed claim: %v", err)
	}
	wantCode(t, "BeginFragment(missing session)", s.BeginFragment(ctx, "up_missing", a, until), ferry.NotFound, "uploadSessionNotFound")
	// Deleting the session drops its claims with it.
	if err := s.DeleteSession(ctx, us.ID); err != nil {
		t.Fatal(err)
	}
}

// testConcurrentClaims: of many simultaneous claims of one range, exactly
// one wins.
func testConcurrentClaims(t *testing.T, s ferry.SessionStore) {
	us := createSession(t, s, newSession(100))
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 10 {
		wg.Go(func() {
			err := s.BeginFragment(t.Context(), us.ID, ferry.Range{Start: 20, End: 40}, time.Now().Add(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case ferry.KindOf(err) != ferry.InvalidRange:
				t.Errorf("BeginFragment: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d simultaneous claims of one range succeeded, want 1", won)
	}
}

func testCommitMark(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(100))
	until := time.Now().Add(time.Minute)
	if ok, err := s.BeginCommit(ctx, us.ID, until); err != nil || !ok {
		t.Fatalf("BeginCommit = %v, %v; want true", ok, err)
	}
	if ok, err := s.BeginCommit(ctx, us.ID, until); err != nil || ok {
		t.Errorf("second BeginCommit = %v, %v; want false", ok, err)
	}
	wantKind(t, "BeginFragment during a commit", s.BeginFragment(ctx, us.ID, ferry.Range{Start: 0, End: 10}, until), ferry.Conflict)
	if err := s.EndCommit(ctx, us.ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BeginCommit(ctx, us.ID, time.Now().Add(-time.Second)); err != nil || !ok {
		t.Fatalf("BeginCommit after EndCommit = %v, %v; want true", ok, err)
	}
	// That mark has lapsed: its holder died.
	if ok, err := s.BeginCommit(ctx, us.ID, until); err != nil || !ok {
		t.Errorf("BeginCommit over a lapsed mark = %v, %v; want true", ok, err)
	}
	if _, err := s.BeginCommit(ctx, "up_missing", until); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("BeginCommit(missing) = %v, want NotFound", err)
	}
	if err := s.DeleteSession(ctx, us.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.EndCommit(ctx, us.ID); err != nil {
		t.Errorf("EndCommit on a deleted session = %v, want nil", err)
	}
}

func testSessionHashState(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(100))
	if got := readSession(t, s, us.ID); got.Hashed != 0 || len(got.HashState) != 0 {
		t.Fatalf("new session: Hashed %d, HashState %q; want none", got.Hashed, got.HashState)
	}
	if err := s.SaveSessionHash(ctx, us.ID, 0, 10, []byte("state10")); err != nil {
		t.Fatal(err)
	}
	// A request that read the old state does not move it back.
	if err := s.SaveSessionHash(ctx, us.ID, 0, 5, []byte("state5")); err != nil {
		t.Fatal(err)
	}
	if got := readSession(t, s, us.ID); got.Hashed != 10 || !bytes.Equal(got.HashState, []byte("state10")) {
		t.Errorf("Hashed %d, HashState %q; want 10, state10", got.Hashed, got.HashState)
	}
}

func testHoldSessionBlob(t *testing.T, s ferry.SessionStore) {
	ctx := t.Context()
	us := createSession(t, s, newSession(3))
	c := ferry.Content{Size: 3, MimeType: "text/plain", BlobKey: "KEY1",
		Hashes: ferry.Hashes{QuickXor: "qx", SHA1: "S1", SHA256: "S256"}}
	if err := s.HoldSessionBlob(ctx, us.ID, c); err != nil {
		t.Fatal(err)
	}
	got := readSession(t, s, us.ID)
	if got.Held == nil || *got.Held != c {
		t.Errorf("Held = %+v, want %+v", got.Held, c)
	}
	wantKind(t, "HoldSessionBlob(missing)", s.HoldSessionBlob(ctx, "up_missing", c), ferry.NotFound)
}
