package graph_test

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ferrydrive/ferry/graph"
)

// smallDisk makes e's blob store live on a fake filesystem of total bytes
// holding its files and other bytes more, keeping floor bytes free.
func smallDisk(e *env, total, floor int64) *atomic.Int64 {
	other := new(atomic.Int64)
	statfs := func(dir string) (int64, int64, error) {
		used := other.Load()
		err := filepath.WalkDir(filepath.Dir(dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if fi, err := d.Info(); err == nil {
				used += fi.Sys().(*syscall.Stat_t).Blocks * 512
			}
			return nil
		})
		return total - used, total, err
	}
	space := e.blobs.KeepFree(floor, statfs)
	e.serve(func(d *graph.Deps) { d.Space = space })
	return other
}

func wantRetryAfter(t *testing.T, r *resp) {
	t.Helper()
	r.wantError(t, http.StatusServiceUnavailable, "serviceNotAvailable")
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n <= 0 {
		t.Errorf("Retry-After = %q, want whole seconds", r.Header.Get("Retry-After"))
	}
}

// TestDiskFullWrites: on a disk with no room above --min-free-space, a
// simple upload (with or without a length) and a fragment answer 503
// serviceNotAvailable with Retry-After, never 500; nothing is left
// staged; the session survives and takes the fragment once space is
// freed; /healthz stays 200 and reports the low disk.
func TestDiskFullWrites(t *testing.T) {
	e := newEnv(t)
	other := smallDisk(e, 8<<20, 2<<20)
	body := bytes.Repeat([]byte("x"), 512<<10)

	e.do("PUT", "/v1.0/me/drive/root:/a.bin:/content", body).must(t, http.StatusCreated)
	up := e.createSession("/v1.0/me/drive/root:/s.bin:/createUploadSession", nil)

	other.Store(5<<20 + 256<<10) // something else fills the disk: 8-5.25-0.5-2 = 0.25 MiB left
	wantRetryAfter(t, e.do("PUT", "/v1.0/me/drive/root:/b.bin:/content", body))
	wantRetryAfter(t, e.do("PUT", "/v1.0/me/drive/root:/c.bin:/content", io.MultiReader(bytes.NewReader(body))))
	wantRetryAfter(t, e.fragment(up, body, 0, int64(len(body))))
	if areas, _ := e.blobs.ListStaging(t.Context()); len(areas) != 1 { // the session's
		t.Errorf("%d staging areas after refused writes, want 1 (the session's)", len(areas))
	}

	h := e.do("GET", "/healthz", nil, noAuth()).must(t, http.StatusOK).json(t)
	disk, _ := h["disk"].(map[string]any)
	if h["status"] != "lowDisk" || disk == nil || disk["low"] != true || disk["minFreeBytes"] != float64(2<<20) {
		t.Errorf("healthz = %v, want status lowDisk and disk.low true, minFreeBytes %d", h, 2<<20)
	}

	other.Store(0) // space is freed
	e.fragment(up, body, 0, int64(len(body))).must(t, http.StatusCreated)
	e.do("PUT", "/v1.0/me/drive/root:/b.bin:/content", body).must(t, http.StatusCreated)
	h = e.do("GET", "/healthz", nil, noAuth()).must(t, http.StatusOK).json(t)
	if h["status"] != "ok" || h["database"].(map[string]any)["ok"] != true || h["blobStore"].(map[string]any)["ok"] != true {
		t.Errorf("healthz = %v, want status ok with database and blobStore ok", h)
	}
}
