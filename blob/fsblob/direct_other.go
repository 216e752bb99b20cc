//go:build !linux

package fsblob

// oDirect is zero where direct I/O is not used: every write goes through
// the page cache.
const oDirect = 0
