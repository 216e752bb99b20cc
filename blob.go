package ferry

import (
	"context"
	"io"
	"time"
)

// BlobStore keeps the bytes of files. Bytes are written first to a staging
// area, which accepts writes at any offset and in any order (resumed and
// segmented downloads, upload-session fragments), and then published under
// a key in one atomic step: a reader never sees half a blob. Published
// blobs are immutable, so several items may share one (reference counting
// lives in the metadata store). Implementations must be safe for
// concurrent use.
type BlobStore interface {
	// Stage creates a new, empty staging area.
	Stage(ctx context.Context) (Staging, error)
	// OpenStaging reopens a staging area by ID, e.g. after a restart, with
	// the bytes it held. It fails with NotFound if the area does not exist.
	OpenStaging(ctx context.Context, id string) (Staging, error)
	// RemoveStaging deletes a staging area and frees its bytes. Removing an
	// area that does not exist is not an error.
	RemoveStaging(ctx context.Context, id string) error
	// ListStaging reports every staging area, for sweeping orphans.
	ListStaging(ctx context.Context) ([]BlobInfo, error)

	// Open opens a published blob for reading. It fails with NotFound if
	// the key does not exist.
	Open(ctx context.Context, key string) (Blob, error)
	// Delete removes a published blob. Deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error
	// List reports every published blob, for sweeping orphans.
	List(ctx context.Context) ([]BlobInfo, error)
}

// BlobInfo describes a staging area (ID) or a published blob (key).
type BlobInfo struct {
	ID       string
	Size     int64
	Modified time.Time
}

// StagingHead is how many leading bytes of a staging area stay readable
// after Release: enough to sniff a MIME type.
const StagingHead = 4096

// Staging is one area of bytes being assembled. Writes at any offset are
// allowed; gaps read as zeros. Which ranges are valid is the caller's
// record, not the staging area's.
//
// Concurrency: WriteAt, ReadAt and Sync may be called from several
// goroutines at once as long as the ranges written are disjoint (the
// connections of a segmented download each write their own range, while
// the hashing reads back ranges already written, and a checkpoint syncs).
// ReadAt is only ever asked for bytes whose WriteAt has returned. Sync
// makes durable every write that returned before Sync was called. Publish,
// Close and Size are called by one goroutine when no other call runs.
// (ferrytest's ConcurrentWritersDisjointRanges checks this.)
//
// Several handles may be open on one area at once, in one process or in
// several sharing a store (upload-session fragments arriving at different
// nodes), as long as they write disjoint ranges; a handle opened after
// another one's Sync sees the bytes it synced.
type Staging interface {
	ID() string
	io.WriterAt
	io.ReaderAt
	// Size reports the end of the furthest byte written.
	Size() (int64, error)
	// Sync makes written bytes durable, so that a checkpoint recorded
	// after it survives a crash: of the process, and for a store shared
	// by several nodes (S3), of the node, since OpenStaging on any node
	// then finds them.
	Sync() error
	// Release declares that the caller will neither read nor write bytes
	// [0, n) again before Publish (they are hashed and recorded in a
	// checkpoint). A store whose durable form cannot be read back before
	// Publish (S3 multipart parts) may move them there at the next Sync
	// and free its local copies; from then on ReadAt of them, except of
	// the first StagingHead bytes, and WriteAt into them may fail.
	// Publish still includes them. Stores that can always read staged
	// bytes ignore it. Release never lowers an earlier n.
	Release(n int64) error
	// Publish truncates the area to size bytes, makes them durable and
	// publishes them atomically as a new blob, returning its key, which
	// is the area's ID: a caller that recorded the ID and crashed before
	// it could record the key (or lost Publish's answer) finds the blob
	// under the ID. The staging area no longer exists afterwards.
	Publish(ctx context.Context, size int64) (key string, err error)
	// Close releases the handle; the staged bytes stay until Publish or
	// RemoveStaging.
	Close() error
}

// Blob is a published blob open for reading.
type Blob interface {
	io.ReadSeekCloser
	io.ReaderAt
	Size() int64
}
