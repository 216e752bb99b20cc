package fetch_test

import (
	"errors"
	"net/http"
	"net/netip"
	"syscall"
	"testing"

	"github.com/ferrydrive/ferry/fetch"
)

// FuzzGuard feeds arbitrary "ip:port" strings to the dial guard, with and
// without an Allow list. It must never panic, and must refuse every address
// of 127.0.0.0/8 (in any IPv6 spelling too), every private or link-local
// address, and every port but 80 and 443, unless Allow names the address.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:80", "127.0.0.1:8080", "127.0.0.2:443", "[::1]:80", "[::ffff:127.0.0.1]:80",
		"[::ffff:7f00:2]:443", "[64:ff9b::7f00:1]:80", "10.0.0.1:80", "169.254.169.254:80",
		"[fe80::1%eth0]:80", "[fd00:ec2::254]:443", "8.8.8.8:443", "8.8.8.8:22", "[2606:4700::1111]:443",
		"0.0.0.0:80", "[::]:80", "", ":", "1.2.3.4", "[::1]", "256.0.0.1:80", "127.0.0.1:99999",
	} {
		f.Add(s)
	}
	denied := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("::/128"), netip.MustParsePrefix("64:ff9b::/96"),
	}
	guards := []struct {
		allow   []netip.Prefix
		control func(string, string, syscall.RawConn) error
	}{
		{nil, fetch.GuardControl(nil)},
		{allowLoopback, fetch.GuardControl(allowLoopback)},
	}
	f.Fuzz(func(t *testing.T, address string) {
		ap, perr := netip.ParseAddrPort(address)
		for _, g := range guards {
			for _, network := range []string{"tcp", "tcp4", "tcp6", "udp"} {
				err := g.control(network, address, nil)
				if perr != nil {
					if err == nil {
						t.Fatalf("%s %q: unparsable address allowed", network, address)
					}
					continue
				}
				a := ap.Addr()
				if inAny(g.allow, a) && (network == "tcp4" || network == "tcp6") {
					continue // explicitly allowed, on any port
				}
				if err != nil {
					continue
				}
				if network != "tcp4" && network != "tcp6" {
					t.Fatalf("allow %v: %s %q allowed on a network other than tcp4/tcp6", g.allow, network, address)
				}
				if p := ap.Port(); p != 80 && p != 443 {
					t.Fatalf("allow %v: %s %q allowed on port %d", g.allow, network, address, p)
				}
				if inAny(denied, a.Unmap()) || inAny(denied, a) || a.Is4In6() || a.Zone() != "" {
					t.Fatalf("allow %v: %s %q allowed", g.allow, network, address)
				}
			}
		}
	})
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TestLeakDetector shows that the TestMain leak check sees an open response
// and that closing the body, the client and the origin ends it.
func TestLeakDetector(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("x"))
	})
	c := fetch.New(fetch.Options{Allow: allowLoopback})
	resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if len(leakedGoroutines()) == 0 {
		t.Fatal("the leak detector sees no connection goroutines while a response is open")
	}
	resp.Body.Close()
	c.Close()
	srv.Close()
	if leaks := waitForLeaks(); len(leaks) > 0 {
		t.Fatalf("goroutines left after closing body, client and origin:\n%s", leaks[0])
	}
}

// TestCheck: Check refuses, without connecting, what the URL alone shows to
// be forbidden, and leaves host names to the dial-time guard.
func TestCheck(t *testing.T) {
	def := newClient(t, fetch.Options{})
	allow := newClient(t, fetch.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	for _, tt := range []struct {
		c    *fetch.Client
		url  string
		code string // "" means allowed
	}{
		{def, "http://127.0.0.1/", fetch.CodeAddressRefused},
		{def, "http://127.1/", fetch.CodeAddressRefused},
		{def, "http://2130706433/", fetch.CodeAddressRefused},
		{def, "http://[::1]/", fetch.CodeAddressRefused},
		{def, "http://[::ffff:127.0.0.1]/", fetch.CodeAddressRefused},
		{def, "http://169.254.169.254/latest/meta-data", fetch.CodeAddressRefused},
		{def, "http://[fd00:ec2::254]/", fetch.CodeAddressRefused},
		{def, "http://10.0.0.1/", fetch.CodeAddressRefused},
		{def, "http://0.0.0.0/", fetch.CodeAddressRefused},
		{def, "http://8.8.8.8:8080/", fetch.CodeAddressRefused},
		{def, "http://8.8.8.8/", ""},
		{def, "https://[2606:4700::1111]/", ""},
		{def, "http://example.org/a", ""}, // names are judged when dialed
		{def, "ftp://8.8.8.8/", fetch.CodeBadScheme},
		{def, "http://u:p@8.8.8.8/", fetch.CodeCredentialsInURL},
		{def, "http://8.8.8.8:99999/", fetch.CodeBadURL},
		{allow, "http://127.0.0.1:8080/", ""},
		{allow, "http://127.0.0.2/", fetch.CodeAddressRefused},
	} {
		err := tt.c.Check(tt.url)
		var fe *fetch.Error
		switch {
		case tt.code == "" && err != nil:
			t.Errorf("Check(%q) = %v, want allowed", tt.url, err)
		case tt.code != "" && (!errors.As(err, &fe) || fe.Code != tt.code || !fe.Permanent):
			t.Errorf("Check(%q) = %v, want a permanent %s", tt.url, err, tt.code)
		}
	}
}
