package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the ferry binary, so that the
// restart test can SIGKILL a real server process without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("FERRY_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var (
	readyLine = regexp.MustCompile(`listening on (https?://[0-9.:\[\]a-z]+)`)
	tokenLine = regexp.MustCompile(`token: (\S+)`)
)

// server is a running `ferry serve`, in process or as a child process.
type server struct {
	base, token string
}

// scanServerOutput reads lines until the ready line, collecting the token.
func scanServerOutput(t *testing.T, r io.Reader) server {
	t.Helper()
	var s server
	found := make(chan server, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if m := tokenLine.FindStringSubmatch(line); m != nil {
				s.token = m[1]
			}
			if m := readyLine.FindStringSubmatch(line); m != nil && !sent {
				s.base = m[1]
				found <- s
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	select {
	case s, ok := <-found:
		if !ok {
			t.Fatal("server exited before printing its ready line")
		}
		return s
	case <-time.After(60 * time.Second):
		t.Fatal("no ready line within 60s")
	}
	return s
}

// startInProcess runs `ferry serve` through run() on 127.0.0.1:0.
func startInProcess(t *testing.T, env map[string]string, args ...string) server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	getenv := func(k string) string { return env[k] }
	args = append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)
	go func() { done <- run(ctx, args, getenv, pw, io.Discard); pw.Close() }()
	s := scanServerOutput(t, pr)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after a clean stop", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s of its context ending")
		}
	})
	return s
}

func (s server) do(t *testing.T, method, path string, body string, hdr ...string) *http.Response {
	t.Helper()
	url := path
	if strings.HasPrefix(path, "/") {
		url = s.base + path
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decodeJSON(t *testing.T, r io.Reader) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// pollMonitor polls a monitor every 50 ms until the job ends.
func pollMonitor(t *testing.T, monitor string, limit time.Duration) (int, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(monitor)
		if err != nil {
			t.Fatal(err)
		}
		m := decodeJSON(t, resp.Body)
		resp.Body.Close()
		switch m["status"] {
		case "completed", "failed", "cancelled":
			return resp.StatusCode, m
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("monitor answered %d while %v", resp.StatusCode, m["status"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("job did not end within %v", limit)
	return 0, nil
}

func origin(t *testing.T, content []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "payload.bin", time.Unix(1700000000, 0), strings.NewReader(string(content)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestServeEndToEnd(t *testing.T) {
	content := []byte(strings.Repeat("ferry carries bytes\n", 50000))
	src := origin(t, content)
	s := startInProcess(t, nil, "--data", t.TempDir(), "--fetch-allow", "127.0.0.1/32")
	if s.token == "" || !strings.HasPrefix(s.token, "fy_") {
		t.Fatalf("first start printed token %q, want fy_…", s.token)
	}

	if resp := s.do(t, "GET", "/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	resp := s.do(t, "POST", "/v1.0/me/drive/root/children",
		fmt.Sprintf(`{"@microsoft.graph.sourceUrl":%q,"name":"payload.bin","file":{}}`, src.URL+"/payload.bin"),
		"Prefer", "respond-async", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("upload from URL: %d %s", resp.StatusCode, b)
	}
	monitor := resp.Header.Get("Location")
	if !strings.HasPrefix(monitor, s.base+"/monitor/") {
		t.Fatalf("Location %q is not an absolute monitor URL on %s", monitor, s.base)
	}
	code, st := pollMonitor(t, monitor, 60*time.Second)
	if code != http.StatusOK || st["status"] != "completed" || st["percentageComplete"] != 100.0 {
		t.Fatalf("monitor at the end: %d %v", code, st)
	}
	id, _ := st["resourceId"].(string)
	item := decodeJSON(t, s.do(t, "GET", "/v1.0/me/drive/items/"+id, "").Body)
	sum := sha256.Sum256(content)
	hashes := item["file"].(map[string]any)["hashes"].(map[string]any)
	if got, want := hashes["sha256Hash"], strings.ToUpper(hex.EncodeToString(sum[:])); got != want {
		t.Errorf("sha256Hash = %v, want %s", got, want)
	}
	dl := s.do(t, "GET", "/v1.0/me/drive/items/"+id+"/content", "")
	body, _ := io.ReadAll(dl.Body)
	if dl.StatusCode != 200 || string(body) != string(content) {
		t.Fatalf("download: status %d, %d bytes, want 200 and %d bytes", dl.StatusCode, len(body), len(content))
	}
}

func TestTokenCreateWhileServing(t *testing.T) {
	dir := t.TempDir()
	s := startInProcess(t, nil, "--data", dir)
	var out strings.Builder
	if err := run(t.Context(), []string{"token", "create", "--user", "alice", "--scopes", "Files.Read", "--data", dir}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	if strings.ContainsAny(tok, " \n") || !strings.HasPrefix(tok, "fy_") {
		t.Fatalf("token create printed %q, want only a token", out.String())
	}
	alice := server{base: s.base, token: tok}
	if resp := alice.do(t, "GET", "/v1.0/me/drive", ""); resp.StatusCode != 200 {
		t.Fatalf("new token on the running server: %d", resp.StatusCode)
	}
	if resp := alice.do(t, "POST", "/v1.0/me/drive/root/children", `{"name":"x","folder":{}}`, "Content-Type", "application/json"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("read-only token creating a folder: %d, want 403", resp.StatusCode)
	}
	// Alice must not see me's drive.
	me := decodeJSON(t, s.do(t, "GET", "/v1.0/me/drive", "").Body)
	if resp := alice.do(t, "GET", "/v1.0/drives/"+me["id"].(string), ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("alice reading me's drive: %d, want 404", resp.StatusCode)
	}
}

// slowOrigin serves content at a bounded rate per connection (64 KiB every
// pause), and, with rate set, at most rate bytes per second over all its
// connections together, however many a segmented download opens. With
// hold set, it sends nothing more once holdAfter bytes went out in all,
// until hold is closed or the request ends. It honours Range and If-Range,
// and records what each request asked for, how many bytes it sent, and
// the most connections it served at once.
type slowOrigin struct {
	content   []byte
	pause     time.Duration
	rate      float64 // bytes per second over all connections; 0: no cap
	hold      chan struct{}
	holdAfter int64

	served   atomic.Int64
	active   atomic.Int32
	mu       sync.Mutex
	ranges   []string
	next     time.Time // when the rate cap lets the next chunk go
	maxConns int
}

func (o *slowOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.ranges = append(o.ranges, r.Header.Get("Range"))
	o.maxConns = max(o.maxConns, int(o.active.Add(1)))
	o.mu.Unlock()
	defer o.active.Add(-1)
	w.Header().Set("ETag", `"fixed"`)
	http.ServeContent(&countingWriter{ResponseWriter: w, o: o, ctx: r.Context()}, r, "big.bin", time.Unix(1700000000, 0), bytes.NewReader(o.content))
}

// peakConns reports the most connections served at once so far, and
// starts counting afresh.
func (o *slowOrigin) peakConns() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.maxConns
	o.maxConns = int(o.active.Load())
	return n
}

// wait blocks until the origin may send n more bytes.
func (o *slowOrigin) wait(ctx context.Context, n int) error {
	if o.hold != nil && o.served.Load() >= o.holdAfter {
		select {
		case <-o.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if o.rate > 0 {
		o.mu.Lock()
		now := time.Now()
		at := o.next
		if at.Before(now) {
			at = now
		}
		o.next = at.Add(time.Duration(float64(n) / o.rate * float64(time.Second)))
		o.mu.Unlock()
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

type countingWriter struct {
	http.ResponseWriter
	o   *slowOrigin
	ctx context.Context
}

func (c *countingWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		if err := c.o.wait(c.ctx, n); err != nil {
			return written, err
		}
		m, err := c.ResponseWriter.Write(p[:n])
		written += m
		c.o.served.Add(int64(m))
		if err != nil {
			return written, err
		}
		p = p[n:]
		time.Sleep(c.o.pause)
	}
	return written, nil
}

// TestKillNineResumes kills a real server process with SIGKILL in the
// middle of a segmented import (an origin that throttles each connection,
// four connections), restarts it on the same data, and checks that the
// import completes with the right hashes, each segment resuming from its
// own durable offset: the origin sends little more than the file.
func TestKillNineResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real server processes")
	}
	content := make([]byte, 64<<20)
	for i := range content {
		content[i] = byte(i*7 + i>>12)
	}
	o := &slowOrigin{content: content, pause: 16 * time.Millisecond} // ServeContent writes 32 KiB at a time: about 2 MiB/s per connection
	src := httptest.NewServer(o)
	t.Cleanup(src.Close)
	dir := t.TempDir()

	start := func() (*exec.Cmd, server) {
		cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--data", dir, "--fetch-allow", "127.0.0.1/32",
			"--fetch-connections", "4")
		cmd.Env = append(os.Environ(), "FERRY_TEST_RUN_MAIN=1")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, scanServerOutput(t, out)
	}

	cmd, s := start()
	resp := s.do(t, "POST", "/v1.0/me/drive/root/children",
		fmt.Sprintf(`{"@microsoft.graph.sourceUrl":%q,"name":"big.bin"}`, src.URL+"/big.bin"),
		"Prefer", "respond-async", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("upload from URL: %d", resp.StatusCode)
	}
	monitor := resp.Header.Get("Location")
	monitorPath := monitor[len(s.base):]
	began := time.Now()

	// Kill -9 once about half the file has arrived and a checkpoint had time to land.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("download did not reach half way within 60s")
		}
		r, err := http.Get(monitor)
		if err != nil {
			t.Fatal(err)
		}
		st := decodeJSON(t, r.Body)
		r.Body.Close()
		if b, _ := st["bytesTransferred"].(float64); b > float64(len(content))/2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("killing at %v after the import began", time.Since(began).Round(time.Millisecond))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	servedBefore := o.served.Load()
	o.mu.Lock()
	segmentsBefore := 0
	for _, r := range o.ranges {
		if r != "" && r != "bytes=0-" {
			segmentsBefore++
		}
	}
	requestsBefore := len(o.ranges)
	o.mu.Unlock()
	if segmentsBefore == 0 {
		t.Fatalf("origin requests before the kill %q: the import was not segmented", o.ranges)
	}

	_, s2 := start() // same data, no new token: reuse the first one
	s2.token = s.token
	code, st := pollMonitor(t, s2.base+monitorPath, 90*time.Second)
	if code != http.StatusOK || st["status"] != "completed" {
		t.Fatalf("after restart the job ended %d %v", code, st)
	}
	t.Logf("completed %v after the import began", time.Since(began).Round(time.Millisecond))
	item := decodeJSON(t, s2.do(t, "GET", "/v1.0/me/drive/items/"+st["resourceId"].(string), "").Body)
	sum := sha256.Sum256(content)
	hashes := item["file"].(map[string]any)["hashes"].(map[string]any)
	if got, want := hashes["sha256Hash"], strings.ToUpper(hex.EncodeToString(sum[:])); got != want {
		t.Fatalf("sha256Hash after resume = %v, want %s", got, want)
	}
	o.mu.Lock()
	after := append([]string(nil), o.ranges[requestsBefore:]...)
	o.mu.Unlock()
	for _, r := range after {
		if r == "" || r == "bytes=0-" {
			t.Fatalf("after the restart the origin was asked for %q (all requests %q): the import started over", r, after)
		}
	}
	refetched := o.served.Load() - int64(len(content))
	t.Logf("served %d bytes before the kill, %d in all (%.3f× the file); %d requests after the restart",
		servedBefore, o.served.Load(), float64(o.served.Load())/float64(len(content)), len(after))
	if refetched > int64(len(content))/10 {
		t.Fatalf("refetched %d bytes of a %d-byte file after the restart; want about a checkpoint interval per connection", refetched, len(content))
	}
}
