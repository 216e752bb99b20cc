// Package metrics holds Ferry's Prometheus metrics: one registry, built by
// cmd/ferry and served on its own listener, and the methods through which
// the other packages report. Those packages declare the small interface
// they need and never import Prometheus; every method is safe on a nil
// *Metrics, which records nothing.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Import outcomes, the values of ferry_imports_finished_total's outcome label.
const (
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
)

// JobCounter counts the jobs that have not ended, by status, across every
// node sharing the database (sqlstore.Store implements it).
type JobCounter interface {
	UnfinishedJobs(ctx context.Context) (map[string]int, error)
}

// Metrics is the set of Ferry's metrics. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	importsStarted   prometheus.Counter
	importsFinished  *prometheus.CounterVec
	importsActive    prometheus.Gauge
	fetchBytes       prometheus.Counter
	fetchRetries     prometheus.Counter
	ssrfRefusals     prometheus.Counter
	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	httpConns        prometheus.Gauge
	httpConnsRefused prometheus.Counter
	bodyTimeouts     prometheus.Counter
	fragments        prometheus.Counter
	commits          *prometheus.CounterVec
	dbRetries        prometheus.Counter
}

// New builds the metrics on a fresh registry, with Go runtime and process
// metrics beside Ferry's own. jobs, when not nil, is asked for the queue
// depth on every scrape (with a 2-second limit).
func New(jobs JobCounter) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	m.importsStarted = counter("ferry_imports_started_total", "Uploads from URL accepted (queued).")
	m.importsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_imports_finished_total",
		Help: "Uploads from URL that ended, by outcome (completed, failed, cancelled) and, for failures, the monitor's errorCode.",
	}, []string{"outcome", "code"})
	m.reg.MustRegister(m.importsFinished)
	m.importsActive = gauge("ferry_imports_active", "Uploads from URL downloading on this node now.")
	m.fetchBytes = counter("ferry_fetch_bytes_total", "Bytes uploads from URL have fetched from their origins.")
	m.fetchRetries = counter("ferry_fetch_retries_total", "Download attempts that ended in a transient error and will be tried again.")
	m.ssrfRefusals = counter("ferry_ssrf_refusals_total", "Uploads from URL refused because their source address is not allowed (SSRF guard).")
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_http_requests_total",
		Help: "API requests answered, by route pattern and status code.",
	}, []string{"route", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_http_request_duration_seconds",
		Help:    "Time from a request's arrival until its handler returned, by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"route"})
	m.reg.MustRegister(m.httpRequests, m.httpDuration)
	m.httpConns = gauge("ferry_http_connections", "Client connections open on the API listener.")
	m.httpConnsRefused = counter("ferry_http_connections_refused_total", "Connections closed at once because their client address held --max-conns-per-client already.")
	m.bodyTimeouts = counter("ferry_http_body_timeouts_total", "Request bodies cut off after sending nothing for --body-idle-timeout.")
	m.fragments = counter("ferry_upload_session_fragments_total", "Upload-session fragments accepted.")
	m.commits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_upload_session_commits_total",
		Help: "Upload sessions that ended in a commit attempt, by outcome (completed, failed).",
	}, []string{"outcome"})
	m.reg.MustRegister(m.commits)
	m.dbRetries = counter("ferry_db_retries_total", "Database transactions run again after a transient failure (busy, serialization).")
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if jobs != nil {
		m.reg.MustRegister(&queueCollector{jobs: jobs})
	}
	return m
}

// Handler serves the registry in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// Registry returns the registry, for tests that gather it directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ImportStarted counts an accepted upload from URL.
func (m *Metrics) ImportStarted() {
	if m != nil {
		m.importsStarted.Inc()
	}
}

// ImportFinished counts an upload from URL that ended; code is the
// monitor's errorCode ("" unless failed). A refused source address also
// counts as an SSRF refusal.
func (m *Metrics) ImportFinished(outcome, code string) {
	if m == nil {
		return
	}
	m.importsFinished.WithLabelValues(outcome, code).Inc()
}

// SSRFRefused counts a source refused by the fetch guard.
func (m *Metrics) SSRFRefused() {
	if m != nil {
		m.ssrfRefusals.Inc()
	}
}

// ImportsActive adds delta to the imports downloading on this node.
func (m *Metrics) ImportsActive(delta int) {
	if m != nil {
		m.importsActive.Add(float64(delta))
	}
}

// FetchBytes counts n bytes fetched from an origin.
func (m *Metrics) FetchBytes(n int64) {
	if m != nil && n > 0 {
		m.fetchBytes.Add(float64(n))
	}
}

// FetchRetry counts a download attempt that will be tried again.
func (m *Metrics) FetchRetry() {
	if m != nil {
		m.fetchRetries.Inc()
	}
}

// HTTPRequest records one answered request. route must be a pattern
// (never a path with ids in it).
func (m *Metrics) HTTPRequest(route string, status int, took time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(took.Seconds())
}

// HTTPConnections adds delta to the open client connections.
func (m *Metrics) HTTPConnections(delta int) {
	if m != nil {
		m.httpConns.Add(float64(delta))
	}
}

// HTTPConnectionRefused counts a connection closed by the per-client cap.
func (m *Metrics) HTTPConnectionRefused() {
	if m != nil {
		m.httpConnsRefused.Inc()
	}
}

// BodyTimeout counts a request body cut off for idleness.
func (m *Metrics) BodyTimeout() {
	if m != nil {
		m.bodyTimeouts.Inc()
	}
}

// SessionFragment counts an accepted upload-session fragment.
func (m *Metrics) SessionFragment() {
	if m != nil {
		m.fragments.Inc()
	}
}

// SessionCommit counts an upload session's commit by outcome.
func (m *Metrics) SessionCommit(outcome string) {
	if m != nil {
		m.commits.WithLabelValues(outcome).Inc()
	}
}

// DBRetry counts a transaction run again.
func (m *Metrics) DBRetry() {
	if m != nil {
		m.dbRetries.Inc()
	}
}

// queueCollector reports ferry_jobs{state} from the database at scrape
// time, so that every node shows the same, current queue.
type queueCollector struct{ jobs JobCounter }

var (
	jobsDesc = prometheus.NewDesc("ferry_jobs", "Jobs (uploads from URL and copies) that have not ended, by state, across all nodes.", []string{"state"}, nil)
	// states are always reported, at 0 when empty, so that a dashboard
	// sees the series before the first job.
	states = []string{"notStarted", "inProgress", "waiting", "cancelPending"}
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := c.jobs.UnfinishedJobs(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(jobsDesc, err)
		return
	}
	seen := map[string]bool{}
	for _, s := range states {
		seen[s] = true
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n[s]), s)
	}
	for s, v := range n {
		if !seen[s] {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(v), s)
		}
	}
}
