package blob_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
	"github.com/ferrydrive/ferry/blob/fsblob"
	"github.com/ferrydrive/ferry/quickxor"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// wantHashes computes the three hashes the straightforward way.
func wantHashes(p []byte) ferry.Hashes {
	qx := quickxor.New()
	qx.Write(p)
	s1 := sha1.Sum(p)
	s256 := sha256.Sum256(p)
	return ferry.Hashes{
		QuickXor: base64.StdEncoding.EncodeToString(qx.Sum(nil)),
		SHA1:     strings.ToUpper(hex.EncodeToString(s1[:])),
		SHA256:   strings.ToUpper(hex.EncodeToString(s256[:])),
	}
}

func newStore(t testing.TB) *fsblob.Store {
	t.Helper()
	s, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newStaging(t testing.TB, s ferry.BlobStore) ferry.Staging {
	t.Helper()
	st, err := s.Stage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// wantStaged checks that st holds want at off.
func wantStaged(t *testing.T, st ferry.Staging, off int64, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if n, err := st.ReadAt(got, off); n != len(want) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt(%d bytes, %d) = %d, %v", len(want), off, n, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("staged bytes at %d differ from the source (%d bytes)", off, len(want))
	}
}

// checkNoLeak fails if the goroutine count does not come back to before.
// A goroutine that has finished its work may take a moment to exit, so
// it polls briefly; it does not measure speed.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	for range 100 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines after the call, %d before", runtime.NumGoroutine(), before)
}

func TestHasherKnownValues(t *testing.T) {
	h := blob.NewHasher()
	h.Write([]byte("hello "))
	h.Write([]byte("world"))
	want := ferry.Hashes{
		QuickXor: "aCgDG9jwBhDc4Q1yawMZAAAAAAA=",
		SHA1:     "2AAE6C35C94FCFB415DBE95F408B9CE91EE846ED",
		SHA256:   "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9",
	}
	if got := h.Sum(); got != want {
		t.Errorf("Sum() = %+v, want %+v", got, want)
	}
	if got := blob.NewHasher().Sum(); got != wantHashes(nil) {
		t.Errorf("empty Sum() = %+v, want %+v", got, wantHashes(nil))
	}
	if head, ok := h.Head(); !ok || string(head) != "hello world" {
		t.Errorf("Head() = %q, %v; want all 11 bytes", head, ok)
	}
}

// TestHasherHead: a Hasher keeps the first HeadSize bytes written, however
// the writes cut them, and knows nothing of them once restored.
func TestHasherHead(t *testing.T) {
	data := randomBytes(2, 3*blob.HeadSize)
	h := blob.NewHasher()
	for off := 0; off < len(data); off += 100 {
		h.Write(data[off:min(off+100, len(data))])
	}
	if head, ok := h.Head(); !ok || !bytes.Equal(head, data[:blob.HeadSize]) {
		t.Errorf("Head() = %d bytes, %v; want the first %d", len(head), ok, blob.HeadSize)
	}
	state, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r := blob.NewHasher()
	if err := r.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	if head, ok := r.Head(); ok {
		t.Errorf("restored Head() = %d bytes, true; want unknown", len(head))
	}
}

func TestHasherMarshal(t *testing.T) {
	data := randomBytes(1, 300000)
	for _, cut := range []int{0, 1, 63, 64, 65, 160, 12345, 299999, 300000} {
		h := blob.NewHasher()
		h.Write(data[:cut])
		state, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte("must not leak into the restored state"))

		r := blob.NewHasher()
		r.Write([]byte("stale"))
		if err := r.UnmarshalBinary(state); err != nil {
			t.Fatalf("cut %d: UnmarshalBinary: %v", cut, err)
		}
		r.Write(data[cut:])
		if got, want := r.Sum(), wantHashes(data); got != want {
			t.Errorf("cut %d: restored Sum() = %+v, want %+v", cut, got, want)
		}
	}
}

func TestHasherUnmarshalRejectsGarbage(t *testing.T) {
	h := blob.NewHasher()
	h.Write([]byte("abc"))
	good, _ := h.MarshalBinary()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("xxxx"), good[4:]...),
		"truncated": good[:len(good)-3],
		"trailing":  append(bytes.Clone(good), 1),
		"flipped":   flipped,
	} {
		t.Run(name, func(t *testing.T) {
			r := blob.NewHasher()
			r.Write([]byte("abc"))
			if err := r.UnmarshalBinary(b); err == nil {
				// A flipped byte inside a hash's internal state may still
				// parse; what matters is that structure errors are caught.
				if name != "flipped" {
					t.Fatal("UnmarshalBinary accepted a damaged state")
				}
				return
			}
			if got, want := r.Sum(), wantHashes([]byte("abc")); got != want {
				t.Errorf("state changed by a failed UnmarshalBinary: %+v, want %+v", got, want)
			}
		})
	}
}

// chunkReader returns its data in reads of random sizes up to max.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(r.max))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestCopy(t *testing.T) {
	s := newStore(t)
	readers := map[string]func([]byte) io.Reader{
		"whole":   func(p []byte) io.Reader { return bytes.NewReader(p) },
		"half":    func(p []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(p)) },
		"dataEOF": func(p []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(p)) },
		"random": func(p []byte) io.Reader {
			return &chunkReader{data: p, rng: rand.New(rand.NewPCG(3, 4)), max: 70000}
		},
	}
	for _, size := range []int{0, 1, 1000, 1<<20 - 1, 1 << 20, 1<<20 + 1, 5<<20 + 7} {
		data := randomBytes(uint64(size), size)
		for name, newReader := range readers {
			for _, off := range []int64{0, 12345} {
				st := newStaging(t, s)
				h := blob.NewHasher()
				n, err := blob.Copy(t.Context(), st, off, newReader(data), h, -1, nil)
				if err != nil || n != int64(size) {
					t.Fatalf("%s, %d bytes at %d: Copy = %d, %v; want %d, nil", name, size, off, n, err, size)
				}
				if got, want := h.Sum(), wantHashes(data); got != want {
					t.Errorf("%s, %d bytes at %d: hashes %+v, want %+v", name, size, off, got, want)
				}
				wantStaged(t, st, off, data)
				if got, _ := st.Size(); size > 0 && got != off+int64(size) {
					t.Errorf("%s, %d bytes at %d: staging Size() = %d, want %d", name, size, off, got, off+int64(size))
				}
			}
		}
	}
}

func TestCopyOneByteReads(t *testing.T) {
	s := newStore(t)
	data := randomBytes(9, 300000)
	st := newStaging(t, s)
	h := blob.NewHasher()
	n, err := blob.Copy(t.Context(), st, 0, iotest.OneByteReader(bytes.NewReader(data)), h, -1, nil)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Copy = %d, %v; want %d, nil", n, err, len(data))
	}
	if got, want := h.Sum(), wantHashes(data); got != want {
		t.Errorf("hashes %+v, want %+v", got, want)
	}
	wantStaged(t, st, 0, data)
}

// endless is a source that never ends; it counts the bytes it gave.
type endless struct {
	given int64
	after func(given int64) // called after each Read, if set
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e.given + int64(i))
	}
	e.given += int64(len(p))
	if e.after != nil {
		e.after(e.given)
	}
	return len(p), nil
}

func endlessPrefix(n int64) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

func TestCopyLimit(t *testing.T) {
	s := newStore(t)
	for _, limit := range []int64{0, 1, 1000, 1 << 20, 3<<20 + 5} {
		data := randomBytes(uint64(limit), int(limit))

		// Exactly at the limit is fine.
		st := newStaging(t, s)
		h := blob.NewHasher()
		n, err := blob.Copy(t.Context(), st, 0, bytes.NewReader(data), h, limit, nil)
		if err != nil || n != limit {
			t.Fatalf("limit %d, %d bytes: Copy = %d, %v; want %d, nil", limit, limit, n, err, limit)
		}

		// One byte more fails, with the right kind and code.
		over := append(bytes.Clone(data), 'x')
		st = newStaging(t, s)
		h = blob.NewHasher()
		n, err = blob.Copy(t.Context(), st, 0, bytes.NewReader(over), h, limit, nil)
		if ferry.KindOf(err) != ferry.TooLarge || ferry.CodeOf(err) != "maxFileSizeExceeded" || !errors.Is(err, blob.ErrLimit) {
			t.Fatalf("limit %d, %d bytes: Copy error %v (kind %v, code %q), want TooLarge/maxFileSizeExceeded wrapping ErrLimit",
				limit, limit+1, err, ferry.KindOf(err), ferry.CodeOf(err))
		}
		if n > limit {
			t.Errorf("limit %d: Copy wrote %d bytes", limit, n)
		}
		wantStaged(t, st, 0, data[:n])
		if got, want := h.Sum(), wantHashes(data[:n]); got != want {
			t.Errorf("limit %d: hashes %+v after the limit error, want those of the %d bytes written", limit, got, n)
		}
		q := blob.OverQuota(err)
		if ferry.KindOf(q) != ferry.QuotaExceeded || ferry.CodeOf(q) != "quotaLimitReached" {
			t.Errorf("OverQuota(%v) = %v (kind %v, code %q), want QuotaExceeded/quotaLimitReached", err, q, ferry.KindOf(q), ferry.CodeOf(q))
		}

		// An endless source is read no further than limit+1 bytes.
		src := &endless{}
		_, err = blob.Copy(t.Context(), newStaging(t, s), 0, src, blob.NewHasher(), limit, nil)
		if !errors.Is(err, blob.ErrLimit) {
			t.Fatalf("limit %d, endless source: Copy error %v, want ErrLimit", limit, err)
		}
		if src.given > limit+1 {
			t.Errorf("limit %d: the source was read for %d bytes, want at most %d", limit, src.given, limit+1)
		}
	}
}

func TestOverQuotaPassesOtherErrors(t *testing.T) {
	if err := blob.OverQuota(nil); err != nil {
		t.Errorf("OverQuota(nil) = %v", err)
	}
	other := ferry.Errorf(ferry.NotFound, "x")
	if got := blob.OverQuota(other); got != error(other) {
		t.Errorf("OverQuota(%v) = %v, want it unchanged", other, got)
	}
}

func TestCopyCancel(t *testing.T) {
	s := newStore(t)
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		src := &endless{}
		n, err := blob.Copy(ctx, newStaging(t, s), 0, src, blob.NewHasher(), -1, nil)
		if !errors.Is(err, context.Canceled) || n != 0 || src.given != 0 {
			t.Errorf("Copy with a done ctx = %d, %v (source read %d); want 0, context.Canceled, unread", n, err, src.given)
		}
	})
	t.Run("midway", func(t *testing.T) {
		before := runtime.NumGoroutine()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		const at = 3 << 20
		src := &endless{after: func(given int64) {
			if given >= at {
				cancel()
			}
		}}
		st := newStaging(t, s)
		h := blob.NewHasher()
		n, err := blob.Copy(ctx, st, 0, src, h, -1, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Copy = %d, %v; want context.Canceled", n, err)
		}
		// It stops at the next read: the bytes of the read that cancelled
		// are written, nothing more is read.
		if n < at || n != src.given {
			t.Errorf("Copy wrote %d bytes, source gave %d, cancelled at %d", n, src.given, at)
		}
		prefix := endlessPrefix(n)
		wantStaged(t, st, 0, prefix)
		if got, want := h.Sum(), wantHashes(prefix); got != want {
			t.Errorf("hashes after cancel %+v, want those of the %d bytes written", got, n)
		}
		checkNoLeak(t, before)
	})
}

// failingReader gives its data, then fails; the failing Read also returns
// the last bytes, as io.Reader allows.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) <= 10 {
		n += copy(p[n:], r.data)
		r.data = r.data[len(r.data):]
		return n, r.err
	}
	return n, nil
}

func TestCopySourceError(t *testing.T) {
	s := newStore(t)
	before := runtime.NumGoroutine()
	boom := errors.New("connection reset")
	data := randomBytes(5, 3<<20+100)
	st := newStaging(t, s)
	h := blob.NewHasher()
	n, err := blob.Copy(t.Context(), st, 7, &failingReader{data: data, err: boom}, h, -1, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("Copy error %v, want it to wrap %v", err, boom)
	}
	if n != int64(len(data)) {
		t.Errorf("Copy wrote %d bytes, want the %d the source gave", n, len(data))
	}
	wantStaged(t, st, 7, data[:n])
	if got, want := h.Sum(), wantHashes(data[:n]); got != want {
		t.Errorf("hashes %+v, want those of the %d bytes written", got, n)
	}
	checkNoLeak(t, before)
}

// failingStaging accepts limit bytes, then fails every write.
type failingStaging struct {
	ferry.Staging
	limit int64
}

var errDiskFull = errors.New("disk full")

func (f *failingStaging) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) <= f.limit {
		return f.Staging.WriteAt(p, off)
	}
	n, _ := f.Staging.WriteAt(p[:max(0, f.limit-off)], off)
	return n, errDiskFull
}

func TestCopyWriteError(t *testing.T) {
	s := newStore(t)
	data := randomBytes(6, 4<<20)
	const limit = 2<<20 + 333
	st := &failingStaging{Staging: newStaging(t, s), limit: limit}
	h := blob.NewHasher()
	n, err := blob.Copy(t.Context(), st, 0, &chunkReader{data: data, rng: rand.New(rand.NewPCG(1, 1)), max: 100000}, h, -1, nil)
	if !errors.Is(err, errDiskFull) || n != limit {
		t.Fatalf("Copy = %d, %v; want %d, %v", n, err, limit, errDiskFull)
	}
	wantStaged(t, st, 0, data[:n])
	if got, want := h.Sum(), wantHashes(data[:n]); got != want {
		t.Errorf("hashes %+v, want those of the %d bytes written", got, n)
	}
}

func TestCopyProgress(t *testing.T) {
	s := newStore(t)
	data := randomBytes(8, 6<<20+3)
	var (
		calls []int64
		read  int64
	)
	src := &chunkReader{data: data, rng: rand.New(rand.NewPCG(5, 6)), max: 8192}
	counting := readerFunc(func(p []byte) (int, error) {
		n, err := src.Read(p)
		read += int64(n)
		return n, err
	})
	h := blob.NewHasher()
	n, err := blob.Copy(t.Context(), newStaging(t, s), 0, counting, h, -1, func(total int64) {
		// Progress reports what arrived, never more, without waiting for
		// a buffer to fill.
		if total != read {
			t.Errorf("progress(%d) after %d bytes were read", total, read)
		}
		calls = append(calls, total)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.Sum(), wantHashes(data[:n]); got != want {
		t.Errorf("hashes %+v, want %+v", got, want)
	}
	if len(calls) == 0 || calls[len(calls)-1] != n {
		t.Fatalf("%d progress calls, the last %v; want the last to be %d", len(calls), calls[len(calls)-1:], n)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] < calls[i-1] {
			t.Errorf("progress went back: %d after %d", calls[i], calls[i-1])
		}
	}
}

// TestCopyProgressDuringStall: bytes that arrived before the source went
// quiet are reported at once, although they wait in a buffer that is not
// full (and so not yet written) until the source says more or ends.
func TestCopyProgressDuringStall(t *testing.T) {
	s := newStore(t)
	data := randomBytes(11, 300<<10)
	release := make(chan struct{})
	reported := make(chan int64, 100)
	first := true
	src := readerFunc(func(p []byte) (int, error) {
		if first {
			first = false
			return copy(p, data), nil
		}
		<-release
		return 0, io.EOF
	})
	done := make(chan error, 1)
	go func() {
		_, err := blob.Copy(t.Context(), newStaging(t, s), 0, src, blob.NewHasher(), -1, func(n int64) { reported <- n })
		done <- err
	}()
	select {
	case got := <-reported:
		if got != int64(len(data)) {
			t.Errorf("during the stall progress says %d, want %d", got, len(data))
		}
	case <-time.After(10 * time.Second): // a guard against hanging, not a speed check
		t.Error("no progress while the source stalled")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestRehash(t *testing.T) {
	s := newStore(t)
	data := randomBytes(10, 3<<20+17)
	st := newStaging(t, s)
	if _, err := st.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{0, 1, 1 << 20, int64(len(data))} {
		h, err := blob.Rehash(t.Context(), st, n)
		if err != nil {
			t.Fatalf("Rehash(%d): %v", n, err)
		}
		if got, want := h.Sum(), wantHashes(data[:n]); got != want {
			t.Errorf("Rehash(%d) = %+v, want %+v", n, got, want)
		}
	}
	if _, err := blob.Rehash(t.Context(), st, int64(len(data))+1); err == nil {
		t.Error("Rehash past the staged bytes succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := blob.Rehash(ctx, st, int64(len(data))); !errors.Is(err, context.Canceled) {
		t.Errorf("Rehash with a done ctx: %v, want context.Canceled", err)
	}
}

func TestIngest(t *testing.T) {
	s := newStore(t)
	png := append([]byte("\x89PNG\r\n\x1a\n"), randomBytes(11, 2<<20)...)
	c, err := blob.Ingest(t.Context(), s, bytes.NewReader(png), int64(len(png)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != int64(len(png)) || c.MimeType != "image/png" || c.Hashes != wantHashes(png) || c.BlobKey == "" {
		t.Errorf("Ingest = %+v; want %d bytes of image/png with hashes %+v", c, len(png), wantHashes(png))
	}
	b, err := s.Open(t.Context(), c.BlobKey)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, _ := io.ReadAll(b); !bytes.Equal(got, png) {
		t.Error("published blob differs from the source")
	}
	if infos, _ := s.ListStaging(t.Context()); len(infos) != 0 {
		t.Errorf("staging areas left after Ingest: %v", infos)
	}

	empty, err := blob.Ingest(t.Context(), s, strings.NewReader(""), 0)
	if err != nil || empty.Size != 0 || empty.MimeType != "application/octet-stream" || empty.Hashes != wantHashes(nil) {
		t.Errorf("Ingest(empty) = %+v, %v", empty, err)
	}
}

func TestIngestLeavesNothingOnError(t *testing.T) {
	ctx := t.Context()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tt := range []struct {
		name  string
		ctx   context.Context
		src   io.Reader
		limit int64
		check func(error) bool
	}{
		{"over limit", ctx, bytes.NewReader(make([]byte, 1001)), 1000, func(err error) bool { return ferry.KindOf(err) == ferry.TooLarge }},
		{"source fails", ctx, &failingReader{data: make([]byte, 3<<20), err: io.ErrUnexpectedEOF}, -1, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"cancelled", cancelled, &endless{}, -1, func(err error) bool { return errors.Is(err, context.Canceled) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			_, err := blob.Ingest(tt.ctx, s, tt.src, tt.limit)
			if !tt.check(err) {
				t.Errorf("Ingest error %v is not the expected one", err)
			}
			staging, _ := s.ListStaging(ctx)
			blobs, _ := s.List(ctx)
			if len(staging)+len(blobs) != 0 {
				t.Errorf("left behind: staging %v, blobs %v", staging, blobs)
			}
		})
	}
}

func TestDetectMIME(t *testing.T) {
	for _, tt := range []struct {
		name string
		head string
		want string
	}{
		{"report.pdf", "", "application/pdf"},
		{"PHOTO.JPG", "", "image/jpeg"},
		{"notes.txt", "\x00\x01binary", "text/plain"},
		{"a.docx", "", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
		{"page.html", "", "text/html"},
		{"noext", "\x89PNG\r\n\x1a\n....", "image/png"},
		{"noext", "%PDF-1.7\n", "application/pdf"},
		{"noext", "plain words", "text/plain"},
		{"weird.zzzunknownext", "<html><body>", "text/html"},
		{"noext", "", "application/octet-stream"},
		{"noext", "\x00\x01\x02\x03", "application/octet-stream"},
		{"", "", "application/octet-stream"},
		{"trailingdot.", "", "application/octet-stream"},
	} {
		t.Run(tt.name+"/"+tt.want, func(t *testing.T) {
			if got := blob.DetectMIME(tt.name, []byte(tt.head)); got != tt.want {
				t.Errorf("DetectMIME(%q, %q) = %q, want %q", tt.name, tt.head, got, tt.want)
			}
		})
	}
}

// TestCopyNilHasher covers ranges copied without hashing, as a parallel
// download would, then hashed once whole with Rehash.
func TestCopyNilHasher(t *testing.T) {
	s := newStore(t)
	data := randomBytes(12, 3<<20+5)
	st := newStaging(t, s)
	mid := int64(len(data) / 2)
	var last int64
	n2, err := blob.Copy(t.Context(), st, mid, bytes.NewReader(data[mid:]), nil, -1, func(total int64) { last = total })
	if err != nil || n2 != int64(len(data))-mid || last != n2 {
		t.Fatalf("second half: Copy = %d, %v, last progress %d", n2, err, last)
	}
	n1, err := blob.Copy(t.Context(), st, 0, bytes.NewReader(data[:mid]), nil, -1, nil)
	if err != nil || n1 != mid {
		t.Fatalf("first half: Copy = %d, %v", n1, err)
	}
	h, err := blob.Rehash(t.Context(), st, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.Sum(), wantHashes(data); got != want {
		t.Errorf("hashes %+v, want %+v", got, want)
	}
}
