package jobs_test

import (
	"bytes"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/fetch"
	"github.com/ferrydrive/ferry/jobs"
)

// throttled wraps a ResponseWriter so that one response sends at most rate
// bytes per second: an origin that limits each connection.
type throttled struct {
	http.ResponseWriter
	rate int
}

func (w *throttled) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 16<<10)
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
		time.Sleep(time.Duration(n) * time.Second / time.Duration(w.rate))
	}
	return written, nil
}

// serveThrottled serves data with ranges, ETag etag, at rate bytes per
// second per response.
func serveThrottled(w http.ResponseWriter, r *http.Request, data []byte, etag string, rate int) {
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(&throttled{w, rate}, r, "", modTime, bytes.NewReader(data))
}

// enter counts the origin's concurrent requests (active) and the peak of
// the responses fc has open to it (the client's side: a response the
// client closed may still be running here for a moment).
func (o *origin) enter(fc *fetch.Client) func() {
	o.active.Add(1)
	n := int64(fc.HostConnections(o.srv.URL))
	for {
		p := o.peak.Load()
		if n <= p || o.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return func() { o.active.Add(-1) }
}

// segmentedConfig lets an import open up to 4 connections and cuts a
// stalled one quickly.
func segmentedConfig(t *testing.T) jobs.Config {
	cfg := testConfig(t)
	cfg.Connections = 4
	cfg.FastStream = 256 << 20
	cfg.StallAfter = 500 * time.Millisecond
	return cfg
}

// ranged reports how many requests asked for a range that does not start
// at 0: segments after the first.
func (o *origin) ranged() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, h := range o.headers {
		if rg := h.Get("Range"); rg != "" && rg != "bytes=0-" {
			n++
		}
	}
	return n
}

func TestSegmented(t *testing.T) {
	data := randomBytes(6<<20, 7)
	other := randomBytes(5<<20, 8)
	const rate = 3 << 20 // per connection

	type segCase struct {
		name   string
		handle func(o *origin, w http.ResponseWriter, r *http.Request, n int64)
		want   []byte
		check  func(t *testing.T, h *harness, o *origin, j *ferry.Job)
	}
	cases := []segCase{{
		name: "throttled per connection",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			serveThrottled(w, r, data, `"v1"`, rate)
		},
		want: data,
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			if p := o.peak.Load(); p < 2 || p > 4 {
				t.Errorf("peak connections %d, want 2..4 (Connections is 4)", p)
			}
			if got := o.served.Load(); got > int64(len(data))+int64(len(data))/10 {
				t.Errorf("origin sent %d bytes for a %d-byte file", got, len(data))
			}
		},
	}, {
		name: "206 on some requests and 200 on others",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			if n > 1 && n%3 == 0 {
				r.Header.Del("Range")
			}
			serveThrottled(w, r, data, `"v1"`, rate)
		},
		want: data,
	}, {
		name: "ETag changes between segments",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				serveThrottled(w, r, data, `"v1"`, rate)
				return
			}
			r.Header.Del("If-Range") // the misbehaviour: ranges of the new version whatever the validator
			serveThrottled(w, r, other, `"v2"`, rate)
		},
		want: other,
	}, {
		name: "206 with another total",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			if n == 1 {
				serveThrottled(w, r, data, `"v1"`, rate)
				return
			}
			r.Header.Del("If-Range")
			serveThrottled(w, r, other, `"v1"`, rate) // same ETag, another size
		},
		want: other,
	}, {
		name: "one connection reset mid-segment",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			if n == 2 {
				rw := &throttled{w, rate}
				start := rangeStart(r.Header)
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.Itoa(len(data)-1)+"/"+strconv.Itoa(len(data)))
				w.Header().Set("Content-Length", strconv.FormatInt(int64(len(data))-start, 10))
				w.WriteHeader(http.StatusPartialContent)
				rw.Write(data[start : start+100<<10])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			serveThrottled(w, r, data, `"v1"`, rate)
		},
		want: data,
	}, {
		name: "one connection stalls",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			if n == 2 {
				start := rangeStart(r.Header)
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.Itoa(len(data)-1)+"/"+strconv.Itoa(len(data)))
				w.Header().Set("Content-Length", strconv.FormatInt(int64(len(data))-start, 10))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(data[start : start+64<<10])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			serveThrottled(w, r, data, `"v1"`, rate)
		},
		want: data,
	}, {
		name: "origin ignores Range",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			r.Header.Del("Range")
			serveThrottled(w, r, data, `"v1"`, 4*rate)
		},
		want: data,
		check: func(t *testing.T, h *harness, o *origin, j *ferry.Job) {
			if got := o.requests.Load(); got != 1 {
				t.Errorf("origin saw %d requests, want 1 (one stream)", got)
			}
		},
	}, {
		name: "503 above two connections",
		handle: func(o *origin, w http.ResponseWriter, r *http.Request, n int64) {
			if o.active.Load() > 2 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "too many connections", http.StatusServiceUnavailable)
				return
			}
			serveThrottled(w, r, data, `"v1"`, rate)
		},
		want: data,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, segmentedConfig(t))
			var o *origin
			o = newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				defer o.enter(h.fetch)()
				c.handle(o, w, r, n)
			})
			h.run()
			j := h.waitFinal(h.enqueue(o.url("/file.bin"), "x.bin").ID)
			h.wantCompleted(j, c.want, "x.bin")
			if o.ranged() == 0 && c.name != "origin ignores Range" {
				t.Errorf("no segment was requested; requests %d", o.requests.Load())
			}
			if c.check != nil {
				c.check(t, h, o, j)
			}
		})
	}
}

// TestSegmentedFastOriginOneStream: an origin that is not throttled gets
// one connection.
func TestSegmentedFastOriginOneStream(t *testing.T) {
	data := randomBytes(8<<20, 9)
	cfg := segmentedConfig(t)
	cfg.FastStream = 1 << 20 // anything faster than 1 MiB/s is fast here
	h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, cfg)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		serveThrottled(w, r, data, `"v1"`, 16<<20)
	})
	h.run()
	j := h.waitFinal(h.enqueue(o.url("/file.bin"), "x.bin").ID)
	h.wantCompleted(j, data, "x.bin")
	if got := o.requests.Load(); got != 1 {
		t.Errorf("origin saw %d requests, want 1", got)
	}
}

// TestHostConnectionLimit: two imports from one host, each allowed four
// connections, share fetch's per-host limit of three.
func TestHostConnectionLimit(t *testing.T) {
	data := randomBytes(3<<20, 10)
	h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, segmentedConfig(t))
	h.fetch.Close()
	h.fetch = fetch.New(fetch.Options{
		Allow:       []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		IdleTimeout: 2 * time.Second,
		HostConns:   3,
	})
	h.reopen(h.cfg)
	var o *origin
	o = newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		defer o.enter(h.fetch)()
		serveThrottled(w, r, data, `"v1"`, 1<<20)
	})
	h.run()
	var ids []string
	for i := range 2 {
		ids = append(ids, h.enqueue(o.url("/f"+strconv.Itoa(i)), "x"+strconv.Itoa(i)+".bin").ID)
	}
	var done []*ferry.Job
	for _, id := range ids {
		done = append(done, h.waitFinal(id))
	}
	for i, j := range done {
		h.wantCompleted(j, data, "x"+strconv.Itoa(i)+".bin")
	}
	if p := o.peak.Load(); p > 3 {
		t.Errorf("peak connections to the host %d, want at most 3", p)
	}
	if o.ranged() == 0 {
		t.Error("no import used a second connection")
	}
}

// TestMirrors: segments spread over the job's URL and its mirrors; a
// mirror serving another file is dropped.
func TestMirrors(t *testing.T) {
	data := randomBytes(6<<20, 11)
	wrong := randomBytes(6<<20, 12)
	const rate = 2 << 20
	h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, segmentedConfig(t))
	main := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		serveThrottled(w, r, data, `"v1"`, rate)
	})
	good := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		serveThrottled(w, r, data, `"v1"`, rate)
	})
	bad := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		serveThrottled(w, r, wrong, `"other"`, rate)
	})
	h.run()
	j := h.waitFinal(h.enqueue(main.url("/file.bin"), "x.bin", func(j *ferry.Job) {
		j.Mirrors = []string{good.url("/mirror.bin"), bad.url("/bad.bin")}
	}).ID)
	h.wantCompleted(j, data, "x.bin")
	if good.requests.Load() == 0 {
		t.Error("the good mirror was never asked")
	}
	if n := bad.requests.Load(); n > 1 {
		t.Errorf("the disagreeing mirror was asked %d times, want at most once", n)
	}
}

// TestMirrorRefusedAtEnqueue: a mirror is checked like the main URL.
func TestMirrorRefusedAtEnqueue(t *testing.T) {
	h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, testConfig(t))
	for _, m := range []string{"ftp://example.org/x", "http://user:pw@example.org/x", "http://10.0.0.1/x"} {
		err := h.q.Enqueue(t.Context(), &ferry.Job{
			Operation: ferry.OpDownloadURL, UserID: h.user.ID, UserName: h.user.Name, DriveID: h.drive.ID,
			ParentID: h.drive.RootID, Name: "x", SourceURL: "http://example.org/x", Mirrors: []string{m},
		})
		if ferry.KindOf(err) != ferry.Invalid || !strings.Contains(ferry.Message(err), "mirror") {
			t.Errorf("mirror %s: %v, want Invalid naming the mirror", m, err)
		}
	}
}

// sharedPacer limits the bytes per second an origin sends over all its
// connections together: more connections do not raise the total.
type sharedPacer struct {
	mu   sync.Mutex
	rate int
	next time.Time
}

func (p *sharedPacer) wait(n int) {
	p.mu.Lock()
	// A sender that woke late catches up (up to 10 ms of sending), so that
	// the cap holds for the total, not per connection.
	if early := time.Now().Add(-10 * time.Millisecond); p.next.Before(early) {
		p.next = early
	}
	due := p.next
	p.next = p.next.Add(time.Duration(n) * time.Second / time.Duration(p.rate))
	p.mu.Unlock()
	time.Sleep(time.Until(due))
}

type paced struct {
	http.ResponseWriter
	p     *sharedPacer
	chunk func(n int)
}

func (w *paced) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), 8<<10)
		w.p.wait(n)
		m, err := w.ResponseWriter.Write(b[:n])
		written += m
		w.chunk(m)
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

// TestSegmentedShedsUselessConnections: an origin whose total rate is
// capped, whatever the connections, gets more connections for a moment
// (one is slower than FastStream), and then one again: the extra ones are
// cut and their ranges go to the one that stays.
func TestSegmentedShedsUselessConnections(t *testing.T) {
	data := randomBytes(4<<20, 11)
	h := newHarness(t, t.TempDir()+"/ferry.db", testQuota, segmentedConfig(t))
	pacer := &sharedPacer{rate: 2 << 20}
	type sent struct {
		at     time.Time
		n      int
		active int64
	}
	var mu sync.Mutex
	var log []sent
	var o *origin
	o = newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		defer o.enter(h.fetch)()
		w.Header().Set("ETag", `"v1"`)
		pw := &paced{ResponseWriter: w, p: pacer, chunk: func(n int) {
			mu.Lock()
			log = append(log, sent{time.Now(), n, o.active.Load()})
			mu.Unlock()
		}}
		http.ServeContent(pw, r, "", modTime, bytes.NewReader(data))
	})
	h.run()
	j := h.waitFinal(h.enqueue(o.url("/file.bin"), "x.bin").ID)
	h.wantCompleted(j, data, "x.bin")
	if p := o.peak.Load(); p < 2 {
		t.Fatalf("peak connections %d: the transfer never tried more than one", p)
	}
	mu.Lock()
	defer mu.Unlock()
	// In the second half of the transfer's time, one connection sends.
	mid := log[0].at.Add(log[len(log)-1].at.Sub(log[0].at) / 2)
	var late, lateShared int
	for _, s := range log {
		if s.at.After(mid) {
			late += s.n
			if s.active > 1 {
				lateShared += s.n
			}
		}
	}
	if lateShared > late/10 {
		t.Errorf("%d of the last %d bytes were sent while more than one connection was open; want one connection", lateShared, late)
	}
}
