package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

// uploadSessionJSON is Graph's uploadSession resource. uploadUrl appears
// only in the answer to createUploadSession.
type uploadSessionJSON struct {
	UploadURL          string   `json:"uploadUrl,omitempty"`
	ExpirationDateTime string   `json:"expirationDateTime"`
	NextExpectedRanges []string `json:"nextExpectedRanges"`
}

func newUploadSessionJSON(s *ferry.UploadSession) uploadSessionJSON {
	return uploadSessionJSON{
		ExpirationDateTime: graphTime(s.Expires),
		NextExpectedRanges: s.NextExpectedRanges(),
	}
}

// uploads is the machinery the upload-session handlers share: the stores,
// the session lifetime and fragment cap, and the in-process record of
// fragments being written right now.
type uploads struct {
	accounts    ferry.AccountStore
	items       ferry.ItemStore
	blobs       ferry.BlobStore
	sessions    ferry.SessionStore
	now         func() time.Time
	ttl         time.Duration
	maxFragment int64
	busy        *inflight
}

// errSessionGone is the answer for a session that never existed, was
// cancelled, committed or has expired: clients cannot tell these apart,
// and restart the upload either way.
func errSessionGone() error {
	return ferry.Errorf(ferry.NotFound, "The upload session does not exist or has expired.").WithCode("uploadSessionNotFound")
}

func errOverlap() error {
	return ferry.Errorf(ferry.InvalidRange, "Uploaded fragment overlaps with existing data.").WithCode("fragmentOverlap")
}

// session returns the live session id. The session store judges expiry by
// its own clock; the API's clock (Deps.Now) is checked too, and a session
// expired by it is discarded at once.
func (u *uploads) session(ctx context.Context, id string) (*ferry.UploadSession, error) {
	s, err := u.sessions.Session(ctx, id)
	if ferry.KindOf(err) == ferry.NotFound {
		return nil, errSessionGone()
	}
	if err != nil {
		return nil, err
	}
	if !u.now().Before(s.Expires) {
		_ = u.discard(ctx, s) // best effort; the sweep catches the rest
		return nil, errSessionGone()
	}
	return s, nil
}

// discard removes a session and its staged bytes. Failures are not the
// client's concern: an orphaned staging area is swept later.
func (u *uploads) discard(ctx context.Context, s *ferry.UploadSession) error {
	ctx = context.WithoutCancel(ctx)
	if err := u.blobs.RemoveStaging(ctx, s.StagingID); err != nil {
		return err
	}
	return u.sessions.DeleteSession(ctx, s.ID)
}

// target returns the existing item a session's commit would replace: the
// file it names by ID, or the item that holds its name in its folder; nil
// when the name is free.
func (u *uploads) target(ctx context.Context, s *ferry.UploadSession) (*ferry.Item, error) {
	var it *ferry.Item
	var err error
	if s.ItemID != "" {
		it, err = u.items.Item(ctx, s.ItemID)
		if ferry.KindOf(err) == ferry.NotFound {
			return nil, ferry.Errorf(ferry.NotFound, "the file this upload session replaces no longer exists")
		}
	} else {
		it, err = u.items.ItemByPath(ctx, s.ParentID, []string{s.Name})
		if ferry.KindOf(err) == ferry.NotFound {
			return nil, nil
		}
	}
	return it, err
}

// quotaRoom is how large the file may be in drive d when it takes the
// place of existing (nil for a new name): what is left of the quota, plus
// the bytes of the file it replaces.
func quotaRoom(d *ferry.Drive, existing *ferry.Item) int64 {
	room := d.Remaining()
	if existing != nil && !existing.Folder {
		room += existing.Size
	}
	return room
}

func errQuota() error {
	return ferry.Errorf(ferry.QuotaExceeded, "Insufficient space in the drive for this file.").WithCode("quotaLimitReached")
}

// checkQuota fails with QuotaExceeded unless a file of size bytes fits
// where the session puts it.
func (u *uploads) checkQuota(ctx context.Context, s *ferry.UploadSession, size int64) error {
	d, err := u.accounts.Drive(ctx, s.DriveID)
	if err != nil {
		return err
	}
	existing, err := u.target(ctx, s)
	if err != nil {
		return err
	}
	if s.ItemID == "" && s.Conflict != ferry.ConflictReplace {
		existing = nil // fail or rename: nothing is replaced
	}
	if size > quotaRoom(d, existing) {
		return errQuota()
	}
	return nil
}

// commit turns a complete session into the file: it hashes the staged
// bytes (whatever order they came in), publishes them and creates the item
// (the session's conflict behaviour applied now) or replaces the bytes of
// the file it names. It reports whether a new item was created. A name
// conflict, a quota overrun, a stale If-Match or a vanished target
// discards the session with its bytes; nothing half-made remains on any
// path. The work goes on if the client disconnects.
func (u *uploads) commit(ctx context.Context, s *ferry.UploadSession) (*ferry.Item, bool, error) {
	ctx = context.WithoutCancel(ctx)
	if !s.Complete() {
		return nil, false, ferry.Errorf(ferry.Invalid, "the upload session is missing bytes %s", strings.Join(s.NextExpectedRanges(), ", ")).WithCode("uploadSessionIncomplete")
	}
	if !u.busy.beginCommit(s.ID) {
		return nil, false, ferry.Errorf(ferry.Conflict, "the upload session is being committed")
	}
	defer u.busy.endCommit(s.ID)

	// Check what can be checked before spending the work of publishing.
	if err := u.precheck(ctx, s); err != nil {
		switch ferry.KindOf(err) {
		case ferry.NameConflict, ferry.QuotaExceeded, ferry.Modified, ferry.NotFound, ferry.Invalid:
			if derr := u.discard(ctx, s); derr != nil {
				return nil, false, errors.Join(err, derr)
			}
		}
		return nil, false, err
	}

	c, err := u.publish(ctx, s)
	if err != nil {
		return nil, false, err
	}
	var it *ferry.Item
	created := false
	if s.ItemID != "" {
		it, err = u.items.ReplaceContent(ctx, s.ItemID, c, s.IfMatch, s.UserName)
	} else {
		var replaced bool
		it, replaced, err = u.items.CreateItem(ctx, ferry.NewItem{
			DriveID:     s.DriveID,
			ParentID:    s.ParentID,
			Name:        s.Name,
			Content:     c,
			FSCreated:   s.FSCreated,
			FSModified:  s.FSModified,
			Description: s.Description,
			By:          s.UserName,
		}, s.Conflict)
		created = !replaced
	}
	if err != nil {
		// Nothing references the new blob; the session's bytes are gone
		// with it, so the session goes too.
		return nil, false, errors.Join(err, u.blobs.Delete(ctx, c.BlobKey), u.sessions.DeleteSession(ctx, s.ID))
	}
	if err := u.sessions.DeleteSession(ctx, s.ID); err != nil {
		return nil, false, err
	}
	if s.ItemID != "" && (!s.FSCreated.IsZero() || !s.FSModified.IsZero() || s.Description != "") {
		// ReplaceContent changes bytes only; the session's metadata follows.
		if it, err = u.items.UpdateItem(ctx, it.ID, sessionRetouch(s)); err != nil {
			return nil, false, err
		}
	}
	return it, created, nil
}

// precheck finds, before publishing, the failures the store would report
// at commit: a taken name under fail, a stale If-Match, a replaced file
// that is gone or became a folder, a missing parent and the quota.
func (u *uploads) precheck(ctx context.Context, s *ferry.UploadSession) error {
	existing, err := u.target(ctx, s)
	if err != nil {
		return err
	}
	switch {
	case s.ItemID != "" && existing.Folder:
		return ferry.Errorf(ferry.Invalid, "%q is now a folder", existing.Name)
	case s.ItemID != "" && !existing.Matches(s.IfMatch):
		return ferry.Errorf(ferry.Modified, "the file has changed since the upload session was created (If-Match)")
	case s.ItemID == "" && existing != nil && s.Conflict == ferry.ConflictFail:
		return ferry.Errorf(ferry.NameConflict, "Another file exists with the same name as the uploaded session.")
	case s.ItemID == "":
		if _, err := u.items.Item(ctx, s.ParentID); ferry.KindOf(err) == ferry.NotFound {
			return ferry.Errorf(ferry.NotFound, "the folder this upload session writes to no longer exists")
		} else if err != nil {
			return err
		}
	}
	return u.checkQuota(ctx, s, s.Size)
}

// publish hashes the staged bytes of a complete session and publishes them
// as a blob. The staging area is gone afterwards.
func (u *uploads) publish(ctx context.Context, s *ferry.UploadSession) (ferry.Content, error) {
	st, err := u.blobs.OpenStaging(ctx, s.StagingID)
	if ferry.KindOf(err) == ferry.NotFound {
		return ferry.Content{}, errSessionGone()
	}
	if err != nil {
		return ferry.Content{}, err
	}
	defer st.Close()
	h, err := blob.Rehash(ctx, st, s.Size)
	if err != nil {
		return ferry.Content{}, err
	}
	head := make([]byte, min(s.Size, 512))
	if _, err := st.ReadAt(head, 0); err != nil && err != io.EOF {
		return ferry.Content{}, fmt.Errorf("graph: read staged head: %w", err)
	}
	key, err := st.Publish(ctx, s.Size)
	if err != nil {
		return ferry.Content{}, err
	}
	return ferry.Content{Size: s.Size, MimeType: blob.DetectMIME(s.Name, head), Hashes: h.Sum(), BlobKey: key}, nil
}

// sessionRetouch carries a session's fileSystemInfo and description over
// to the file whose bytes it replaced.
func sessionRetouch(s *ferry.UploadSession) ferry.ItemUpdate {
	u := ferry.ItemUpdate{By: s.UserName, Conflict: ferry.ConflictFail}
	if !s.FSCreated.IsZero() {
		u.FSCreated = &s.FSCreated
	}
	if !s.FSModified.IsZero() {
		u.FSModified = &s.FSModified
	}
	if s.Description != "" {
		u.Description = &s.Description
	}
	return u
}

// inflight records, per session, the byte ranges being written right now
// and whether a commit runs. A fragment reserves its range before it reads
// the session and releases it only after the range is recorded, so two
// requests racing on one session never write the same bytes of its staging
// area, and bytes already received are never overwritten. The record is
// per process: a deployment that spreads one session's fragments over
// several nodes has only the store's atomic AddFragment to rely on.
type inflight struct {
	mu         sync.Mutex
	ranges     map[string][]ferry.Range
	committing map[string]bool
}

func newInflight() *inflight {
	return &inflight{ranges: map[string][]ferry.Range{}, committing: map[string]bool{}}
}

// reserve claims r of session id; false if it overlaps a range in flight
// or the session is being committed.
func (f *inflight) reserve(id string, r ferry.Range) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.committing[id] {
		return false
	}
	for _, x := range f.ranges[id] {
		if x.Overlaps(r) {
			return false
		}
	}
	f.ranges[id] = append(f.ranges[id], r)
	return true
}

func (f *inflight) release(id string, r ferry.Range) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := f.ranges[id]
	for i, x := range list {
		if x == r {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(f.ranges, id)
	} else {
		f.ranges[id] = list
	}
}

// beginCommit marks session id as committing; false if it already is.
func (f *inflight) beginCommit(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.committing[id] {
		return false
	}
	f.committing[id] = true
	return true
}

func (f *inflight) endCommit(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.committing, id)
}

// handleUploadsUnavailable answers every upload-session request when the
// server runs without a session store.
func handleUploadsUnavailable(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, log, ferry.Errorf(ferry.NotSupported, "upload sessions are not available on this server"))
	})
}

// uploadSessionRequest is the optional body of createUploadSession.
// "@odata.type" and other unknown members are ignored.
type uploadSessionRequest struct {
	Item *struct {
		Conflict       string         `json:"@microsoft.graph.conflictBehavior"`
		LegacyConflict string         `json:"@name.conflictBehavior"`
		Name           string         `json:"name"`
		Description    string         `json:"description"`
		FileSystemInfo *fsInfoRequest `json:"fileSystemInfo"`
		FileSize       *int64         `json:"fileSize"`
	} `json:"item"`
	DeferCommit bool `json:"deferCommit"`
}

// handleCreateUploadSession answers POST …/createUploadSession:
//
//   - items/{parent}:/{name}:/createUploadSession and
//     root:/{path}:/createUploadSession upload a file under that name into
//     an existing folder (404 when missing, 400 when a file), by the
//     conflict behaviour of the body's item (default replace; with fail a
//     taken name is 409 at once, and again at commit);
//   - items/{id}/createUploadSession replaces the bytes of that file.
//
// If-Match (412 when stale) makes the session replace the file it names
// and is checked again at commit; If-None-Match naming the existing item,
// or "*" when one exists, is 412. item.name, if given, must be the name
// the address gives. A fileSize over the room left in the drive is 507,
// and nothing is created. The answer is 200 with an absolute uploadUrl
// that is the session's only credential.
func handleCreateUploadSession(log *slog.Logger, items ferry.ItemStore, up *uploads, urls *urlBuilder) http.Handler {
	if up == nil {
		return handleUploadsUnavailable(log)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		ctx := r.Context()
		req, err := decodeOptional[uploadSessionRequest](r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		s, err := newSession(ctx, r, items, t, &req)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if req.Item != nil && req.Item.FileSize != nil && *req.Item.FileSize > 0 {
			s.Size = *req.Item.FileSize
			existing, err := up.target(ctx, s)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if s.ItemID == "" && s.Conflict != ferry.ConflictReplace {
				existing = nil
			}
			if s.Size > quotaRoom(t.drive, existing) {
				writeError(w, r, log, errQuota())
				return
			}
		}
		st, err := up.blobs.Stage(ctx)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		s.StagingID = st.ID()
		st.Close()
		now := up.now()
		s.ID = ferry.NewID("up_", 20)
		s.Created = now
		s.Expires = now.Add(up.ttl)
		if err := up.sessions.CreateSession(ctx, s); err != nil {
			if rerr := up.blobs.RemoveStaging(context.WithoutCancel(ctx), s.StagingID); rerr != nil {
				err = errors.Join(err, rerr)
			}
			writeError(w, r, log, err)
			return
		}
		body := newUploadSessionJSON(s)
		body.UploadURL = urls.abs(r, "/upload/"+url.PathEscape(s.ID))
		encode(w, http.StatusOK, body)
	})
}

// newSession checks a createUploadSession request against the drive and
// returns the session it asks for, without ID, staging area or expiry.
func newSession(ctx context.Context, r *http.Request, items ferry.ItemStore, t *target, req *uploadSessionRequest) (*ferry.UploadSession, error) {
	var conflictBody, legacy, bodyName, description string
	var fsInfo *fsInfoRequest
	if it := req.Item; it != nil {
		conflictBody, legacy, bodyName, description, fsInfo = it.Conflict, it.LegacyConflict, it.Name, it.Description, it.FileSystemInfo
		if it.FileSize != nil && *it.FileSize < 0 {
			return nil, ferry.Errorf(ferry.Invalid, "item.fileSize must not be negative")
		}
	}
	conflict, err := conflictBehavior(r, conflictBody, legacy, ferry.ConflictReplace)
	if err != nil {
		return nil, err
	}
	created, modified, err := fsInfo.times()
	if err != nil {
		return nil, err
	}
	p := principal(r)
	s := &ferry.UploadSession{
		UserID:      p.User.ID,
		UserName:    p.User.Name,
		DriveID:     t.drive.ID,
		Conflict:    conflict,
		Description: description,
		DeferCommit: req.DeferCommit,
		Size:        -1,
	}
	if created != nil {
		s.FSCreated = *created
	}
	if modified != nil {
		s.FSModified = *modified
	}

	var existing *ferry.Item
	if t.ref.path == "" {
		if existing, err = resolve(ctx, items, t); err != nil {
			return nil, err
		}
		if existing.Folder {
			return nil, ferry.Errorf(ferry.Invalid, "%q is a folder; an upload session creates or replaces a file (address it as …:/name:/createUploadSession)", existing.Name)
		}
		s.ParentID, s.Name, s.ItemID = existing.ParentID, existing.Name, existing.ID
	} else {
		parent, name, err := resolveParent(ctx, items, t)
		if err != nil {
			return nil, err
		}
		if err := ferry.ValidateName(name, false); err != nil {
			return nil, err
		}
		s.ParentID, s.Name = parent.ID, name
		existing, err = items.ItemByPath(ctx, parent.ID, []string{name})
		if ferry.KindOf(err) == ferry.NotFound {
			existing, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	if bodyName != "" && bodyName != s.Name {
		return nil, ferry.Errorf(ferry.Invalid, "item.name %q differs from the name %q in the address", bodyName, s.Name)
	}
	if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" { // "*" too: a file must exist
		switch {
		case existing == nil:
			return nil, ferry.Errorf(ferry.Modified, "If-Match names a file that does not exist")
		case !existing.Matches(im):
			return nil, ferry.Errorf(ferry.Modified, "the file has changed (If-Match does not match its eTag)")
		case existing.Folder:
			return nil, ferry.Errorf(ferry.Invalid, "%q is a folder; only files have content", existing.Name)
		}
		s.ItemID, s.IfMatch = existing.ID, im
	}
	if inm := strings.TrimSpace(r.Header.Get("If-None-Match")); inm != "" && existing != nil && (inm == "*" || existing.Matches(inm)) {
		return nil, ferry.Errorf(ferry.Modified, "If-None-Match: the item exists")
	}
	if s.ItemID != "" {
		s.Conflict = ferry.ConflictReplace
	} else if existing != nil && conflict == ferry.ConflictFail {
		return nil, ferry.Errorf(ferry.NameConflict, "an item named %q already exists in this folder", s.Name)
	}
	return s, nil
}

// handlePutFragment answers PUT {uploadUrl}: one fragment, Content-Range
// "bytes a-b/total", Content-Length b-a+1, at most the fragment cap (413),
// in any order. No token is needed; an Authorization header is ignored.
//
// A fragment is checked against the bytes received and in flight before
// any byte is written (416 on overlap), streamed into the staging area at
// offset a with bounded, pooled buffers, made durable, and only then
// recorded: a body that ends short is 400 and leaves no record. The
// answer is 202 with the ranges still expected, or, for the fragment that
// completes the file, the commit's 201/200 and driveItem (202 with no
// ranges under deferCommit).
func handlePutFragment(log *slog.Logger, up *uploads, view *itemView) http.Handler {
	if up == nil {
		return handleUploadsUnavailable(log)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := r.PathValue("id")
		cr, err := parseContentRange(r.Header.Get("Content-Range"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		rng := ferry.Range{Start: cr.start, End: cr.end}
		n := rng.Len()
		if n > up.maxFragment {
			writeError(w, r, log, ferry.Errorf(ferry.TooLarge, "a fragment may hold at most %d bytes, not %d", up.maxFragment, n).WithCode("maxFragmentLengthExceeded"))
			return
		}
		if r.ContentLength != n {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "Content-Length must be %d, the length of the Content-Range", n))
			return
		}
		if enc := strings.TrimSpace(r.Header.Get("Content-Encoding")); enc != "" && !strings.EqualFold(enc, "identity") {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "fragments must not be sent with a Content-Encoding"))
			return
		}
		if !up.busy.reserve(id, rng) {
			writeError(w, r, log, errOverlap())
			return
		}
		defer up.busy.release(id, rng)

		s, err := up.session(ctx, id)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if err := checkFragment(s, rng, cr.total); err != nil {
			writeError(w, r, log, err)
			return
		}
		if s.Size < 0 {
			// The first fragment tells the size: refuse now what could
			// never be committed.
			if err := up.checkQuota(ctx, s, cr.total); err != nil {
				writeError(w, r, log, err)
				return
			}
		}
		if err := up.stage(ctx, s, rng, r.Body); err != nil {
			writeError(w, r, log, err)
			return
		}
		s, err = up.sessions.AddFragment(context.WithoutCancel(ctx), id, rng, cr.total, up.now().Add(up.ttl))
		if err != nil {
			switch ferry.KindOf(err) {
			case ferry.NotFound:
				err = errSessionGone()
			case ferry.InvalidRange:
				err = errOverlap()
			}
			writeError(w, r, log, err)
			return
		}
		if !s.Complete() || s.DeferCommit {
			encode(w, http.StatusAccepted, newUploadSessionJSON(s))
			return
		}
		writeCommit(w, r, log, up, view, s)
	})
}

// checkFragment refuses a fragment whose total disagrees with the session
// (400 fragmentLengthMismatch) or that overlaps bytes already received
// (416 fragmentOverlap).
func checkFragment(s *ferry.UploadSession, rng ferry.Range, total int64) error {
	known := s.Size
	if n := len(s.Received); known < 0 && n > 0 && s.Received[n-1].End > total {
		known = s.Received[n-1].End
	}
	if known >= 0 && known != total {
		return ferry.Errorf(ferry.Invalid, "the fragment gives a total of %d bytes, but the upload is %d bytes long", total, known).WithCode("fragmentLengthMismatch")
	}
	for _, x := range s.Received {
		if x.Overlaps(rng) {
			return errOverlap()
		}
	}
	return nil
}

// bodyError marks a failure to read the request body: the client's fault
// (or its connection's), never the server's.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read fragment body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// markedBody marks the errors of the reader it wraps as bodyErrors.
type markedBody struct{ r io.Reader }

func (b markedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = &bodyError{err}
	}
	return n, err
}

// stage writes the fragment body into the session's staging area at
// rng.Start and makes it durable. A body shorter than the range is 400.
func (u *uploads) stage(ctx context.Context, s *ferry.UploadSession, rng ferry.Range, body io.Reader) error {
	st, err := u.blobs.OpenStaging(ctx, s.StagingID)
	if ferry.KindOf(err) == ferry.NotFound {
		return errSessionGone()
	}
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := blob.Copy(ctx, st, rng.Start, markedBody{body}, nil, rng.Len(), nil)
	var be *bodyError
	switch {
	case errors.As(err, &be) || ctx.Err() != nil || (err == nil && n < rng.Len()):
		return &ferry.Error{Kind: ferry.Invalid, Err: err,
			Message: fmt.Sprintf("the fragment body ended after %d of %d bytes; send the fragment again", n, rng.Len())}
	case err != nil:
		return err
	}
	return st.Sync()
}

// writeCommit commits a complete session and answers 201 (new file) or
// 200 (replaced) with the driveItem.
func writeCommit(w http.ResponseWriter, r *http.Request, log *slog.Logger, up *uploads, view *itemView, s *ferry.UploadSession) {
	ctx := context.WithoutCancel(r.Context())
	it, created, err := up.commit(ctx, s)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	d, err := up.accounts.Drive(ctx, s.DriveID)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	di, err := view.renderOne(ctx, r, up.items, d, it)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	encode(w, status, di)
}

// handleGetUploadSession answers GET {uploadUrl} with the session's status,
// with or without a token.
func handleGetUploadSession(log *slog.Logger, up *uploads) http.Handler {
	if up == nil {
		return handleUploadsUnavailable(log)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := up.session(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusOK, newUploadSessionJSON(s))
	})
}

// handleCancelUploadSession answers DELETE {uploadUrl}: 204, and the
// staged bytes are freed. An unknown session is 404.
func handleCancelUploadSession(log *slog.Logger, up *uploads) http.Handler {
	if up == nil {
		return handleUploadsUnavailable(log)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := up.session(r.Context(), r.PathValue("id"))
		if err == nil {
			err = up.discard(r.Context(), s)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleCommitUploadSession answers POST {uploadUrl} (the body, normally
// empty, is ignored): it commits a complete session, as deferCommit
// sessions need. An incomplete one is 400 uploadSessionIncomplete.
func handleCommitUploadSession(log *slog.Logger, up *uploads, view *itemView) http.Handler {
	if up == nil {
		return handleUploadsUnavailable(log)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := up.session(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		writeCommit(w, r, log, up, view, s)
	})
}

// contentRange is the Content-Range of an upload fragment: bytes
// [start, end) of a file of total bytes.
type contentRange struct{ start, end, total int64 }

// parseContentRange parses "bytes a-b/total" strictly: the unit (any case),
// one space, and three non-negative integers with a <= b < total. A total
// of "*" or 0 is refused, as is anything else that is not that form.
func parseContentRange(h string) (contentRange, error) {
	bad := func(why string) (contentRange, error) {
		return contentRange{}, ferry.Errorf(ferry.Invalid, "Content-Range %q: %s; want bytes FIRST-LAST/TOTAL", h, why)
	}
	if h == "" {
		return contentRange{}, ferry.Errorf(ferry.Invalid, "a fragment needs a Content-Range header: bytes FIRST-LAST/TOTAL")
	}
	if len(h) < 6 || !strings.EqualFold(h[:6], "bytes ") {
		return bad("the unit must be bytes")
	}
	spec, totalS, ok := strings.Cut(h[6:], "/")
	if !ok {
		return bad("the total is missing")
	}
	firstS, lastS, ok := strings.Cut(spec, "-")
	if !ok {
		return bad("the range is malformed")
	}
	total, ok := parseDigits(totalS)
	if !ok {
		return bad("the total size must be a number")
	}
	if total == 0 {
		return contentRange{}, ferry.Errorf(ferry.Invalid, "an empty file cannot be uploaded through a session; use PUT …/content")
	}
	first, ok1 := parseDigits(firstS)
	last, ok2 := parseDigits(lastS)
	switch {
	case !ok1 || !ok2:
		return bad("the range is malformed")
	case first > last:
		return bad("the range ends before it starts")
	case last >= total:
		return bad("the range ends beyond the total")
	}
	return contentRange{start: first, end: last + 1, total: total}, nil
}
