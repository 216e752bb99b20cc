//go:build !linux

package ferrytest

import "syscall"

// vgwProcAttr has nothing to add where Pdeathsig does not exist; the
// server outlives a killed test binary there.
func vgwProcAttr() *syscall.SysProcAttr { return nil }
