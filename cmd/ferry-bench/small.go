package main

// The small-imports and idle modes:
//
//	go run ./cmd/ferry-bench -small 300 -clients 30   # 300 imports of 64 KiB, 30 clients
//	go run ./cmd/ferry-bench -idle 30s                # CPU of an idle server
//
// -small starts a real `ferry serve` with its defaults on a fresh data
// folder, posts the imports through the clients (each posts its share, then
// polls its monitors in order until each has completed) and prints imports per
// second from the first POST to the last "completed". As a baseline in the
// same run, the same clients then PUT the same number of files of the same
// size (simple upload, no job), which is what the bytes cost without the
// queue. -idle runs a few imports on a fresh server (-idle-imports), then
// leaves it alone and reads its CPU time from /proc/PID/stat.

import (
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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// smallMode holds the flags of the small-imports and idle modes.
type smallMode struct {
	n           int
	clients     int
	size        string
	idle        time.Duration
	idleImports int
}

func addSmallFlags(fs *flag.FlagSet) *smallMode {
	m := &smallMode{}
	fs.IntVar(&m.n, "small", 0, "run the small-imports mode: this many imports of -small-size, posted by -clients clients")
	fs.IntVar(&m.clients, "clients", 30, "concurrent clients of -small")
	fs.StringVar(&m.size, "small-size", "64KiB", "size of each file of -small")
	fs.DurationVar(&m.idle, "idle", 0, "run the idle mode: measure the CPU an idle server uses over this long")
	fs.IntVar(&m.idleImports, "idle-imports", 3, "imports of -small-size the idle mode runs before the server is left alone")
	return m
}

// enabled reports whether a mode of this file was asked for.
func (m *smallMode) enabled() bool { return m.n > 0 || m.idle > 0 }

func (m *smallMode) run(ctx context.Context, ferryBin, workDir string, out io.Writer) error {
	size, err := parseSize(m.size)
	if err != nil {
		return err
	}
	if m.clients <= 0 {
		return errors.New("-clients must be positive")
	}
	dir := workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ferry-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if ferryBin == "" {
		ferryBin = filepath.Join(dir, "ferry")
		fmt.Fprintln(out, "building ferry…")
		build := exec.CommandContext(ctx, "go", "build", "-o", ferryBin, "./cmd/ferry")
		build.Stdout, build.Stderr = out, out
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build (run from the repository root): %w", err)
		}
	}
	f, err := startFerry(ctx, ferryBin, filepath.Join(dir, "data"))
	if err != nil {
		return err
	}
	defer f.stop()
	f.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: m.clients}}

	body := make([]byte, size)
	rand.Read(body)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go (&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"small"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})}).Serve(ln)
	origin := "http://" + ln.Addr().String()

	if m.idle > 0 {
		// An idle server is one that has worked and has nothing left to
		// do, not only one that never started.
		var monitors []string
		for i := range m.idleImports {
			mon, err := f.postImport(ctx, fmt.Sprintf("%s/f/%d", origin, i), fmt.Sprintf("import-%d.bin", i))
			if err != nil {
				return err
			}
			monitors = append(monitors, mon)
		}
		if err := f.waitMonitor(ctx, monitors); err != nil {
			return err
		}
		fmt.Fprintf(out, "idle server: %d imports of %s completed\n", m.idleImports, formatSize(size))
		return measureIdle(ctx, f, m.idle, out)
	}

	fmt.Fprintf(out, "%d imports of %s from %d clients (server defaults, SQLite)\n", m.n, formatSize(size), m.clients)
	imports, err := m.together(ctx, func(ctx context.Context, i int) (string, error) {
		return f.postImport(ctx, fmt.Sprintf("%s/f/%d", origin, i), fmt.Sprintf("import-%d.bin", i))
	}, f.waitMonitor)
	if err != nil {
		return err
	}
	puts, err := m.together(ctx, func(ctx context.Context, i int) (string, error) {
		return "", f.put(ctx, fmt.Sprintf("put-%d.bin", i), body)
	}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "imports: %d in %.2fs = %.0f imports/s\n", m.n, imports.Seconds(), float64(m.n)/imports.Seconds())
	fmt.Fprintf(out, "baseline, simple PUT of the same bytes: %d in %.2fs = %.0f PUTs/s (imports/PUTs %.2f)\n",
		m.n, puts.Seconds(), float64(m.n)/puts.Seconds(), puts.Seconds()/imports.Seconds())
	return nil
}

// together runs start for 0..n-1 spread over the clients, and then, per
// client, wait for every result of start, and returns the time from the
// first start to the last wait.
func (m *smallMode) together(ctx context.Context, start func(context.Context, int) (string, error),
	wait func(context.Context, []string) error) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range m.clients {
		wg.Go(func() {
			var mine []string
			for {
				i := int(next.Add(1)) - 1
				if i >= m.n {
					break
				}
				r, err := start(ctx, i)
				if err != nil {
					cancel(err)
					return
				}
				mine = append(mine, r)
			}
			if wait != nil {
				if err := wait(ctx, mine); err != nil {
					cancel(err)
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func (f *ferryProc) postImport(ctx context.Context, url, name string) (string, error) {
	body, _ := json.Marshal(map[string]any{"@microsoft.graph.sourceUrl": url, "name": name, "file": map[string]any{}})
	req, _ := http.NewRequestWithContext(ctx, "POST", f.base+"/v1.0/me/drive/root/children", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("import answered %s: %s", resp.Status, msg)
	}
	return resp.Header.Get("Location"), nil
}

// waitMonitor polls the monitors one after the other, each every 25 ms
// until it has completed, as a client waiting for its imports in order
// does.
func (f *ferryProc) waitMonitor(ctx context.Context, monitors []string) error {
	for _, mon := range monitors {
		for {
			req, _ := http.NewRequestWithContext(ctx, "GET", mon, nil)
			r, err := f.client.Do(req)
			if err != nil {
				return err
			}
			var st struct{ Status, StatusDescription string }
			json.NewDecoder(r.Body).Decode(&st)
			r.Body.Close()
			if st.Status == "completed" {
				break
			}
			if st.Status == "failed" || st.Status == "cancelled" {
				return fmt.Errorf("import %s: %s", st.Status, st.StatusDescription)
			}
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(25 * time.Millisecond):
			}
		}
	}
	return nil
}

func (f *ferryProc) put(ctx context.Context, name string, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, "PUT", f.base+"/v1.0/me/drive/root:/"+name+":/content", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT answered %s: %s", resp.Status, msg)
	}
	return nil
}

// tickOnlyEnv, set to a duration, makes ferry-bench a process that does
// nothing but wake up that often: the idle mode's baseline.
const tickOnlyEnv = "FERRY_BENCH_TICK_ONLY"

// tickOnly wakes up every d (a duration) until the process is killed.
func tickOnly(d string) {
	every, err := time.ParseDuration(d)
	if err != nil || every <= 0 {
		fmt.Fprintf(os.Stderr, "ferry-bench: %s=%q is not a positive duration\n", tickOnlyEnv, d)
		os.Exit(2)
	}
	for range time.Tick(every) {
	}
}

// idleFloor is how often River's job completer wakes up while River's
// client runs (a 50 ms ticker in River v0.51.2 that no option changes): a
// server that kept River running when idle could use no less CPU than a
// process that does only that. Ferry's queue parks River when idle
// (jobs/park.go), so the server should use less than this baseline.
const idleFloor = 50 * time.Millisecond

// measureIdle waits for the server to settle, then reads its CPU time
// before and after d and prints the share of one core it used; beside it,
// over the same time, the same for a process that only wakes up every
// idleFloor (the baseline).
func measureIdle(ctx context.Context, f *ferryProc, d time.Duration, out io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	base := exec.CommandContext(ctx, self)
	base.Env = append(os.Environ(), tickOnlyEnv+"="+idleFloor.String())
	if err := base.Start(); err != nil {
		return fmt.Errorf("start the baseline process: %w", err)
	}
	defer func() {
		base.Process.Kill()
		base.Wait()
	}()
	pids := []int{f.cmd.Process.Pid, base.Process.Pid}
	fmt.Fprintf(out, "idle server: settling 5s, then measuring CPU over %v\n", d)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	var c0, c1 [2]int64
	for i, pid := range pids {
		if c0[i], err = cpuTicks(pid); err != nil {
			return err
		}
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	for i, pid := range pids {
		if c1[i], err = cpuTicks(pid); err != nil {
			return err
		}
	}
	took := time.Since(t0)
	// Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
	used := func(i int) time.Duration { return time.Duration(c1[i]-c0[i]) * 10 * time.Millisecond }
	share := func(i int) float64 { return 100 * used(i).Seconds() / took.Seconds() }
	fmt.Fprintf(out, "idle CPU: %v in %.1fs = %.2f%% of one core\n", used(0), took.Seconds(), share(0))
	fmt.Fprintf(out, "baseline, a process that only wakes up every %v (as River's job completer does): %v = %.2f%% (idle/baseline %.2f)\n",
		idleFloor, used(1), share(1), float64(c1[0]-c0[0])/float64(max(c1[1]-c0[1], 1)))
	return nil
}

// cpuTicks returns utime+stime of pid from /proc/PID/stat, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from the
	// closing parenthesis.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	var total int64
	for _, f := range fields[11:13] { // utime, stime (fields 14 and 15)
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}
