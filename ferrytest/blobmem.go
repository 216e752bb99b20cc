package ferrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ferrydrive/ferry"
)

// BlobStore is an in-memory ferry.BlobStore for tests. It passes
// TestBlobStore. The zero value is not usable; call NewBlobStore.
type BlobStore struct {
	mu      sync.Mutex
	staging map[string]*memArea
	blobs   map[string]memBlob
}

var _ ferry.BlobStore = (*BlobStore)(nil)

type memBlob struct {
	data     []byte
	modified time.Time
}

// memArea is one staging area's bytes; handles share it. Like a store
// that cannot read released bytes back (S3), it refuses reads of released
// bytes past ferry.StagingHead and writes into released bytes, so that
// tests on the fake catch callers that break Release's promise.
type memArea struct {
	mu       sync.RWMutex
	data     []byte
	modified time.Time
	released int64
}

// NewBlobStore returns an empty in-memory blob store.
func NewBlobStore() *BlobStore {
	return &BlobStore{staging: map[string]*memArea{}, blobs: map[string]memBlob{}}
}

// Stage creates a new, empty staging area.
func (s *BlobStore) Stage(ctx context.Context) (ferry.Staging, error) {
	id := ferry.NewID("", 16)
	a := &memArea{modified: time.Now()}
	s.mu.Lock()
	s.staging[id] = a
	s.mu.Unlock()
	return &memStaging{s: s, id: id, a: a}, nil
}

// OpenStaging reopens a staging area; NotFound if there is none.
func (s *BlobStore) OpenStaging(ctx context.Context, id string) (ferry.Staging, error) {
	s.mu.Lock()
	a, ok := s.staging[id]
	s.mu.Unlock()
	if !ok {
		return nil, ferry.Errorf(ferry.NotFound, "staging area %q not found", id)
	}
	return &memStaging{s: s, id: id, a: a}, nil
}

// RemoveStaging forgets a staging area; a missing one is not an error.
func (s *BlobStore) RemoveStaging(ctx context.Context, id string) error {
	s.mu.Lock()
	delete(s.staging, id)
	s.mu.Unlock()
	return nil
}

// ListStaging reports every staging area.
func (s *BlobStore) ListStaging(ctx context.Context) ([]ferry.BlobInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var infos []ferry.BlobInfo
	for id, a := range s.staging {
		a.mu.RLock()
		infos = append(infos, ferry.BlobInfo{ID: id, Size: int64(len(a.data)), Modified: a.modified})
		a.mu.RUnlock()
	}
	return infos, nil
}

// Open opens a published blob; NotFound if there is none.
func (s *BlobStore) Open(ctx context.Context, key string) (ferry.Blob, error) {
	s.mu.Lock()
	b, ok := s.blobs[key]
	s.mu.Unlock()
	if !ok {
		return nil, ferry.Errorf(ferry.NotFound, "blob %q not found", key)
	}
	return &memReader{Reader: bytes.NewReader(b.data), size: int64(len(b.data))}, nil
}

// Delete forgets a published blob; a missing one is not an error.
func (s *BlobStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	delete(s.blobs, key)
	s.mu.Unlock()
	return nil
}

// List reports every published blob.
func (s *BlobStore) List(ctx context.Context) ([]ferry.BlobInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var infos []ferry.BlobInfo
	for key, b := range s.blobs {
		infos = append(infos, ferry.BlobInfo{ID: key, Size: int64(len(b.data)), Modified: b.modified})
	}
	return infos, nil
}

type memReader struct {
	*bytes.Reader
	size int64
}

func (r *memReader) Size() int64  { return r.size }
func (r *memReader) Close() error { return nil }

type memStaging struct {
	s      *BlobStore
	id     string
	a      *memArea
	closed bool // after Close or Publish; guarded by a.mu
}

var errMemClosed = errors.New("ferrytest: staging area is closed")

func (st *memStaging) ID() string { return st.id }

func (st *memStaging) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("ferrytest: negative offset")
	}
	st.a.mu.Lock()
	defer st.a.mu.Unlock()
	if st.closed {
		return 0, errMemClosed
	}
	if off < st.a.released && len(p) > 0 {
		return 0, fmt.Errorf("ferrytest: write at %d into released bytes [0, %d)", off, st.a.released)
	}
	if end := off + int64(len(p)); end > int64(len(st.a.data)) {
		st.a.data = append(st.a.data, make([]byte, end-int64(len(st.a.data)))...)
	}
	copy(st.a.data[off:], p)
	st.a.modified = time.Now()
	return len(p), nil
}

func (st *memStaging) ReadAt(p []byte, off int64) (int, error) {
	st.a.mu.RLock()
	defer st.a.mu.RUnlock()
	if st.closed {
		return 0, errMemClosed
	}
	if end := off + int64(len(p)); st.a.released > ferry.StagingHead && end > ferry.StagingHead && off < st.a.released && len(p) > 0 {
		return 0, fmt.Errorf("ferrytest: read of [%d, %d) overlaps released bytes [%d, %d)", off, end, ferry.StagingHead, st.a.released)
	}
	return bytes.NewReader(st.a.data).ReadAt(p, off)
}

func (st *memStaging) Size() (int64, error) {
	st.a.mu.RLock()
	defer st.a.mu.RUnlock()
	if st.closed {
		return 0, errMemClosed
	}
	return int64(len(st.a.data)), nil
}

func (st *memStaging) Sync() error { return nil }

func (st *memStaging) Release(n int64) error {
	st.a.mu.Lock()
	defer st.a.mu.Unlock()
	if st.closed {
		return errMemClosed
	}
	st.a.released = max(st.a.released, n)
	return nil
}

func (st *memStaging) Publish(ctx context.Context, size int64) (string, error) {
	if size < 0 {
		return "", ferry.Errorf(ferry.Invalid, "negative blob size %d", size)
	}
	st.a.mu.Lock()
	defer st.a.mu.Unlock()
	if st.closed {
		return "", errMemClosed
	}
	st.closed = true
	data := slices.Clone(st.a.data[:min(size, int64(len(st.a.data)))])
	data = append(data, make([]byte, size-int64(len(data)))...)

	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	if st.s.staging[st.id] != st.a {
		return "", ferry.Errorf(ferry.NotFound, "staging area %s was removed", st.id)
	}
	delete(st.s.staging, st.id)
	key := st.id // the contract: a blob keeps its staging area's ID
	st.s.blobs[key] = memBlob{data: data, modified: time.Now()}
	return key, nil
}

func (st *memStaging) Close() error {
	st.a.mu.Lock()
	st.closed = true
	st.a.mu.Unlock()
	return nil
}
