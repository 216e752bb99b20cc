package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/ferrydrive/ferry"
)

// Committer is the one path by which bytes become a file, shared by simple
// uploads, upload sessions and imports: it stages bytes (reserving local
// disk space first, when the store stages on local disk), and it commits
// staged bytes by publishing them, recording the blob where a retry finds
// it, and creating or replacing the item; when the store refuses the item
// the blob is deleted again. Handlers and jobs hand it bytes; none of them
// publishes or re-hashes on its own.
type Committer struct {
	Blobs ferry.BlobStore
	Space ferry.DiskSpace // nil when staging takes no local disk
	Log   *slog.Logger
}

// CreateFunc creates or replaces the item that gets content c, under the
// caller's conflict rules and in the caller's transaction (completing a
// job or an upload session with it). The store takes its own reference
// to c.BlobKey.
type CreateFunc func(ctx context.Context, c ferry.Content) (*ferry.Item, error)

// Refused reports whether err is a store refusing a change it did not
// make: the name is taken, the quota or a precondition fails, the target
// or the job or session is gone. Any other error (Internal, Unavailable),
// and an error marked with Unknown, leaves the outcome open: the change
// may have been committed before the error, so the blob must stay.
func Refused(err error) bool {
	var u *unknownOutcome
	if errors.As(err, &u) {
		return false
	}
	switch ferry.KindOf(err) {
	case ferry.NameConflict, ferry.QuotaExceeded, ferry.Modified, ferry.Invalid, ferry.NotFound, ferry.Forbidden, ferry.Conflict:
		return true
	}
	return false
}

// Unknown marks an error of a CreateFunc after which the item may exist
// although the error looks like a refusal (say, the job or session it
// completes is gone: an earlier attempt whose answer was lost completed
// it). The blob then stays; the sweep deletes it if no item uses it. The
// error keeps its kind and message.
func Unknown(err error) error { return &unknownOutcome{err} }

type unknownOutcome struct{ err error }

func (u *unknownOutcome) Error() string { return u.err.Error() }
func (u *unknownOutcome) Unwrap() error { return u.err }

// Staged is bytes in a staging area, hashed, ready to commit.
type Staged struct {
	Staging  ferry.Staging // consumed by the commit's publish
	Size     int64
	Hashes   ferry.Hashes
	Name     string // the file's name, for its MIME type
	MimeType string // "" to pick one from Name and the first bytes
}

// Put stores all of src as a file: it stages the bytes, hashing them on
// the way, and commits them with create. size is the announced length
// (-1 when unknown): that much is reserved before a byte is written, and
// an unknown length reserves as the bytes arrive. limit is as for Copy.
// A disk without room fails with Unavailable before the bytes are read;
// on any error the staging area is removed and nothing is left behind,
// except a published blob when the item's outcome is unknown (the sweep
// deletes it if no item references it).
func (cm *Committer) Put(ctx context.Context, src io.Reader, size, limit int64, name string, create CreateFunc) (*ferry.Item, error) {
	st, err := cm.Blobs.Stage(ctx)
	if err != nil {
		return nil, err
	}
	published := false
	defer func() {
		if !published {
			st.Close()
			// Removal must happen even when ctx is what failed.
			cm.Blobs.RemoveStaging(context.WithoutCancel(ctx), st.ID())
		}
	}()
	if size >= 0 {
		if err := cm.reserve(st.ID(), size); err != nil {
			return nil, err
		}
	} else if cm.Space != nil {
		src = &reserving{r: src, reserve: func(n int64) error { return cm.reserve(st.ID(), n) }}
	}
	head := &headWriter{head: make([]byte, 0, sniffLen)}
	h := NewHasher()
	n, err := Copy(ctx, st, 0, io.TeeReader(src, head), h, limit, nil)
	if err != nil {
		return nil, err
	}
	mt := DetectMIME(name, nil)
	if mt == octetStream {
		mt = DetectMIME("", head.head)
	}
	published = true // from here on Commit owns the staging area
	it, c, err := cm.Commit(ctx, Staged{Staging: st, Size: n, Hashes: h.Sum(), Name: name, MimeType: mt}, nil, create)
	if err != nil && c.BlobKey == "" {
		cm.Blobs.RemoveStaging(context.WithoutCancel(ctx), st.ID())
	}
	return it, err
}

// WriteAt stages the n bytes of src at off in the staging area stagingID,
// which will hold total bytes in all (reserved first), and makes them
// durable. It returns how many bytes were written; fewer than n, with a
// nil error, means src ended early.
func (cm *Committer) WriteAt(ctx context.Context, stagingID string, off int64, src io.Reader, n, total int64) (int64, error) {
	if err := cm.reserve(stagingID, total); err != nil {
		return 0, err
	}
	st, err := cm.Blobs.OpenStaging(ctx, stagingID)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	w, err := Copy(ctx, st, off, src, nil, n, nil)
	if err != nil || w < n {
		return w, err
	}
	return w, st.Sync()
}

// HashFrom extends the saved hash state (nil: no bytes seen) by the staged
// bytes [from, to) of stagingID and returns the new state and the hashes
// of [0, to). Each byte is read and hashed once however the upload
// arrives, so completing a file never re-hashes it from the start.
func (cm *Committer) HashFrom(ctx context.Context, stagingID string, state []byte, from, to int64) ([]byte, ferry.Hashes, error) {
	h := NewHasher()
	if state != nil {
		if err := h.UnmarshalBinary(state); err != nil {
			return nil, ferry.Hashes{}, err
		}
	}
	if to > from {
		st, err := cm.Blobs.OpenStaging(ctx, stagingID)
		if err != nil {
			return nil, ferry.Hashes{}, err
		}
		err = hashRange(ctx, st, stagingID, h, from, to)
		st.Close()
		if err != nil {
			return nil, ferry.Hashes{}, err
		}
	}
	out, err := h.MarshalBinary()
	return out, h.Sum(), err
}

// Recover finds the blob that a commit published from the staging area
// stagingID when the record of it was lost (a crash, or a failure, between
// Publish and hold: Publish keeps the area's ID as the blob's key), so
// that the caller commits it instead of staging the bytes again and
// leaving the blob behind. It rehashes the bytes after hashed from the
// saved hash state (nil: from the start), reading them from the blob, and
// returns the content (MimeType empty) and the blob's first bytes for the
// caller to pick a MIME type. found is false when no such blob exists.
func (cm *Committer) Recover(ctx context.Context, stagingID string, state []byte, hashed int64) (c ferry.Content, head []byte, found bool, err error) {
	b, err := cm.Blobs.Open(ctx, stagingID)
	if ferry.KindOf(err) == ferry.NotFound {
		return c, nil, false, nil
	}
	if err != nil {
		return c, nil, false, err
	}
	defer b.Close()
	size := b.Size()
	h := NewHasher()
	if state == nil || hashed > size || h.UnmarshalBinary(state) != nil {
		h, hashed = NewHasher(), 0
	}
	if err := hashRange(ctx, b, stagingID, h, hashed, size); err != nil {
		return c, nil, false, err
	}
	head = make([]byte, min(size, sniffLen))
	if _, err := b.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return c, nil, false, fmt.Errorf("blob: read head of %s: %w", stagingID, err)
	}
	return ferry.Content{Size: size, Hashes: h.Sum(), BlobKey: stagingID}, head, true, nil
}

// Commit publishes the staged bytes, calls hold (if not nil) to record the
// published content where a retry after a passing failure finds it, and
// then creates the item. When create refuses the item (Refused), the blob
// is deleted; after any other error it stays, for a retry through
// CommitPublished or for the sweep. c is the published content, valid
// when err is nil or the blob stayed.
func (cm *Committer) Commit(ctx context.Context, s Staged, hold func(ctx context.Context, c ferry.Content) error, create CreateFunc) (it *ferry.Item, c ferry.Content, err error) {
	// From publishing on, a client or job going away must not cut the
	// commit in half: it is short, and undoing it is worse.
	ctx = context.WithoutCancel(ctx)
	mt := s.MimeType
	if mt == "" {
		head := make([]byte, min(s.Size, sniffLen))
		if _, err := s.Staging.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
			s.Staging.Close()
			return nil, c, fmt.Errorf("blob: read staged head: %w", err)
		}
		mt = DetectMIME(s.Name, head)
	}
	key, err := s.Staging.Publish(ctx, s.Size)
	if err != nil {
		s.Staging.Close()
		return nil, c, err
	}
	cm.release(s.Staging.ID())
	c = ferry.Content{Size: s.Size, MimeType: mt, Hashes: s.Hashes, BlobKey: key}
	if hold != nil {
		if err := hold(ctx, c); err != nil {
			// Nothing refers to the blob: a retry would not find it.
			cm.deleteBlob(ctx, key)
			return nil, c, err
		}
	}
	it, err = cm.CommitPublished(ctx, c, create)
	return it, c, err
}

// CommitPublished creates the item for content already published, e.g.
// held by a job or session whose earlier commit failed for a passing
// reason; when the store refuses the item, the blob is deleted.
func (cm *Committer) CommitPublished(ctx context.Context, c ferry.Content, create CreateFunc) (*ferry.Item, error) {
	ctx = context.WithoutCancel(ctx)
	it, err := create(ctx, c)
	if err != nil && Refused(err) {
		cm.deleteBlob(ctx, c.BlobKey)
	}
	return it, err
}

func (cm *Committer) deleteBlob(ctx context.Context, key string) {
	if err := cm.Blobs.Delete(ctx, key); err != nil && cm.Log != nil {
		cm.Log.WarnContext(ctx, "blob: could not delete the blob of a refused file", "key", key, "err", err)
	}
}

// reserve reserves local disk for a staging area, when there is a disk to
// account.
func (cm *Committer) reserve(stagingID string, size int64) error {
	if cm.Space == nil {
		return nil
	}
	return cm.Space.Reserve(stagingID, size)
}

func (cm *Committer) release(stagingID string) {
	if cm.Space != nil {
		cm.Space.Release(stagingID)
	}
}

// reserveStep is how far ahead a source of unknown length reserves.
const reserveStep = 16 << 20

// reserving reserves space ahead of a source of unknown length, in steps
// of reserveStep, and fails the read when the disk has no more room.
type reserving struct {
	r        io.Reader
	reserve  func(total int64) error
	read     int64
	reserved int64
}

func (rr *reserving) Read(p []byte) (int, error) {
	if end := rr.read + int64(len(p)); end > rr.reserved {
		// A step ahead if there is room for it, else just this read.
		next := end + reserveStep
		if rr.reserve(next) != nil {
			next = end
			if err := rr.reserve(next); err != nil {
				return 0, err
			}
		}
		rr.reserved = next
	}
	n, err := rr.r.Read(p)
	rr.read += int64(n)
	return n, err
}
