package ferry

import "errors"

// DiskSpace keeps the local disk that staged bytes go to from filling up:
// a floor of free bytes stays for the database and the system
// (--min-free-space), and every local write reserves what it expects to
// write before it starts. A blob store that stages on local disk provides
// one (fsblob); a nil DiskSpace means there is nothing to account.
// Implementations are safe for concurrent use.
type DiskSpace interface {
	// Reserve records that the staging area stagingID will hold size
	// bytes in all, replacing what was reserved for it before. It
	// succeeds only while the free space, less the floor and less what
	// the other reservations have still to write, leaves room for what
	// this one has still to write. Otherwise it fails with Unavailable
	// (RetryAfter set): try again once space is freed. When size could
	// never fit, even on an empty disk, the error wraps ErrDiskTooSmall.
	// The reservation ends with Release, or when the store publishes or
	// removes the staging area.
	Reserve(stagingID string, size int64) error
	// Release ends the reservation of stagingID; ending one that does not
	// exist is a no-op.
	Release(stagingID string)
	// Usage reports the disk's state, for health checks.
	Usage() (DiskUsage, error)
}

// DiskUsage is the state of the disk under a DiskSpace.
type DiskUsage struct {
	Free     int64 // bytes free for an unprivileged writer
	Total    int64 // size of the filesystem
	Reserved int64 // bytes reservations have still to write
	Floor    int64 // bytes kept free (--min-free-space)
}

// Room is what new writes may still reserve: the free space less what
// reservations will still write, less the floor; negative below it.
func (u DiskUsage) Room() int64 { return u.Free - u.Reserved - u.Floor }

// Low reports whether the disk is close to refusing writes: less than a
// tenth of what it can hold above the floor is left.
func (u DiskUsage) Low() bool { return u.Room() < (u.Total-u.Floor)/10 }

// ErrDiskTooSmall is wrapped by DiskSpace.Reserve's error when the size
// asked for exceeds what the disk can ever hold above the floor.
var ErrDiskTooSmall = errors.New("the file is larger than the disk can ever hold")
