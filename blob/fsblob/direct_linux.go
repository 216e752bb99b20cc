//go:build linux

package fsblob

import "syscall"

// oDirect opens a second handle on a staging file that bypasses the page
// cache. Whole, aligned buffers written through it skip a copy into the
// page cache that costs more CPU than hashing on small machines, and they
// leave no dirty pages for Sync and Publish to wait on.
const oDirect = syscall.O_DIRECT
