package blob_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

const benchSize = 256 << 20

// memSource is a fast in-memory source of size bytes that repeats a
// random block, returning at most chunk bytes per Read, like a network
// body would.
type memSource struct {
	block []byte
	left  int64
	chunk int
}

var memBlock = sync.OnceValue(func() []byte { return randomBytes(42, 1<<20) })

func newMemSource(size int64, chunk int) *memSource {
	return &memSource{block: memBlock(), left: size, chunk: chunk}
}

func (m *memSource) Read(p []byte) (int, error) {
	if m.left == 0 {
		return 0, io.EOF
	}
	off := int((benchSize - m.left) % int64(len(m.block)))
	n := copy(p[:min(len(p), m.chunk, int(m.left))], m.block[off:])
	m.left -= int64(n)
	return n, nil
}

// copySerial is the baseline: read, write, hash, one after the other on
// one goroutine.
func copySerial(dst ferry.Staging, src io.Reader, h *blob.Hasher) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.WriteAt(buf[:n], total); werr != nil {
				return total, werr
			}
			h.Write(buf[:n])
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// benchmarkCopy copies 256 MiB into a real fsblob staging file per
// iteration. Compare BenchmarkCopy with BenchmarkCopySerial in one run to
// see what overlapping hashing with reading and writing buys.
func benchmarkCopy(b *testing.B, chunk int, serial bool) {
	s := newStore(b)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.Stage(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		src := newMemSource(benchSize, chunk)
		h := blob.NewHasher()
		var n int64
		if serial {
			n, err = copySerial(st, src, h)
		} else {
			n, err = blob.Copy(context.Background(), st, 0, src, h, -1, func(int64) {})
		}
		if err != nil || n != benchSize {
			b.Fatalf("copy = %d, %v", n, err)
		}
		_ = h.Sum()
		st.Close()
		if err := s.RemoveStaging(context.Background(), st.ID()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCopy(b *testing.B)          { benchmarkCopy(b, 1<<20, false) }
func BenchmarkCopySerial(b *testing.B)    { benchmarkCopy(b, 1<<20, true) }
func BenchmarkCopy32K(b *testing.B)       { benchmarkCopy(b, 32<<10, false) }
func BenchmarkCopySerial32K(b *testing.B) { benchmarkCopy(b, 32<<10, true) }

// BenchmarkAssembly8Writers stages 256 MiB through an Assembly from eight
// writers that take 4 MiB pieces in file order, as the connections of a
// segmented download do; compare with BenchmarkCopy (one stream) in one
// run to see what hashing out-of-order bytes (read back from staging)
// costs.
func BenchmarkAssembly8Writers(b *testing.B) {
	const piece = 4 << 20
	s := newStore(b)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.Stage(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		a, err := blob.NewAssembly(st, blob.NewHasher(), 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					off := (next.Add(1) - 1) * piece
					if off >= benchSize {
						return
					}
					src := newMemSource(piece, 256<<10)
					if _, err := a.Fill(context.Background(), off, src, func() int64 { return off + piece }, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if _, n, err := a.Finish(context.Background()); err != nil || n != benchSize {
			b.Fatalf("finish = %d, %v", n, err)
		}
		st.Close()
		if err := s.RemoveStaging(context.Background(), st.ID()); err != nil {
			b.Fatal(err)
		}
	}
}
