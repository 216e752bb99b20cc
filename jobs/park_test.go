package jobs_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/jobs"
	"github.com/ferrydrive/ferry/sqlstore"
)

// noParkPoll is the store with a parked River's backstop poll made
// useless (an hour): what starts River again in TestParkWhenIdle must be
// the queue's own wake or the retry's due time.
type noParkPoll struct{ *sqlstore.Store }

func (s noParkPoll) RiverParkPoll() time.Duration {
	if s.Store.RiverParkPoll() == 0 {
		return 0
	}
	return time.Hour
}

// TestParkWhenIdle: on SQLite River's client is stopped while the queue
// has nothing to do, and started again by a new job and by a retry coming
// due; on PostgreSQL it keeps running. RiverWorkIn sees River's jobs on
// both.
func TestParkWhenIdle(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		data := randomBytes(64<<10, 11)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			if r.URL.Path == "/later" && n == 2 {
				// The second request (the retried job's first) is told
				// to come back in two seconds, far beyond ParkAfter.
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			serveFile(w, r, data)
		})
		cfg := testConfig(t)
		h := newHarness(t, dsn, testQuota, cfg)
		var err error
		h.q, err = jobs.New(t.Context(), h.cfg, noParkPoll{h.store}, h.blobs, h.fetch)
		if err != nil {
			t.Fatal(err)
		}
		parks := h.store.RiverParkPoll() > 0

		if _, ok, err := h.store.RiverWorkIn(t.Context()); err != nil || ok {
			t.Fatalf("RiverWorkIn with no jobs = %v, %v; want none", ok, err)
		}
		first := h.enqueue(o.url("/now"), "now.bin")
		if in, ok, err := h.store.RiverWorkIn(t.Context()); err != nil || !ok || in > 0 {
			t.Fatalf("RiverWorkIn with a job queued = %v, %v, %v; want due now", in, ok, err)
		}
		h.run()
		h.wantCompleted(h.waitFinal(first.ID), data, "now.bin")
		waitParked(t, h, parks)

		// Parked (on SQLite), the queue starts River for a new job.
		later := h.enqueue(o.url("/later"), "later.bin")
		h.wait(later.ID, "waiting for its retry", func(j *ferry.Job) bool { return j.Status == ferry.StatusWaiting })
		// River parks again until the retry is due, then starts for it.
		sawParked := false
		j := h.wait(later.ID, "final", func(j *ferry.Job) bool {
			sawParked = sawParked || jobs.Parked(h.q)
			return j.Status.Final()
		})
		h.wantCompleted(j, data, "later.bin")
		if sawParked != parks {
			t.Errorf("parked while the retry waited: %v, want %v", sawParked, parks)
		}
		if got := o.requests.Load(); got != 3 {
			t.Errorf("origin saw %d requests, want 3", got)
		}
		// River records the end of its job a moment after the monitor's.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			_, ok, err := h.store.RiverWorkIn(t.Context())
			if err == nil && !ok {
				break
			}
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("RiverWorkIn once every job ended = %v, %v; want none", ok, err)
			}
		}
		waitParked(t, h, parks)
	})
}

// waitParked waits until the queue has parked River, if it parks; if it
// does not, it checks that River is still running after many times
// ParkAfter.
func waitParked(t *testing.T, h *harness, parks bool) {
	t.Helper()
	wait := 50 * h.cfg.ParkAfter
	if parks {
		wait = time.Minute // only keeps a broken queue from hanging
	}
	deadline := time.Now().Add(wait)
	for !jobs.Parked(h.q) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := jobs.Parked(h.q); got != parks {
		t.Fatalf("River parked: %v, want %v", got, parks)
	}
}
