// Package fsblob stores blobs as files under a directory.
//
// The layout is
//
//	dir/staging/ID        one sparse file per staging area, written with WriteAt
//	dir/blobs/K/KEY       published blobs, sharded by the first character
//
// Both trees live under one directory, hence on one filesystem, so
// publishing is a rename: a reader sees either no blob or all of it.
//
// Keys are base32, so there are 32 shards. A store made by an earlier
// version is sharded by the first two characters (dir/blobs/KE/KEY, 1024
// shards) and keeps that layout: New tells them apart by the shard names.
// The shards are few on purpose. Each is made when its first blob is
// published, and making a directory costs what making a file costs (on
// some filesystems much more, while recently deleted inodes are skipped),
// so 1024 shards made the first thousand blobs of a new store take a
// second inode each; a directory of many entries is indexed
// (ext4's htree, XFS's B+trees) and costs little more to look up.
package fsblob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/ferrydrive/ferry"
)

// Store is a ferry.BlobStore on local disk. It is safe for concurrent use.
type Store struct {
	staging string // dir/staging
	blobs   string // dir/blobs
	shard   int    // characters of a key that name its shard: 1, or 2 in older stores
	space   *Space // nil unless KeepFree was called
}

var _ ferry.BlobStore = (*Store)(nil)

// New returns a Store that keeps its files under dir, creating
// dir/staging and dir/blobs if needed.
func New(dir string) (*Store, error) {
	s := &Store{staging: filepath.Join(dir, "staging"), blobs: filepath.Join(dir, "blobs"), shard: 1}
	for _, d := range []string{s.staging, s.blobs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("fsblob: %w", err)
		}
	}
	shards, err := os.ReadDir(s.blobs)
	if err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	for _, sh := range shards {
		if sh.IsDir() && len(sh.Name()) == 2 {
			s.shard = 2 // made by an earlier version
			break
		}
	}
	return s, nil
}

// idBytes is the entropy of generated staging IDs and blob keys.
const idBytes = 20

// validID reports whether id could be a staging ID or blob key made by
// this package. Only [A-Za-z0-9_-] is allowed, which rules out path
// separators, "..", and anything else that could leave the store's
// directories.
func validID(id string) bool {
	if len(id) < 2 || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func (s *Store) stagingPath(id string) string { return filepath.Join(s.staging, id) }

func (s *Store) blobPath(key string) string { return filepath.Join(s.blobs, key[:s.shard], key) }

// Stage creates a new, empty staging area.
func (s *Store) Stage(ctx context.Context) (ferry.Staging, error) {
	id := ferry.NewID("", idBytes)
	f, err := os.OpenFile(s.stagingPath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, noSpace(fmt.Errorf("fsblob: stage: %w", err))
	}
	return &staging{s: s, id: id, f: f}, nil
}

// OpenStaging reopens the staging area id. It fails with NotFound if the
// area does not exist or id is malformed.
func (s *Store) OpenStaging(ctx context.Context, id string) (ferry.Staging, error) {
	if !validID(id) {
		return nil, ferry.Errorf(ferry.NotFound, "staging area %q not found", id)
	}
	f, err := os.OpenFile(s.stagingPath(id), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ferry.Errorf(ferry.NotFound, "staging area %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("fsblob: open staging %s: %w", id, err)
	}
	return &staging{s: s, id: id, f: f}, nil
}

// RemoveStaging deletes the staging area id. A missing area, or a
// malformed id that cannot name one, is not an error.
func (s *Store) RemoveStaging(ctx context.Context, id string) error {
	if !validID(id) {
		return nil
	}
	if err := os.Remove(s.stagingPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsblob: remove staging %s: %w", id, err)
	}
	s.release(id)
	return nil
}

// ListStaging reports every staging area.
func (s *Store) ListStaging(ctx context.Context) ([]ferry.BlobInfo, error) {
	infos, err := listDir(s.staging)
	if err != nil {
		return nil, fmt.Errorf("fsblob: list staging: %w", err)
	}
	return infos, nil
}

// Open opens the published blob key. It fails with NotFound if the key
// does not exist or is malformed.
func (s *Store) Open(ctx context.Context, key string) (ferry.Blob, error) {
	if !validID(key) {
		return nil, ferry.Errorf(ferry.NotFound, "blob %q not found", key)
	}
	f, err := os.Open(s.blobPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ferry.Errorf(ferry.NotFound, "blob %s not found", key)
	}
	if err != nil {
		return nil, fmt.Errorf("fsblob: open %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fsblob: open %s: %w", key, err)
	}
	return &blob{File: f, size: fi.Size()}, nil
}

// Delete removes the published blob key. Readers that already opened it
// keep reading it. A missing or malformed key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if !validID(key) {
		return nil
	}
	if err := os.Remove(s.blobPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsblob: delete %s: %w", key, err)
	}
	return nil
}

// List reports every published blob.
func (s *Store) List(ctx context.Context) ([]ferry.BlobInfo, error) {
	shards, err := os.ReadDir(s.blobs)
	if err != nil {
		return nil, fmt.Errorf("fsblob: list: %w", err)
	}
	var all []ferry.BlobInfo
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		infos, err := listDir(filepath.Join(s.blobs, sh.Name()))
		if err != nil {
			return nil, fmt.Errorf("fsblob: list: %w", err)
		}
		all = append(all, infos...)
	}
	return all, nil
}

// listDir describes the regular files in dir whose names are valid IDs.
// Files that vanish while it runs are skipped.
func listDir(dir string) ([]ferry.BlobInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	infos := make([]ferry.BlobInfo, 0, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() || !validID(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		infos = append(infos, ferry.BlobInfo{ID: e.Name(), Size: fi.Size(), Modified: fi.ModTime()})
	}
	return infos, nil
}

// syncDir makes a directory's entries (creations, renames, removals)
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// blob is a published blob open for reading; *os.File provides Read,
// ReadAt, Seek and Close.
type blob struct {
	*os.File
	size int64
}

func (b *blob) Size() int64 { return b.size }

// staging is one sparse staging file. mu guards f against Publish and
// Close racing with the ReadAt calls the contract allows concurrently.
type staging struct {
	s  *Store
	id string

	mu sync.RWMutex
	f  *os.File // nil after Close or Publish

	// direct is a second handle opened with O_DIRECT on first use, for
	// writes whose memory, offset and length are all aligned to
	// directAlign; nil when unavailable (other systems, filesystems such
	// as tmpfs that refuse it). Guarded by mu like f; directOnce makes the
	// first aligned writers agree on it.
	directOnce sync.Once
	direct     *os.File
	directOff  atomic.Bool // set once a direct write was refused
}

// directAlign is the alignment direct I/O needs of memory, file offsets
// and lengths: 4096 covers both 512-byte and 4 KiB logical blocks.
const directAlign = 4096

// aligned reports whether a write may go through the direct handle.
func aligned(p []byte, off int64) bool {
	return len(p) > 0 && len(p)%directAlign == 0 && off%directAlign == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
}

// directFile returns the O_DIRECT handle, opening it on first use. The
// caller holds mu for reading.
func (st *staging) directFile() *os.File {
	if oDirect == 0 {
		return nil
	}
	st.directOnce.Do(func() {
		f, err := os.OpenFile(st.f.Name(), os.O_WRONLY|oDirect, 0)
		if err == nil {
			st.direct = f
		}
	})
	return st.direct
}

// closeDirect closes the direct handle; the caller holds mu for writing.
func (st *staging) closeDirect() {
	if st.direct != nil {
		st.direct.Close()
		st.direct = nil
	}
}

var errClosed = errors.New("fsblob: staging area is closed")

func (st *staging) ID() string { return st.id }

func (st *staging) file() (*os.File, error) {
	if st.f == nil {
		return nil, errClosed
	}
	return st.f, nil
}

func (st *staging) WriteAt(p []byte, off int64) (int, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	f, err := st.file()
	if err != nil {
		return 0, err
	}
	if aligned(p, off) && !st.directOff.Load() {
		if d := st.directFile(); d != nil {
			n, err := d.WriteAt(p, off)
			if err == nil {
				return n, nil
			}
			if n != 0 || !errors.Is(err, syscall.EINVAL) {
				return n, noSpace(fmt.Errorf("fsblob: write staging %s: %w", st.id, err))
			}
			// EINVAL: this filesystem or device does not take these
			// direct writes after all; the buffered handle does.
			st.directOff.Store(true)
		}
	}
	n, err := f.WriteAt(p, off)
	if err != nil {
		return n, noSpace(fmt.Errorf("fsblob: write staging %s: %w", st.id, err))
	}
	return n, nil
}

// ReadAt reads staged bytes; gaps read as zeros and reading past Size
// gives io.EOF, as for any file.
func (st *staging) ReadAt(p []byte, off int64) (int, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	f, err := st.file()
	if err != nil {
		return 0, err
	}
	return f.ReadAt(p, off)
}

func (st *staging) Size() (int64, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	f, err := st.file()
	if err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("fsblob: stat staging %s: %w", st.id, err)
	}
	return fi.Size(), nil
}

func (st *staging) Sync() error {
	st.mu.RLock()
	defer st.mu.RUnlock()
	f, err := st.file()
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return noSpace(fmt.Errorf("fsblob: sync staging %s: %w", st.id, err))
	}
	return nil
}

// Release does nothing: the staged bytes stay in the file, readable,
// until Publish.
func (st *staging) Release(n int64) error { return nil }

// Publish truncates (or extends with zeros) the file to size bytes, makes
// it durable and renames it into blobs/ under the area's ID, then makes the
// rename durable. The handle is closed whatever the outcome; on failure
// the staging file stays for the caller to retry or remove.
func (st *staging) Publish(ctx context.Context, size int64) (string, error) {
	if size < 0 {
		return "", ferry.Errorf(ferry.Invalid, "negative blob size %d", size)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	f, err := st.file()
	if err != nil {
		return "", err
	}
	st.f = nil
	st.closeDirect()
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", noSpace(fmt.Errorf("fsblob: publish %s: %w", st.id, err))
	}

	key := st.id // the contract: a blob keeps its staging area's ID
	dst := st.s.blobPath(key)
	shard := filepath.Dir(dst)
	if _, err := os.Stat(shard); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(shard, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("fsblob: publish %s: %w", st.id, err)
		}
		if err := syncDir(st.s.blobs); err != nil {
			return "", fmt.Errorf("fsblob: publish %s: %w", st.id, err)
		}
	}
	if err := os.Rename(st.s.stagingPath(st.id), dst); errors.Is(err, fs.ErrNotExist) {
		return "", ferry.Errorf(ferry.NotFound, "staging area %s was removed", st.id)
	} else if err != nil {
		return "", fmt.Errorf("fsblob: publish %s: %w", st.id, err)
	}
	st.s.release(st.id)
	// The new name must survive a crash before anyone records the key.
	// The old name in staging/ is not synced (a flush saved per blob):
	// should a crash bring it back beside the new one, it names no
	// staging area any job or session refers to, and the orphan sweep
	// removes that link; the blob keeps its bytes.
	if err := syncDir(shard); err != nil {
		return "", fmt.Errorf("fsblob: publish %s: %w", st.id, err)
	}
	return key, nil
}

// Close releases the handle. Closing twice, or after Publish, is a no-op.
func (st *staging) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.f == nil {
		return nil
	}
	err := st.f.Close()
	st.f = nil
	st.closeDirect()
	if err != nil {
		return fmt.Errorf("fsblob: close staging %s: %w", st.id, err)
	}
	return nil
}
