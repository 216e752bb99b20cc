package jobs_test

import (
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/fsblob"
)

// fakeDisk plays a small filesystem holding the blob store's files and
// other bytes (other): its free space shrinks as staging areas and blobs
// really take blocks.
type fakeDisk struct {
	total int64
	other atomic.Int64
}

func (d *fakeDisk) statfs(dir string) (int64, int64, error) {
	used := d.other.Load()
	err := filepath.WalkDir(filepath.Dir(dir), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		used += fi.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	return d.total - used, d.total, err
}

// spaceHarness is a harness whose blob store keeps floor bytes free on
// disk.
func spaceHarness(t *testing.T, dsn string, disk *fakeDisk, floor int64) *harness {
	cfg := testConfig(t)
	h := newHarness(t, dsn, testQuota, cfg)
	cfg.Space = h.blobs.KeepFree(floor, fsblob.StatFS(disk.statfs))
	h.cfg = cfg
	h.reopen(cfg)
	return h
}

// TestImportWaitsForDiskSpace: an import that does not fit the disk now
// waits, saying why on its monitor, and completes once space is freed.
func TestImportWaitsForDiskSpace(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		disk := &fakeDisk{total: 16 << 20}
		disk.other.Store(8 << 20)
		h := spaceHarness(t, dsn, disk, 4<<20) // 4 MiB of room
		data := randomBytes(6<<20, 7)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, data) })
		h.run()
		j := h.enqueue(o.url("/x.bin"), "x.bin")
		h.wait(j.ID, "waiting for disk space", func(j *ferry.Job) bool {
			return j.Status == ferry.StatusWaiting && strings.Contains(j.ErrorMessage, "disk space")
		})
		disk.other.Store(0) // the operator frees space
		h.wantCompleted(h.waitFinal(j.ID), data, "x.bin")
	})
}

// TestImportNeverFits: a file larger than the disk can ever hold above the
// floor fails at once with insufficientStorage, leaving nothing behind.
func TestImportNeverFits(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		disk := &fakeDisk{total: 8 << 20}
		h := spaceHarness(t, dsn, disk, 4<<20)
		data := randomBytes(6<<20, 8)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) { serveFile(w, r, data) })
		h.run()
		j := h.enqueue(o.url("/x.bin"), "x.bin")
		h.wantFailed(h.waitFinal(j.ID), "insufficientStorage", o)
	})
}
