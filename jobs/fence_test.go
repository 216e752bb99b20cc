package jobs_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// TestLostClaimFenced: an attempt whose job another attempt has taken over
// (as another node does when this one's heartbeat went stale: the process
// was paused, partitioned or slow) tries to write its checkpoint, or to
// commit the file; the store refuses both, and the live runner's
// checkpoint stands, no item appears and the refused attempt's published
// blob is removed. The old attempt's own heartbeat would notice the loss
// only much later (StaleAfter is an hour here), so it is the fence that
// stops it.
func TestLostClaimFenced(t *testing.T) {
	for _, tt := range []struct {
		name string
		// held is how many bytes the origin sends before it waits for the
		// take-over; checkpointEvery makes the attempt checkpoint on its
		// next read after the wait (checkpoint case), or never (commit
		// case: the rest arrives and the attempt goes straight to commit).
		held            int
		checkpointEvery time.Duration
	}{
		{"checkpoint", 64 << 10, 5 * time.Millisecond},
		{"commit", 256<<10 - 1, time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				data := randomBytes(256<<10, 11)
				cfg := testConfig(t)
				cfg.StaleAfter = time.Hour
				cfg.CheckpointEvery = tt.checkpointEvery
				cfg.CheckpointBytes = 1 << 30
				h := newHarness(t, dsn, testQuota, cfg)
				release := make(chan struct{})
				o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
					w.Header().Set("ETag", `"v1"`)
					w.Header().Set("Content-Length", strconv.Itoa(len(data)))
					w.WriteHeader(http.StatusOK)
					w.Write(data[:tt.held])
					w.(http.Flusher).Flush()
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
					w.Write(data[tt.held:])
				})
				h.run()
				j := h.enqueue(o.url("/f.bin"), "f.bin")
				h.wait(j.ID, "fetching", func(j *ferry.Job) bool {
					return j.Status == ferry.StatusInProgress && o.served.Load() >= int64(tt.held)
				})
				ctx := t.Context()
				live := "node-b/live"
				if ok, err := h.store.ClaimJob(ctx, j.ID, live, time.Now().Add(time.Hour)); !ok || err != nil {
					t.Fatalf("take-over ClaimJob = %v, %v", ok, err)
				}
				liveCP := []byte(`{"offset":0,"total":-1}`)
				if err := h.store.SaveJobCheckpoint(ctx, j.ID, live, "", liveCP); err != nil {
					t.Fatalf("the live runner's checkpoint: %v", err)
				}
				close(release)
				// The refused attempt snoozes its River job: it stops
				// running.
				deadline := time.Now().Add(30 * time.Second)
				for {
					var n int
					if err := h.store.DB().QueryRowContext(ctx, `SELECT count(*) FROM river_job WHERE state = 'running'`).Scan(&n); err != nil {
						t.Fatal(err)
					}
					if n == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the attempt that lost its claim is still running")
					}
					time.Sleep(5 * time.Millisecond)
				}
				if got := o.served.Load(); tt.name == "commit" && got != int64(len(data)) {
					t.Fatalf("origin sent %d bytes, want all %d (the attempt must have read on to its commit)", got, len(data))
				}
				if _, data, err := h.store.JobCheckpoint(ctx, j.ID); err != nil || string(data) != string(liveCP) {
					t.Errorf("checkpoint = %s, %v; want the live runner's %s", data, err, liveCP)
				}
				if got := h.job(j.ID); got.Status != ferry.StatusInProgress {
					t.Errorf("job = %s, want inProgress (the live runner's)", got.Status)
				}
				if ok, err := h.store.Heartbeat(ctx, j.ID, live); !ok || err != nil {
					t.Errorf("the live runner lost its claim: %v, %v", ok, err)
				}
				h.wantNoFiles()
			})
		})
	}
}

func (h *harness) job(id string) *ferry.Job {
	h.t.Helper()
	j, err := h.q.Job(h.t.Context(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}
