package jobs_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/jobs"
)

func TestEnqueue(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		j := h.enqueue("http://127.0.0.1:1/x", "x.bin")
		if !strings.HasPrefix(j.ID, "mon_") || len(j.ID) < 4+26 {
			t.Errorf("ID = %q, want mon_ and at least 128 bits", j.ID)
		}
		got, err := h.q.Job(t.Context(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != ferry.StatusNotStarted || got.Total != -1 || got.Bytes != 0 || got.Operation != ferry.OpDownloadURL {
			t.Errorf("queued job = %s, %d/%d, %s; want notStarted, 0/-1, DownloadUrl", got.Status, got.Bytes, got.Total, got.Operation)
		}
		bad := &ferry.Job{UserID: h.user.ID, DriveID: h.drive.ID, ParentID: h.drive.RootID, SourceURL: "file:///etc/passwd"}
		if err := h.q.Enqueue(t.Context(), bad); ferry.KindOf(err) != ferry.Invalid || bad.ID != "" {
			t.Errorf("Enqueue(file URL) = %v (ID %q), want Invalid and no job", err, bad.ID)
		}
		// A forbidden IP literal is refused when the request arrives.
		for _, u := range []string{"http://169.254.169.254/latest", "http://127.0.0.2/x", "http://[::1]/x", "http://8.8.8.8:25/x"} {
			bad := &ferry.Job{UserID: h.user.ID, DriveID: h.drive.ID, ParentID: h.drive.RootID, SourceURL: u}
			err := h.q.Enqueue(t.Context(), bad)
			if ferry.KindOf(err) != ferry.Invalid || ferry.CodeOf(err) != "addressRefused" || bad.ID != "" {
				t.Errorf("Enqueue(%s) = %v (code %q, ID %q), want Invalid addressRefused and no job", u, err, ferry.CodeOf(err), bad.ID)
			}
		}
		if _, err := h.q.Job(t.Context(), "mon_NOSUCHJOB"); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("Job(unknown) = %v, want NotFound", err)
		}
		if _, err := h.q.Cancel(t.Context(), "mon_NOSUCHJOB"); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("Cancel(unknown) = %v, want NotFound", err)
		}
	})
}

func TestNames(t *testing.T) {
	data := randomBytes(10_000, 3)
	for _, tt := range []struct {
		name     string
		path     string
		header   map[string]string
		jobName  string
		wantName string // "" means generated
		wantMIME string
	}{
		{name: "requested name wins", path: "/a/b.txt", jobName: "mine.dat",
			header:   map[string]string{"Content-Disposition": `attachment; filename="theirs.txt"`},
			wantName: "mine.dat", wantMIME: "application/octet-stream"},
		{name: "Content-Disposition filename*", path: "/a/b.txt",
			header:   map[string]string{"Content-Disposition": `attachment; filename="fallback.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`},
			wantName: "résumé.pdf", wantMIME: "application/pdf"},
		{name: "last URL segment, unescaped", path: "/dir/some%20file%231.txt",
			wantName: "some file#1.txt", wantMIME: "text/plain"},
		{name: "reserved characters replaced", path: "/dir/a%3Ab%2Ac.bin",
			wantName: "a_b_c.bin", wantMIME: "application/octet-stream"},
		{name: "no segment: generated", path: "/", wantName: "", wantMIME: "application/octet-stream"},
		{name: "Content-Type without parameters", path: "/page",
			header:   map[string]string{"Content-Type": "text/html; charset=utf-8"},
			wantName: "page", wantMIME: "text/html"},
		{name: "octet-stream: sniffed", path: "/img",
			header:   map[string]string{"Content-Type": "application/octet-stream"},
			wantName: "img", wantMIME: "image/png"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, testConfig(t))
			body := data
			if tt.wantMIME == "image/png" {
				body = append([]byte("\x89PNG\r\n\x1a\n"), data...)
			}
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.Write(body)
			})
			h.run()
			j := h.waitFinal(h.enqueue(o.url(tt.path), tt.jobName).ID)
			want := tt.wantName
			if want == "" && j.Status == ferry.StatusCompleted {
				it, err := h.store.Item(t.Context(), j.ResourceID)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := time.Parse("download-2006-01-02-150405", it.Name); err != nil {
					t.Errorf("generated name %q is not download-<date>", it.Name)
				}
				want = it.Name
			}
			it := h.wantCompleted(j, body, want)
			if it.MimeType != tt.wantMIME {
				t.Errorf("mimeType = %q, want %q", it.MimeType, tt.wantMIME)
			}
		})
	}
}

func TestConflictAtCommit(t *testing.T) {
	data := randomBytes(100_000, 4)
	for _, tt := range []struct {
		behavior ferry.ConflictBehavior
		wantCode ferry.JobErrorCode // "" means completed
		wantName string
	}{
		{ferry.ConflictFail, "nameAlreadyExists", ""},
		{ferry.ConflictRename, "", "x 1.bin"},
	} {
		t.Run(string(tt.behavior), func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				h := newHarness(t, dsn, testQuota, testConfig(t))
				o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
					// The name is taken while the download runs.
					_, _, err := h.store.CreateItem(r.Context(), ferry.NewItem{
						DriveID: h.drive.ID, ParentID: h.drive.RootID, Name: "X.BIN", Folder: true,
					}, ferry.ConflictFail)
					if err != nil {
						t.Errorf("create the rival folder: %v", err)
					}
					serveFile(w, r, data)
				})
				h.run()
				j := h.waitFinal(h.enqueue(o.url("/f"), "x.bin", func(j *ferry.Job) { j.Conflict = tt.behavior }).ID)
				if tt.wantCode != "" {
					h.wantFailed(j, tt.wantCode, o)
					return
				}
				h.wantCompleted(j, data, tt.wantName)
			})
		})
	}
}

func TestCancelQueued(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, []byte("x")) })
		j := h.enqueue(o.url("/f"), "x.bin")
		got, err := h.q.Cancel(t.Context(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != ferry.StatusCancelled || got.Finished.IsZero() {
			t.Fatalf("Cancel of a queued job: %s, finished %v; want cancelled at once", got.Status, got.Finished)
		}
		if _, err := h.q.Cancel(t.Context(), j.ID); ferry.KindOf(err) != ferry.Conflict {
			t.Errorf("second Cancel = %v, want Conflict", err)
		}
		// River still holds the job's work; running it must not bring the
		// job back.
		h.run()
		waitRiverDone(t, h)
		if got := o.requests.Load(); got != 0 {
			t.Errorf("origin saw %d requests for a cancelled job", got)
		}
		got, err = h.q.Job(t.Context(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != ferry.StatusCancelled {
			t.Errorf("status = %s after River ran, want cancelled", got.Status)
		}
		h.wantNoFiles()
		h.wantNoStaging()
	})
}

// waitRiverDone waits until River has no job left to run.
func waitRiverDone(t *testing.T, h *harness) {
	t.Helper()
	for range 6000 {
		var n int
		err := h.store.DB().QueryRowContext(t.Context(),
			`SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'cancelled', 'discarded')`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("River jobs never finished")
}

func TestCancelRunning(t *testing.T) {
	data := randomBytes(1<<20, 5)
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		h := newHarness(t, dsn, testQuota, cfg)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			serveDrip(w, r, data, 300<<10)
		})
		h.run()
		j := h.enqueue(o.url("/f"), "x.bin")
		h.wait(j.ID, "running with bytes", func(j *ferry.Job) bool { return j.Status == ferry.StatusInProgress && j.Bytes > 0 })
		got, err := h.q.Cancel(t.Context(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != ferry.StatusCancelPending && got.Status != ferry.StatusCancelled {
			t.Errorf("Cancel of a running job: %s, want cancelPending", got.Status)
		}
		final := h.waitFinal(j.ID)
		if final.Status != ferry.StatusCancelled {
			t.Fatalf("status = %s (%s), want cancelled", final.Status, final.ErrorCode)
		}
		h.wantNoStaging()
		h.wantNoFiles()
		if got := o.requests.Load(); got != 1 {
			t.Errorf("origin saw %d requests, want 1", got)
		}
	})
}

func TestPerUserLimit(t *testing.T) {
	data := randomBytes(64<<10, 6)
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.Workers = 4
		cfg.PerUserRunning = 2
		h := newHarness(t, dsn, testQuota, cfg)
		var o *origin
		o = newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			now := o.active.Add(1)
			for {
				p := o.peak.Load()
				if now <= p || o.peak.CompareAndSwap(p, now) {
					break
				}
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
			// The request stops counting before its last byte: the job
			// cannot finish, and free its slot, before that.
			o.active.Add(-1)
			w.Write(data[len(data)/2:])
		})
		h.run()
		var ids []string
		for i := range 5 {
			ids = append(ids, h.enqueue(o.url("/f"), "x"+strconv.Itoa(i)+".bin").ID)
		}
		var finals []*ferry.Job
		for _, id := range ids {
			finals = append(finals, h.waitFinal(id))
		}
		for i, j := range finals {
			h.wantCompleted(j, data, "x"+strconv.Itoa(i)+".bin")
		}
		if p := o.peak.Load(); p > 2 || p < 1 {
			t.Errorf("peak concurrent downloads = %d, want at most 2", p)
		}
		if got := o.requests.Load(); got != 5 {
			t.Errorf("origin saw %d requests, want 5", got)
		}
	})
}

func TestBurstAccepted(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t)) // default Rate and Burst
		for i := range 500 {
			j := &ferry.Job{UserID: h.user.ID, UserName: h.user.Name, DriveID: h.drive.ID, ParentID: h.drive.RootID,
				Name: "f" + strconv.Itoa(i), SourceURL: "http://127.0.0.1:1/f"}
			if err := h.q.Enqueue(t.Context(), j); err != nil {
				t.Fatalf("job %d of a burst of 500: %v", i, err)
			}
		}
		var n int
		if err := h.store.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM river_job`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 500 {
			t.Errorf("River holds %d jobs, want 500", n)
		}
	})
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, func() jobs.Config {
		c := testConfig(t)
		c.Rate = rate.Every(10 * time.Second)
		c.Burst = 3
		return c
	}())
	for range 3 {
		h.enqueue("http://127.0.0.1:1/f", "")
	}
	j := &ferry.Job{UserID: h.user.ID, DriveID: h.drive.ID, ParentID: h.drive.RootID, SourceURL: "http://127.0.0.1:1/f"}
	err := h.q.Enqueue(t.Context(), j)
	var fe *ferry.Error
	if ferry.KindOf(err) != ferry.Throttled || !errors.As(err, &fe) || fe.RetryAfter < 1 || fe.RetryAfter > 10 {
		t.Fatalf("4th job = %v, want Throttled with Retry-After in [1, 10]", err)
	}
	if j.ID != "" {
		t.Errorf("a refused job got ID %q", j.ID)
	}
	// Another user has a bucket of its own.
	bob, _, err := h.store.EnsureUser(t.Context(), "bob", testQuota)
	if err != nil {
		t.Fatal(err)
	}
	drive, err := h.store.DriveOf(t.Context(), bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.q.Enqueue(t.Context(), &ferry.Job{UserID: bob.ID, DriveID: drive.ID, ParentID: drive.RootID,
		SourceURL: "http://127.0.0.1:1/f"}); err != nil {
		t.Errorf("another user's job: %v", err)
	}
}

// TestRateLimitAcrossNodes: two queues on one database (two nodes) share
// each user's bucket: what one node took, the other cannot take again.
func TestRateLimitAcrossNodes(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.Rate = rate.Every(10 * time.Second)
		cfg.Burst = 3
		h := newHarness(t, dsn, testQuota, cfg)
		a := h.q
		cfg.NodeID = "node-b"
		h.reopen(cfg)
		b := h.q
		for i, q := range []*jobs.Queue{a, b, a} {
			h.q = q
			if j := h.enqueue("http://127.0.0.1:1/f", ""); j.ID == "" {
				t.Fatalf("job %d has no ID", i+1)
			}
		}
		for name, q := range map[string]*jobs.Queue{"a": a, "b": b} {
			err := q.Enqueue(t.Context(), &ferry.Job{UserID: h.user.ID, DriveID: h.drive.ID, ParentID: h.drive.RootID,
				SourceURL: "http://127.0.0.1:1/f"})
			var fe *ferry.Error
			if !errors.As(err, &fe) || fe.Kind != ferry.Throttled || fe.RetryAfter < 1 {
				t.Errorf("4th job on node %s = %v, want Throttled with Retry-After", name, err)
			}
		}
	})
}

func TestRetention(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.Retention = 100 * time.Millisecond
		cfg.SweepEvery = 20 * time.Millisecond
		h := newHarness(t, dsn, testQuota, cfg)
		j := h.enqueue("http://127.0.0.1:1/f", "x.bin")
		if _, err := h.q.Cancel(t.Context(), j.ID); err != nil {
			t.Fatal(err)
		}
		// The monitor disappears after the retention period…
		waitNotFound(t, func() error { _, err := h.q.Job(t.Context(), j.ID); return err })
		// … and the sweep deletes its row.
		h.run()
		waitNotFound(t, func() error { _, err := h.store.Job(t.Context(), j.ID); return err })
	})
}

func waitNotFound(t *testing.T, get func() error) {
	t.Helper()
	for range 3000 {
		err := get()
		if ferry.KindOf(err) == ferry.NotFound {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("never NotFound")
}

// TestRestart stops the queue mid-download, as SIGTERM does, and starts a
// new one on the same database and blobs: the job resumes from its
// checkpoint and fetches only the rest.
func TestRestart(t *testing.T) {
	testRestart(t, false)
}

// TestCrashResume leaves River's job `running`, as kill -9 does, before
// the new queue starts: the node must take its own job back at once
// instead of waiting for River's stuck-job rescue (hours).
func TestCrashResume(t *testing.T) {
	testRestart(t, true)
}

func testRestart(t *testing.T, crash bool) {
	data := randomBytes(4<<20, 7)
	half := len(data) / 2
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		h := newHarness(t, dsn, testQuota, cfg)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				serveDrip(w, r, data, half)
				return
			}
			serveFile(w, r, data)
		})
		h.run()
		j := h.enqueue(o.url("/big.iso"), "")
		h.wait(j.ID, "half fetched", func(j *ferry.Job) bool { return j.Bytes >= int64(half)-(256<<10) })
		h.stop()

		got, err := h.q.Job(t.Context(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != ferry.StatusWaiting {
			t.Fatalf("after a stop the job is %s, want waiting", got.Status)
		}
		if crash {
			// What kill -9 leaves: River's row running on this node, the
			// monitor inProgress.
			if _, err := h.store.DB().ExecContext(t.Context(), `UPDATE river_job SET state = 'running'`); err != nil {
				t.Fatal(err)
			}
			if ok, err := h.store.SetJobStatus(t.Context(), j.ID, ferry.StatusInProgress, ferry.StatusWaiting); !ok || err != nil {
				t.Fatalf("SetJobStatus = %v, %v", ok, err)
			}
		}

		h.fetch.Close()
		h.fetch = newFetch()
		h.reopen(cfg)
		h.run()
		sent := int(o.served.Load()) // by the first request
		h.wantCompleted(h.waitFinal(j.ID), data, "big.iso")
		wantResumed(t, o, data, sent)
	})
}

// TestOrphanSweep checks that Run removes staging areas no job refers to
// and blob files no item knows, once they are old enough.
func TestOrphanSweep(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.StagingGrace = time.Nanosecond
		cfg.BlobGrace = time.Nanosecond
		h := newHarness(t, dsn, testQuota, cfg)
		ctx := context.Background()
		st, err := h.blobs.Stage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.WriteAt([]byte("orphan"), 0)
		st.Close()
		st, err = h.blobs.Stage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.WriteAt([]byte("unknown blob"), 0)
		if _, err := st.Publish(ctx, 12); err != nil {
			t.Fatal(err)
		}
		h.run()
		for range 3000 {
			areas, err := h.blobs.ListStaging(ctx)
			if err != nil {
				t.Fatal(err)
			}
			bl, err := h.blobs.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(areas) == 0 && len(bl) == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("orphans were never swept")
	})
}

// TestMaxDuration: a download that keeps trickling, never stalling, still
// ends, failed with code timeout, once MaxDuration has passed since its
// first attempt began, and leaves nothing staged.
func TestMaxDuration(t *testing.T) {
	data := randomBytes(1<<20, 9)
	eachDB(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t)
		cfg.MaxDuration = 400 * time.Millisecond
		h := newHarness(t, dsn, testQuota, cfg)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			serveDrip(w, r, data, 100<<10)
		})
		h.run()
		j := h.enqueue(o.url("/f"), "slow.bin")
		final := h.waitFinal(j.ID)
		if final.Status != ferry.StatusFailed || final.ErrorCode != "timeout" {
			t.Fatalf("status %s code %q, want failed with timeout", final.Status, final.ErrorCode)
		}
		if final.Bytes == 0 {
			t.Error("the drip delivered no bytes before the deadline; the test proves nothing")
		}
		h.wantNoStaging()
		h.wantNoFiles()
	})
}
