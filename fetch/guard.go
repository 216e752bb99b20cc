package fetch

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"code.dny.dev/ssrf"
)

// guard decides which addresses may be dialed. It runs in net.Dialer.Control,
// after DNS resolution and before connect, for every connection the
// transport opens: first requests, redirect hops, and reconnects alike. A
// name that resolves to a refused address (DNS rebinding included) is
// therefore refused whatever the name looked like.
type guard struct {
	allow []netip.Prefix             // from Options.Allow: any port, checked first
	def   *ssrf.Guardian             // everything else: ports 80/443, public addresses only
	hook  func(string, string, bool) // tests only: sees every decision
	count interface{ SSRFRefused() } // may be nil
}

func newGuard(allow []netip.Prefix, count interface{ SSRFRefused() }) *guard {
	return &guard{allow: allow, def: ssrf.New(), count: count}
}

// control has the signature of net.Dialer.Control. The ssrf library checks
// ports before prefixes, so an allowed network is matched here first and
// passes on any port; all other addresses get the library's default policy.
// Allowed prefixes match only their own family: an IPv4 prefix does not
// admit its IPv4-mapped IPv6 spelling, and zoned addresses never match.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	err := g.check(network, address)
	if err != nil && g.count != nil {
		g.count.SSRFRefused()
	}
	if g.hook != nil {
		g.hook(network, address, err == nil)
	}
	return err
}

func (g *guard) check(network, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &refusedError{addr: address, reason: ssrf.ErrInvalidHostPort}
	}
	if (network == "tcp4" || network == "tcp6") && g.allowed(ap.Addr()) {
		return nil
	}
	if err := g.def.SafeAddrPort(ap); err != nil {
		return &refusedError{addr: address, reason: err}
	}
	if network != "tcp4" && network != "tcp6" {
		return &refusedError{addr: address, reason: ssrf.ErrProhibitedNetwork}
	}
	return nil
}

func (g *guard) allowed(a netip.Addr) bool {
	for _, p := range g.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkURL applies the rules that hold before any connection, for the first
// request and for every redirect: http or https, a host, no user:password,
// and no IP address in a spelling that Go would send to DNS but browsers and
// curl read as an address (127.1, 2130706433, 0x7f000001, 0177.0.0.1).
func (g *guard) checkURL(u *url.URL) *Error {
	switch u.Scheme {
	case "http", "https":
	default:
		return permanent(CodeBadScheme, "the source URL must use http or https", nil)
	}
	if u.User != nil {
		return permanent(CodeCredentialsInURL, "the source URL must not carry a user name or password", nil)
	}
	host := u.Hostname()
	if host == "" {
		return permanent(CodeBadURL, "the source URL has no host", nil)
	}
	if strings.Contains(host, ":") { // an IPv6 literal; the dial guard judges it
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil { // canonical IPv4: the dial guard judges it
		return nil
	}
	a, isNumber, ok := parseLegacyIPv4(host)
	if !isNumber {
		return nil // a name: resolved and judged at dial time
	}
	if !ok {
		return permanent(CodeBadURL, "the source URL's host "+host+" is not a valid IP address", nil)
	}
	port, perr := urlPort(u)
	if perr != nil {
		return perr
	}
	network := "tcp4"
	if err := g.check(network, netip.AddrPortFrom(a, port).String()); err != nil {
		return permanent(CodeAddressRefused, refusedMessage(host, err.(*refusedError).reason), err)
	}
	return permanent(CodeBadURL, "write the IP address "+host+" in dotted-decimal form ("+a.String()+")", nil)
}

// parseLegacyIPv4 reads host the way the WHATWG URL standard's IPv4 parser
// does: if the last dot-separated label is a number (decimal, 0x-hex or
// 0-octal), the host is an IPv4 address of one to four numbers. isNumber
// reports whether host is meant as an address at all; ok whether it is a
// valid one.
func parseLegacyIPv4(host string) (a netip.Addr, isNumber, ok bool) {
	labels := strings.Split(host, ".")
	if len(labels) > 1 && labels[len(labels)-1] == "" {
		labels = labels[:len(labels)-1]
	}
	lastLabel := labels[len(labels)-1]
	if _, isNum := parseIPv4Number(lastLabel); !isNum && !allDigits(lastLabel) {
		return netip.Addr{}, false, false // a name, like example.com
	}
	if len(labels) > 4 {
		return netip.Addr{}, true, false
	}
	var nums [4]uint64
	for i, l := range labels {
		n, isNum := parseIPv4Number(l)
		if !isNum {
			return netip.Addr{}, true, false
		}
		nums[i] = n
	}
	last := len(labels) - 1
	for _, n := range nums[:last] {
		if n > 255 {
			return netip.Addr{}, true, false
		}
	}
	if nums[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, true, false
	}
	v := nums[last]
	for i := range last {
		v |= nums[i] << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, true
}

// parseIPv4Number parses one label: "0x..." hex, "0..." octal, else
// decimal. isNum is false when the label is not a number in any base.
func parseIPv4Number(s string) (n uint64, isNum bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
		if s == "" {
			return 0, true // "0x" is zero
		}
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	for i := range len(s) {
		c := s[i]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= uint64(base) {
			return 0, false
		}
		n = n*uint64(base) + d
		if n > 1<<32 { // saturate: too big for any label either way
			n = 1 << 32
		}
	}
	return n, true
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// urlPort is the TCP port a request to u connects to.
func urlPort(u *url.URL) (uint16, *Error) {
	p := u.Port()
	switch {
	case p != "":
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return 0, permanent(CodeBadURL, "the source URL has an invalid port", nil)
		}
		return uint16(n), nil
	case u.Scheme == "https":
		return 443, nil
	}
	return 80, nil
}
