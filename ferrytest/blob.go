package ferrytest

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/ferrydrive/ferry"
)

// TestBlobStore checks that a ferry.BlobStore meets the contract in
// ferry's blob.go. newStore must return a new, empty store for each call;
// every subtest gets its own.
func TestBlobStore(t *testing.T, newStore func(t *testing.T) ferry.BlobStore) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s ferry.BlobStore)
	}{
		{"StageEmpty", testStageEmpty},
		{"WriteAtOutOfOrderWithGaps", testWriteAtGaps},
		{"ReopenStaging", testReopenStaging},
		{"OpenStagingNotFound", testOpenStagingNotFound},
		{"PublishAtomic", testPublishAtomic},
		{"PublishTruncates", testPublishTruncates},
		{"PublishEmpty", testPublishEmpty},
		{"PublishTwiceGivesTwoKeys", testPublishTwice},
		{"BlobReadAtSeek", testBlobReadAtSeek},
		{"OpenNotFound", testOpenNotFound},
		{"DeleteIdempotent", testDeleteIdempotent},
		{"RemoveStaging", testRemoveStaging},
		{"List", testList},
		{"ConcurrentStagings", testConcurrentStagings},
		{"ReadAtDuringWriteAt", testReadAtDuringWriteAt},
		{"ConcurrentWritersDisjointRanges", testConcurrentWriters},
		{"ReleaseCheckpointTakeover", testReleaseTakeover},
		{"ReleaseOutOfOrder", testReleaseOutOfOrder},
		{"HandlesOnDisjointRanges", testHandlesOnDisjointRanges},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// malformedIDs are staging IDs and blob keys no store may accept as a
// path: each must be NotFound (for opens) and harmless (for removals).
var malformedIDs = []string{
	"", ".", "..", "../x", "..\\x", "a/b", "/etc/passwd", "x/../../y", "blobs/../staging",
	"a\x00b", "%2e%2e%2fx",
}

// pattern returns n bytes that differ with seed and position.
func pattern(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*31+i>>8)
	}
	return p
}

func stage(t *testing.T, s ferry.BlobStore) ferry.Staging {
	t.Helper()
	st, err := s.Stage(t.Context())
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func writeAt(t *testing.T, st ferry.Staging, p []byte, off int64) {
	t.Helper()
	n, err := st.WriteAt(p, off)
	if err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes, %d) = %d, %v; want %d, nil", len(p), off, n, err, len(p))
	}
}

func wantSize(t *testing.T, st ferry.Staging, want int64) {
	t.Helper()
	got, err := st.Size()
	if err != nil {
		t.Fatalf("Size: %v", err)
	}
	if got != want {
		t.Errorf("Size() = %d, want %d", got, want)
	}
}

// wantStaged checks that ReadAt over the whole area gives want, and that
// reading past the end gives io.EOF.
func wantStaged(t *testing.T, r io.ReaderAt, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if n, err := r.ReadAt(got, 0); n != len(want) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt(%d bytes, 0) = %d, %v", len(want), n, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ReadAt(0) = %s, want %s", abbrev(got), abbrev(want))
	}
	extra := make([]byte, 10)
	if n, err := r.ReadAt(extra, int64(len(want))); n != 0 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func abbrev(p []byte) string {
	if len(p) <= 32 {
		return fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%d bytes %q…", len(p), p[:32])
}

func publish(t *testing.T, st ferry.Staging, size int64) string {
	t.Helper()
	key, err := st.Publish(t.Context(), size)
	if err != nil {
		t.Fatalf("Publish(%d): %v", size, err)
	}
	if key == "" {
		t.Fatal("Publish returned an empty key")
	}
	return key
}

// wantBlob checks that key holds exactly want.
func wantBlob(t *testing.T, s ferry.BlobStore, key string, want []byte) {
	t.Helper()
	b, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer b.Close()
	if got := b.Size(); got != int64(len(want)) {
		t.Errorf("blob Size() = %d, want %d", got, len(want))
	}
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("reading blob %s: %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("blob %s = %s, want %s", key, abbrev(got), abbrev(want))
	}
}

func wantKind(t *testing.T, what string, err error, want ferry.Kind) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want kind %v", what, want)
		return
	}
	if got := ferry.KindOf(err); got != want {
		t.Errorf("%s: error %q has kind %v, want %v", what, err, got, want)
	}
}

func ids(infos []ferry.BlobInfo) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.ID
	}
	slices.Sort(out)
	return out
}

func list(t *testing.T, s ferry.BlobStore) []ferry.BlobInfo {
	t.Helper()
	infos, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return infos
}

func listStaging(t *testing.T, s ferry.BlobStore) []ferry.BlobInfo {
	t.Helper()
	infos, err := s.ListStaging(t.Context())
	if err != nil {
		t.Fatalf("ListStaging: %v", err)
	}
	return infos
}

func testStageEmpty(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	if st.ID() == "" {
		t.Fatal("staging area has an empty ID")
	}
	wantSize(t, st, 0)
	wantStaged(t, st, nil)
	if got := ids(listStaging(t, s)); !slices.Equal(got, []string{st.ID()}) {
		t.Errorf("ListStaging IDs = %q, want [%s]", got, st.ID())
	}
	if got := list(t, s); len(got) != 0 {
		t.Errorf("List = %v before any Publish, want nothing", got)
	}
}

func testWriteAtGaps(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	a, b, c := pattern(1, 1000), pattern(2, 500), pattern(3, 300)
	// Layout: a at 0, gap, b at 2000, gap, c at 4000; written last first.
	writeAt(t, st, c, 4000)
	wantSize(t, st, 4300)
	writeAt(t, st, a, 0)
	writeAt(t, st, b, 2000)
	wantSize(t, st, 4300)

	want := make([]byte, 4300)
	copy(want, a)
	copy(want[2000:], b)
	copy(want[4000:], c)
	wantStaged(t, st, want)

	// Overwriting inside the area changes bytes but not the size.
	writeAt(t, st, []byte("xyz"), 1500)
	copy(want[1500:], "xyz")
	wantSize(t, st, 4300)
	wantStaged(t, st, want)
}

func testReopenStaging(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	id := st.ID()
	data := pattern(4, 70000)
	writeAt(t, st, data[35000:], 35000)
	writeAt(t, st, data[:20000], 0)
	if err := st.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	re, err := s.OpenStaging(t.Context(), id)
	if err != nil {
		t.Fatalf("OpenStaging(%s): %v", id, err)
	}
	defer re.Close()
	if re.ID() != id {
		t.Errorf("reopened ID() = %q, want %q", re.ID(), id)
	}
	wantSize(t, re, 70000)
	want := bytes.Clone(data)
	clear(want[20000:35000])
	wantStaged(t, re, want)

	// Fill the gap after reopening, then publish: the blob is whole.
	writeAt(t, re, data[20000:35000], 20000)
	wantBlob(t, s, publish(t, re, 70000), data)
}

func testOpenStagingNotFound(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	writeAt(t, st, []byte("keep"), 0)
	for _, id := range append(slices.Clone(malformedIDs), "NOSUCHSTAGINGAREA234567ABC") {
		_, err := s.OpenStaging(t.Context(), id)
		wantKind(t, fmt.Sprintf("OpenStaging(%q)", id), err, ferry.NotFound)
	}
	wantStaged(t, st, []byte("keep"))
}

func testPublishAtomic(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	id := st.ID()
	data := pattern(5, 100000)
	writeAt(t, st, data, 0)
	if got := list(t, s); len(got) != 0 {
		t.Fatalf("List = %v while staging, want nothing", got)
	}

	key := publish(t, st, int64(len(data)))
	if key != id {
		t.Errorf("Publish gave key %s, want the staging area's ID %s", key, id)
	}
	got := list(t, s)
	if len(got) != 1 || got[0].ID != key || got[0].Size != int64(len(data)) {
		t.Errorf("List after Publish = %+v, want one blob %s of %d bytes", got, key, len(data))
	}
	if got := ids(listStaging(t, s)); len(got) != 0 {
		t.Errorf("ListStaging after Publish = %q, want nothing", got)
	}
	_, err := s.OpenStaging(t.Context(), id)
	wantKind(t, "OpenStaging after Publish", err, ferry.NotFound)
	wantBlob(t, s, key, data)

	// The handle is spent: closing it is harmless and does not touch the blob.
	if err := st.Close(); err != nil {
		t.Errorf("Close after Publish: %v", err)
	}
	if _, err := st.Publish(t.Context(), 1); err == nil {
		t.Error("second Publish on the same handle succeeded")
	}
	wantBlob(t, s, key, data)
}

func testPublishTruncates(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	data := pattern(6, 5000)
	writeAt(t, st, data, 0)
	wantBlob(t, s, publish(t, st, 1234), data[:1234])
}

func testPublishEmpty(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	wantBlob(t, s, publish(t, st, 0), nil)
}

func testPublishTwice(t *testing.T, s ferry.BlobStore) {
	data := []byte("same bytes")
	var keys []string
	for range 2 {
		st := stage(t, s)
		writeAt(t, st, data, 0)
		keys = append(keys, publish(t, st, int64(len(data))))
	}
	if keys[0] == keys[1] {
		t.Fatalf("two publishes gave the same key %s", keys[0])
	}
	if err := s.Delete(t.Context(), keys[0]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantBlob(t, s, keys[1], data)
}

func testBlobReadAtSeek(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	data := pattern(7, 10000)
	writeAt(t, st, data, 0)
	key := publish(t, st, int64(len(data)))

	b, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	wantStaged(t, b, data)
	p := make([]byte, 100)
	if n, err := b.ReadAt(p, 9950); n != 50 || err != io.EOF {
		t.Errorf("ReadAt across the end = %d, %v; want 50, io.EOF", n, err)
	}
	if !bytes.Equal(p[:50], data[9950:]) {
		t.Errorf("ReadAt across the end read %s, want %s", abbrev(p[:50]), abbrev(data[9950:]))
	}

	for _, tt := range []struct {
		off    int64
		whence int
		want   int64
	}{
		{1000, io.SeekStart, 1000},
		{500, io.SeekCurrent, 1500},
		{-10, io.SeekEnd, 9990},
	} {
		pos, err := b.Seek(tt.off, tt.whence)
		if err != nil || pos != tt.want {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", tt.off, tt.whence, pos, err, tt.want)
		}
	}
	rest, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(rest, data[9990:]) {
		t.Errorf("read after Seek = %s, %v; want %s", abbrev(rest), err, abbrev(data[9990:]))
	}
	if _, err := b.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, p); err != nil || !bytes.Equal(p, data[100:200]) {
		t.Errorf("read after Seek back = %s, %v; want %s", abbrev(p), err, abbrev(data[100:200]))
	}
}

func testOpenNotFound(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	writeAt(t, st, []byte("x"), 0)
	key := publish(t, st, 1)
	for _, k := range append(slices.Clone(malformedIDs), "NOSUCHBLOBKEY234567ABCDEFG") {
		_, err := s.Open(t.Context(), k)
		wantKind(t, fmt.Sprintf("Open(%q)", k), err, ferry.NotFound)
	}
	wantBlob(t, s, key, []byte("x"))
}

func testDeleteIdempotent(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	writeAt(t, st, []byte("doomed"), 0)
	key := publish(t, st, 6)
	other := stage(t, s)
	writeAt(t, other, []byte("kept"), 0)
	keep := publish(t, other, 4)

	for i := range 2 {
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	_, err := s.Open(t.Context(), key)
	wantKind(t, "Open after Delete", err, ferry.NotFound)
	if err := s.Delete(t.Context(), "NOSUCHBLOBKEY234567ABCDEFG"); err != nil {
		t.Errorf("Delete of an unknown key: %v", err)
	}
	for _, k := range malformedIDs {
		if err := s.Delete(t.Context(), k); err != nil && ferry.KindOf(err) != ferry.Invalid {
			t.Errorf("Delete(%q) = %v, want nil or kind Invalid", k, err)
		}
	}
	if got := ids(list(t, s)); !slices.Equal(got, []string{keep}) {
		t.Errorf("List after Delete = %q, want [%s]", got, keep)
	}
	wantBlob(t, s, keep, []byte("kept"))
}

func testRemoveStaging(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	id := st.ID()
	writeAt(t, st, pattern(8, 4096), 0)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	survivor := stage(t, s)
	writeAt(t, survivor, []byte("survivor"), 0)

	for i := range 2 {
		if err := s.RemoveStaging(t.Context(), id); err != nil {
			t.Fatalf("RemoveStaging #%d: %v", i+1, err)
		}
	}
	_, err := s.OpenStaging(t.Context(), id)
	wantKind(t, "OpenStaging after RemoveStaging", err, ferry.NotFound)
	for _, k := range malformedIDs {
		if err := s.RemoveStaging(t.Context(), k); err != nil && ferry.KindOf(err) != ferry.Invalid {
			t.Errorf("RemoveStaging(%q) = %v, want nil or kind Invalid", k, err)
		}
	}
	if got := ids(listStaging(t, s)); !slices.Equal(got, []string{survivor.ID()}) {
		t.Errorf("ListStaging after RemoveStaging = %q, want [%s]", got, survivor.ID())
	}
	wantStaged(t, survivor, []byte("survivor"))
}

func testList(t *testing.T, s ferry.BlobStore) {
	want := map[string]int64{}
	for i, n := range []int{0, 1, 333, 70000} {
		st := stage(t, s)
		writeAt(t, st, pattern(byte(i), n), 0)
		want[publish(t, st, int64(n))] = int64(n)
	}
	staged := map[string]int64{}
	for i, n := range []int{10, 2000} {
		st := stage(t, s)
		writeAt(t, st, pattern(byte(i), 5), int64(n-5))
		staged[st.ID()] = int64(n)
	}

	check := func(what string, infos []ferry.BlobInfo, want map[string]int64) {
		t.Helper()
		got := map[string]int64{}
		for _, in := range infos {
			if _, dup := got[in.ID]; dup {
				t.Errorf("%s lists %s twice", what, in.ID)
			}
			got[in.ID] = in.Size
			if in.Modified.IsZero() {
				t.Errorf("%s: %s has a zero Modified time", what, in.ID)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("List", list(t, s), want)
	check("ListStaging", listStaging(t, s), staged)
}

func testConcurrentStagings(t *testing.T, s ferry.BlobStore) {
	const n = 8
	keys := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			keys[i], errs[i] = stageChunksBackwards(t, s, pattern(byte(i), 50000+i))
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("staging %d: %v", i, errs[i])
		}
		if seen[keys[i]] {
			t.Fatalf("key %s published twice", keys[i])
		}
		seen[keys[i]] = true
		wantBlob(t, s, keys[i], pattern(byte(i), 50000+i))
	}
	if got := len(list(t, s)); got != n {
		t.Errorf("List has %d blobs, want %d", got, n)
	}
}

// stageChunksBackwards writes data in 4 KiB chunks from the last to the
// first and publishes it. It reports errors instead of failing, so that
// it may run on any goroutine.
func stageChunksBackwards(t *testing.T, s ferry.BlobStore, data []byte) (string, error) {
	st, err := s.Stage(t.Context())
	if err != nil {
		return "", err
	}
	defer st.Close()
	const chunk = 4096
	for off := (len(data) - 1) / chunk * chunk; off >= 0; off -= chunk {
		end := min(off+chunk, len(data))
		if _, err := st.WriteAt(data[off:end], int64(off)); err != nil {
			return "", err
		}
	}
	return st.Publish(t.Context(), int64(len(data)))
}

// testReadAtDuringWriteAt exercises the one concurrency the Staging
// contract allows: ReadAt of written ranges while WriteAt fills others.
func testReadAtDuringWriteAt(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	head := pattern(9, 64*1024)
	writeAt(t, st, head, 0)
	tail := pattern(10, 256*1024)

	done := make(chan error, 1)
	go func() {
		const chunk = 8192
		for off := 0; off < len(tail); off += chunk {
			if _, err := st.WriteAt(tail[off:off+chunk], int64(len(head)+off)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	p := make([]byte, len(head))
	for range 50 {
		if n, err := st.ReadAt(p, 0); n != len(p) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt during WriteAt = %d, %v", n, err)
		}
		if !bytes.Equal(p, head) {
			t.Fatalf("ReadAt during WriteAt read %s, want %s", abbrev(p), abbrev(head))
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("WriteAt: %v", err)
	}
	wantStaged(t, st, append(bytes.Clone(head), tail...))
}

// testConcurrentWriters: several goroutines write disjoint ranges of one
// staging area at once (the connections of a segmented download), while
// another reads back ranges already written and Sync runs; every byte
// lands where it was written.
func testConcurrentWriters(t *testing.T, s ferry.BlobStore) {
	st := stage(t, s)
	const writers, chunk, chunks = 4, 64 * 1024, 8
	want := pattern(11, writers*chunk*chunks)
	errs := make(chan error, writers+1)
	written := make(chan int, writers*chunks) // offsets of chunks written
	for w := range writers {
		go func() {
			base := w * chunk * chunks
			for c := chunks - 1; c >= 0; c-- { // each writer back to front
				off := base + c*chunk
				if _, err := st.WriteAt(want[off:off+chunk], int64(off)); err != nil {
					errs <- err
					return
				}
				written <- off
			}
			errs <- nil
		}()
	}
	go func() {
		p := make([]byte, chunk)
		for range writers * chunks {
			off := <-written
			if n, err := st.ReadAt(p, int64(off)); n != chunk || (err != nil && err != io.EOF) {
				errs <- fmt.Errorf("ReadAt(%d) during writes = %d, %v", off, n, err)
				return
			}
			if !bytes.Equal(p, want[off:off+chunk]) {
				errs <- fmt.Errorf("ReadAt(%d) during writes read other bytes", off)
				return
			}
			if off%(2*chunk) == 0 {
				if err := st.Sync(); err != nil {
					errs <- fmt.Errorf("Sync during writes: %w", err)
					return
				}
			}
		}
		errs <- nil
	}()
	for range writers + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	wantStaged(t, st, want)
}

// testReleaseTakeover is a download as the jobs package runs it on a store
// shared by nodes: sequential writes with checkpoints (Release, then
// Sync), an abandoned handle (its node died) whose unsynced bytes are
// lost, and a second handle that continues from the last checkpoint. The
// file spans several S3 parts of the 5 MiB minimum.
func testReleaseTakeover(t *testing.T, s ferry.BlobStore) {
	const mib = 1 << 20
	data := pattern(11, 13*mib+12345)
	st, err := s.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	id := st.ID()
	var checkpoint int64
	off := 0
	for ; off < 7*mib+500000; off += mib / 2 {
		writeAt(t, st, data[off:off+mib/2], int64(off))
		if (off+mib/2)%(3*mib/2) == 0 {
			checkpoint = int64(off + mib/2)
			if err := st.Release(checkpoint); err != nil {
				t.Fatalf("Release(%d): %v", checkpoint, err)
			}
			if err := st.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		}
	}
	// The head stays readable whatever was released.
	head := make([]byte, 512)
	if _, err := st.ReadAt(head, 0); err != nil {
		t.Fatalf("ReadAt of the head after Release: %v", err)
	}
	if !bytes.Equal(head, data[:512]) {
		t.Errorf("head after Release = %s, want %s", abbrev(head), abbrev(data[:512]))
	}
	// The node dies: the handle is closed without a last Sync.
	st.Close()

	re, err := s.OpenStaging(t.Context(), id)
	if err != nil {
		t.Fatalf("OpenStaging after takeover: %v", err)
	}
	defer re.Close()
	if size, err := re.Size(); err != nil || size < checkpoint {
		t.Fatalf("Size after takeover = %d, %v; want at least the checkpoint %d", size, err, checkpoint)
	}
	if _, err := re.ReadAt(head, 0); err != nil || !bytes.Equal(head, data[:512]) {
		t.Errorf("head after takeover = %s, %v; want %s", abbrev(head), err, abbrev(data[:512]))
	}
	for off := checkpoint; off < int64(len(data)); off += mib {
		end := min(off+mib, int64(len(data)))
		writeAt(t, re, data[off:end], off)
		if err := re.Release(end); err != nil {
			t.Fatal(err)
		}
		if err := re.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	wantBlob(t, s, publish(t, re, int64(len(data))), data)
	if got := ids(listStaging(t, s)); len(got) != 0 {
		t.Errorf("ListStaging after Publish = %q, want nothing", got)
	}
}

// testReleaseOutOfOrder writes the second half of a file first, as a
// segmented download does, reads it back (for hashing in file order)
// before the first half is released, and releases in steps.
func testReleaseOutOfOrder(t *testing.T, s ferry.BlobStore) {
	const mib = 1 << 20
	data := pattern(12, 11*mib+7)
	st := stage(t, s)
	half := int64(6 * mib)
	writeAt(t, st, data[half:], half)
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	writeAt(t, st, data[:half], 0)
	if err := st.Release(half); err != nil {
		t.Fatal(err)
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	// Bytes past the released point are still readable.
	tail := make([]byte, len(data)-int(half))
	if n, err := st.ReadAt(tail, half); n != len(tail) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt(%d) past the released bytes = %d, %v", half, n, err)
	}
	if !bytes.Equal(tail, data[half:]) {
		t.Errorf("ReadAt past the released bytes = %s, want %s", abbrev(tail), abbrev(data[half:]))
	}
	wantSize(t, st, int64(len(data)))
	if err := st.Release(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := st.Release(half); err != nil { // never lowers
		t.Fatal(err)
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	wantBlob(t, s, publish(t, st, int64(len(data))), data)
}

// testHandlesOnDisjointRanges is an upload session whose fragments (320
// KiB multiples, out of order) arrive through separate handles, as on
// several nodes: each opens the area, writes, syncs and closes; the last
// one publishes.
func testHandlesOnDisjointRanges(t *testing.T, s ferry.BlobStore) {
	const frag = 320 << 10
	data := pattern(13, 20*frag+999)
	first := stage(t, s)
	id := first.ID()
	first.Close()
	var order []int
	for i := 0; i*frag < len(data); i++ {
		order = append(order, i)
	}
	// Odd fragments first, then even ones backwards.
	slices.SortStableFunc(order, func(a, b int) int {
		if a%2 != b%2 {
			return b%2 - a%2
		}
		if a%2 == 0 {
			return b - a
		}
		return a - b
	})
	for _, i := range order {
		h, err := s.OpenStaging(t.Context(), id)
		if err != nil {
			t.Fatalf("OpenStaging for fragment %d: %v", i, err)
		}
		off := i * frag
		end := min(off+frag, len(data))
		writeAt(t, h, data[off:end], int64(off))
		if err := h.Sync(); err != nil {
			t.Fatalf("Sync of fragment %d: %v", i, err)
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.OpenStaging(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	wantSize(t, h, int64(len(data)))
	wantStaged(t, h, data)
	wantBlob(t, s, publish(t, h, int64(len(data))), data)
}
