package fsblob_test

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/fsblob"
)

const mib = 1 << 20

// smallDisk fakes a filesystem of total bytes holding only the store's
// files: its free space is total less the blocks of every file under dir,
// so bytes written to staging areas really use it up.
func smallDisk(t *testing.T, dir string, total int64) fsblob.StatFS {
	t.Helper()
	return func(string) (int64, int64, error) {
		var used int64
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			used += fi.Sys().(*syscall.Stat_t).Blocks * 512
			return nil
		})
		return total - used, total, err
	}
}

func newSpace(t *testing.T, total, floor int64) (*fsblob.Store, *fsblob.Space) {
	t.Helper()
	dir := t.TempDir()
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.KeepFree(floor, smallDisk(t, dir, total))
}

func stage(t *testing.T, s *fsblob.Store) ferry.Staging {
	t.Helper()
	st, err := s.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func write(t *testing.T, st ferry.Staging, n int64) {
	t.Helper()
	buf := make([]byte, mib)
	for i := range buf {
		buf[i] = 1
	}
	for off := int64(0); off < n; off += mib {
		if _, err := st.WriteAt(buf[:min(mib, n-off)], off); err != nil {
			t.Fatal(err)
		}
	}
}

func wantUnavailable(t *testing.T, what string, err error, tooSmall bool) {
	t.Helper()
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Kind != ferry.Unavailable || fe.RetryAfter <= 0 {
		t.Fatalf("%s: err = %v, want Unavailable with a Retry-After", what, err)
	}
	if got := errors.Is(err, ferry.ErrDiskTooSmall); got != tooSmall {
		t.Errorf("%s: errors.Is(err, ErrDiskTooSmall) = %v, want %v", what, got, tooSmall)
	}
}

// TestSpaceReservations plays a 64 MiB disk with 8 MiB kept free: two
// reservations share what is left, a third waits, and written bytes are
// not counted twice.
func TestSpaceReservations(t *testing.T) {
	s, sp := newSpace(t, 64*mib, 8*mib)
	a, b, c := stage(t, s), stage(t, s), stage(t, s)

	if err := sp.Reserve(a.ID(), 30*mib); err != nil {
		t.Fatalf("Reserve(a, 30 MiB) = %v", err)
	}
	if err := sp.Reserve(b.ID(), 20*mib); err != nil {
		t.Fatalf("Reserve(b, 20 MiB) = %v", err)
	}
	// 64 - 8 kept - 50 promised leaves 6 MiB.
	wantUnavailable(t, "Reserve(c, 10 MiB)", sp.Reserve(c.ID(), 10*mib), false)
	if err := sp.Reserve(c.ID(), 5*mib); err != nil {
		t.Fatalf("Reserve(c, 5 MiB) = %v", err)
	}

	// a writes its bytes: they leave the free space and its reservation
	// at once, so the room left stays the same.
	write(t, a, 30*mib)
	u, err := sp.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Reserved != 25*mib || u.Floor != 8*mib || u.Total != 64*mib {
		t.Errorf("Usage() = %+v, want Reserved 25 MiB, Floor 8 MiB, Total 64 MiB", u)
	}
	if err := sp.Reserve(c.ID(), 7*mib); err == nil {
		t.Errorf("Reserve(c, 7 MiB) after a wrote its bytes = nil, want refused (only 6 MiB are left)")
	}

	// Removing a frees its bytes and its reservation.
	if err := s.RemoveStaging(t.Context(), a.ID()); err != nil {
		t.Fatal(err)
	}
	if err := sp.Reserve(c.ID(), 30*mib); err != nil {
		t.Fatalf("Reserve(c, 30 MiB) after a was removed = %v", err)
	}
	if u, _ := sp.Usage(); u.Low() {
		t.Errorf("Usage().Low() = true with %d free, %d reserved and %d kept", u.Free, u.Reserved, u.Floor)
	}
}

func TestSpaceNeverFits(t *testing.T) {
	s, sp := newSpace(t, 64*mib, 8*mib)
	a := stage(t, s)
	wantUnavailable(t, "Reserve(200 MiB on a 64 MiB disk)", sp.Reserve(a.ID(), 200*mib), true)
	wantUnavailable(t, "Reserve(57 MiB with 56 usable)", sp.Reserve(a.ID(), 57*mib), true)
	if err := sp.Reserve(a.ID(), 56*mib); err != nil {
		t.Errorf("Reserve(56 MiB, all usable) = %v", err)
	}
}

// TestSpacePublishReleases: a published blob's bytes are used space, not
// a reservation any more.
func TestSpacePublishReleases(t *testing.T) {
	s, sp := newSpace(t, 64*mib, 8*mib)
	a, b := stage(t, s), stage(t, s)
	if err := sp.Reserve(a.ID(), 40*mib); err != nil {
		t.Fatal(err)
	}
	write(t, a, 10*mib)
	if _, err := a.Publish(context.Background(), 10*mib); err != nil {
		t.Fatal(err)
	}
	// 64 - 8 - 10 published = 46 MiB; a's unwritten 30 MiB are free again
	// (had they stayed reserved, 16 MiB would be left). 45 MiB: the file
	// system may give the published file a block or two more than its size.
	if err := sp.Reserve(b.ID(), 45*mib); err != nil {
		t.Errorf("Reserve(b, 45 MiB) after a published 10 MiB = %v", err)
	}
	if u, _ := sp.Usage(); u.Reserved != 45*mib {
		t.Errorf("Usage().Reserved = %d, want %d", u.Reserved, 45*mib)
	}
	sp.Release(b.ID())
	if u, _ := sp.Usage(); u.Reserved != 0 {
		t.Errorf("Usage().Reserved after Release = %d, want 0", u.Reserved)
	}
}
