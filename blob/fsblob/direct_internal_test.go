package fsblob

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// alignedBuf returns n bytes whose memory starts on a directAlign boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[skip : skip+n]
}

// TestDirectAndBufferedWritesAgree mixes aligned writes (the direct handle)
// with unaligned ones over the same file, overwriting each other, and
// checks every byte reads back as last written.
func TestDirectAndBufferedWritesAgree(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fst, err := s.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st := fst.(*staging)
	defer st.Close()

	const size = 3 << 20
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	write := func(p []byte, off int64) {
		t.Helper()
		if _, err := st.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	for i := range 40 {
		var p []byte
		var off int64
		if i%2 == 0 {
			p = alignedBuf(directAlign * (1 + rng.IntN(64)))
			off = int64(directAlign * rng.IntN((size-len(p))/directAlign))
		} else {
			p = make([]byte, 1+rng.IntN(200000))
			off = rng.Int64N(int64(size - len(p)))
		}
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		write(p, off)
	}
	if oDirect != 0 && st.direct == nil && !st.directOff.Load() {
		t.Fatal("aligned writes did not open the direct handle")
	}
	if st.direct == nil {
		t.Log("direct I/O unavailable here; only the buffered path ran")
	}
	got := make([]byte, size)
	n, err := st.ReadAt(got, 0)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	end := len(bytes.TrimRight(want, "\x00"))
	if n < end || !bytes.Equal(got[:end], want[:end]) {
		t.Fatal("bytes read back differ from the bytes written")
	}
	key, err := st.Publish(t.Context(), int64(end))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	all, _ := io.ReadAll(b)
	if !bytes.Equal(all, want[:end]) {
		t.Fatal("published blob differs from the bytes written")
	}
}
