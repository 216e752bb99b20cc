package graph

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

// addRoutes is the API's table of contents.
//
// Every drive route exists under /v1.0 and /v2.0 and for the drive
// prefixes /me/drive, /drive and /drives/{driveID}. Item addresses after
// the prefix (items/{id}, root, root:/a/b:, items/{id}:/a/b:, also
// percent-encoded) cannot be ServeMux patterns: one {ref...} catch-all per
// prefix hands them to parseItemRef, and the itemOps table below picks the
// operation by method and action.
//
// GET {drive}/operations (an extension) lists the caller's imports and
// copies; with Accept: text/event-stream it streams them, as a monitor
// streams its job.
//
// Capability URLs need no token: /monitor/{id}, /download/{token}, the
// upload sessions' /upload/{id} (PUT a fragment, GET the status, POST to
// commit, DELETE to cancel) and sharing links, /s/{token} and
// /{version}/shares/{shareId}/… (link.go).
func addRoutes(mux *http.ServeMux, cfg Config, d Deps, urls *urlBuilder, sign *signer) {
	log := d.Log
	view := &itemView{urls: urls, sign: sign}
	st := &streamer{log: log, poll: cfg.StreamPoll, closing: d.Closing}
	files := &blob.Committer{Blobs: d.Blobs, Space: d.Space, Log: log}
	var up *uploads // nil without a session store: the session routes answer 501
	if d.Sessions != nil {
		up = &uploads{
			log: log, accounts: d.Accounts, items: d.Items, blobs: d.Blobs, files: files, sessions: d.Sessions,
			now: d.Now, ttl: cfg.SessionTTL, maxFragment: cfg.MaxFragmentSize, maxSessions: cfg.MaxUploadSessions,
		}
	}

	// HEAD is served by the GET handler of the same action.
	itemOps := map[itemRoute]http.Handler{
		{http.MethodGet, ""}:                     handleGetItem(log, d.Items, view),
		{http.MethodPatch, ""}:                   handleUpdateItem(log, d.Items, view),
		{http.MethodDelete, ""}:                  handleDeleteItem(log, d.Items),
		{http.MethodGet, "children"}:             handleListChildren(log, d.Items, view),
		{http.MethodPost, "children"}:            handleCreateChild(log, d.Items, d.Jobs, view),
		{http.MethodGet, "content"}:              handleGetContent(log, d.Items, view),
		{http.MethodPut, "content"}:              handlePutContent(log, d.Items, files, cfg.MaxUploadSize, view),
		{http.MethodPost, "createUploadSession"}: handleCreateUploadSession(log, d.Items, up, urls),
		{http.MethodPost, "copy"}:                handleCopy(log, d.Items, d.Jobs, urls),
		{http.MethodPost, "createLink"}:          handleCreateLink(log, d.Items, d.Shares, view, d.Now),
		{http.MethodPost, "invite"}:              handleInvite(log, d.Accounts, d.Items, d.Shares, view),
		{http.MethodGet, "permissions"}:          handleListPermissions(log, d.Items, d.Shares, view),
		{http.MethodGet, "permissions/"}:         handlePermission(log, d.Items, d.Shares, view),
		{http.MethodPatch, "permissions/"}:       handlePermission(log, d.Items, d.Shares, view),
		{http.MethodDelete, "permissions/"}:      handlePermission(log, d.Items, d.Shares, view),
	}
	download := handleDownload(log, d.Items, d.Blobs, sign)
	lk := &links{log: log, accounts: d.Accounts, items: d.Items, shares: d.Shares, view: view, now: d.Now,
		download: download, put: itemOps[itemRoute{http.MethodPut, "content"}]}

	mux.Handle("GET /healthz", handleHealthz(log, d.Accounts, d.Blobs, d.Space))
	for _, version := range []string{"/v1.0", "/v2.0"} {
		for _, drive := range []struct {
			prefix   string
			segments int // path segments of version + prefix
		}{
			{"/me/drive", 3},
			{"/drive", 2},
			{"/drives/{driveID}", 3},
		} {
			p := version + drive.prefix
			mux.Handle("GET "+p, authenticate(log, d.Accounts, handleGetDrive(log, d.Accounts)))
			mux.Handle(p, methodNotAllowed(log, http.MethodGet, http.MethodHead))
			mux.Handle("GET "+p+"/operations", authenticate(log, d.Accounts, handleListOperations(log, d.Accounts, d.Jobs, urls, st)))
			mux.Handle(p+"/operations", methodNotAllowed(log, http.MethodGet, http.MethodHead))
			mux.Handle(p+"/{ref...}", authenticate(log, d.Accounts, handleItemRequest(log, d.Accounts, d.Shares, drive.segments, itemOps)))
			if drive.prefix != "/drives/{driveID}" {
				shared := authenticate(log, d.Accounts, handleSharedWithMe(log, d.Accounts, d.Items, d.Shares, view))
				mux.Handle("GET "+p+"/sharedWithMe", shared)
				mux.Handle("GET "+p+"/sharedWithMe()", shared)
			}
		}
		mux.Handle("GET "+version+"/shares/{shareID}/{rest...}", lk.handleShare())
	}
	mux.Handle("GET /monitor/{id}", handleGetMonitor(log, d.Jobs, urls, st))
	mux.Handle("DELETE /monitor/{id}", handleCancelMonitor(log, d.Jobs, urls))
	mux.Handle("/monitor/{id}", methodNotAllowed(log, http.MethodGet, http.MethodHead, http.MethodDelete))
	mux.Handle("PUT /upload/{id}", handlePutFragment(log, up, view))
	mux.Handle("GET /upload/{id}", handleGetUploadSession(log, up))
	mux.Handle("POST /upload/{id}", handleCommitUploadSession(log, up, view))
	mux.Handle("DELETE /upload/{id}", handleCancelUploadSession(log, up))
	mux.Handle("/upload/{id}", methodNotAllowed(log, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut))
	mux.Handle("GET /s/{token}", lk.handleGet())
	mux.Handle("GET /s/{token}/{path...}", lk.handleGet())
	mux.Handle("PUT /s/{token}/{path...}", lk.handlePut())
	mux.Handle("POST /s/{token}", lk.handlePostForm())
	mux.Handle("POST /s/{token}/{path...}", lk.handlePostForm())
	mux.Handle("/s/{token}", methodNotAllowed(log, http.MethodGet, http.MethodHead, http.MethodPost))
	mux.Handle("GET /download/{token}", download)
	mux.Handle("/download/{token}", methodNotAllowed(log, http.MethodGet, http.MethodHead))
	if d.Page != nil {
		mux.Handle("GET /{$}", d.Page)
		mux.Handle("GET /favicon.ico", d.Page)
		mux.Handle("GET /web/", d.Page)
	}
	mux.Handle("/", handleNoRoute(log))
}

// health is the body of /healthz.
type health struct {
	Status   string      `json:"status"` // "ok" or "lowDisk"
	Database healthPart  `json:"database"`
	Blobs    healthPart  `json:"blobStore"`
	Disk     *healthDisk `json:"disk,omitempty"` // absent when nothing is staged locally
}

type healthPart struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// healthDisk reports the local disk in bytes: free for the server, total,
// reserved by writes under way, and kept free (--min-free-space). low says
// that less than a tenth of what the disk can hold above that floor is
// left: writes that do not fit are refused (503) and imports wait.
type healthDisk struct {
	Free     int64  `json:"freeBytes"`
	Total    int64  `json:"totalBytes"`
	Reserved int64  `json:"reservedBytes"`
	MinFree  int64  `json:"minFreeBytes"`
	Low      bool   `json:"low"`
	Error    string `json:"error,omitempty"`
}

// handleHealthz answers 200 while the server can serve, with a JSON body
// reporting the database, the blob store and the local disk: a low disk
// is reported there, not by the status, since the server still serves
// reads, deletes and cancels that free space. Only a database that does
// not answer a query within two seconds is 503 (Graph-shaped).
func handleHealthz(log *slog.Logger, accounts ferry.AccountStore, blobs ferry.BlobStore, space ferry.DiskSpace) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := accounts.UserCount(ctx); err != nil {
			writeError(w, r, log, &ferry.Error{Kind: ferry.Unavailable, RetryAfter: 1,
				Message: "the server cannot reach its database", Err: err})
			return
		}
		h := health{Status: "ok", Database: healthPart{OK: true}, Blobs: healthPart{OK: true}}
		// A key no blob has: NotFound is the healthy answer.
		if b, err := blobs.Open(ctx, "healthz-probe"); err == nil {
			b.Close()
		} else if ferry.KindOf(err) != ferry.NotFound {
			log.WarnContext(ctx, "healthz: blob store", "err", err)
			h.Blobs = healthPart{Error: "the blob store does not answer"}
		}
		if space != nil {
			u, err := space.Usage()
			h.Disk = &healthDisk{Free: u.Free, Total: u.Total, Reserved: u.Reserved, MinFree: u.Floor, Low: err == nil && u.Low()}
			if err != nil {
				log.WarnContext(ctx, "healthz: disk", "err", err)
				h.Disk.Error = "the free space cannot be read"
			}
			if h.Disk.Low && h.Status == "ok" {
				h.Status = "lowDisk"
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusOK, h)
	})
}

// methodNotAllowed answers 405 in Graph's error shape, with Allow.
func methodNotAllowed(log *slog.Logger, allow ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, r, log, &ferry.Error{Kind: ferry.Invalid, Err: errMethodNotAllowed,
			Message: "the method " + r.Method + " is not allowed here"})
	})
}

// handleNoRoute answers paths the API does not have, as Graph does: 400
// invalidRequest "API not found".
func handleNoRoute(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, log, apiNotFound())
	})
}
