package jobs_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/sqlstore"
)

// countingStore counts the writes of a job's life that a small import
// does without.
type countingStore struct {
	*sqlstore.Store
	claims, checkpoints, holds, releases atomic.Int32
}

func (s *countingStore) ClaimJob(ctx context.Context, id, runner string, staleBefore time.Time) (bool, error) {
	s.claims.Add(1)
	return s.Store.ClaimJob(ctx, id, runner, staleBefore)
}

func (s *countingStore) SaveJobCheckpoint(ctx context.Context, id, runner, staging string, data []byte) error {
	s.checkpoints.Add(1)
	return s.Store.SaveJobCheckpoint(ctx, id, runner, staging, data)
}

func (s *countingStore) HoldJobBlob(ctx context.Context, id, runner, key string, data []byte) error {
	s.holds.Add(1)
	return s.Store.HoldJobBlob(ctx, id, runner, key, data)
}

func (s *countingStore) ReleaseJob(ctx context.Context, id, runner string) error {
	s.releases.Add(1)
	return s.Store.ReleaseJob(ctx, id, runner)
}

// TestImportWrites: a small import is started and claimed in one write and
// records neither its staging area nor its blob before the commit, nor
// releases its claim after it; a larger one records both.
func TestImportWrites(t *testing.T) {
	for _, tt := range []struct {
		name               string
		size               int
		checkpoints, holds int32
		checkpointsAtLeast bool
	}{
		{"small", 64 << 10, 0, 0, false},
		{"large", 5 << 20, 1, 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachDB(t, func(t *testing.T, dsn string) {
				data := randomBytes(tt.size, 21)
				cfg := testConfig(t)
				cfg.CheckpointEvery = time.Hour
				cfg.CheckpointBytes = 1 << 30
				h := newHarness(t, dsn, testQuota, cfg)
				cs := &countingStore{Store: h.store}
				h.useStore(cs)
				o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, data) })
				h.run()
				j := h.waitFinal(h.enqueue(o.url("/f.bin"), "f.bin").ID)
				h.wantCompleted(j, data, "f.bin")
				if n := cs.claims.Load(); n != 0 {
					t.Errorf("%d ClaimJob calls, want none (StartClaimJob claims)", n)
				}
				if n := cs.releases.Load(); n != 0 {
					t.Errorf("%d ReleaseJob calls, want none for a job that ended", n)
				}
				if n := cs.checkpoints.Load(); n != tt.checkpoints && !(tt.checkpointsAtLeast && n > tt.checkpoints) {
					t.Errorf("%d SaveJobCheckpoint calls, want %d", n, tt.checkpoints)
				}
				if n := cs.holds.Load(); n != tt.holds {
					t.Errorf("%d HoldJobBlob calls, want %d", n, tt.holds)
				}
			})
		})
	}
}
