package jobs_test

import (
	"bytes"
	"compress/gzip"
	"database/sql"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/jobs"
)

// originCase is one misbehaving (or well-behaved) origin and the state
// the job must end in.
type originCase struct {
	name   string
	quota  int64              // 0: testQuota
	config func(*jobs.Config) // optional
	handle func(w http.ResponseWriter, r *http.Request, n int64)
	path   string // default /file.bin
	job    func(*ferry.Job)
	check  func(t *testing.T, h *harness, o *origin, j *ferry.Job)
}

func TestOrigins(t *testing.T) {
	data := randomBytes(4<<20, 1)
	small := randomBytes(256<<10, 2)
	half := len(data) / 2

	cases := []originCase{{
		name:   "good origin",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, data) },
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, data, "x.bin")
			if got := o.requests.Load(); got != 1 {
				t.Errorf("origin saw %d requests, want 1", got)
			}
			if j.Total != int64(len(data)) || j.Bytes != int64(len(data)) {
				t.Errorf("bytes/total = %d/%d, want %d/%d", j.Bytes, j.Total, len(data), len(data))
			}
		},
	}, {
		name: "reset mid-body resumes",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				serveCut(w, r, data, half, false)
				return
			}
			serveFile(w, r, data)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, data, "x.bin")
			wantResumed(t, o, data, half)
		},
	}, {
		name: "206 of a changed file (If-Range ignored) restarts from zero",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			serveVersions(w, r, n, data, small, `"v1"`, `"v2"`)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, small, "x.bin")
			wantRestartedWhole(t, o)
		},
	}, {
		name: "206 with another Last-Modified and no ETag restarts from zero",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			serveVersions(w, r, n, data, small, "", "")
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, small, "x.bin")
			wantRestartedWhole(t, o)
		},
	}, {
		name: "stall resumes",
		config: func(c *jobs.Config) {
			// The job waits until the test lets it go (jobs.RetryNow),
			// so that its waiting status cannot be missed.
			c.RetryBase, c.RetryMax = time.Hour, time.Hour
		},
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				serveCut(w, r, data, half, true)
				return
			}
			serveFile(w, r, data)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, data, "x.bin")
			wantResumed(t, o, data, half)
		},
	}, {
		name: "stall forever fails after MaxStalls",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			cut := 0
			if n == 1 {
				cut = 1000
			}
			serveCut(w, r, small, cut, true)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "generalException", o)
			// One attempt that added bytes, then MaxStalls that did not.
			if got, want := o.requests.Load(), int64(1+h.cfg.MaxStalls); got != want {
				t.Errorf("origin saw %d requests, want %d", got, want)
			}
		},
	}, {
		name: "short body fails after MaxStalls",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			// Always the first half only, ignoring Range.
			w.Header().Set("Content-Length", strconv.Itoa(len(small)))
			w.WriteHeader(http.StatusOK)
			w.Write(small[:len(small)/2])
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "generalException", o)
			if got, want := o.requests.Load(), int64(1+h.cfg.MaxStalls); got != want {
				t.Errorf("origin saw %d requests, want %d", got, want)
			}
		},
	}, {
		name: "origin ignoring Range restarts from zero",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				serveCut(w, r, data, half, false)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			w.Write(data)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, data, "x.bin")
			if got := o.requests.Load(); got != 2 {
				t.Errorf("origin saw %d requests, want 2", got)
				for i := 1; i <= int(got); i++ {
					t.Logf("request %d: Range %q If-Range %q", i, o.header(i).Get("Range"), o.header(i).Get("If-Range"))
				}
			}
			if got := rangeStart(o.header(2)); got <= 0 {
				t.Errorf("second request asked for Range start %d, want a resume", got)
			}
		},
	}, {
		name: "503 then OK",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			serveFile(w, r, small)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, small, "x.bin")
			if got := o.requests.Load(); got != 2 {
				t.Errorf("origin saw %d requests, want 2", got)
			}
		},
	}, {
		name: "404",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			http.NotFound(w, r)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "itemNotFound", o)
			if got := o.requests.Load(); got != 1 {
				t.Errorf("origin saw %d requests, want 1 (permanent)", got)
			}
		},
	}, {
		name: "410",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			http.Error(w, "gone", http.StatusGone)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "itemNotFound", o)
		},
	}, {
		name: "403",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			http.Error(w, "no", http.StatusForbidden)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "accessDenied", o)
		},
	}, {
		name: "redirect chain",
		path: "/r/3",
		job:  func(j *ferry.Job) { j.Name = "" },
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			switch r.URL.Path {
			case "/r/3":
				http.Redirect(w, r, "/r/2", http.StatusFound)
			case "/r/2":
				http.Redirect(w, r, "/r/1", http.StatusMovedPermanently)
			case "/r/1":
				http.Redirect(w, r, "/files/final%20name.iso", http.StatusTemporaryRedirect)
			default:
				serveFile(w, r, small)
			}
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			// The name comes from the final URL, unescaped.
			h.wantCompleted(j, small, "final name.iso")
		},
	}, {
		name: "redirect loop",
		path: "/loop",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			http.Redirect(w, r, "/loop", http.StatusFound)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "invalidRequest", o)
		},
	}, {
		name: "slow drip",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			w.Header().Set("Content-Length", strconv.Itoa(len(small)/8))
			for p := small[:len(small)/8]; len(p) > 0; p = p[min(1024, len(p)):] {
				w.Write(p[:min(1024, len(p))])
				w.(http.Flusher).Flush()
				time.Sleep(5 * time.Millisecond)
			}
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, small[:len(small)/8], "x.bin")
			if got := o.requests.Load(); got != 1 {
				t.Errorf("origin saw %d requests, want 1", got)
			}
		},
	}, {
		name: "gzip body stored as sent",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(gzipped)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			it := h.wantCompleted(j, gzipped, "x.bin")
			if it.MimeType != "text/plain" {
				t.Errorf("mimeType = %q, want text/plain", it.MimeType)
			}
			if got := o.header(1).Get("Accept-Encoding"); got != "identity" {
				t.Errorf("Accept-Encoding = %q, want identity", got)
			}
		},
	}, {
		name: "no Content-Length",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			w.WriteHeader(http.StatusOK)
			for p := data; len(p) > 0; p = p[min(256<<10, len(p)):] {
				w.Write(p[:min(256<<10, len(p))])
				w.(http.Flusher).Flush()
			}
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, data, "x.bin")
		},
	}, {
		name:  "Content-Length over quota",
		quota: 1 << 20,
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			serveFile(w, r, data)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "quotaLimitReached", o)
			if got := o.requests.Load(); got != 1 {
				t.Errorf("origin saw %d requests, want 1", got)
			}
		},
	}, {
		name:  "no length, over quota while streaming",
		quota: 1 << 20,
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			w.WriteHeader(http.StatusOK)
			for p := data; len(p) > 0; p = p[min(64<<10, len(p)):] {
				if _, err := w.Write(p[:min(64<<10, len(p))]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "quotaLimitReached", o)
			if got := o.requests.Load(); got != 1 {
				t.Errorf("origin saw %d requests, want 1", got)
			}
		},
	}, {
		name:   "no length, over MaxFileSize while streaming",
		config: func(c *jobs.Config) { c.MaxFileSize = 1 << 20 },
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			w.WriteHeader(http.StatusOK)
			for p := data; len(p) > 0; p = p[min(64<<10, len(p)):] {
				if _, err := w.Write(p[:min(64<<10, len(p))]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "maxFileSizeExceeded", o)
		},
	}, {
		name:   "Content-Length over MaxFileSize",
		config: func(c *jobs.Config) { c.MaxFileSize = 1 << 20 },
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			serveFile(w, r, data)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "maxFileSizeExceeded", o)
		},
	}, {
		name: "expected SHA-256 mismatch",
		job:  func(j *ferry.Job) { j.ExpectSHA256 = sha256Hex(data) },
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			serveFile(w, r, small)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantFailed(j, "hashMismatch", o)
		},
	}, {
		name: "expected SHA-256 matches",
		job:  func(j *ferry.Job) { j.ExpectSHA256 = strings.ToLower(sha256Hex(small)) },
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			serveFile(w, r, small)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, small, "x.bin")
		},
	}, {
		name: "empty file",
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			serveFile(w, r, nil)
		},
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			h.wantCompleted(j, nil, "x.bin")
		},
	}}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				cfg := testConfig(t)
				if c.config != nil {
					c.config(&cfg)
				}
				quota := c.quota
				if quota == 0 {
					quota = testQuota
				}
				h := newHarness(t, dsn, quota, cfg)
				o := newOrigin(t, c.handle)
				h.run()
				path := c.path
				if path == "" {
					path = "/file.bin"
				}
				j := h.enqueue(o.url(path), "x.bin", func(j *ferry.Job) {
					if c.job != nil {
						c.job(j)
					}
				})
				if c.name == "stall resumes" {
					w := h.wait(j.ID, "waiting", func(j *ferry.Job) bool { return j.Status == ferry.StatusWaiting })
					if got := o.requests.Load(); got != 1 {
						t.Errorf("origin saw %d requests while the job waits, want 1", got)
					}
					// The monitor of a waiting job shows the bytes staged:
					// all that arrived before the stall.
					if w.Bytes != int64(half) {
						t.Errorf("waiting job shows %d bytes, want %d", w.Bytes, half)
					}
					retryNow(t, h)
				}
				c.check(t, h, o, h.waitFinal(j.ID))
			})
		})
	}
}

// wantResumed checks that request 2 resumed near cut with If-Range, and
// that little more than the file was served in all.
func wantResumed(t *testing.T, o *origin, data []byte, cut int) {
	t.Helper()
	if got := o.requests.Load(); got != 2 {
		t.Errorf("origin saw %d requests, want 2", got)
	}
	hd := o.header(2)
	start := rangeStart(hd)
	if start <= 0 || start > int64(cut) {
		t.Errorf("resumed at %d, want in (0, %d]", start, cut)
	}
	if got := hd.Get("If-Range"); got != `"v1"` {
		t.Errorf("If-Range = %q, want the ETag", got)
	}
	// The first request served cut bytes; the second len-start. What was
	// fetched twice is cut-start: less than one copy buffer.
	if refetched := o.served.Load() - int64(len(data)); refetched > 1<<20 {
		t.Errorf("refetched %d bytes, want at most 1 MiB", refetched)
	}
}

var gzipped = func() []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(bytes.Repeat([]byte("Ferry stores the bytes the origin sends.\n"), 2000))
	zw.Close()
	return b.Bytes()
}()

// serveVersions is an origin whose file changes after the first request
// broke off, and which ignores If-Range: the resumed request gets a 206 of
// the new version (new validator), the one after that the whole new file.
// With empty ETags only Last-Modified tells the versions apart.
func serveVersions(w http.ResponseWriter, r *http.Request, n int64, v1, v2 []byte, etag1, etag2 string) {
	lm := modTime
	if n == 1 {
		if etag1 != "" {
			w.Header().Set("ETag", etag1)
		}
		w.Header().Set("Last-Modified", lm.Format(http.TimeFormat))
		w.Header().Set("Content-Length", strconv.Itoa(len(v1)))
		w.WriteHeader(http.StatusOK)
		w.Write(v1[:len(v2)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	if etag2 != "" {
		w.Header().Set("ETag", etag2)
	}
	r.Header.Del("If-Range") // the misbehaviour: serve the range whatever the validator
	http.ServeContent(w, r, "", lm.Add(time.Hour), bytes.NewReader(v2))
}

// wantRestartedWhole checks that after the resumed request, the origin was
// asked for the whole file again.
func wantRestartedWhole(t *testing.T, o *origin) {
	t.Helper()
	if got := o.requests.Load(); got != 3 {
		t.Fatalf("origin saw %d requests, want 3 (first, resumed, whole again)", got)
	}
	if rg := o.header(2).Get("Range"); rg == "" {
		t.Errorf("the second request did not resume (no Range)")
	}
	if rg := o.header(3).Get("Range"); rg != "" && rg != "bytes=0-" {
		t.Errorf("the third request asked for %q, want the whole file", rg)
	}
}

// TestImportCountsHeldRoom: an import's early quota check counts the room
// a copy under way holds, as its commit would: a file that fits only in
// that room fails when its size is known, not after its bytes came.
func TestImportCountsHeldRoom(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn, testQuota, testConfig(t))
		h.store.SetTreeBatch(2)
		ctx := t.Context()
		dir, err := h.store.Item(ctx, h.stepTree(h.drive.RootID).ID)
		if err != nil {
			t.Fatal(err)
		}
		cp := &ferry.Job{ID: ferry.NewID("mon_", 16), Operation: ferry.OpCopy, UserID: h.user.ID, UserName: h.user.Name, DriveID: h.drive.ID,
			ParentID: h.drive.RootID, Name: "copy", Conflict: ferry.ConflictFail, SourceItem: dir.ID}
		if err := h.store.InsertJob(ctx, cp, 0, 0, func(*sql.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if ok, err := h.store.StartClaimJob(ctx, cp.ID, 0, "r1"); !ok || err != nil {
			t.Fatalf("StartClaimJob = %v, %v", ok, err)
		}
		if it, _, err := h.store.AdvanceJobCopy(ctx, cp.ID, "r1", "copied"); it != nil || err != nil {
			t.Fatalf("AdvanceJobCopy = %+v, %v; want a copy under way", it, err)
		}
		// The copy holds dir's size; 1000 bytes are left beside it.
		if err := h.store.SetQuota(ctx, h.user.ID, h.used()+dir.Size+1000); err != nil {
			t.Fatal(err)
		}
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, randomBytes(1500, 7)) })
		h.run()
		j := h.waitFinal(h.enqueue(o.url("/x.bin"), "x.bin").ID)
		if j.Status != ferry.StatusFailed || j.ErrorCode != "quotaLimitReached" || !strings.Contains(j.ErrorMessage, "(1000 bytes)") {
			t.Errorf("import = %s (%q: %s); want failed with quotaLimitReached, 1000 bytes left", j.Status, j.ErrorCode, j.ErrorMessage)
		}
	})
}
