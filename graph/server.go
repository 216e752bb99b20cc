// Package graph serves the OneDrive / Microsoft Graph compatible drive API:
// drives, items, simple uploads, resumable upload sessions, downloads
// through signed URLs, upload from URL, copy and their monitors. It speaks
// HTTP and JSON only; everything else goes through the ferry domain
// interfaces. routes.go lists every route.
//
// Where Graph leaves a choice open, Ferry answers:
//
//   - children of a file: 200 with an empty value list;
//   - content of a folder (GET …/content): 400 invalidRequest;
//   - deleting the root: 403 accessDenied;
//   - a forged, expired or dangling download URL: 404 itemNotFound;
//   - a Range with several ranges, or a malformed one: 200 with the whole
//     file; a single unsatisfiable range: 416 with Content-Range bytes */size;
//   - unknown paths: 400 invalidRequest "API not found"; a known path with
//     the wrong method: 405 notAllowed with Allow; paths with ".", ".." or
//     empty segments: 400;
//   - a failed job's monitor: the status of failedStatus in monitor.go
//     (409 nameAlreadyExists, 507 quotaLimitReached, 400 for refused or
//     missing sources, 500 otherwise); cancelled: 410;
//   - the expected SHA-256 of an upload from URL: the body field
//     "@ferry.sha256", 64 hex digits;
//   - IDs (of items, drives, upload sessions, monitors) that are not UTF-8
//     or hold control characters: 404 itemNotFound, and path names that
//     are: 400 invalidRequest (inner invalidPath), before any store call;
//   - a request body that cannot be read (bad chunked encoding, cut short):
//     400; a client gone mid-upload gets a 400 nobody reads, logged at
//     debug level only;
//   - upload sessions: fragments in any order (Graph wants them in order);
//     a fragment overlapping bytes already received or still arriving:
//     416 invalidRange, inner fragmentOverlap; the conflict behaviour of
//     createUploadSession defaults to replace (of a file only: a folder
//     holding the name is 409 nameAlreadyExists) and is applied again at
//     commit; a commit that fails on a name conflict (409) or the quota
//     (507) discards the session and its bytes; DELETE of an unknown
//     session: 404; DELETE, or a second commit, while a commit runs: 409
//     notAllowed, and the commit goes on; a fileSize in the request binds
//     the session's total; If-Match on the path form makes the session
//     replace that file;
//   - the quota and upload sessions: the bytes a drive's other live
//     sessions hold or have declared count as used when a session is
//     created, when its first fragment tells its size and at commit
//     (507 quotaLimitReached); the store counts the sizes live sessions
//     declared against every other write too (simple uploads, imports,
//     copies), so a session that was told its file fits keeps that room
//     until it commits, is cancelled or expires. A drive may have at most
//     MaxUploadSessions (default 1000) live sessions, and creating one
//     more is 429 activityLimitReached with Retry-After (a limit on
//     activity, not on space); the store counts and inserts atomically,
//     so simultaneous creations on any nodes cannot pass it;
//   - upload-session state that matters across nodes (fragments being
//     written, a commit or cancel under way) lives in the session store,
//     not in this process;
//   - a commit that fails for a passing reason (the database unavailable:
//     503, or 500 when the outcome is unknown) keeps the session with its
//     published bytes, and the client retries the commit or the last
//     fragment; a store error whose outcome is unknown after a file's
//     bytes were published (not a refusal such as 409 or 507): the error
//     is answered, and the blob stays for the sweep, which deletes it if
//     no item uses it; once the file is written, failures of clean-up
//     steps are logged, and the file is answered;
//   - a write that does not fit the local disk (Deps.Space): 503
//     serviceNotAvailable with Retry-After;
//   - copy: no Prefer needed; conflict default fail; copying the root, or a
//     folder into itself or its subtree: 400;
//   - parentReference (PATCH and copy): an id, or a path /drive/root:…,
//     /me/drive/root:… or /drives/{driveID}/root:… (other forms: 400); a
//     driveId, or a drive in the path, other than the caller's: 404
//     itemNotFound.
package graph

import (
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/ferrydrive/ferry"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxUploadSize     = 250 << 20
	DefaultDownloadURLTTL    = time.Hour
	DefaultSessionTTL        = 24 * time.Hour
	DefaultMaxFragmentSize   = 60 << 20
	DefaultMaxUploadSessions = 1000
	DefaultDeltaRetention    = 720 * time.Hour
	DefaultBodyIdleTimeout   = time.Minute
)

// Config holds the HTTP layer's settings.
type Config struct {
	// PublicURL is the base of every absolute URL the API hands out
	// (Location, @odata.nextLink, download and monitor URLs). When nil, the
	// base comes from the request's scheme and host.
	PublicURL *url.URL
	// TrustedProxies are the peers whose X-Forwarded-Proto and
	// X-Forwarded-Host headers are believed when PublicURL is nil.
	TrustedProxies []netip.Prefix
	// MaxUploadSize caps a simple PUT upload, in bytes (413 above it).
	// Zero means DefaultMaxUploadSize.
	MaxUploadSize int64
	// DownloadURLTTL is how long a download URL stays valid. Zero means
	// DefaultDownloadURLTTL.
	DownloadURLTTL time.Duration
	// SigningKey is the HMAC key that signs download URLs. Required.
	SigningKey []byte
	// SessionTTL is how long an upload session lives without receiving a
	// fragment; each fragment extends it. Zero means DefaultSessionTTL.
	SessionTTL time.Duration
	// MaxFragmentSize caps one upload-session fragment, in bytes (413
	// above it). Zero means DefaultMaxFragmentSize, Graph's 60 MiB.
	MaxFragmentSize int64
	// MaxUploadSessions caps the live upload sessions of one drive (429
	// beyond it). Zero means DefaultMaxUploadSessions.
	MaxUploadSessions int
	// DeltaRetention is how long a delta token stays valid (410
	// resyncRequired after). Zero means DefaultDeltaRetention.
	DeltaRetention time.Duration
	// StreamPoll is how often an event stream (a monitor's, or the
	// operations list's) reads the database, which bounds its events to
	// one per period. Zero means DefaultStreamPoll.
	StreamPoll time.Duration
	// BodyIdleTimeout cuts off a request body that sends nothing for this
	// long. Zero means DefaultBodyIdleTimeout.
	BodyIdleTimeout time.Duration
}

// Deps are the domain services the API calls.
type Deps struct {
	Log      *slog.Logger
	Accounts ferry.AccountStore
	Items    ferry.ItemStore
	Blobs    ferry.BlobStore
	Jobs     ferry.JobQueue
	// Sessions keeps upload sessions. When nil, createUploadSession and
	// the upload URLs answer 501 notSupported.
	Sessions ferry.SessionStore
	// Space accounts the local disk that writes stage bytes on; nil when
	// the blob store stages nothing locally. A write that does not fit
	// is 503 with Retry-After, and /healthz reports it.
	Space ferry.DiskSpace
	// Shares keeps sharing links and grants. When nil, the sharing routes
	// answer 501 notSupported and other users' drives stay unreachable.
	Shares ferry.ShareStore
	Now    func() time.Time // nil means time.Now
	// Page serves the web page at "/", its icon at "/favicon.ico" and its
	// assets under "/web/" (package web). Nil: those paths are unknown
	// routes like any other.
	Page http.Handler
	// Closing, once closed, ends every event stream, so that a graceful
	// shutdown need not wait for them (http.Server.Shutdown waits for
	// active requests). Nil: streams end only with their clients.
	Closing <-chan struct{}
	// Metrics receives request counts and latencies; nil records nothing.
	Metrics Metrics
	// Durable returns once every write the stores committed is durable
	// (sqlstore.Store.Durable); every response waits for it before its
	// header goes out, and every event stream before each flush, so that
	// no client sees a state a power cut could undo. Nil: a commit is
	// durable before anyone sees it.
	Durable func()
}

// NewHandler returns the API as one http.Handler. It panics if
// cfg.SigningKey is empty or a store is missing, since the server could not
// work at all.
func NewHandler(cfg Config, d Deps) http.Handler {
	if len(cfg.SigningKey) == 0 {
		panic("graph: Config.SigningKey is required")
	}
	if d.Accounts == nil || d.Items == nil || d.Blobs == nil || d.Jobs == nil {
		panic("graph: Deps.Accounts, Items, Blobs and Jobs are required")
	}
	if cfg.MaxUploadSize <= 0 {
		cfg.MaxUploadSize = DefaultMaxUploadSize
	}
	if cfg.DownloadURLTTL <= 0 {
		cfg.DownloadURLTTL = DefaultDownloadURLTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxFragmentSize <= 0 {
		cfg.MaxFragmentSize = DefaultMaxFragmentSize
	}
	if cfg.MaxUploadSessions <= 0 {
		cfg.MaxUploadSessions = DefaultMaxUploadSessions
	}
	if cfg.DeltaRetention <= 0 {
		cfg.DeltaRetention = DefaultDeltaRetention
	}
	if cfg.StreamPoll <= 0 {
		cfg.StreamPoll = DefaultStreamPoll
	}
	if cfg.BodyIdleTimeout <= 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Metrics == nil {
		d.Metrics = noMetrics{}
	}
	urls := &urlBuilder{public: cfg.PublicURL, trusted: cfg.TrustedProxies}
	sign := &signer{key: cfg.SigningKey, ttl: cfg.DownloadURLTTL, now: d.Now}
	mux := http.NewServeMux()
	addRoutes(mux, cfg, d, urls, sign)
	var h http.Handler = rejectUncleanPaths(d.Log, mux)
	h = recoverPanics(d.Log, h)
	h = cutIdleBodies(cfg.BodyIdleTimeout, d.Metrics, h)
	h = showOnlyDurable(d.Durable, h)
	h = logRequests(d.Log, d.Metrics, h)
	h = withRequestID(urls, h)
	return h
}
