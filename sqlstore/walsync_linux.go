package sqlstore

import (
	"os"
	"syscall"
)

// datasync flushes f's data and what is needed to read it back (its size),
// as SQLite's own Linux builds do, not its timestamps.
func datasync(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = syscall.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}
