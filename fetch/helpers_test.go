package fetch_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/fetch"
)

// allowLoopback is what tests pass as Options.Allow: the one address
// httptest origins listen on, never "all loopback".
var allowLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := waitForLeaks(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "leaked goroutines after the tests:\n\n%s\n", strings.Join(leaks, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines that belong to HTTP
// connections or to this package: after every client, body and origin is
// closed, there must be none.
func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaks []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the calling goroutine
			continue
		}
		if strings.Contains(g, "net/http.") || strings.Contains(g, "ferrydrive/ferry/fetch.") {
			leaks = append(leaks, g)
		}
	}
	return leaks
}

// waitForLeaks gives closing connections a moment to wind down, then
// reports what is left.
func waitForLeaks() []string {
	var leaks []string
	for range 500 {
		if leaks = leakedGoroutines(); len(leaks) == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return leaks
}

func newClient(t *testing.T, opts fetch.Options) *fetch.Client {
	t.Helper()
	c := fetch.New(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// newOrigin starts an httptest origin on 127.0.0.1.
func newOrigin(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newOriginB is newOrigin for benchmarks; it returns the origin's URL.
func newOriginB(b *testing.B, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv.URL
}

// releaseAtCleanup closes release when the test ends, before the origins
// started earlier shut down (cleanups run last-in first-out), so stalling
// handlers that wait on it return.
func releaseAtCleanup(t *testing.T, release chan struct{}) {
	t.Cleanup(func() { close(release) })
}

// dialLog records the guard's decisions.
type dialLog struct {
	mu      sync.Mutex
	allowed []string
	refused []string
}

func watchDials(c *fetch.Client) *dialLog {
	l := &dialLog{}
	fetch.SetDialHook(c, func(network, address string, ok bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if ok {
			l.allowed = append(l.allowed, address)
		} else {
			l.refused = append(l.refused, address)
		}
	})
	return l
}

func (l *dialLog) snapshot() (allowed, refused []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.allowed...), append([]string(nil), l.refused...)
}

// fetchError asserts that err is a *fetch.Error with the given code and
// permanence.
func fetchError(t *testing.T, err error, code string, permanent bool) *fetch.Error {
	t.Helper()
	var fe *fetch.Error
	if !errors.As(err, &fe) {
		t.Fatalf("got error %v (%T), want a *fetch.Error with code %q", err, err, code)
	}
	if fe.Code != code {
		t.Fatalf("got code %q (%v), want %q", fe.Code, fe, code)
	}
	if fe.Permanent != permanent || fetch.IsPermanent(err) != permanent {
		t.Fatalf("got permanent %v, IsPermanent %v, want %v (%v)", fe.Permanent, fetch.IsPermanent(err), permanent, fe)
	}
	return fe
}

// readBody reads and closes r.Body.
func readBody(r *fetch.Response) ([]byte, error) {
	defer r.Body.Close()
	var b bytes.Buffer
	_, err := io.Copy(&b, r.Body)
	return b.Bytes(), err
}

func testData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// newTLSOrigin starts an HTTPS origin whose certificate no client trusts.
func newTLSOrigin(t *testing.T) string {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = nil
	t.Cleanup(srv.Close)
	return srv.URL
}
