package fetch_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry/fetch"
)

// TestSSRFRefused runs every case through Open with the default options (no
// Allow). Each must fail permanently with the expected code, and the guard
// must not have let a single dial through: nothing connects anywhere. atDial
// cases must have been refused by the dial-time guard (not merely by the URL
// checks), proving that check runs; the others must not dial at all.
func TestSSRFRefused(t *testing.T) {
	const refused = fetch.CodeAddressRefused
	for _, tt := range []struct {
		url    string
		code   string
		atDial bool
	}{
		// Loopback, in every spelling.
		{"http://127.0.0.1/?sig=SECRET", refused, true},
		{"http://127.1/", refused, false},
		{"http://2130706433/", refused, false},
		{"http://0x7f000001/", refused, false},
		{"http://017700000001/", refused, false},
		{"http://0177.0.0.1/", refused, false},
		{"http://127.000.000.001/", refused, false},
		{"http://127.0.0.1./", refused, false},
		{"http://0x7f.1/", refused, false},
		{"HTTP://127.0.0.2/", refused, true},
		{"http://localhost/?sig=SECRET", refused, true},
		{"http://[::1]/", refused, true},
		{"https://[::1]:443/", refused, true},
		{"http://[::ffff:127.0.0.1]/", refused, true},
		{"http://[0:0:0:0:0:ffff:7f00:1]/", refused, true},
		{"http://[::ffff:7f00:1]:8080/", refused, true},
		// Unspecified.
		{"http://0.0.0.0/", refused, true},
		{"http://0/", refused, false},
		{"http://[::]/", refused, true},
		// Cloud metadata.
		{"http://169.254.169.254/latest/meta-data/?sig=SECRET", refused, true},
		{"http://[fd00:ec2::254]/", refused, true},
		{"http://100.100.100.200/", refused, true},
		{"http://[::ffff:169.254.169.254]/", refused, true},
		{"http://[::ffff:a9fe:a9fe]/", refused, true},
		// Private, shared, link-local, unique-local, multicast, broadcast.
		{"http://10.0.0.1/", refused, true},
		{"http://10.1/", refused, false},
		{"http://172.16.0.1/", refused, true},
		{"http://192.168.1.1/", refused, true},
		{"http://192.168.0x1.1/", refused, false},
		{"http://100.64.0.1/", refused, true},
		{"http://[fc00::1]/", refused, true},
		{"http://[fe80::1]/", refused, true},
		{"http://224.0.0.1/", refused, true},
		{"http://255.255.255.255/", refused, true},
		// NAT64 forms of internal IPv4 addresses.
		{"http://[64:ff9b::7f00:1]/", refused, true},
		{"http://[64:ff9b::a9fe:a9fe]/", refused, true},
		// Public addresses on ports other than 80/443: refused by the port
		// rule in Control, before connect().
		{"http://8.8.8.8:8080/", refused, true},
		{"https://1.1.1.1:8443/", refused, true},
		{"http://[2606:4700::1111]:22/", refused, true},
		{"http://8.8.8.8:0/", refused, true},
		// Other schemes, credentials, malformed.
		{"file:///etc/passwd", fetch.CodeBadScheme, false},
		{"ftp://127.0.0.1/", fetch.CodeBadScheme, false},
		{"gopher://127.0.0.1:70/_GET", fetch.CodeBadScheme, false},
		{"data:text/plain,hello", fetch.CodeBadScheme, false},
		{"javascript:alert(1)", fetch.CodeBadScheme, false},
		{"//127.0.0.1/", fetch.CodeBadScheme, false},
		{"http://user:pass@example.com/", fetch.CodeCredentialsInURL, false},
		{"http://user@127.0.0.1/", fetch.CodeCredentialsInURL, false},
		{"http://127.0.0.1:80@example.com/", fetch.CodeCredentialsInURL, false},
		{"http:///no-host", fetch.CodeBadURL, false},
		{"http://256.256.256.256/", fetch.CodeBadURL, false},
		{"http://1.2.3.4.5/", fetch.CodeBadURL, false},
		{"http://%zz/", fetch.CodeBadURL, false},
	} {
		t.Run(tt.url, func(t *testing.T) {
			c := newClient(t, fetch.Options{})
			dials := watchDials(c)
			resp, err := c.Open(t.Context(), fetch.Request{URL: tt.url})
			if err == nil {
				resp.Body.Close()
				t.Fatalf("Open succeeded, want code %q", tt.code)
			}
			fe := fetchError(t, err, tt.code, true)
			allowed, refusedDials := dials.snapshot()
			if len(allowed) > 0 {
				t.Fatalf("the guard let dials through to %v", allowed)
			}
			if got := len(refusedDials) > 0; got != tt.atDial {
				t.Errorf("refused at dial: got %v (%v), want %v", got, refusedDials, tt.atDial)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(fe.Message, "?") {
				t.Errorf("error shows the URL: %q", err.Error())
			}
			if strings.HasPrefix(tt.url, "http://localhost") && strings.Contains(fe.Message, "127.0.0.1") {
				t.Errorf("message %q reveals the resolved address", fe.Message)
			}
		})
	}
}

func TestAllowedOrigin(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	dials := watchDials(c)
	resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL + "/file"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	if err != nil || string(body) != "hello" {
		t.Fatalf("got %q, %v; want %q", body, err, "hello")
	}
	if resp.Status != 200 || resp.Offset != 0 || resp.Length != 5 || resp.Total != 5 {
		t.Errorf("got status %d offset %d length %d total %d, want 200 0 5 5", resp.Status, resp.Offset, resp.Length, resp.Total)
	}
	if got, want := resp.FinalURL.String(), srv.URL+"/file"; got != want {
		t.Errorf("FinalURL: got %q, want %q", got, want)
	}
	allowed, _ := dials.snapshot()
	if len(allowed) != 1 || allowed[0] != srv.Listener.Addr().String() {
		t.Errorf("allowed dials: got %v, want [%s]", allowed, srv.Listener.Addr())
	}
}

// TestAllowIsExact checks that allowing 127.0.0.1/32 admits neither other
// loopback addresses nor the IPv4-mapped spelling's neighbours, on the same
// port.
func TestAllowIsExact(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	port := srv.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndex(port, ":")+1:]
	c := newClient(t, fetch.Options{Allow: allowLoopback})
	for _, u := range []string{
		"http://127.0.0.2:" + port + "/",
		"http://[::1]:" + port + "/",
		"http://[::ffff:127.0.0.2]:" + port + "/",
		"http://127.2:" + port + "/",
	} {
		t.Run(u, func(t *testing.T) {
			_, err := c.Open(t.Context(), fetch.Request{URL: u})
			fetchError(t, err, fetch.CodeAddressRefused, true)
		})
	}
}

func TestRedirects(t *testing.T) {
	var srvURL string
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/ok":
			fmt.Fprint(w, "ok")
		case p == "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case p == "/to-other-loopback":
			// Same port, different loopback address: not in Allow.
			http.Redirect(w, r, strings.Replace(srvURL, "127.0.0.1", "127.0.0.2", 1)+"/ok", http.StatusFound)
		case p == "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case p == "/to-gopher":
			http.Redirect(w, r, "gopher://127.0.0.1:70/", http.StatusMovedPermanently)
		case p == "/to-credentials":
			http.Redirect(w, r, strings.Replace(srvURL, "http://", "http://u:p@", 1)+"/ok", http.StatusTemporaryRedirect)
		case p == "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case p == "/to-decimal":
			http.Redirect(w, r, "http://2130706434/", http.StatusFound) // 127.0.0.2
		case p == "/to-decimal-allowed":
			http.Redirect(w, r, strings.Replace(srvURL, "127.0.0.1", "2130706433", 1)+"/ok", http.StatusFound)
		case strings.HasPrefix(p, "/chain/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(p, "/chain/"))
			if n == 0 {
				fmt.Fprint(w, "end")
				return
			}
			http.Redirect(w, r, "/chain/"+strconv.Itoa(n-1), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	srvURL = srv.URL

	for _, tt := range []struct {
		path string
		code string // "" for success
	}{
		{"/to-other-loopback", fetch.CodeAddressRefused},
		{"/to-file", fetch.CodeBadScheme},
		{"/to-gopher", fetch.CodeBadScheme},
		{"/to-credentials", fetch.CodeCredentialsInURL},
		{"/to-metadata", fetch.CodeAddressRefused},
		{"/to-decimal", fetch.CodeAddressRefused},
		{"/to-decimal-allowed", fetch.CodeBadURL}, // 127.0.0.1, but in a spelling Go would send to DNS
		{"/loop", fetch.CodeTooManyRedirects},
		{"/chain/10", ""},
		{"/chain/11", fetch.CodeTooManyRedirects},
	} {
		t.Run(tt.path, func(t *testing.T) {
			c := newClient(t, fetch.Options{Allow: allowLoopback})
			dials := watchDials(c)
			resp, err := c.Open(t.Context(), fetch.Request{URL: srv.URL + tt.path})
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				body, err := readBody(resp)
				if err != nil || string(body) != "end" {
					t.Fatalf("got %q, %v; want %q", body, err, "end")
				}
				if got, want := resp.FinalURL.Path, "/chain/0"; got != want {
					t.Errorf("FinalURL path: got %q, want %q", got, want)
				}
				return
			}
			fetchError(t, err, tt.code, true)
			allowed, refused := dials.snapshot()
			for _, a := range allowed {
				if a != srv.Listener.Addr().String() {
					t.Errorf("dialed %s; only the origin is allowed", a)
				}
			}
			if tt.path == "/to-other-loopback" && (len(refused) == 0 || !strings.HasPrefix(refused[0], "127.0.0.2:")) {
				t.Errorf("refused dials: got %v, want 127.0.0.2 refused by the dial guard", refused)
			}
		})
	}
}

func TestMaxRedirectsOption(t *testing.T) {
	srv := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/end" {
			return
		}
		http.Redirect(w, r, "/end", http.StatusFound)
	})
	c := newClient(t, fetch.Options{Allow: allowLoopback, MaxRedirects: -1})
	_, err := c.Open(t.Context(), fetch.Request{URL: srv.URL + "/start"})
	fetchError(t, err, fetch.CodeTooManyRedirects, true)
}
