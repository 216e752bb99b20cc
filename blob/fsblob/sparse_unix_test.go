//go:build unix

package fsblob_test

import (
	"os"
	"syscall"
	"testing"
)

// diskUsage reports the bytes the file at path occupies on disk.
func diskUsage(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no block counts on this platform")
	}
	return st.Blocks * 512
}
