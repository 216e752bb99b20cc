// Package jobs runs Ferry's long-running work on River (riverqueue.com):
// upload from URL, fetched with package fetch into blob staging, committed
// as an item, and copies of items, made by the store with shared blobs.
// Both are reported through the job's monitor row. The package also sweeps
// what outlives its use: expired monitors and upload sessions, orphaned
// staging areas and unreferenced blobs. The same code runs on SQLite (one
// node) and PostgreSQL (many nodes): River's tables live in the store's
// database, next to the monitor rows.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"golang.org/x/time/rate"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/fetch"
)

// Store is what the queue needs from the metadata store (sqlstore.Store
// implements it). It is declared here, at its only consumer, so that jobs
// does not import sqlstore.
//
// The queue never sees SQL nor asks which database it runs on: what it needs
// from River's tables beyond River's own API has a name here
// (RequeueInterruptedJobs, RescueStaleJobs). River itself gets its driver
// from the store (River), and InsertJob is the one place where the store
// hands River its transaction: the monitor row and River's job row must
// commit together, or a crash would leave a monitor without work or work
// without a monitor. That atomicity is worth crossing the usual adapter
// boundary for (STYLE.md allows it here).
type Store interface {
	// River brings River's tables up to date in the store's database
	// and returns the River driver over the store's connection pool.
	River(ctx context.Context) (riverdriver.Driver[*sql.Tx], error)
	// RiverFetchPoll is how often River's producers must look for new
	// jobs themselves: seldom where the store wakes the River client of
	// its process when it makes jobs available (and River's listener
	// hears those of other processes), often where nothing wakes them.
	RiverFetchPoll() time.Duration
	// RiverParkPoll is how often the queue, while it has River's client
	// stopped for being idle (park.go), asks RiverWorkIn whether River has
	// work after all; 0 where River must keep running.
	RiverParkPoll() time.Duration
	// RiverWorkIn tells how long until River's earliest job that is
	// running, available, scheduled or waiting for a retry is due (<= 0:
	// now); ok is false when there is none.
	RiverWorkIn(ctx context.Context) (in time.Duration, ok bool, err error)
	// RequeueInterruptedJobs makes the River jobs that River client node
	// was running when it stopped available again and releases their
	// runners; it reports how many.
	RequeueInterruptedJobs(ctx context.Context, node string) (int, error)
	// RescueStaleJobs hands jobs whose heartbeat is older than before
	// back to River (resumed), and lists those River has no work for any
	// more (orphaned), for the caller to end.
	RescueStaleJobs(ctx context.Context, before time.Time, limit int) (resumed, orphaned []string, err error)

	// InsertJob stores j and calls enqueue with the same transaction,
	// after taking a token from the user's bucket (rate per second, at
	// most burst; Throttled when empty; no limit when rate <= 0).
	InsertJob(ctx context.Context, j *ferry.Job, rate float64, burst int, enqueue func(tx *sql.Tx) error) error
	// Job returns a job, or NotFound.
	Job(ctx context.Context, id string) (*ferry.Job, error)
	// SetJobStatus moves a job to status to if its status is one of from;
	// ok reports whether it did.
	SetJobStatus(ctx context.Context, id string, to ferry.JobStatus, from ...ferry.JobStatus) (ok bool, err error)
	// StartJob moves a notStarted or waiting job to inProgress if its user
	// has fewer than limit jobs inProgress.
	StartJob(ctx context.Context, id string, limit int) (ok bool, err error)
	// StartClaimJob is StartJob that also makes runner the started job's
	// runner (ClaimJob) in the same transaction.
	StartClaimJob(ctx context.Context, id string, limit int, runner string) (ok bool, err error)
	// NoteJob records why a job that has not ended waits, for its
	// monitor's statusDescription.
	NoteJob(ctx context.Context, id, note string) error
	// UpdateJobProgress records the monitor's progress fields.
	UpdateJobProgress(ctx context.Context, id string, bytes, total int64, bps float64) error
	// FinishJob moves a job to a final status.
	FinishJob(ctx context.Context, id string, status ferry.JobStatus, resource ferry.ItemID, code ferry.JobErrorCode, msg string) error
	// SaveJobCheckpoint durably records where a download stands; only
	// for runner, the attempt holding the job's claim (else Conflict).
	SaveJobCheckpoint(ctx context.Context, id, runner, stagingID string, data []byte) error
	// JobCheckpoint returns what SaveJobCheckpoint recorded last.
	JobCheckpoint(ctx context.Context, id string) (stagingID string, data []byte, err error)
	// DeleteJobsFinishedBefore deletes jobs that ended before t.
	DeleteJobsFinishedBefore(ctx context.Context, t time.Time) (int, error)
	// StagingInUse lists the staging areas that jobs still refer to.
	StagingInUse(ctx context.Context) ([]string, error)
	// UserJobs and JobChanges list a user's jobs (see lister).
	lister

	// ClaimJob makes runner the one attempt that runs an inProgress or
	// cancelPending job, unless another runner's heartbeat is newer than
	// staleBefore.
	ClaimJob(ctx context.Context, id, runner string, staleBefore time.Time) (ok bool, err error)
	// Heartbeat records that runner still runs the job; false once it
	// does not hold the job any more.
	Heartbeat(ctx context.Context, id, runner string) (ok bool, err error)
	// ReleaseJob drops a job's runner (runner's claim only, unless
	// runner is ""), so that the next claim succeeds.
	ReleaseJob(ctx context.Context, id, runner string) error
	// HoldJobBlob records a published blob a download has not committed
	// yet, with its checkpoint; only for runner (else Conflict).
	HoldJobBlob(ctx context.Context, id, runner, key string, data []byte) error
	// CommitJobItem creates a downloaded file and completes its job in
	// one transaction; idempotent by job; only for runner (else
	// Conflict).
	CommitJobItem(ctx context.Context, jobID, runner string, n ferry.NewItem, c ferry.ConflictBehavior, msg string) (it *ferry.Item, already bool, err error)
	// AdvanceJobCopy runs one bounded step of a copy job, out of sight;
	// the last step makes the copy appear, all at once, completes the
	// job and returns the copy (nil before); idempotent by job; only for
	// runner (else Conflict).
	AdvanceJobCopy(ctx context.Context, jobID, runner, msg string) (it *ferry.Item, already bool, err error)
	// DropJobCopy removes what a copy job that ended otherwise built out
	// of sight; Conflict while the job has not ended.
	DropJobCopy(ctx context.Context, jobID string) error
	// DropAbandonedCopies removes what copies that will never appear
	// built: those of ended jobs, and of synchronous copies idle since
	// before.
	DropAbandonedCopies(ctx context.Context, before time.Time) (int, error)
	// RemoveDeleted removes, in bounded transactions, the rows of large
	// deleted folders, which their deletion only took out of sight; at
	// most steps transactions (<= 0: all), reporting the trees finished.
	// Removals signals when a deletion of this process left one.
	RemoveDeleted(ctx context.Context, steps int) (int, error)
	Removals() <-chan struct{}

	// Room reports how many bytes may still be added to a drive: what
	// its quota leaves, less what its upload sessions and copies under
	// way hold, as the commit counts it.
	Room(ctx context.Context, drive ferry.DriveID) (int64, error)
	// UnreferencedBlobs and ForgetBlob serve the sweep of blobs no item
	// uses any more; UnknownBlobs that of blob files the store does not
	// know at all.
	UnreferencedBlobs(ctx context.Context, limit int) ([]string, error)
	ForgetBlob(ctx context.Context, key string) error
	UnknownBlobs(ctx context.Context, keys []string) ([]string, error)

	// ExpiredSessions and DeleteSession serve the upload-session sweep
	// (ferry.SessionStore).
	ExpiredSessions(ctx context.Context, t time.Time, limit int) ([]*ferry.UploadSession, error)
	DeleteSession(ctx context.Context, id string) error
}

// Config tunes the queue. Zero fields take the defaults noted.
type Config struct {
	Workers        int           // concurrent fetch jobs on this node; default 16
	CopyWorkers    int           // concurrent copies on this node, apart from Workers; default 2
	PerUserRunning int           // running imports per user; the rest wait as notStarted; default 16
	Rate           rate.Limit    // sustained new jobs per second per user before Throttled, across all nodes; default 5
	Burst          int           // jobs a user may submit at once; default 1000
	MaxFileSize    int64         // largest import in bytes; default 100 GiB
	Retention      time.Duration // how long monitors stay readable after the end; default 24h
	MaxStalls      int           // consecutive attempts that add no bytes before failing; default 3
	MaxDuration    time.Duration // a download fails this long after its first attempt began; default 24h
	// StaleAfter is how old the heartbeat of a running job may get before
	// any node takes the job as abandoned (its node died or lost the
	// database) and runs it again from its checkpoint. A running attempt
	// writes its heartbeat every StaleAfter/10, and every node looks for
	// stale jobs every StaleAfter/3. Default 30s.
	StaleAfter time.Duration
	// NodeID names this node stably across restarts (River's client ID, at
	// most 100 bytes). At start the queue takes back the River jobs that
	// this node was running when it stopped. Default: the host name.
	NodeID string
	// Space accounts the local disk that imports stage on (nil: nothing
	// to account): an import reserves its size before writing, waits
	// while the disk has no room, and fails with insufficientStorage
	// when the file could never fit.
	Space ferry.DiskSpace
	Log   *slog.Logger // default: discard
	// Metrics receives the queue's measurements; nil records nothing.
	Metrics Metrics

	// RetryBase and RetryMax shape the backoff between attempts: RetryBase,
	// doubled on every attempt that adds no bytes, at most RetryMax. An
	// origin's longer Retry-After is honoured up to 5 minutes. Defaults 1s
	// and 30s.
	RetryBase, RetryMax time.Duration
	// Snooze is how long a job waits before asking again for a running
	// slot when its user is at PerUserRunning. Default 1s.
	Snooze time.Duration
	// ProgressEvery is how often a running job writes its progress and
	// looks for a cancel request. Default 500ms.
	ProgressEvery time.Duration
	// CheckpointEvery and CheckpointBytes bound how much work a crash can
	// lose: a durable checkpoint (a Sync of the staged bytes and one small
	// database write, between copy segments, never per chunk) is written
	// after whichever comes first. Defaults 500ms and 128 MiB: a kill -9
	// costs at most about half a second of transfer per connection.
	CheckpointEvery time.Duration
	CheckpointBytes int64
	// Connections is the most connections one import opens at once
	// (segmented downloads, --fetch-connections); default 8. The
	// per-host limit across imports is fetch's (Options.HostConns).
	Connections int
	// FastStream is the rate of one connection above which an import
	// opens no more: the disk and the hashers are then the bottleneck,
	// not the origin. Default 256 MiB/s.
	FastStream float64
	// StallAfter is how long one connection of a segmented download may
	// go without bytes while the others receive some before it is cut
	// and its range fetched again. Default 4s.
	StallAfter time.Duration
	// ParkAfter is how long the queue may have nothing to do before it
	// stops River's client, which otherwise wakes up many times a second
	// (park.go); only where the store allows it (RiverParkPoll). Default
	// 2s; negative: never.
	ParkAfter time.Duration
	// Observe, if set, hears every running import's progress on every
	// progress tick (metrics, logs). It must not block.
	Observe func(Progress)

	// StagingGrace and BlobGrace are the ages above which unreferenced
	// staging areas and unknown blob files count as orphans. Defaults 10
	// minutes and 1 hour.
	StagingGrace, BlobGrace time.Duration
	// SweepEvery is how often expired monitors, expired upload sessions
	// and unreferenced blobs are deleted. Default 1 minute.
	SweepEvery time.Duration
	// BlobScanEvery is how often the sweep lists every published blob to
	// delete files the store does not know (left by a crash between
	// publishing and committing): at start, then this often, since the
	// listing touches every blob. Default 1 hour.
	BlobScanEvery time.Duration
}

func (c *Config) setDefaults() {
	setDefault(&c.Workers, 16)
	setDefault(&c.CopyWorkers, 2)
	setDefault(&c.PerUserRunning, 16)
	setDefault(&c.Rate, 5)
	setDefault(&c.Burst, 1000)
	setDefault(&c.MaxFileSize, 100<<30)
	setDefault(&c.Retention, 24*time.Hour)
	setDefault(&c.MaxStalls, 3)
	setDefault(&c.MaxDuration, 24*time.Hour)
	setDefault(&c.StaleAfter, 30*time.Second)
	setDefault(&c.RetryBase, time.Second)
	setDefault(&c.RetryMax, 30*time.Second)
	setDefault(&c.Snooze, time.Second)
	setDefault(&c.ProgressEvery, 500*time.Millisecond)
	setDefault(&c.CheckpointEvery, 500*time.Millisecond)
	setDefault(&c.CheckpointBytes, 128<<20)
	setDefault(&c.Connections, 8)
	setDefault(&c.FastStream, 256<<20)
	setDefault(&c.StallAfter, 4*time.Second)
	setDefault(&c.ParkAfter, 2*time.Second)
	setDefault(&c.StagingGrace, 10*time.Minute)
	setDefault(&c.BlobGrace, time.Hour)
	setDefault(&c.SweepEvery, time.Minute)
	setDefault(&c.BlobScanEvery, time.Hour)
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	if c.NodeID == "" {
		c.NodeID = "ferry"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Queue runs upload-from-URL and copy jobs on River and implements
// ferry.JobQueue.
// Create it with New, then call Run; Enqueue, Job and Cancel may be used
// before Run starts and after it returns.
type Queue struct {
	cfg    Config
	store  Store
	blobs  ferry.BlobStore
	fetch  *fetch.Client
	log    *slog.Logger
	client *river.Client[*sql.Tx]
	worker *downloadWorker
	obs    *observedStore // store, which it wraps
	park   parking
}

var _ ferry.JobQueue = (*Queue)(nil)

// New brings River's tables up to date in the store's database and builds
// the queue. Nothing runs until Run.
func New(ctx context.Context, cfg Config, store Store, blobs ferry.BlobStore, client *fetch.Client) (*Queue, error) {
	cfg.setDefaults()
	if len(cfg.NodeID) > 100 {
		return nil, fmt.Errorf("jobs: node ID %q is longer than 100 bytes", cfg.NodeID)
	}
	// Every log line of a job carries its request id (jobLog), and the
	// metrics are taken where the store changes a job (observedStore).
	ids := &requestIDs{}
	obs := observe(store, cfg.Metrics, ids)
	q := &Queue{
		cfg:   cfg,
		store: obs,
		obs:   obs,
		blobs: blobs,
		fetch: client,
		log:   slog.New(&jobLog{h: cfg.Log.Handler(), ids: ids}),
	}
	q.park.init()
	riverLog := slog.New(quietLog{cfg.Log.Handler()})
	q.worker = &downloadWorker{q: q}

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, q.worker); err != nil {
		return nil, fmt.Errorf("jobs: register worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &copyWorker{q: q}); err != nil {
		return nil, fmt.Errorf("jobs: register copy worker: %w", err)
	}
	rcfg := &river.Config{
		ID:     cfg.NodeID,
		Logger: riverLog,
		Queues: map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: cfg.Workers},
			copyQueue:          {MaxWorkers: cfg.CopyWorkers},
		},
		Workers: workers,
		// Downloads may run for hours: no River timeout. Config.MaxDuration
		// bounds a download (fetch's idle timeout and MaxStalls end the
		// stalled ones sooner). A side effect: River's rescuer ignores
		// jobs without a timeout, so a job whose node died is found by
		// its heartbeat instead (rescueLoop).
		JobTimeout: -1,
		// Attempts are bounded by MaxStalls, not by River; this is only a
		// backstop against a pathological origin.
		MaxAttempts: 1000,
		// The least time between two fetches of a queue, and how often a
		// queue looks for jobs with nothing to wake it: the store says
		// (on SQLite it wakes River in process when it queues a job, so
		// an idle server does not poll every 100 ms forever). A queue
		// fetches when a job ends and a worker is free; with River's
		// default cooldown of 100 ms (50 ms here before) a worker that
		// finished a small import sat idle for most of it, which capped
		// small imports at about Workers per cooldown (ferry-bench -small:
		// 71/s with 50 ms, 90/s with 2 ms, 4 workers).
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: store.RiverFetchPoll(),
		// Has no effect with JobTimeout -1 (see above); the heartbeat
		// rescue and reclaim take back interrupted jobs.
		RescueStuckJobsAfter: 2 * time.Hour,
	}
	driver, err := store.River(ctx)
	if err == nil {
		q.client, err = river.NewClient(driver, rcfg)
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return q, nil
}

// Run starts River, takes back this node's interrupted jobs, and, until
// ctx is done, sweeps orphans and expired monitors and hands jobs whose
// node died (their heartbeat went stale) back to River. Then it stops River,
// cancelling running jobs, which checkpoint and go back to waiting so that
// the next start resumes them. It returns nil after a clean stop.
func (q *Queue) Run(ctx context.Context) error {
	if err := q.reclaim(ctx); err != nil {
		// A full disk or a passing database error must not keep the node
		// down (the operator needs it up to free space); rescueLoop takes
		// these jobs back once their heartbeats are stale.
		q.log.Error("jobs: could not take back this node's interrupted jobs now; they resume once their heartbeats are stale", "err", err)
	}
	// River's own context must not end with ctx: that would start a soft
	// stop, which waits for downloads to finish. StopAndCancel below
	// cancels them instead, and they checkpoint.
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("jobs: start river: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { q.sweepLoop(ctx) })
	wg.Go(func() { q.rescueLoop(ctx) })
	if poll := q.store.RiverParkPoll(); poll > 0 && q.cfg.ParkAfter > 0 {
		wg.Go(func() { q.parkLoop(ctx, poll) })
	}
	<-ctx.Done()
	wg.Wait()

	// Stopping River's client again, if it is parked, does nothing.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := q.client.StopAndCancel(stopCtx); err != nil {
		return fmt.Errorf("jobs: stop river: %w", err)
	}
	return nil
}

// reclaim makes the River jobs that this node was running when it last
// stopped (a crash or kill -9 leaves them running) available again and
// releases their claims, so that they resume within moments instead of
// after StaleAfter (rescueLoop finds them too, later, from any node). It
// must run before the River client starts: from then on, running jobs
// attempted by NodeID are live.
func (q *Queue) reclaim(ctx context.Context) error {
	n, err := q.store.RequeueInterruptedJobs(ctx, q.cfg.NodeID)
	if err != nil {
		return fmt.Errorf("jobs: reclaim interrupted jobs: %w", err)
	}
	if n > 0 {
		q.log.Info("jobs: resuming interrupted jobs", "count", n, "node", q.cfg.NodeID)
	}
	return nil
}

// Enqueue implements ferry.JobQueue: it stores j as notStarted and queues
// its River job in the same transaction. An upload from URL (the default
// Operation) needs a valid SourceURL; a copy (OpCopy) needs SourceItem and
// ParentID, the destination folder. Both count against the user's rate.
func (q *Queue) Enqueue(ctx context.Context, j *ferry.Job) error {
	if j.Operation == "" {
		j.Operation = ferry.OpDownloadURL
	}
	switch j.Operation {
	case ferry.OpDownloadURL:
		if err := q.checkURL(j.SourceURL); err != nil {
			return err
		}
		if len(j.Mirrors) > maxMirrors {
			return ferry.Errorf(ferry.Invalid, "at most %d mirrors may be given", maxMirrors)
		}
		for i, m := range j.Mirrors {
			// Each mirror is checked exactly like the main URL: here, and
			// by fetch's dial guard on every connection.
			if err := q.checkURL(m); err != nil {
				e := &ferry.Error{Kind: ferry.Invalid, Code: ferry.CodeOf(err), Message: fmt.Sprintf("mirror %d: %s", i+1, ferry.Message(err)), Err: err}
				return e
			}
		}
	case ferry.OpCopy:
		if j.SourceItem == "" || j.ParentID == "" {
			return ferry.Errorf(ferry.Invalid, "a copy needs a source item and a destination folder")
		}
		if j.SourceURL != "" {
			return ferry.Errorf(ferry.Invalid, "a copy has no source URL")
		}
	default:
		return ferry.Errorf(ferry.NotSupported, "jobs of kind %s are not supported", j.Operation)
	}
	if j.Conflict == "" {
		j.Conflict = ferry.ConflictFail
	}
	j.ID = ferry.NewID("mon_", 16)
	if j.RequestID == "" {
		j.RequestID = ferry.RequestID(ctx)
	}
	j.Status = ferry.StatusNotStarted
	j.Bytes, j.Total, j.BytesPerSecond = 0, -1, 0
	var args river.JobArgs = downloadArgs{JobID: j.ID}
	if j.Operation == ferry.OpCopy {
		args = copyArgs{JobID: j.ID}
	}
	// River may not be parked between the insert and its wake (park.go).
	q.park.gate.RLock()
	defer q.park.gate.RUnlock()
	err := q.store.InsertJob(ctx, j, float64(q.cfg.Rate), q.cfg.Burst, func(tx *sql.Tx) error {
		// Without the request's cancel: the store may run this in one
		// transaction with others' (group commit on SQLite), which an
		// interrupted statement would roll back. The fast insert returns
		// no row, which nothing here reads: on SQLite River's insert that
		// returns the row took 0.53 ms of the writer's time per job, this
		// one 0.30 ms (timed in a local build).
		_, err := q.client.InsertManyFastTx(context.WithoutCancel(ctx), tx, []river.InsertManyParams{{Args: args}})
		return err
	})
	if err == nil {
		q.park.poke()
	}
	if err != nil {
		j.ID = ""
		if ferry.KindOf(err) == ferry.Throttled {
			return err
		}
		return fmt.Errorf("jobs: enqueue: %w", err)
	}
	q.log.Debug("jobs: queued", "job", j.ID, "operation", j.Operation, "user", j.UserName)
	return nil
}

// maxMirrors bounds "@ferry.mirrors".
const maxMirrors = 16

// checkURL refuses a source URL that is malformed, or that the URL alone
// shows to be forbidden (a private IP literal, a port other than 80/443);
// names are judged when dialed, on every connection.
func (q *Queue) checkURL(raw string) error {
	if _, err := ferry.ValidateSourceURL(raw); err != nil {
		return err
	}
	var fe *fetch.Error
	if err := q.fetch.Check(raw); errors.As(err, &fe) {
		if fe.Code == fetch.CodeAddressRefused {
			q.cfg.Metrics.SSRFRefused()
		}
		return (&ferry.Error{Kind: ferry.Invalid, Message: fe.Message, Err: err}).WithCode(fe.Code)
	}
	return nil
}

// Job implements ferry.JobQueue. A job that ended longer ago than the
// retention period is NotFound even before the sweep deletes it.
func (q *Queue) Job(ctx context.Context, id string) (*ferry.Job, error) {
	j, err := q.store.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	if j.Status.Final() && !j.Finished.IsZero() && time.Since(j.Finished) > q.cfg.Retention {
		return nil, ferry.Errorf(ferry.NotFound, "monitor %s not found", id)
	}
	return j, nil
}

// Cancel implements ferry.JobQueue. A job that no worker runs (notStarted,
// waiting) is cancelled at once and its staged bytes freed; a running job
// moves to cancelPending, and its worker, which reads the status with every
// progress write, stops, frees its staging and finishes it as cancelled.
// A running copy stops between two of its steps (see copyWorker.Work); one
// whose last step has begun ends with its own outcome.
func (q *Queue) Cancel(ctx context.Context, id string) (*ferry.Job, error) {
	for range 5 {
		j, err := q.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		switch j.Status {
		case ferry.StatusCompleted, ferry.StatusFailed, ferry.StatusCancelled:
			return nil, ferry.Errorf(ferry.Conflict, "the job has already ended (%s)", j.Status)
		case ferry.StatusCancelPending:
			return j, nil
		case ferry.StatusInProgress:
			ok, err := q.store.SetJobStatus(ctx, id, ferry.StatusCancelPending, ferry.StatusInProgress)
			if err != nil {
				return nil, fmt.Errorf("jobs: cancel %s: %w", id, err)
			}
			if ok {
				return q.Job(ctx, id)
			}
		default: // notStarted, waiting: no worker holds it
			// cancelPending first, so that StartJob cannot pick the job up
			// while its staging is removed.
			ok, err := q.store.SetJobStatus(ctx, id, ferry.StatusCancelPending, ferry.StatusNotStarted, ferry.StatusWaiting)
			if err != nil {
				return nil, fmt.Errorf("jobs: cancel %s: %w", id, err)
			}
			if ok {
				if err := q.finishCancelled(ctx, id); err != nil {
					return nil, err
				}
				return q.Job(ctx, id)
			}
		}
		// The status changed under us; look again.
	}
	return nil, ferry.Errorf(ferry.Unavailable, "the job is changing state; try again")
}

// finishCancelled frees a job's staging and held blob and records it as
// cancelled. What a copy built out of sight is left to dropCopy (the
// copy worker calls it) or the sweep: Cancel runs in a client's request.
func (q *Queue) finishCancelled(ctx context.Context, id string) error {
	if err := q.freeJob(ctx, id); err != nil {
		return fmt.Errorf("jobs: cancel %s: %w", id, err)
	}
	if err := q.finish(ctx, id, ferry.StatusCancelled, "", "The job was cancelled."); err != nil {
		return fmt.Errorf("jobs: cancel %s: %w", id, err)
	}
	return nil
}

// freeJob removes what a job that is about to end without an item holds:
// its staging area and a published blob it has not committed.
func (q *Queue) freeJob(ctx context.Context, id string) error {
	stagingID, data, err := q.store.JobCheckpoint(ctx, id)
	if ferry.KindOf(err) == ferry.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	if stagingID != "" {
		if err := q.blobs.RemoveStaging(ctx, stagingID); err != nil {
			return err
		}
		// A commit that published the area and died (or failed) before
		// it held the blob left it under the area's ID; no item has it,
		// or the job would have completed.
		if err := q.blobs.Delete(ctx, stagingID); err != nil {
			return err
		}
	}
	if key := heldBlob(data); key != "" {
		if err := q.blobs.Delete(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// finish ends a job with a final status other than completed (completion
// is the commit's, CommitJobItem or AdvanceJobCopy). A database error is
// retried a few times, on a context of its own: a job whose end could not
// be written stays non-final, and a retry of its attempt or the stale-job
// rescue ends it later.
func (q *Queue) finish(ctx context.Context, id string, status ferry.JobStatus, code ferry.JobErrorCode, msg string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	for i := range 5 {
		err = q.store.FinishJob(ctx, id, status, "", code, msg)
		switch ferry.KindOf(err) {
		case ferry.Conflict: // it has ended already, e.g. committed
			return nil
		case ferry.NotFound:
			return err
		}
		if err == nil {
			return nil
		}
		q.log.Warn("jobs: finish job; will try again", "job", id, "status", status, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(50<<i) * time.Millisecond):
		}
	}
	return err
}
