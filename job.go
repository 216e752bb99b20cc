package ferry

import (
	"context"
	"net/url"
	"strings"
	"time"
)

// Operation names a kind of long-running job, as the monitor reports it.
type Operation string

const (
	OpDownloadURL Operation = "DownloadUrl" // upload from URL
	OpCopy        Operation = "ItemCopy"
)

// JobStatus is the state of a job, with the Graph asyncJobStatus spellings.
type JobStatus string

const (
	StatusNotStarted    JobStatus = "notStarted"    // queued, not picked up yet
	StatusInProgress    JobStatus = "inProgress"    // running
	StatusWaiting       JobStatus = "waiting"       // interrupted; will be retried
	StatusCancelPending JobStatus = "cancelPending" // cancel asked, still stopping
	StatusCompleted     JobStatus = "completed"
	StatusFailed        JobStatus = "failed"
	StatusCancelled     JobStatus = "cancelled"
)

// Final reports whether no more changes will happen to a job in status s.
func (s JobStatus) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// A Job is one long-running action (upload from URL or copy) and what its
// monitor shows. Its ID is the monitor's capability: whoever knows it may
// read or cancel the job, so it carries at least 128 random bits and is
// listed only to the job's own user (JobQueue.UserJobs).
type Job struct {
	ID        string
	Operation Operation
	UserID    UserID
	UserName  string
	DriveID   DriveID
	ParentID  ItemID
	Name      string // requested name; "" lets an upload from URL pick one
	Conflict  ConflictBehavior

	SourceURL    string   // OpDownloadURL; never shown on the monitor
	Mirrors      []string // OpDownloadURL, optional: more URLs of the same file ("@ferry.mirrors"); never shown
	ExpectSHA256 string   // OpDownloadURL, optional upper-case hex
	SourceItem   ItemID   // OpCopy
	// RequestID is the id of the API request that created the job; every
	// log line of the job carries it. Enqueue takes it from the context
	// (WithRequestID) when empty.
	RequestID string

	Status         JobStatus
	Bytes          int64        // bytes transferred so far
	Total          int64        // expected bytes; -1 while unknown
	BytesPerSecond float64      // recent transfer rate
	ResourceID     ItemID       // the new item, once completed
	ErrorCode      JobErrorCode // why it failed, once failed
	ErrorMessage   string       // client-safe description, once failed or cancelled
	// ItemName is the name of the item the job made, once completed, or
	// else the name it will take when known (the requested name, or for a
	// copy the source's); "" while unknown. Filled by listings only.
	ItemName string

	Created  time.Time
	Updated  time.Time
	Finished time.Time // zero until Status is final
}

// JobErrorCode says why a job failed: the monitor's Graph errorCode.
// The set is closed; graph maps each code to the monitor's HTTP status in
// one table, and codes it does not list answer 500.
type JobErrorCode string

const (
	JobGeneralException    JobErrorCode = "generalException"    // unexpected, or the source kept failing
	JobInvalidRequest      JobErrorCode = "invalidRequest"      // the source refused the request or cannot be reached (400)
	JobItemNotFound        JobErrorCode = "itemNotFound"        // the source, the copied item or the target folder is gone (400)
	JobAccessDenied        JobErrorCode = "accessDenied"        // the source answered 401 or 403 (403)
	JobNameAlreadyExists   JobErrorCode = "nameAlreadyExists"   // the name was taken at commit, conflict behaviour fail (409)
	JobMaxFileSizeExceeded JobErrorCode = "maxFileSizeExceeded" // larger than the largest import (413)
	JobQuotaLimitReached   JobErrorCode = "quotaLimitReached"   // larger than the drive's room (507)
	JobInsufficientStorage JobErrorCode = "insufficientStorage" // larger than the server's disk can ever hold (507)
	JobHashMismatch        JobErrorCode = "hashMismatch"        // the bytes' SHA-256 differs from @ferry.sha256 (500)
	JobTimeout             JobErrorCode = "timeout"             // longer than the longest import allowed (504)
	JobNotSupported        JobErrorCode = "notSupported"        // the job asks for something not implemented (501)
)

// Percentage is the monitor's percentageComplete: 100 only once completed,
// never 100 before.
func (j *Job) Percentage() float64 {
	if j.Status == StatusCompleted {
		return 100
	}
	if j.Total <= 0 || j.Bytes <= 0 {
		return 0
	}
	return min(float64(j.Bytes)*100/float64(j.Total), 99.9)
}

// JobQueue accepts long-running jobs and reports on them. Implementations
// store the job and queue its work in one transaction, so a crash never
// leaves a monitor without work or work without a monitor.
type JobQueue interface {
	// Enqueue assigns j an ID, stores it as notStarted and queues its work.
	// It fails with Throttled when the user has sent more jobs than the
	// configured rate allows.
	Enqueue(ctx context.Context, j *Job) error
	// Job returns a job by its monitor ID. NotFound when unknown or when it
	// ended longer ago than the retention period.
	Job(ctx context.Context, id string) (*Job, error)
	// Cancel asks a job to stop. A queued job is cancelled at once; a
	// running one moves to cancelPending and then to cancelled. Conflict if
	// the job already ended.
	Cancel(ctx context.Context, id string) (*Job, error)
	// UserJobs returns one page of the user's jobs, newest first (by
	// Created, then ID), with ItemName filled, and the cursor of the next
	// page ("" on the last). Jobs that Job would answer NotFound for are
	// left out. Invalid for a cursor it did not hand out.
	UserJobs(ctx context.Context, user UserID, q JobPage) ([]*Job, string, error)
	// JobChanges returns up to limit of the user's jobs whose last change
	// comes after the mark (by Updated, then ID), in that order, with
	// ItemName filled, so that a caller can follow changes by passing the
	// mark of the last job it got. Jobs past retention are left out.
	JobChanges(ctx context.Context, user UserID, after ChangeMark, limit int) ([]*Job, error)
}

// JobPage selects a page of a user's jobs.
type JobPage struct {
	Limit  int    // 1..MaxJobPage; 0 means DefaultJobPage
	Cursor string // opaque; from the previous page
}

// Page sizes of JobQueue.UserJobs.
const (
	DefaultJobPage = 50
	MaxJobPage     = 200
)

// A ChangeMark is a position in the order of job changes: jobs changed
// later than Updated, or at Updated with an ID greater than ID, come after
// it. Updated has millisecond precision.
type ChangeMark struct {
	Updated time.Time
	ID      string
}

// MarkOf is the change mark of j's last change.
func MarkOf(j *Job) ChangeMark { return ChangeMark{Updated: j.Updated, ID: j.ID} }

// ValidateSourceURL checks a URL given for upload from URL before anything is
// fetched: absolute, http or https, a host, and no user:password. Whether
// the address may be reached is decided later, at dial time, by fetch.
func ValidateSourceURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, Errorf(Invalid, "@microsoft.graph.sourceUrl is empty")
	}
	if len(raw) > 8192 {
		return nil, Errorf(Invalid, "the source URL is longer than 8192 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, Errorf(Invalid, "the source URL is not a valid URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return nil, Errorf(Invalid, "the source URL must use http or https")
	}
	if u.User != nil {
		return nil, Errorf(Invalid, "the source URL must not carry a user name or password")
	}
	if u.Hostname() == "" {
		return nil, Errorf(Invalid, "the source URL has no host")
	}
	return u, nil
}
