package graph_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/ferrydrive/ferry"
)

// Stores that fail or stop where a test chooses, to show what the API does
// when a store errs, or another request arrives, at the worst moment.

// errLost stands for an error after which nobody knows whether the change
// was made: a connection lost while the database committed.
var errLost = errors.New("connection lost")

// faultyItems is an ItemStore whose writes can report errLost after they
// succeeded, and whose UpdateItem can fail.
type faultyItems struct {
	ferry.ItemStore
	lostWrite atomic.Bool  // CreateItem and ReplaceContent write, then fail
	updateErr atomic.Value // error: UpdateItem fails with it
	written   func()       // called after each successful write, if set
}

func (f *faultyItems) CreateItem(ctx context.Context, n ferry.NewItem, c ferry.ConflictBehavior) (*ferry.Item, bool, error) {
	it, replaced, err := f.ItemStore.CreateItem(ctx, n, c)
	if err == nil {
		f.afterWrite()
		if f.lostWrite.Load() {
			return nil, false, errLost
		}
	}
	return it, replaced, err
}

func (f *faultyItems) ReplaceContent(ctx context.Context, id ferry.ItemID, c ferry.Content, ifMatch, by string) (*ferry.Item, error) {
	it, err := f.ItemStore.ReplaceContent(ctx, id, c, ifMatch, by)
	if err == nil {
		f.afterWrite()
		if f.lostWrite.Load() {
			return nil, errLost
		}
	}
	return it, err
}

func (f *faultyItems) afterWrite() {
	if f.written != nil {
		f.written()
	}
}

func (f *faultyItems) UpdateItem(ctx context.Context, id ferry.ItemID, u ferry.ItemUpdate) (*ferry.Item, error) {
	if err, _ := f.updateErr.Load().(error); err != nil {
		return nil, err
	}
	return f.ItemStore.UpdateItem(ctx, id, u)
}

// faultyAccounts is an AccountStore whose Drive fails once failDrive is
// set.
type faultyAccounts struct {
	ferry.AccountStore
	failDrive atomic.Bool
}

func (f *faultyAccounts) Drive(ctx context.Context, id ferry.DriveID) (*ferry.Drive, error) {
	if f.failDrive.Load() {
		return nil, errLost
	}
	return f.AccountStore.Drive(ctx, id)
}

// faultySessions is a SessionStore whose DeleteSession can fail, whose
// CommitSession can fail before writing (commitErr) or after (lostCommit),
// and whose next Session call can be made to stop after reading until
// released.
type faultySessions struct {
	ferry.SessionStore
	deleteErr  atomic.Value                // error
	commitErr  atomic.Pointer[ferry.Error] // CommitSession fails with it, changing nothing
	lostCommit atomic.Bool                 // CommitSession commits, then reports errLost
	holdErr    atomic.Pointer[ferry.Error] // HoldSessionBlob fails with it once, changing nothing
	gate       gate
}

func (f *faultySessions) HoldSessionBlob(ctx context.Context, id string, c ferry.Content) error {
	if err := f.holdErr.Swap(nil); err != nil {
		return err
	}
	return f.SessionStore.HoldSessionBlob(ctx, id, c)
}

func (f *faultySessions) CommitSession(ctx context.Context, id string, c ferry.Content) (*ferry.Item, bool, error) {
	if err := f.commitErr.Load(); err != nil {
		return nil, false, err
	}
	it, created, err := f.SessionStore.CommitSession(ctx, id, c)
	if err == nil && f.lostCommit.Load() {
		return nil, false, errLost
	}
	return it, created, err
}

func (f *faultySessions) Session(ctx context.Context, id string) (*ferry.UploadSession, error) {
	s, err := f.SessionStore.Session(ctx, id)
	f.gate.pass()
	return s, err
}

func (f *faultySessions) DeleteSession(ctx context.Context, id string) error {
	if err, _ := f.deleteErr.Load().(error); err != nil {
		return err
	}
	return f.SessionStore.DeleteSession(ctx, id)
}

// gatedBlobs is a BlobStore whose staging areas stop in Publish while its
// gate is armed, and which counts publications and bytes read back from
// staging areas.
type gatedBlobs struct {
	ferry.BlobStore
	gate      gate
	published atomic.Int32
	read      atomic.Int64
	noDelete  atomic.Bool // the next Delete fails, as if the node died first
}

func (g *gatedBlobs) Delete(ctx context.Context, key string) error {
	if g.noDelete.Swap(false) {
		return errors.New("simulated: the node died")
	}
	return g.BlobStore.Delete(ctx, key)
}

func (g *gatedBlobs) OpenStaging(ctx context.Context, id string) (ferry.Staging, error) {
	st, err := g.BlobStore.OpenStaging(ctx, id)
	if err != nil {
		return nil, err
	}
	return &gatedStaging{Staging: st, g: g}, nil
}

type gatedStaging struct {
	ferry.Staging
	g *gatedBlobs
}

func (s *gatedStaging) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.Staging.ReadAt(p, off)
	s.g.read.Add(int64(n))
	return n, err
}

func (s *gatedStaging) Publish(ctx context.Context, size int64) (string, error) {
	s.g.gate.pass()
	key, err := s.Staging.Publish(ctx, size)
	if err == nil {
		s.g.published.Add(1)
	}
	return key, err
}

// A gate stops the first caller of pass after arm until open; later
// callers, and callers while it is not armed, go through.
type gate struct {
	mu      sync.Mutex
	entered chan struct{} // closed when the stopped caller arrives
	release chan struct{} // closed by open
}

// arm makes the next pass stop, and returns a channel closed when it has.
func (g *gate) arm() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	return g.entered
}

// open lets the stopped caller go on.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		close(g.release)
		g.release = nil
	}
}

func (g *gate) pass() {
	g.mu.Lock()
	entered, release := g.entered, g.release
	g.entered = nil // only the first caller stops
	g.mu.Unlock()
	if entered == nil {
		return
	}
	close(entered)
	<-release
}
