package graph

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// urlBuilder makes the absolute URLs the API hands out: from the configured
// public URL, else from the request, believing X-Forwarded-Proto and
// X-Forwarded-Host only from trusted proxies.
type urlBuilder struct {
	public  *url.URL
	trusted []netip.Prefix
}

// base returns scheme://host[/prefix] without a trailing slash.
func (u *urlBuilder) base(r *http.Request) string {
	if u.public != nil {
		return strings.TrimSuffix(u.public.Scheme+"://"+u.public.Host+u.public.EscapedPath(), "/")
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if u.fromTrustedProxy(r) {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" && validHost(h) {
			host = h
		}
	}
	return scheme + "://" + host
}

// abs returns the absolute URL of an escaped path (and query) on this API.
func (u *urlBuilder) abs(r *http.Request, escapedPath string) string {
	return u.base(r) + escapedPath
}

func (u *urlBuilder) fromTrustedProxy(r *http.Request) bool {
	if len(u.trusted) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range u.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// firstValue returns the first element of a comma-separated header, as
// proxies append to X-Forwarded-* lists.
func firstValue(h string) string {
	v, _, _ := strings.Cut(h, ",")
	return strings.ToLower(strings.TrimSpace(v))
}

// validHost refuses forwarded hosts that would break the URL we build.
func validHost(h string) bool {
	return !strings.ContainsAny(h, "/\\?#@ \t\r\n")
}
