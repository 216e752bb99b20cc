package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runImport is ferry import: upload from URL through a running server,
// several URLs at once, each with a bar and a total, then the new items'
// absolute paths on stdout, one per line in the order given.
func runImport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("import", "ferry import URL… [-i FILE] [--to /Folder] [flags]", stderr)
	var to, name, conflict, sha, list string
	var wait, parents bool
	fs.StringVar(&to, "to", "/", "drive folder to put the files in, e.g. /Downloads")
	fs.BoolVar(&parents, "parents", true, "create the --to folder and its parents when missing")
	fs.StringVar(&list, "i", "", "read URLs from `FILE`, one a line (blank lines and # comments skipped; - for stdin)")
	fs.StringVar(&name, "name", "", "file name (one URL only; default: from the server's answer or the URL)")
	fs.StringVar(&conflict, "conflict", "fail", "when the name is taken: fail, replace or rename")
	fs.StringVar(&sha, "sha256", "", "expected SHA-256 of the file (hex, one URL only); the import fails on a mismatch")
	fs.BoolVar(&wait, "wait", true, "wait for the imports to finish, with progress bars; --wait=false prints the monitor URLs")
	progress := registerProgress(fs)
	sources, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if list != "" {
		more, err := readURLList(list, os.Stdin)
		if err != nil {
			return err
		}
		sources = append(sources, more...)
	}
	switch {
	case len(sources) == 0:
		return usageError{"give the URL to import (several are fine, or -i FILE)"}
	case len(sources) > 1 && name != "":
		return usageError{"--name works with one URL only"}
	case len(sources) > 1 && sha != "":
		return usageError{"--sha256 works with one URL only"}
	}
	switch conflict {
	case "fail", "replace", "rename":
	default:
		return usageError{fmt.Sprintf("--conflict %q: want fail, replace or rename", conflict)}
	}
	for _, s := range sources {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError{fmt.Sprintf("%q is not an http:// or https:// URL", s)}
		}
	}
	c, err := o.client()
	if err != nil {
		return err
	}

	folderPath := cleanPath(to)
	folder, err := c.lookup(ctx, folderPath)
	switch {
	case err != nil:
		return err
	case folder == nil && !parents:
		return fmt.Errorf("folder %s does not exist", folderPath)
	case folder == nil:
		if folder, _, err = c.mkdirAll(ctx, folderPath); err != nil {
			return err
		}
	case !folder.isFolder():
		return fmt.Errorf("%s is a file, not a folder", folderPath)
	}

	jobs := make([]*importJob, len(sources))
	var failed int
	for i, s := range sources {
		j := &importJob{source: s}
		jobs[i] = j
		body := map[string]any{
			"@microsoft.graph.sourceUrl":        s,
			"@microsoft.graph.conflictBehavior": conflict,
			"file":                              map[string]any{},
		}
		if name != "" {
			body["name"] = name
		}
		if sha != "" {
			body["@ferry.sha256"] = sha
		}
		j.monitor, j.err = c.startImport(ctx, folder.ID, body)
		if j.err != nil {
			if errors.Is(j.err, errTokenRefused) || errors.As(j.err, new(unreachableError)) {
				return j.err // every other URL would meet the same
			}
			j.err = c.explainImport(j.err, s, name, folderPath)
			failed++
		}
	}
	if !wait {
		for _, j := range jobs {
			if j.err != nil {
				fmt.Fprintf(stderr, "ferry: %s\n", j.err)
			} else {
				fmt.Fprintln(stdout, j.monitor)
			}
		}
		if failed > 0 {
			return silentError{fmt.Sprintf("%d of %d imports could not start", failed, len(jobs))}
		}
		return nil
	}

	bs := newBars(ctx, stderr, *progress)
	var doneCount atomic.Int64
	total := bs.addTotal(func() string {
		return fmt.Sprintf("total (%d/%d)", doneCount.Load(), len(jobs))
	})
	if len(jobs) == 1 {
		total.finish(true) // one bar is its own total
		total = nil
	}
	// Each import polls its monitor; many imports poll less often each, so
	// that a list of hundreds does not flood the server.
	every := min(250*time.Millisecond*time.Duration((len(jobs)+7)/8), 5*time.Second)
	var wg sync.WaitGroup
	for _, j := range jobs {
		if j.err != nil {
			doneCount.Add(1)
			continue
		}
		j.bar = bs.add(shortSource(j.source), 0, len(jobs) > manyBars)
		wg.Go(func() {
			j.status, j.err = c.watch(ctx, j.monitor, every, func(st *jobStatus) {
				j.bar.set(st.Bytes, totalOf(st))
				j.bytes.Store(st.Bytes)
				j.total.Store(totalOf(st))
			})
			if j.err == nil && j.status.Status != "completed" {
				j.err = fmt.Errorf("%s: import %s", j.source, finishedWord(j.status.Status))
				if j.status.Status == "failed" {
					j.err = fmt.Errorf("%s: import failed: %s", j.source, j.status.why())
					if j.status.ErrorCode == "nameAlreadyExists" {
						j.err = fmt.Errorf("%s: name %s is already taken in %s (give --conflict rename or replace)",
							j.source, takenName(j.status, name, j.source), folderPath)
					}
				}
			}
			j.bar.finish(j.err == nil)
			doneCount.Add(1)
		})
	}
	// The total bar follows the sum of the bars.
	stop := make(chan struct{})
	var tg sync.WaitGroup
	if total != nil {
		tg.Go(func() {
			t := time.NewTicker(150 * time.Millisecond)
			defer t.Stop()
			for {
				var sum, size int64
				for _, j := range jobs {
					sum += j.bytes.Load()
					size += max(j.total.Load(), j.bytes.Load())
				}
				total.set(sum, size)
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	tg.Wait()
	if total != nil {
		var sum int64
		for _, j := range jobs {
			sum += j.bytes.Load()
		}
		total.set(sum, sum)
		total.finish(true)
	}
	bs.wait()

	failed = 0
	for _, j := range jobs {
		if j.err == nil {
			p, err := c.itemPath(ctx, j.status.ResourceID)
			if err == nil {
				fmt.Fprintln(stdout, p)
				continue
			}
			j.err = fmt.Errorf("%s: imported, but its path is unknown: %s", j.source, err)
		}
		failed++
		if errors.Is(j.err, context.Canceled) {
			j.err = fmt.Errorf("%s: interrupted (the import goes on on the server; ferry jobs shows it)", j.source)
		}
		fmt.Fprintf(stderr, "ferry: %s\n", j.err)
	}
	switch {
	case failed == 0:
		return nil
	case len(jobs) == 1:
		return silentError{jobs[0].err.Error()}
	}
	return silentError{fmt.Sprintf("%d of %d imports failed", failed, len(jobs))}
}

// takenName is the name a failed import found taken: the one in the
// server's message ("an item named \"a.txt\" already exists"), else the
// one asked for, else the URL's last part.
func takenName(st *jobStatus, asked, source string) string {
	if m := quotedName.FindStringSubmatch(st.why()); m != nil {
		return m[1]
	}
	return cmpOr(cmpOr(st.Name, asked), shortSource(source))
}

var quotedName = regexp.MustCompile(`"([^"]+)"`)

// manyBars is the most imports whose bars stay on screen when done; with
// more, a finished bar makes room for the running ones.
const manyBars = 8

// silentError is an error already told to the user on stderr: the process
// exits 1 without repeating it (see main).
type silentError struct{ msg string }

func (e silentError) Error() string { return e.msg }

type importJob struct {
	source, monitor string
	status          *jobStatus
	err             error
	bar             *bar
	bytes, total    atomic.Int64
}

func totalOf(st *jobStatus) int64 {
	if st.Total != nil {
		return *st.Total
	}
	return 0
}

// shortSource is the last part of a URL's path, for a bar's label.
func shortSource(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	p := strings.TrimSuffix(u.Path, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 && i+1 < len(p) {
		if name, err := url.PathUnescape(p[i+1:]); err == nil {
			return name
		}
		return p[i+1:]
	}
	return u.Host
}

// readURLList reads one URL a line from a file (or stdin for "-"),
// skipping blank lines and # comments.
func readURLList(name string, stdin io.Reader) ([]string, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, plainFSError(err)
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %s", name, err)
	}
	return out, nil
}

// startImport posts an upload-from-URL request into folder id and returns
// the monitor URL. A 429 is waited out a few times: a long list of URLs
// may meet the per-user rate.
func (c *apiClient) startImport(ctx context.Context, folderID string, body any) (string, error) {
	for attempt := 0; ; attempt++ {
		h, err := c.callAsync(ctx, itemIDURL(folderID, "children"), body)
		if err == nil {
			loc := h.Get("Location")
			if loc == "" {
				return "", errors.New("the server accepted the import but gave no monitor URL")
			}
			return loc, nil
		}
		var e *apiError
		if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests || attempt >= 5 {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(max(e.RetryAfter, time.Second)):
		}
	}
}

func (c *apiClient) callAsync(ctx context.Context, u string, in any) (http.Header, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, http.MethodPost, u, strings.NewReader(string(b)), http.Header{
		"Content-Type": {"application/json"},
		"Prefer":       {"respond-async"},
	})
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("the server answered HTTP %d instead of accepting the import", resp.StatusCode)
	}
	return resp.Header, nil
}

// explainImport words a refused import.
func (c *apiClient) explainImport(err error, source, name, folder string) error {
	var e *apiError
	if errors.As(err, &e) {
		switch {
		case e.Status == http.StatusConflict:
			n := name
			if n == "" {
				n = shortSource(source)
			}
			return fmt.Errorf("%s: name %s is already taken in %s (give --conflict rename or replace)", source, n, folder)
		case e.Status == http.StatusBadRequest && e.Message != "":
			return fmt.Errorf("%s: %s", source, e.Message)
		}
	}
	return fmt.Errorf("%s: %s", source, c.explain(err, folder))
}

// watch polls a monitor until the job ends, calling fn with each status.
// A monitor that does not answer now and then is not a failed job: it is
// tried again for a while.
func (c *apiClient) watch(ctx context.Context, monitor string, every time.Duration, fn func(*jobStatus)) (*jobStatus, error) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	misses := 0
	for {
		st, err := c.pollMonitor(ctx, monitor)
		switch {
		case err == nil:
			misses = 0
			fn(st)
			if st.finished() {
				return st, nil
			}
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, new(unreachableError)) && misses < 40:
			misses++
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// itemPath is the absolute drive path of the item with the given id.
func (c *apiClient) itemPath(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", errors.New("the monitor named no item")
	}
	var it item
	if _, err := c.call(ctx, http.MethodGet, itemIDURL(id, ""), nil, &it); err != nil {
		if statusOf(err) == http.StatusNotFound {
			return "", errors.New("the new item is gone already")
		}
		return "", c.explain(err, "")
	}
	return it.drivePath(), nil
}
