package ferrytest

import "syscall"

// vgwProcAttr makes the server die with the test binary.
func vgwProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
