package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/blob"
)

// fillRanges has writers goroutines fill the given ranges of data, each
// taking the next range from a shared list, through random-sized reads.
func fillRanges(t *testing.T, a *blob.Assembly, data []byte, ranges []blob.Range, writers int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ranges) {
					return
				}
				r := ranges[i]
				src := &chunkReader{data: data[r.Start:r.End], rng: rng, max: 200 << 10}
				n, err := a.Fill(context.Background(), r.Start, src, func() int64 { return r.End }, nil)
				if err != nil || n != r.Len() {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Fill: %v", err)
	}
}

// pieces cuts [0,n) into pieces of about size bytes, shuffled.
func pieces(n, size int64, seed uint64) []blob.Range {
	var out []blob.Range
	for off := int64(0); off < n; off += size {
		out = append(out, blob.Range{Start: off, End: min(n, off+size)})
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestAssemblyOutOfOrder(t *testing.T) {
	before := runtime.NumGoroutine()
	data := randomBytes(5, 3<<20+12345)
	for _, tt := range []struct {
		name    string
		size    int64
		writers int
	}{
		{"one stream", int64(len(data)), 1},
		{"1 MiB pieces, 4 writers", 1 << 20, 4},
		{"odd pieces, 8 writers", 277777, 8},
		{"small pieces, 3 writers", 60000, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := newStaging(t, newStore(t))
			a, err := blob.NewAssembly(st, blob.NewHasher(), 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			fillRanges(t, a, data, pieces(int64(len(data)), tt.size, 3), tt.writers)
			h, n, err := a.Finish(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(data)) {
				t.Fatalf("hashed %d bytes, want %d", n, len(data))
			}
			if got, want := h.Sum(), wantHashes(data); got != want {
				t.Errorf("hashes = %+v, want %+v", got, want)
			}
			// The file's start, for content sniffing, whatever order
			// the pieces came in.
			if head, ok := h.Head(); !ok || !bytes.Equal(head, data[:blob.HeadSize]) {
				t.Errorf("head known %v, %d bytes; want the first %d bytes", ok, len(head), blob.HeadSize)
			}
			wantStaged(t, st, 0, data)
		})
	}
	checkNoLeak(t, before)
}

// A snapshot taken while writers run resumes in a new Assembly: the
// written ranges and the hash state of a prefix are enough.
func TestAssemblySnapshotResume(t *testing.T) {
	before := runtime.NumGoroutine()
	data := randomBytes(6, 3<<20)
	st := newStaging(t, newStore(t))
	a, err := blob.NewAssembly(st, blob.NewHasher(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := pieces(int64(len(data)), 256<<10, 4)
	first, rest := all[:len(all)/2], all[len(all)/2:]
	fillRanges(t, a, data, first, 3)
	a.Snapshot() // queues a mark
	var snap blob.Snapshot
	for range 200 { // let the hashers reach the mark
		if snap = a.Snapshot(); snap.Hashed == a.Front() {
			break
		}
		runtime.Gosched()
	}
	a.Close()
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	var written int64
	for _, r := range snap.Written {
		written += r.Len()
	}
	if written != int64(len(first))*(256<<10) && snap.Written[len(snap.Written)-1].End != int64(len(data)) {
		t.Errorf("snapshot holds %d bytes, want %d", written, len(first)*(256<<10))
	}
	h := blob.NewHasher()
	if err := h.UnmarshalBinary(snap.Hash); err != nil {
		t.Fatal(err)
	}
	b, err := blob.NewAssembly(st, h, snap.Hashed, snap.Written)
	if err != nil {
		t.Fatal(err)
	}
	fillRanges(t, b, data, rest, 3)
	got, n, err := b.Finish(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || got.Sum() != wantHashes(data) {
		t.Errorf("resumed: %d bytes, %+v; want %d, %+v", n, got.Sum(), len(data), wantHashes(data))
	}
	if head, ok := got.Head(); ok && snap.Hashed > 0 {
		t.Errorf("resumed at %d, the hasher claims to know the head (%d bytes)", snap.Hashed, len(head))
	}
	checkNoLeak(t, before)
}

// A writer whose end shrinks while it runs stops there; another writes the
// tail (a connection that took over the end of a slow one's segment).
func TestAssemblyShrinkingEnd(t *testing.T) {
	data := randomBytes(7, 4<<20)
	st := newStaging(t, newStore(t))
	a, err := blob.NewAssembly(st, blob.NewHasher(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var end atomic.Int64
	end.Store(int64(len(data)))
	split := int64(3 << 20)
	n, err := a.Fill(t.Context(), 0, bytes.NewReader(data), end.Load, func(pos int64) {
		if pos >= 1<<20 {
			end.Store(split)
		}
	})
	if err != nil || n != split {
		t.Fatalf("Fill = %d, %v; want %d", n, err, split)
	}
	if _, err := a.Fill(t.Context(), split, bytes.NewReader(data[split:]), func() int64 { return int64(len(data)) }, nil); err != nil {
		t.Fatal(err)
	}
	h, total, err := a.Finish(t.Context())
	if err != nil || total != int64(len(data)) || h.Sum() != wantHashes(data) {
		t.Fatalf("Finish = %d, %v; want all %d bytes hashed", total, err, len(data))
	}
	wantStaged(t, st, 0, data)
}

// A long read-back queued ahead of a fast writer at the frontier: the
// writer's buffers, queued behind the read-back, must not take the slots
// the read-back needs (this once froze segmented imports of large files).
func TestAssemblyReadBackAheadOfFastWriter(t *testing.T) {
	before := runtime.NumGoroutine()
	const mib = 1 << 20
	data := randomBytes(8, 64*mib)
	for round := range 5 {
		st := newStaging(t, newStore(t))
		a, err := blob.NewAssembly(st, blob.NewHasher(), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The middle first: it waits in staging for the frontier.
		fillRanges(t, a, data, []blob.Range{{Start: 4 * mib, End: 40 * mib}}, 1)
		// Then the head (whose end queues the read-back of the middle)
		// and the tail, which is at the frontier as soon as the head is done.
		fillRanges(t, a, data, []blob.Range{{Start: 0, End: 4 * mib}, {Start: 40 * mib, End: 64 * mib}}, 2)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		h, n, err := a.Finish(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Finish: %v (hashed %d of %d bytes)", round, err, a.Front(), len(data))
		}
		if n != int64(len(data)) || h.Sum() != wantHashes(data) {
			t.Fatalf("round %d: hashed %d bytes, %+v; want %d, %+v", round, n, h.Sum(), len(data), wantHashes(data))
		}
	}
	checkNoLeak(t, before)
}

// gateReader is a source whose first Read reports itself on started.
type gateReader struct {
	r       io.Reader
	started chan struct{}
	once    sync.Once
}

func (g *gateReader) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.started) })
	return g.r.Read(p)
}

// A writer far beyond the bytes handed to the hashers waits until the
// hashing comes within the window: the backlog left to hash stays bounded.
func TestAssemblyWriterAheadWaits(t *testing.T) {
	before := runtime.NumGoroutine()
	const mib = 1 << 20
	data := randomBytes(9, 80*mib)
	st := newStaging(t, newStore(t))
	a, err := blob.NewAssembly(st, blob.NewHasher(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	far := int64(72 * mib) // beyond the 64 MiB window from 0
	g := &gateReader{r: bytes.NewReader(data[far:]), started: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := a.Fill(t.Context(), far, g, func() int64 { return int64(len(data)) }, nil)
		done <- err
	}()
	// Nothing is hashed yet: the far writer must not read.
	select {
	case <-g.started:
		t.Fatalf("the writer at %d MiB read before anything was hashed", far/mib)
	case <-time.After(300 * time.Millisecond):
	}
	var frontier atomic.Int64
	go func() {
		<-g.started
		if got := frontier.Load(); got < far-64*mib {
			t.Errorf("the writer at %d MiB started reading with the frontier writer at %d MiB", far/mib, got/mib)
		}
	}()
	_, err = a.Fill(t.Context(), 0, bytes.NewReader(data[:far]), func() int64 { return far }, func(pos int64) { frontier.Store(pos) })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h, n, err := a.Finish(t.Context())
	if err != nil || n != int64(len(data)) || h.Sum() != wantHashes(data) {
		t.Fatalf("Finish = %d, %v; want all %d bytes with their hashes", n, err, len(data))
	}
	checkNoLeak(t, before)
}

// A writer waiting for the window ends when its context does.
func TestAssemblyWaitingWriterCancelled(t *testing.T) {
	data := randomBytes(10, 1<<20)
	st := newStaging(t, newStore(t))
	a, err := blob.NewAssembly(st, blob.NewHasher(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := a.Fill(ctx, 100<<20, bytes.NewReader(data), func() int64 { return 101 << 20 }, nil)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Fill = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a writer waiting for the window did not end with its context")
	}
}
