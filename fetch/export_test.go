package fetch

import (
	"net/netip"
	"syscall"
)

// SetDialHook makes c report every dial-time guard decision to f. Set it
// before the first request; f must be safe for concurrent use.
func SetDialHook(c *Client, f func(network, address string, allowed bool)) { c.guard.hook = f }

// GuardControl returns the net.Dialer.Control function of a Client whose
// Options.Allow is allow.
func GuardControl(allow []netip.Prefix) func(network, address string, rc syscall.RawConn) error {
	return newGuard(allow, nil).control
}
