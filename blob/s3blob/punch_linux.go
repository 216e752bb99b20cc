package s3blob

import (
	"os"
	"syscall"
)

// punchHole frees the disk blocks of [off, off+n) of f, which then reads
// as zeros; failures are ignored (the bytes just stay until Close).
func punchHole(f *os.File, off, n int64) {
	const keepSize, punch = 0x1, 0x2 // FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
	_ = syscall.Fallocate(int(f.Fd()), keepSize|punch, off, n)
}
