package fsblob

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/ferrydrive/ferry"
)

// StatFS reports the free bytes (for an unprivileged writer) and the total
// size of the filesystem holding dir. Tests fake it to play a small disk.
type StatFS func(dir string) (free, total int64, err error)

// statfs is the real StatFS.
func statfs(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("fsblob: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// Space is the ferry.DiskSpace of a Store: it keeps floor bytes free on
// the store's filesystem. A reservation counts only what its staging area
// has still to write (the reserved size less the bytes the file already
// takes on disk), so bytes written are never counted twice, once as used
// and once as reserved. Reservations live in this process: they guard
// this node's own disk, and a restarted node's writers reserve again on
// their next write.
type Space struct {
	s      *Store
	floor  int64
	statfs StatFS

	mu   sync.Mutex
	held map[string]int64 // staging ID → bytes it will hold in all
}

var _ ferry.DiskSpace = (*Space)(nil)

// KeepFree makes the store account its disk: the returned Space keeps
// floor bytes free, and the store ends a staging area's reservation when
// it publishes or removes it. stat nil means the real statfs(2). Call it
// once, before the store is used.
func (s *Store) KeepFree(floor int64, stat StatFS) *Space {
	if stat == nil {
		stat = statfs
	}
	sp := &Space{s: s, floor: max(floor, 0), statfs: stat, held: map[string]int64{}}
	s.space = sp
	return sp
}

// spaceRetryAfter is the Retry-After, in seconds, of a refusal for lack of
// space: space comes back when an import is cancelled or a file deleted.
const spaceRetryAfter = 30

// Reserve implements ferry.DiskSpace.
func (sp *Space) Reserve(stagingID string, size int64) error {
	free, total, err := sp.statfs(sp.s.staging)
	if err != nil {
		return err
	}
	if size > total-sp.floor {
		return &ferry.Error{Kind: ferry.Unavailable, RetryAfter: spaceRetryAfter, Err: ferry.ErrDiskTooSmall,
			Message: fmt.Sprintf("the server's disk cannot hold a file of %d bytes: it has %d bytes, of which %d are kept free", size, total, sp.floor)}
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	others := sp.pending(stagingID)
	need := max(size-sp.allocated(stagingID), 0)
	if room := free - sp.floor - others; need > room {
		return &ferry.Error{Kind: ferry.Unavailable, RetryAfter: spaceRetryAfter,
			Message: fmt.Sprintf("the server's disk is nearly full: this write needs %d more bytes, and %d are free above the %d kept free", need, max(room, 0), sp.floor)}
	}
	sp.held[stagingID] = size
	return nil
}

// Release implements ferry.DiskSpace.
func (sp *Space) Release(stagingID string) {
	sp.mu.Lock()
	delete(sp.held, stagingID)
	sp.mu.Unlock()
}

// Usage implements ferry.DiskSpace.
func (sp *Space) Usage() (ferry.DiskUsage, error) {
	free, total, err := sp.statfs(sp.s.staging)
	if err != nil {
		return ferry.DiskUsage{}, err
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return ferry.DiskUsage{Free: free, Total: total, Reserved: sp.pending(""), Floor: sp.floor}, nil
}

// pending totals what the reservations other than skip have still to
// write. The caller holds mu.
func (sp *Space) pending(skip string) int64 {
	var n int64
	for id, size := range sp.held {
		if id != skip {
			n += max(size-sp.allocated(id), 0)
		}
	}
	return n
}

// allocated reports the bytes the staging file id takes on disk (its
// blocks, not its length: staging files are sparse); 0 when it is gone.
func (sp *Space) allocated(id string) int64 {
	fi, err := os.Stat(sp.s.stagingPath(id))
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// release ends the reservation of a staging area the store has published
// or removed.
func (s *Store) release(id string) {
	if s.space != nil {
		s.space.Release(id)
	}
}

// noSpace translates a write that failed for want of space into
// Unavailable, so that a full disk is a "try later" rather than an
// internal error; other errors pass unchanged.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &ferry.Error{Kind: ferry.Unavailable, RetryAfter: spaceRetryAfter,
			Message: "the server's disk is full; try again later", Err: err}
	}
	return err
}
