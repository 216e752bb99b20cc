// Command ferry-bench measures upload from URL against curl and aria2 on
// one machine.
//
// It writes a test file, serves it from a loopback origin, starts a real
// `ferry serve` process on a fresh data folder, and then alternates, round by
// round, `curl -o` of the URL into the data folder's filesystem, `aria2c
// -x8 -s8 -k1M` of it (when aria2c is installed) and a Ferry import of the
// same URL (wall time from the POST to the monitor's "completed", polled
// every 50 ms, the way the outside bench measures it; hashes included).
// It prints each round, the median ratios, and Ferry's peak resident
// memory (VmHWM).
//
// With -rate the origin throttles each connection to that many bytes per
// second, like many CDNs and file hosts; without it, it serves as fast as
// it can (sendfile).
//
//	go run ./cmd/ferry-bench -size 1GiB -rounds 3
//	go run ./cmd/ferry-bench -size 200MB -rate 20MB -rounds 3
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if d := os.Getenv(tickOnlyEnv); d != "" { // the idle mode's baseline (small.go)
		tickOnly(d)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ferry-bench", flag.ContinueOnError)
	sizeFlag := fs.String("size", "1GiB", "size of the test file (KiB, MiB, GiB suffixes)")
	rounds := fs.Int("rounds", 5, "rounds; each runs curl once and Ferry once")
	ferryBin := fs.String("ferry", "", "ferry binary to run (default: go build ./cmd/ferry into a temp folder)")
	workDir := fs.String("dir", "", "folder for the test file and data (default: a temp folder; removed after)")
	rateFlag := fs.String("rate", "", "throttle each origin connection to this many bytes per second (e.g. 20MB); empty: unthrottled")
	serverLog := fs.String("server-log", "", "append the server's output to this file (FERRY_LOG_LEVEL=debug adds each import's reading, writing and hashing times)")
	small := addSmallFlags(fs) // small.go
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serverLog != "" {
		f, err := os.OpenFile(*serverLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		serverOut = f
	}
	if small.enabled() {
		return small.run(ctx, *ferryBin, *workDir, out)
	}
	size, err := parseSize(*sizeFlag)
	if err != nil {
		return err
	}
	var rate int64
	if *rateFlag != "" {
		if rate, err = parseSize(*rateFlag); err != nil {
			return err
		}
	}
	aria2, _ := exec.LookPath("aria2c")
	if _, err := exec.LookPath("curl"); err != nil {
		return errors.New("curl is needed as the baseline (apt-get install curl)")
	}
	dir := *workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ferry-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if *ferryBin == "" {
		*ferryBin = filepath.Join(dir, "ferry")
		fmt.Fprintln(out, "building ferry…")
		build := exec.CommandContext(ctx, "go", "build", "-o", *ferryBin, "./cmd/ferry")
		build.Stdout, build.Stderr = out, out
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build (run from the repository root): %w", err)
		}
	}

	src := filepath.Join(dir, "source.bin")
	if err := writeRandomFile(src, size); err != nil {
		return err
	}
	origin, err := serveFile(src, rate)
	if err != nil {
		return err
	}
	defer origin.Close()
	url := "http://" + origin.Addr().String() + "/source.bin"

	data := filepath.Join(dir, "data")
	f, err := startFerry(ctx, *ferryBin, data)
	if err != nil {
		return err
	}
	defer f.stop()

	how := "unthrottled"
	if rate > 0 {
		how = "throttled to " + formatSize(rate) + "/s per connection"
	}
	tools := "curl and Ferry"
	if aria2 != "" {
		tools = "curl, aria2c -x8 -s8 -k1M and Ferry"
	} else {
		fmt.Fprintln(out, "aria2c not found: comparing with curl only")
	}
	fmt.Fprintf(out, "file %s over loopback (%s), %d rounds, alternating %s\n", formatSize(size), how, *rounds, tools)
	var vsCurl, vsAria []float64
	for i := 1; i <= *rounds; i++ {
		curlTime, curlCPU, err := timeCommand(ctx, filepath.Join(data, "curl-copy.bin"), "curl", "-sS", "-o", filepath.Join(data, "curl-copy.bin"), url)
		if err != nil {
			return err
		}
		var ariaTime, ariaCPU time.Duration
		if aria2 != "" {
			ariaTime, ariaCPU, err = timeCommand(ctx, filepath.Join(data, "aria2-copy.bin"), aria2, "-x8", "-s8", "-k1M", "-q",
				"--allow-overwrite=true", "--auto-file-renaming=false", "-d", data, "-o", "aria2-copy.bin", url)
			if err != nil {
				return err
			}
		}
		ticks0, err := cpuTicks(f.cmd.Process.Pid)
		if err != nil {
			return err
		}
		ferryTime, err := f.timeImport(ctx, url, fmt.Sprintf("round-%d.bin", i))
		if err != nil {
			return err
		}
		ticks1, err := cpuTicks(f.cmd.Process.Pid)
		if err != nil {
			return err
		}
		ferryCPU := time.Duration(ticks1-ticks0) * time.Second / clockTicks
		speed := func(d time.Duration) string { return formatSize(int64(float64(size)/d.Seconds())) + "/s" }
		line := fmt.Sprintf("round %d: curl %6.2fs (%s)", i, curlTime.Seconds(), speed(curlTime))
		if aria2 != "" {
			line += fmt.Sprintf("  aria2 %6.2fs (%s)", ariaTime.Seconds(), speed(ariaTime))
		}
		line += fmt.Sprintf("  ferry %6.2fs (%s)  ferry/curl %.3f", ferryTime.Seconds(), speed(ferryTime), ferryTime.Seconds()/curlTime.Seconds())
		vsCurl = append(vsCurl, ferryTime.Seconds()/curlTime.Seconds())
		if aria2 != "" {
			vsAria = append(vsAria, ferryTime.Seconds()/ariaTime.Seconds())
			line += fmt.Sprintf("  ferry/aria2 %.3f", ferryTime.Seconds()/ariaTime.Seconds())
		}
		line += fmt.Sprintf("  cpu curl %.2fs", curlCPU.Seconds())
		if aria2 != "" {
			line += fmt.Sprintf(" aria2 %.2fs", ariaCPU.Seconds())
		}
		line += fmt.Sprintf(" ferry %.2fs", ferryCPU.Seconds())
		fmt.Fprintln(out, line)
	}
	hwm, err := peakRSS(f.cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "median ratio ferry/curl: %.3f\n", median(vsCurl))
	if aria2 != "" {
		fmt.Fprintf(out, "median ratio ferry/aria2: %.3f\n", median(vsAria))
	}
	fmt.Fprintf(out, "ferry peak RSS (VmHWM): %s\n", formatSize(hwm))
	return nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func writeRandomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		rand.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// serveFile serves one file on 127.0.0.1 with Range support and an ETag,
// throttling each connection to rate bytes per second when rate > 0.
func serveFile(path string, rate int64) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	type connKey struct{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"bench"`)
			if rate <= 0 {
				http.ServeFile(w, r, path)
				return
			}
			http.ServeFile(&throttled{ResponseWriter: w, b: r.Context().Value(connKey{}).(*bucket)}, r, path)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, &bucket{rate: rate, start: time.Now()})
		},
	}
	go srv.Serve(ln)
	return ln, nil
}

// burst is the most sending time an idle connection saves up.
const burst = 50 * time.Millisecond

// bucket paces one connection: after n bytes it may not be earlier than
// start + n/rate.
type bucket struct {
	rate  int64
	start time.Time
	sent  int64
}

// throttled writes through a connection's bucket, in 64 KiB steps.
type throttled struct {
	http.ResponseWriter
	b *bucket
}

func (t *throttled) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		due := t.b.start.Add(time.Duration(float64(t.b.sent) / float64(t.b.rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		} else if -wait > burst {
			// An idle connection saves up at most burst of sending.
			t.b.start = t.b.start.Add(-wait - burst)
		}
		m, err := t.ResponseWriter.Write(p[:n])
		written += m
		t.b.sent += int64(m)
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// timeCommand runs a downloader and times it; dst is removed afterwards.
// It also reports the CPU time the downloader used.
func timeCommand(ctx context.Context, dst, name string, args ...string) (wall, cpu time.Duration, err error) {
	defer os.Remove(dst)
	start := time.Now()
	cmd := exec.CommandContext(ctx, name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v: %s", name, err, out)
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

type ferryProc struct {
	cmd         *exec.Cmd
	base, token string
	client      *http.Client
}

var (
	readyRE = regexp.MustCompile(`listening on (http://\S+)`)
	tokenRE = regexp.MustCompile(`token: (\S+)`)
)

// serverOut receives every line the server prints (-server-log); nil:
// they are read for the token and the ready line only.
var serverOut io.Writer

func startFerry(ctx context.Context, bin, data string) (*ferryProc, error) {
	cmd := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--data", data, "--fetch-allow", "127.0.0.1/32")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &ferryProc{cmd: cmd, client: &http.Client{Timeout: time.Minute}}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if serverOut != nil { // without the token, as any log
				fmt.Fprintln(serverOut, tokenRE.ReplaceAllString(sc.Text(), "token: [not shown]"))
			}
			if m := tokenRE.FindStringSubmatch(sc.Text()); m != nil {
				f.token = m[1]
			}
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil && f.base == "" {
				f.base = m[1]
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
		return f, nil
	case <-time.After(60 * time.Second):
		f.stop()
		return nil, errors.New("ferry printed no ready line within 60s")
	}
}

func (f *ferryProc) stop() {
	f.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { f.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		f.cmd.Process.Kill()
	}
}

// timeImport measures from the POST to the monitor saying completed.
func (f *ferryProc) timeImport(ctx context.Context, url, name string) (time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"@microsoft.graph.sourceUrl": url, "name": name, "file": map[string]any{}})
	req, _ := http.NewRequestWithContext(ctx, "POST", f.base+"/v1.0/me/drive/root/children", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	start := time.Now()
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("import answered %s", resp.Status)
	}
	monitor := resp.Header.Get("Location")
	for {
		r, err := f.client.Get(monitor)
		if err != nil {
			return 0, err
		}
		var st struct{ Status, StatusDescription string }
		json.NewDecoder(r.Body).Decode(&st)
		r.Body.Close()
		switch st.Status {
		case "completed":
			return time.Since(start), nil
		case "failed", "cancelled":
			return 0, fmt.Errorf("import %s: %s", st.Status, st.StatusDescription)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// peakRSS reads VmHWM, the process's peak resident set size, in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// clockTicks is USER_HZ: /proc/PID/stat counts CPU time in 1/100 s.
const clockTicks = 100
