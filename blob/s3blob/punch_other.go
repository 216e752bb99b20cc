//go:build !linux

package s3blob

import "os"

// punchHole does nothing where hole punching is not available: the spool
// keeps the bytes until the handle closes.
func punchHole(f *os.File, off, n int64) {}
