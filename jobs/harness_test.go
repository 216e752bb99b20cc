package jobs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
	"github.com/ferrydrive/ferry/blob/fsblob"
	"github.com/ferrydrive/ferry/ferrytest"
	"github.com/ferrydrive/ferry/fetch"
	"github.com/ferrydrive/ferry/jobs"
	"github.com/ferrydrive/ferry/sqlstore"
)

// eachDB runs f on a fresh SQLite database and, when FERRY_TEST_POSTGRES
// is set, on a fresh PostgreSQL database. The two run one after the other:
// every harness checks for leaked goroutines, which needs a quiet process.
func eachDB(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, filepath.Join(t.TempDir(), "ferry.db")) })
	t.Run("postgres", func(t *testing.T) { f(t, ferrytest.PostgresDSN(t)) })
}

// harness is one queue on one database and blob directory, with a user.
type harness struct {
	t     *testing.T
	dsn   string
	store *sqlstore.Store
	blobs *fsblob.Store
	fetch *fetch.Client
	user  *ferry.User
	drive *ferry.Drive
	cfg   jobs.Config
	q     *jobs.Queue

	stop func() // ends Run and waits for it; nil when not running
}

const testQuota = 1 << 30

// testConfig keeps every delay short so that the suite runs in seconds.
func testConfig(t *testing.T) jobs.Config {
	return jobs.Config{
		Workers:         4,
		PerUserRunning:  4,
		MaxStalls:       3,
		NodeID:          "test-node",
		Log:             testLogger(t),
		RetryBase:       20 * time.Millisecond,
		RetryMax:        200 * time.Millisecond,
		Snooze:          30 * time.Millisecond,
		ProgressEvery:   30 * time.Millisecond,
		CheckpointEvery: 200 * time.Millisecond,
		CheckpointBytes: 1 << 20,
		// Every origin counts as fast: one connection, whatever the
		// machine's load (segments_test.go turns segments on).
		FastStream: 1,
		// On SQLite River's client is parked whenever the queue has had
		// nothing to do for this long, and started again for the next
		// job: every test runs through parking many times.
		ParkAfter: 40 * time.Millisecond,
	}
}

// newHarness opens the store and blob directory and builds a queue, not
// yet running. quota is the user's drive quota.
func newHarness(t *testing.T, dsn string, quota int64, cfg jobs.Config) *harness {
	t.Helper()
	ctx := t.Context()
	store, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := fsblob.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	user, _, err := store.EnsureUser(ctx, "alice", quota)
	if err != nil {
		t.Fatal(err)
	}
	drive, err := store.DriveOf(ctx, user.ID)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dsn: dsn, store: store, blobs: blobs, user: user, drive: drive, cfg: cfg}
	h.fetch = newFetch()
	t.Cleanup(func() { h.fetch.Close() })
	h.q, err = jobs.New(ctx, cfg, store, blobs, h.fetch)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newFetch() *fetch.Client {
	return fetch.New(fetch.Options{
		Allow:          []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ConnectTimeout: 5 * time.Second,
		HeaderTimeout:  5 * time.Second,
		IdleTimeout:    300 * time.Millisecond,
		MaxRedirects:   5,
	})
}

// reopen builds a second queue on the same database and blobs, as a
// restarted process would.
func (h *harness) reopen(cfg jobs.Config) {
	h.t.Helper()
	var err error
	h.q, err = jobs.New(h.t.Context(), cfg, h.store, h.blobs, h.fetch)
	if err != nil {
		h.t.Fatal(err)
	}
}

// run starts the queue's Run. Cleanup stops it and checks that no
// goroutine of River, jobs, fetch or blob outlives it.
func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	q := h.q
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Run returned %v, want nil", err)
			}
		})
	}
	h.stop = stop
	fc := h.fetch
	h.t.Cleanup(func() {
		stop()
		fc.Close()
		checkNoLeaks(h.t)
	})
}

// checkNoLeaks fails if goroutines of the queue's packages are still alive
// once they have had a moment to wind down.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	var leaked []string
	for range 200 {
		leaked = leaked[:0]
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "github.com/riverqueue/river") ||
				strings.Contains(g, "github.com/ferrydrive/ferry/jobs.") ||
				strings.Contains(g, "github.com/ferrydrive/ferry/fetch.") ||
				strings.Contains(g, "github.com/ferrydrive/ferry/blob.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines leaked after Run returned; first:\n%s", len(leaked), leaked[0])
}

// enqueue queues a download of url into the drive's root.
func (h *harness) enqueue(url, name string, opts ...func(*ferry.Job)) *ferry.Job {
	h.t.Helper()
	j := &ferry.Job{
		Operation: ferry.OpDownloadURL,
		UserID:    h.user.ID,
		UserName:  h.user.Name,
		DriveID:   h.drive.ID,
		ParentID:  h.drive.RootID,
		Name:      name,
		Conflict:  ferry.ConflictFail,
		SourceURL: url,
	}
	for _, o := range opts {
		o(j)
	}
	if err := h.q.Enqueue(h.t.Context(), j); err != nil {
		h.t.Fatalf("Enqueue: %v", err)
	}
	return j
}

// wait polls the job until cond holds. The deadline only keeps a broken
// queue from hanging the suite; no assertion depends on timing.
func (h *harness) wait(id string, what string, cond func(*ferry.Job) bool) *ferry.Job {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last *ferry.Job
	for time.Now().Before(deadline) {
		j, err := h.q.Job(h.t.Context(), id)
		if err != nil {
			h.t.Fatalf("Job(%s): %v", id, err)
		}
		if cond(j) {
			return j
		}
		last = j
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("job %s never became %s; last: %+v", id, what, last)
	return nil
}

func (h *harness) waitFinal(id string) *ferry.Job {
	h.t.Helper()
	return h.wait(id, "final", func(j *ferry.Job) bool { return j.Status.Final() })
}

// wantCompleted checks a completed job: its item has the bytes, the name
// and the hashes of data, and no staging area is left.
func (h *harness) wantCompleted(j *ferry.Job, data []byte, name string) *ferry.Item {
	h.t.Helper()
	if j.Status != ferry.StatusCompleted || j.ResourceID == "" {
		h.t.Fatalf("job = %s (%s: %s), resource %q; want completed with a resource", j.Status, j.ErrorCode, j.ErrorMessage, j.ResourceID)
	}
	if j.Percentage() != 100 {
		h.t.Errorf("percentage = %v, want 100", j.Percentage())
	}
	it, err := h.store.Item(h.t.Context(), j.ResourceID)
	if err != nil {
		h.t.Fatal(err)
	}
	if it.Name != name {
		h.t.Errorf("item name = %q, want %q", it.Name, name)
	}
	if it.Size != int64(len(data)) {
		h.t.Errorf("item size = %d, want %d", it.Size, len(data))
	}
	if got, want := it.Hashes, hashes(data); got != want {
		h.t.Errorf("hashes = %+v, want %+v", got, want)
	}
	b, err := h.blobs.Open(h.t.Context(), it.BlobKey)
	if err != nil {
		h.t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		h.t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		h.t.Errorf("stored %d bytes differ from the %d sent", len(got), len(data))
	}
	h.wantNoStaging()
	return it
}

// wantFailed checks a failed job: the code, a message without the source
// URL, no item, no blob and no staging left.
func (h *harness) wantFailed(j *ferry.Job, code ferry.JobErrorCode, o *origin) {
	h.t.Helper()
	if j.Status != ferry.StatusFailed || j.ErrorCode != code {
		h.t.Fatalf("job = %s (%q: %s), want failed with %q", j.Status, j.ErrorCode, j.ErrorMessage, code)
	}
	if j.ErrorMessage == "" {
		h.t.Error("failed job has no statusDescription")
	}
	if o != nil && strings.Contains(j.ErrorMessage, o.srv.URL) {
		h.t.Errorf("message %q shows the source URL", j.ErrorMessage)
	}
	if j.ResourceID != "" {
		h.t.Errorf("failed job has resource %q", j.ResourceID)
	}
	h.wantNoFiles()
	h.wantNoStaging()
}

func (h *harness) wantNoStaging() {
	h.t.Helper()
	areas, err := h.blobs.ListStaging(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	if len(areas) != 0 {
		h.t.Errorf("%d staging areas left, want none", len(areas))
	}
}

// wantNoFiles checks that the root has no files and no blob was left.
func (h *harness) wantNoFiles() {
	h.t.Helper()
	items, _, err := h.store.Children(h.t.Context(), h.drive.RootID, ferry.ListQuery{})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, it := range items {
		if !it.Folder {
			h.t.Errorf("file %q exists, want none", it.Name)
		}
	}
	bl, err := h.blobs.List(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	if len(bl) != 0 {
		h.t.Errorf("%d blobs published, want none", len(bl))
	}
}

func hashes(data []byte) ferry.Hashes {
	hh := blob.NewHasher()
	hh.Write(data)
	return hh.Sum()
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// origin is an httptest server whose handler sees the request's number
// (1-based) and counts what it serves.
type origin struct {
	srv      *httptest.Server
	requests atomic.Int64
	served   atomic.Int64 // body bytes written
	active   atomic.Int64
	peak     atomic.Int64

	mu      sync.Mutex
	headers []http.Header // request headers, in order
}

func newOrigin(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int64)) *origin {
	o := &origin{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := o.requests.Add(1)
		o.mu.Lock()
		o.headers = append(o.headers, r.Header.Clone())
		o.mu.Unlock()
		handle(&countingWriter{ResponseWriter: w, n: &o.served}, r, n)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// header returns the headers of request n (1-based).
func (o *origin) header(n int) http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n > len(o.headers) {
		return nil
	}
	return o.headers[n-1]
}

func (o *origin) url(path string) string { return o.srv.URL + path }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (w *countingWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// serveFile answers like a good origin: ETag, Last-Modified, Range and
// If-Range.
func serveFile(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("ETag", `"v1"`)
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	http.ServeContent(w, r, "", modTime, bytes.NewReader(data))
}

// serveCut announces all of data but sends only its first cut bytes, then
// either aborts the connection (reset) or blocks until the client gives up
// (stall).
func serveCut(w http.ResponseWriter, r *http.Request, data []byte, cut int, stall bool) {
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:cut])
	w.(http.Flusher).Flush()
	if stall {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}
	panic(http.ErrAbortHandler)
}

// serveDrip announces all of data, sends its first cut bytes, then one
// byte every 20 ms until the client goes away.
func serveDrip(w http.ResponseWriter, r *http.Request, data []byte, cut int) {
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:cut])
	w.(http.Flusher).Flush()
	// Then a byte at a time, well within the idle timeout, until the
	// client leaves: the download neither ends nor stalls by itself.
	for i := cut; i < len(data); i++ {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := w.Write(data[i : i+1]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}

// rangeStart parses the start of a "bytes=N-" Range header; -1 if none.
func rangeStart(hd http.Header) int64 {
	v, ok := strings.CutPrefix(hd.Get("Range"), "bytes=")
	if !ok {
		return -1
	}
	s, _, _ := strings.Cut(v, "-")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// testLogger sends the queue's warnings and errors to the test log, and
// drops them once the test has ended.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// retryNow ends the backoff of the queue's one retrying job, waiting for
// River to record the failed attempt first.
func retryNow(t *testing.T, h *harness) {
	t.Helper()
	for range 6000 {
		n, err := jobs.RetryNow(t.Context(), h.q)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no River job became retryable")
}
