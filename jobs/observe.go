package jobs

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"time"

	"github.com/ferrydrive/ferry"
)

// Metrics receives the queue's measurements (*metrics.Metrics implements
// it). Config.Metrics may be nil.
type Metrics interface {
	// ImportStarted counts an accepted upload from URL.
	ImportStarted()
	// ImportFinished counts an upload from URL that ended: outcome is
	// completed, failed or cancelled; code the monitor's errorCode.
	ImportFinished(outcome, code string)
	// ImportsActive adds delta to the imports downloading on this node.
	ImportsActive(delta int)
	// FetchBytes counts bytes fetched from origins.
	FetchBytes(n int64)
	// FetchRetry counts an attempt that will be tried again.
	FetchRetry()
	// SSRFRefused counts an import refused when requested because its
	// source is an address the fetch guard refuses (fetch counts the
	// refusals at dial time itself, Options.Refusals).
	SSRFRefused()
}

type noMetrics struct{}

func (noMetrics) ImportStarted()                {}
func (noMetrics) ImportFinished(string, string) {}
func (noMetrics) ImportsActive(int)             {}
func (noMetrics) FetchBytes(int64)              {}
func (noMetrics) FetchRetry()                   {}
func (noMetrics) SSRFRefused()                  {}

// observedStore wraps the queue's Store to measure the queue where its
// state changes, whichever code path changes it: a job inserted, claimed,
// reporting progress, set back to waiting, finished or committed. It also
// remembers, for the log, the request id of every job it sees.
type observedStore struct {
	Store
	m   Metrics
	ids *requestIDs

	mu     sync.Mutex
	active map[string]bool  // imports this node has claimed
	bytes  map[string]int64 // progress last recorded per active import
}

func observe(s Store, m Metrics, ids *requestIDs) *observedStore {
	return &observedStore{Store: s, m: m, ids: ids, active: map[string]bool{}, bytes: map[string]int64{}}
}

func (o *observedStore) InsertJob(ctx context.Context, j *ferry.Job, rate float64, burst int, enqueue func(tx *sql.Tx) error) error {
	err := o.Store.InsertJob(ctx, j, rate, burst, enqueue)
	if err == nil {
		o.ids.remember(j.ID, j.RequestID)
		if j.Operation == ferry.OpDownloadURL {
			o.m.ImportStarted()
		}
	}
	return err
}

func (o *observedStore) Job(ctx context.Context, id string) (*ferry.Job, error) {
	j, err := o.Store.Job(ctx, id)
	if err == nil {
		o.ids.remember(j.ID, j.RequestID)
	}
	return j, err
}

// ClaimJob starts counting an import as active on this node, from the
// bytes it has staged already, so that a resumed import counts only what
// it fetches now.
func (o *observedStore) ClaimJob(ctx context.Context, id, runner string, staleBefore time.Time) (bool, error) {
	ok, err := o.Store.ClaimJob(ctx, id, runner, staleBefore)
	if !ok || err != nil {
		return ok, err
	}
	o.claimed(ctx, id)
	return ok, err
}

// StartClaimJob counts the import as ClaimJob does.
func (o *observedStore) StartClaimJob(ctx context.Context, id string, limit int, runner string) (bool, error) {
	ok, err := o.Store.StartClaimJob(ctx, id, limit, runner)
	if !ok || err != nil {
		return ok, err
	}
	o.claimed(ctx, id)
	return ok, err
}

func (o *observedStore) claimed(ctx context.Context, id string) {
	j, jerr := o.Job(ctx, id)
	if jerr != nil || j.Operation != ferry.OpDownloadURL {
		return
	}
	o.mu.Lock()
	if !o.active[id] {
		o.active[id] = true
		o.bytes[id] = max(j.Bytes, 0)
		o.m.ImportsActive(1)
	}
	o.mu.Unlock()
}

func (o *observedStore) ReleaseJob(ctx context.Context, id, runner string) error {
	err := o.Store.ReleaseJob(ctx, id, runner)
	o.inactive(id)
	return err
}

// inactive stops counting an import as active on this node: its claim was
// released, or its attempt ended it.
func (o *observedStore) inactive(id string) {
	o.mu.Lock()
	if o.active[id] {
		delete(o.active, id)
		delete(o.bytes, id)
		o.m.ImportsActive(-1)
	}
	o.mu.Unlock()
}

func (o *observedStore) UpdateJobProgress(ctx context.Context, id string, bytes, total int64, bps float64) error {
	err := o.Store.UpdateJobProgress(ctx, id, bytes, total, bps)
	if err == nil {
		o.progress(id, bytes)
	}
	return err
}

// progress counts the bytes an active import added since it last
// reported. A download that starts over reports fewer bytes than before:
// that is a new baseline, not negative bytes.
func (o *observedStore) progress(id string, bytes int64) {
	o.mu.Lock()
	last, ok := o.bytes[id]
	if ok {
		o.bytes[id] = bytes
	}
	o.mu.Unlock()
	if ok && bytes > last {
		o.m.FetchBytes(bytes - last)
	}
}

func (o *observedStore) SetJobStatus(ctx context.Context, id string, to ferry.JobStatus, from ...ferry.JobStatus) (bool, error) {
	ok, err := o.Store.SetJobStatus(ctx, id, to, from...)
	if ok && err == nil && to == ferry.StatusWaiting {
		o.mu.Lock()
		active := o.active[id]
		o.mu.Unlock()
		if active { // a running attempt gives way to the next one
			o.m.FetchRetry()
		}
	}
	return ok, err
}

// FinishJob counts the end of an import; a job's end is written once (a
// second FinishJob is Conflict), so each is counted once.
func (o *observedStore) FinishJob(ctx context.Context, id string, status ferry.JobStatus, resource ferry.ItemID, code ferry.JobErrorCode, msg string) error {
	err := o.Store.FinishJob(ctx, id, status, resource, code, msg)
	if err != nil {
		return err
	}
	j, jerr := o.Job(ctx, id)
	if jerr != nil || j.Operation != ferry.OpDownloadURL {
		return nil
	}
	switch status {
	case ferry.StatusCompleted:
		o.m.ImportFinished("completed", "")
	case ferry.StatusCancelled:
		o.m.ImportFinished("cancelled", "")
	case ferry.StatusFailed:
		o.m.ImportFinished("failed", string(code))
	}
	return nil
}

func (o *observedStore) CommitJobItem(ctx context.Context, jobID, runner string, n ferry.NewItem, c ferry.ConflictBehavior, msg string) (*ferry.Item, bool, error) {
	it, already, err := o.Store.CommitJobItem(ctx, jobID, runner, n, c, msg)
	if err == nil && !already {
		o.progress(jobID, it.Size) // the bytes since the last report
		o.m.ImportFinished("completed", "")
	}
	return it, already, err
}

// requestIDs maps job ids to the ids of the requests that created them,
// for the log. It keeps the most recent entries only: a job's id is
// remembered again whenever the queue reads the job.
type requestIDs struct {
	mu    sync.Mutex
	ids   map[string]string
	order []string // insertion order, for eviction
}

const maxRequestIDs = 4096

func (r *requestIDs) remember(job, request string) {
	if request == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]string{}
	}
	if _, ok := r.ids[job]; ok {
		return
	}
	if len(r.order) >= maxRequestIDs {
		delete(r.ids, r.order[0])
		r.order = r.order[1:]
	}
	r.ids[job] = request
	r.order = append(r.order, job)
}

func (r *requestIDs) lookup(job string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[job]
}

// jobLog is the queue's log handler: a record that names a job (an
// attribute "job", by convention the job id on every job log line) gets
// the request_id of the API request that created the job, so that a
// failed import can be followed back to its request.
type jobLog struct {
	h   slog.Handler
	ids *requestIDs
	job string // from WithAttrs
}

func (l *jobLog) Enabled(ctx context.Context, level slog.Level) bool { return l.h.Enabled(ctx, level) }

func (l *jobLog) Handle(ctx context.Context, r slog.Record) error {
	job, has := l.job, false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "job":
			job = a.Value.String()
		case "request_id":
			has = true
		}
		return true
	})
	if job != "" && !has {
		if id := l.ids.lookup(job); id != "" {
			r = r.Clone()
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	return l.h.Handle(ctx, r)
}

func (l *jobLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	job := l.job
	for _, a := range attrs {
		if a.Key == "job" {
			job = a.Value.String()
		}
	}
	return &jobLog{h: l.h.WithAttrs(attrs), ids: l.ids, job: job}
}

func (l *jobLog) WithGroup(name string) slog.Handler {
	return &jobLog{h: l.h.WithGroup(name), ids: l.ids, job: l.job}
}

// quietLog is River's log handler: River reports routine events
// (migrations, client start and stop) at info, which an operator does not
// need on the first screen; they go to debug. Warnings and errors stay.
type quietLog struct{ h slog.Handler }

func (q quietLog) Enabled(ctx context.Context, level slog.Level) bool {
	return q.h.Enabled(ctx, demote(level))
}

func (q quietLog) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return q.h.Handle(ctx, r)
}

func (q quietLog) WithAttrs(attrs []slog.Attr) slog.Handler { return quietLog{q.h.WithAttrs(attrs)} }
func (q quietLog) WithGroup(name string) slog.Handler       { return quietLog{q.h.WithGroup(name)} }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelWarn {
		return min(l, slog.LevelDebug)
	}
	return l
}
