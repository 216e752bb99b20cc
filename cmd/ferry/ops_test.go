package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncBuffer collects a server's log while it writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var metricsLine = regexp.MustCompile(`metrics on (http://\S+/metrics)`)

// opsServer is a server started in process whose stdout and log are kept.
type opsServer struct {
	server
	metrics string // the /metrics URL, when --metrics-listen was given
	stdout  *syncBuffer
	log     *syncBuffer
	stop    func() error
}

// startLogged runs `ferry serve` through run() on 127.0.0.1:0, keeping its
// output; stop ends it and returns run's result (also called at cleanup).
func startLogged(t *testing.T, env map[string]string, args ...string) *opsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	o := &opsServer{stdout: &syncBuffer{}, log: &syncBuffer{}}
	done := make(chan error, 1)
	getenv := func(k string) string { return env[k] }
	args = append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)
	go func() { done <- run(ctx, args, getenv, io.MultiWriter(pw, o.stdout), o.log); pw.Close() }()
	o.server = scanServerOutput(t, pr)
	if m := metricsLine.FindStringSubmatch(o.stdout.String()); m != nil {
		o.metrics = m[1]
	}
	var once sync.Once
	var result error
	o.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = fmt.Errorf("serve did not stop within 30s of its context ending")
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := o.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return o
}

// importURL posts an upload from URL and returns the response.
func (s server) importURL(t *testing.T, source, name string) *http.Response {
	t.Helper()
	resp := s.do(t, "POST", "/v1.0/me/drive/root/children",
		fmt.Sprintf(`{"@microsoft.graph.sourceUrl":%q,"name":%q,"file":{}}`, source, name),
		"Prefer", "respond-async", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("upload from URL: %d %s", resp.StatusCode, b)
	}
	return resp
}

// scrape reads /metrics and parses it strictly with Prometheus' own text
// parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want; -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// originWith404 serves content at every path but /missing, which is 404.
func originWith404(t *testing.T, content []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "payload.bin", time.Unix(1700000000, 0), bytes.NewReader(content))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestMetrics(t *testing.T) {
	content := []byte(strings.Repeat("metrics count bytes\n", 5000))
	src := originWith404(t, content)
	s := startLogged(t, nil, "--data", t.TempDir(), "--fetch-allow", "127.0.0.1/32", "--metrics-listen", "127.0.0.1:0")
	if s.metrics == "" {
		t.Fatalf("no metrics line in the output:\n%s", s.stdout)
	}
	before := scrape(t, s.metrics)
	for _, name := range []string{"ferry_imports_started_total", "ferry_fetch_bytes_total", "ferry_jobs", "ferry_imports_active", "ferry_http_connections"} {
		if before[name] == nil {
			t.Errorf("%s missing before the first import", name)
		}
	}
	if got := value(before, "ferry_imports_started_total", nil); got != 0 {
		t.Errorf("imports started before any: %v", got)
	}

	ok := s.importURL(t, src.URL+"/payload.bin", "ok.bin")
	if code, st := pollMonitor(t, ok.Header.Get("Location"), 60*time.Second); st["status"] != "completed" {
		t.Fatalf("import: %d %v", code, st)
	}
	bad := s.importURL(t, src.URL+"/missing", "bad.bin")
	_, st := pollMonitor(t, bad.Header.Get("Location"), 60*time.Second)
	if st["status"] != "failed" {
		t.Fatalf("import of a missing file: %v", st)
	}
	code, _ := st["errorCode"].(string)
	refused := s.do(t, "POST", "/v1.0/me/drive/root/children", `{"@microsoft.graph.sourceUrl":"http://10.0.0.1/x","file":{}}`,
		"Prefer", "respond-async", "Content-Type", "application/json")
	if refused.StatusCode != http.StatusBadRequest {
		t.Fatalf("import from a private address: %d, want 400", refused.StatusCode)
	}

	after := scrape(t, s.metrics)
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ferry_imports_started_total", nil, 2},
		{"ferry_imports_finished_total", map[string]string{"outcome": "completed", "code": ""}, 1},
		{"ferry_imports_finished_total", map[string]string{"outcome": "failed", "code": code}, 1},
		{"ferry_imports_active", nil, 0},
		{"ferry_ssrf_refusals_total", nil, 1},
		{"ferry_jobs", map[string]string{"state": "notStarted"}, 0},
		{"ferry_http_requests_total", map[string]string{"route": "POST /v1.0/me/drive/{item}/children", "status": "202"}, 2},
		{"ferry_http_request_duration_seconds", map[string]string{"route": "POST /v1.0/me/drive/{item}/children"}, 3},
	} {
		if got := value(after, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if got := value(after, "ferry_fetch_bytes_total", nil); got < float64(len(content)) {
		t.Errorf("ferry_fetch_bytes_total = %v, want at least %d", got, len(content))
	}
	// Routes are patterns: no id, name or token in any label.
	for _, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); strings.Contains(v, "mon_") || strings.Contains(v, "ok.bin") || strings.Contains(v, "fy_") {
					t.Errorf("%s has label %s=%q", f.GetName(), l.GetName(), v)
				}
			}
		}
	}

	// The API listener never serves metrics, and the metrics listener
	// serves nothing else.
	if resp := s.do(t, "GET", "/metrics", ""); resp.StatusCode == 200 {
		t.Errorf("the API listener answered GET /metrics with 200")
	}
	base := strings.TrimSuffix(s.metrics, "/metrics")
	resp, err := http.Get(base + "/v1.0/me/drive")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the metrics listener answered the API with %d", resp.StatusCode)
	}
}

func TestMetricsOffByDefault(t *testing.T) {
	s := startLogged(t, nil, "--data", t.TempDir())
	if strings.Contains(s.stdout.String(), "metrics on") {
		t.Errorf("a metrics listener started without --metrics-listen:\n%s", s.stdout)
	}
	if resp := s.do(t, "GET", "/metrics", ""); resp.StatusCode == 200 {
		t.Errorf("GET /metrics on the API listener: 200")
	}
}

// logLines parses a JSON log.
func logLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestLogTracesFailedImport follows one failed import from its POST to its
// last log line by request id, and checks that the log holds neither the
// token nor the source URL's query, nor River's routine chatter at info.
func TestLogTracesFailedImport(t *testing.T) {
	src := originWith404(t, []byte("x"))
	s := startLogged(t, nil, "--data", t.TempDir(), "--fetch-allow", "127.0.0.1/32", "--log-format", "json")
	const secret = "sig=TOPSECRET"
	resp := s.importURL(t, src.URL+"/missing?"+secret, "")
	rid := resp.Header.Get("request-id")
	if rid == "" || resp.Header.Get("X-Request-Id") != rid {
		t.Fatalf("request-id %q, X-Request-Id %q: want one id in both", rid, resp.Header.Get("X-Request-Id"))
	}
	monitor := resp.Header.Get("Location")
	job := monitor[strings.LastIndex(monitor, "/")+1:]
	if _, st := pollMonitor(t, monitor, 60*time.Second); st["status"] != "failed" {
		t.Fatalf("import of a missing file: %v", st)
	}
	if err := s.stop(); err != nil { // flushes every line of the job
		t.Fatal(err)
	}
	log := s.log.String()
	for _, leak := range []string{s.token, "TOPSECRET"} {
		if strings.Contains(log, leak) {
			t.Errorf("the log holds %q", leak)
		}
	}

	var post map[string]any
	var jobLines []map[string]any
	for _, l := range logLines(t, log) {
		if l["msg"] == "request" && l["request_id"] == rid {
			post = l
		}
		if l["job"] == job {
			jobLines = append(jobLines, l)
		}
		if lvl := l["level"]; lvl == "INFO" && strings.Contains(strings.ToLower(fmt.Sprint(l["msg"])), "river") {
			t.Errorf("River chatter at info: %v", l)
		}
		if lvl := l["level"]; lvl == "INFO" && strings.Contains(fmt.Sprint(l["msg"]), "migrat") {
			t.Errorf("migration chatter at info: %v", l)
		}
	}
	if post == nil {
		t.Fatalf("no request line with request_id %s in:\n%s", rid, log)
	}
	for k, want := range map[string]any{"level": "INFO", "method": "POST", "route": "POST /v1.0/me/drive/{item}/children", "status": 202.0, "user": "me"} {
		if post[k] != want {
			t.Errorf("request line %s = %v, want %v", k, post[k], want)
		}
	}
	if _, ok := post["took"]; !ok {
		t.Errorf("request line has no duration: %v", post)
	}
	if len(jobLines) == 0 {
		t.Fatalf("no log line names job %s:\n%s", job, log)
	}
	for _, l := range jobLines {
		if l["request_id"] != rid {
			t.Errorf("job line without the request id %s: %v", rid, l)
		}
	}
	last := jobLines[len(jobLines)-1]
	if !strings.Contains(fmt.Sprint(last["msg"]), "failed") {
		t.Errorf("the job's last line is %v, want its failure", last)
	}
}

func TestLogLevelAndFormat(t *testing.T) {
	s := startLogged(t, nil, "--data", t.TempDir(), "--log-level", "warn")
	s.do(t, "GET", "/healthz", "")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.log.String(), "level=INFO") {
		t.Errorf("--log-level warn logged info lines:\n%s", s.log)
	}
	for _, bad := range [][]string{{"--log-level", "loud"}, {"--log-format", "xml"}} {
		err := run(t.Context(), append([]string{"serve", "--data", t.TempDir()}, bad...), func(string) string { return "" }, io.Discard, io.Discard)
		if exitCode(err) != 2 {
			t.Errorf("serve %v: %v, want a usage error", bad, err)
		}
	}
}
