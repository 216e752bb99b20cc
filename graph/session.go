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
// the session lifetime, fragment and session caps, and the in-process
// record of fragments being written and sessions being committed or
// cancelled right now.
type uploads struct {
	log         *slog.Logger
	accounts    ferry.AccountStore
	items       ferry.ItemStore
	blobs       ferry.BlobStore
	files       *blob.Committer
	sessions    ferry.SessionStore
	now         func() time.Time
	ttl         time.Duration
	maxFragment int64
	maxSessions int // live sessions per drive
}

// Leases of the marks the session store keeps for requests under way: a
// fragment being written claims its range, a commit or cancel claims the
// session. They end with the request; the lease only bounds how long a
// node that died mid-request blocks the range or the session.
const (
	fragmentLease = 10 * time.Minute
	commitLease   = 2 * time.Minute
)

// errSessionGone is the answer for a session that never existed, was
// cancelled, committed or has expired: clients cannot tell these apart,
// and restart the upload either way.
func errSessionGone() error {
	return ferry.Errorf(ferry.NotFound, "The upload session does not exist or has expired.").WithCode("uploadSessionNotFound")
}

func errOverlap() error {
	return ferry.Errorf(ferry.InvalidRange, "Uploaded fragment overlaps with existing data.").WithCode("fragmentOverlap")
}

// errBusy answers a commit or cancel while another commit or cancel of
// the same session runs.
func errBusy() error {
	return ferry.Errorf(ferry.Conflict, "the upload session is being committed or cancelled")
}

// session returns the live session id. The session store judges expiry by
// its own clock; the API's clock (Deps.Now) is checked too, and a session
// expired by it is discarded at once. An id no session can have (see
// cleanText) is gone without asking the store.
func (u *uploads) session(ctx context.Context, id string) (*ferry.UploadSession, error) {
	if !cleanText(id) {
		return nil, errSessionGone()
	}
	s, err := u.sessions.Session(ctx, id)
	if ferry.KindOf(err) == ferry.NotFound {
		return nil, errSessionGone()
	}
	if err != nil {
		return nil, err
	}
	if !u.now().Before(s.Expires) {
		u.discard(ctx, s) // best effort; the sweep catches the rest
		return nil, errSessionGone()
	}
	return s, nil
}

// discard removes a session and its staged bytes. Failures are logged, not
// returned: they are not the client's concern, and the sweep removes
// expired sessions and orphaned staging areas later.
func (u *uploads) discard(ctx context.Context, s *ferry.UploadSession) {
	ctx = context.WithoutCancel(ctx)
	if err := u.blobs.RemoveStaging(ctx, s.StagingID); err != nil {
		u.log.WarnContext(ctx, "could not remove the staging area of an upload session", "err", err)
		return // the session keeps naming the area, so the sweep finds both
	}
	u.forget(ctx, s.ID)
}

// forget deletes a session's record, logging a failure: the session has
// no bytes any more (they were published or removed), and the sweep
// deletes the record once it expires.
func (u *uploads) forget(ctx context.Context, id string) {
	if err := u.sessions.DeleteSession(context.WithoutCancel(ctx), id); err != nil {
		u.log.WarnContext(ctx, "could not delete an upload session", "err", err)
	}
}

// cancel discards the session id with its bytes. It holds the commit mark
// meanwhile, so a cancel while a commit runs is Conflict and removes
// nothing, and a commit while a cancel runs is Conflict too.
func (u *uploads) cancel(ctx context.Context, id string) error {
	end, err := u.beginCommit(ctx, id)
	if err != nil {
		return err
	}
	defer end()
	s, err := u.session(ctx, id)
	if err != nil {
		return err
	}
	u.discard(ctx, s)
	if s.Held != nil {
		u.deleteHeld(ctx, s.Held.BlobKey)
	}
	return nil
}

// beginCommit takes the session's commit mark in the store, which holds
// across nodes; end gives it back. A mark held by another commit or
// cancel is Conflict.
func (u *uploads) beginCommit(ctx context.Context, id string) (end func(), err error) {
	if !cleanText(id) {
		return nil, errSessionGone()
	}
	ok, err := u.sessions.BeginCommit(ctx, id, u.now().Add(commitLease))
	switch {
	case ferry.KindOf(err) == ferry.NotFound:
		return nil, errSessionGone()
	case err != nil:
		return nil, err
	case !ok:
		return nil, errBusy()
	}
	return func() {
		// The session is usually gone by now; then this changes nothing.
		if err := u.sessions.EndCommit(context.WithoutCancel(ctx), id); err != nil {
			u.log.WarnContext(ctx, "could not clear the commit mark of an upload session", "err", err)
		}
	}, nil
}

// deleteHeld deletes the published blob of a session whose commit failed
// and that is discarded now.
func (u *uploads) deleteHeld(ctx context.Context, key string) {
	if err := u.blobs.Delete(context.WithoutCancel(ctx), key); err != nil {
		u.log.WarnContext(ctx, "could not delete the blob of a discarded upload session", "key", key, "err", err)
	}
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

func errQuota() error {
	return ferry.Errorf(ferry.QuotaExceeded, "Insufficient space in the drive for this file.").WithCode("quotaLimitReached")
}

// quotaCheck says what checkQuota counts besides the drive's used bytes.
type quotaCheck int

const (
	// atCommit counts what the store will count: the used bytes only.
	// Other sessions' promises must not make a complete upload fail.
	atCommit quotaCheck = iota
	// atFragment counts the bytes the drive's other live sessions hold
	// or have declared (ferry.SessionStore.SessionUsage), so that several
	// sessions cannot each take the whole room left.
	atFragment
	// atCreate counts them too (the store caps the number of live
	// sessions when it inserts one).
	atCreate
)

// checkQuota fails with QuotaExceeded unless a file of size bytes fits
// where the session s puts it, taking the place of existing (the item
// its commit would replace; nil for a free name): the room is what is
// left of the quota, plus the bytes of a file it replaces, less what
// the check counts (see quotaCheck).
func (u *uploads) checkQuota(ctx context.Context, s *ferry.UploadSession, existing *ferry.Item, size int64, check quotaCheck) error {
	d, err := u.accounts.Drive(ctx, s.DriveID)
	if err != nil {
		return err
	}
	room := d.Remaining()
	if existing != nil && !existing.Folder && (s.ItemID != "" || s.Conflict == ferry.ConflictReplace) {
		room += existing.Size // fail or rename replace nothing
	}
	// Other live sessions keep their room, at commit too: the store
	// counts their declared sizes against the quota.
	pending, _, err := u.sessions.SessionUsage(ctx, s.DriveID)
	if err != nil {
		return err
	}
	// s's own share, once it is stored: its size when known, else the
	// bytes it holds (see SessionUsage).
	if s.ID != "" {
		if s.Size >= 0 {
			pending -= s.Size
		} else {
			pending -= s.ReceivedBytes()
		}
	}
	room -= pending
	if size > room {
		return errQuota()
	}
	return nil
}

// committed is the outcome of a session's commit: the file and the drive
// it is in, and whether it was created rather than replaced.
type committed struct {
	item    *ferry.Item
	drive   *ferry.Drive
	created bool
}

// commit turns the complete session id into the file through the one
// commit path (blob.Committer): the staged bytes, hashed as their
// contiguous prefix grew, are published, recorded in the session (held),
// and the item is created (the session's conflict behaviour applied now)
// or the file it names gets them, in the transaction that deletes the
// session (SessionStore.CommitSession). A name conflict, a quota overrun,
// a stale If-Match or a vanished target discards the session with its
// bytes. Any other failure (the database unavailable) keeps the session
// with its published bytes: the client retries the commit, or the last
// fragment, and the retry commits those bytes. The commit mark, held in
// the store, makes a second commit or a cancel meanwhile Conflict on any
// node. The work goes on if the client disconnects.
func (u *uploads) commit(ctx context.Context, id string) (*committed, error) {
	ctx = context.WithoutCancel(ctx)
	end, err := u.beginCommit(ctx, id)
	if err != nil {
		return nil, err
	}
	defer end()
	s, err := u.session(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.Complete() {
		return nil, ferry.Errorf(ferry.Invalid, "the upload session is missing bytes %s", strings.Join(s.NextExpectedRanges(), ", ")).WithCode("uploadSessionIncomplete")
	}
	// The drive is read before the file is written: the answer needs it,
	// and a failure to read it must not report a written file as failed.
	d, err := u.accounts.Drive(ctx, s.DriveID)
	if err != nil {
		return nil, err
	}
	out := &committed{drive: d}
	create := func(ctx context.Context, c ferry.Content) (*ferry.Item, error) {
		it, created, err := u.sessions.CommitSession(ctx, id, c)
		out.created = created
		if ferry.KindOf(err) == ferry.NotFound && ferry.CodeOf(err) == "uploadSessionNotFound" {
			// Gone meanwhile: perhaps committed by an earlier attempt
			// whose answer was lost, with these very bytes.
			return nil, blob.Unknown(errSessionGone())
		}
		return it, err
	}
	if s.Held != nil {
		// An earlier commit published the bytes and then failed for a
		// passing reason: commit those.
		out.item, err = u.files.CommitPublished(ctx, *s.Held, create)
	} else {
		// Check what can be checked before spending the work of
		// publishing.
		if err := u.precheck(ctx, s); err != nil {
			if blob.Refused(err) {
				u.discard(ctx, s)
			}
			return nil, err
		}
		var hashes ferry.Hashes
		var st ferry.Staging
		_, hashes, err = u.files.HashFrom(ctx, s.StagingID, s.HashState, s.Hashed, s.Size)
		if err == nil {
			st, err = u.blobs.OpenStaging(ctx, s.StagingID)
		}
		switch {
		case ferry.KindOf(err) == ferry.NotFound:
			// Published by an earlier commit that died, or failed, before
			// it held the blob? Then commit that blob.
			var found bool
			if out.item, found, err = u.commitRecovered(ctx, s, create); !found && err == nil {
				u.forget(ctx, s.ID) // its bytes are gone
				return nil, errSessionGone()
			}
		case err != nil:
			return nil, err
		default:
			hold := func(ctx context.Context, c ferry.Content) error { return u.sessions.HoldSessionBlob(ctx, id, c) }
			var c ferry.Content
			out.item, c, err = u.files.Commit(ctx, blob.Staged{Staging: st, Size: s.Size, Hashes: hashes, Name: s.Name}, hold, create)
			if err != nil && c.BlobKey == "" && ferry.KindOf(err) == ferry.NotFound {
				u.forget(ctx, s.ID) // its bytes vanished before they were published
				return nil, errSessionGone()
			}
		}
	}
	if err != nil {
		if blob.Refused(err) {
			// The blob is deleted already; the session goes too.
			u.discard(ctx, s)
		}
		return nil, err
	}
	return out, nil
}

// commitRecovered commits the blob that an earlier commit of session s
// published from its staging area without recording it (blob.Committer.
// Recover); found is false when there is none.
func (u *uploads) commitRecovered(ctx context.Context, s *ferry.UploadSession, create blob.CreateFunc) (it *ferry.Item, found bool, err error) {
	c, head, found, err := u.files.Recover(ctx, s.StagingID, s.HashState, s.Hashed)
	if err != nil || !found || c.Size != s.Size {
		return nil, false, err
	}
	c.MimeType = blob.DetectMIME(s.Name, head)
	it, err = u.files.CommitPublished(ctx, c, create)
	return it, true, err
}

// precheck finds, before publishing, the failures the store would report
// at commit: a taken name under fail, a name held by a folder, a stale
// If-Match, a replaced file that is gone or became a folder, a missing
// parent and the quota.
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
	case s.ItemID == "" && existing != nil && existing.Folder && s.Conflict == ferry.ConflictReplace:
		return errFolderHoldsName(existing)
	case s.ItemID == "":
		if _, err := u.items.Item(ctx, s.ParentID); ferry.KindOf(err) == ferry.NotFound {
			return ferry.Errorf(ferry.NotFound, "the folder this upload session writes to no longer exists")
		} else if err != nil {
			return err
		}
	}
	return u.checkQuota(ctx, s, existing, s.Size, atCommit)
}

// errFolderHoldsName refuses an upload that would replace a folder: replace
// only replaces a file with a file.
func errFolderHoldsName(folder *ferry.Item) error {
	return ferry.Errorf(ferry.NameConflict, "a folder named %q already exists; an upload replaces only a file", folder.Name)
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
//     taken name is 409 at once, and again at commit; replace only
//     replaces a file, so a name held by a folder is 409 too);
//   - items/{id}/createUploadSession replaces the bytes of that file.
//
// If-Match (412 when stale) makes the session replace the file it names
// and is checked again at commit; If-None-Match naming the existing item,
// or "*" when one exists, is 412. item.name, if given, must be the name
// the address gives. The drive's used bytes, plus those the drive's other
// live sessions hold or have declared, plus the fileSize (if given) must
// fit the quota, else 507; a drive with MaxUploadSessions live sessions
// gets 429 with Retry-After. Nothing is created when refused. The answer
// is 200 with an absolute uploadUrl that is the session's only credential.
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
		s, existing, err := newSession(ctx, r, items, t, &req)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var size int64 // unknown until a fragment tells it: no bytes yet
		if req.Item != nil && req.Item.FileSize != nil && *req.Item.FileSize > 0 {
			s.Size = *req.Item.FileSize
			size = s.Size
		}
		if err := up.checkQuota(ctx, s, existing, size, atCreate); err != nil {
			writeError(w, r, log, err)
			return
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
		if err := up.sessions.CreateSession(ctx, s, up.maxSessions); err != nil {
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
// returns the session it asks for, without ID, staging area or expiry,
// and the item that holds its name now (nil if none).
func newSession(ctx context.Context, r *http.Request, items ferry.ItemStore, t *target, req *uploadSessionRequest) (*ferry.UploadSession, *ferry.Item, error) {
	var conflictBody, legacy, bodyName, description string
	var fsInfo *fsInfoRequest
	if it := req.Item; it != nil {
		conflictBody, legacy, bodyName, description, fsInfo = it.Conflict, it.LegacyConflict, it.Name, it.Description, it.FileSystemInfo
		if it.FileSize != nil && *it.FileSize < 0 {
			return nil, nil, ferry.Errorf(ferry.Invalid, "item.fileSize must not be negative")
		}
		if err := ferry.ValidateDescription(it.Description); err != nil {
			return nil, nil, err
		}
	}
	conflict, err := conflictBehavior(r, conflictBody, legacy, ferry.ConflictReplace)
	if err != nil {
		return nil, nil, err
	}
	created, modified, err := fsInfo.times()
	if err != nil {
		return nil, nil, err
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
			return nil, nil, err
		}
		if existing.Folder {
			return nil, nil, ferry.Errorf(ferry.Invalid, "%q is a folder; an upload session creates or replaces a file (address it as …:/name:/createUploadSession)", existing.Name)
		}
		s.ParentID, s.Name, s.ItemID = existing.ParentID, existing.Name, existing.ID
	} else {
		parent, name, err := resolveParent(ctx, items, t)
		if err != nil {
			return nil, nil, err
		}
		if err := ferry.ValidateName(name, false); err != nil {
			return nil, nil, err
		}
		s.ParentID, s.Name = parent.ID, name
		existing, err = items.ItemByPath(ctx, parent.ID, []string{name})
		if ferry.KindOf(err) == ferry.NotFound {
			existing, err = nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if bodyName != "" && bodyName != s.Name {
		return nil, nil, ferry.Errorf(ferry.Invalid, "item.name %q differs from the name %q in the address", bodyName, s.Name)
	}
	if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" { // "*" too: a file must exist
		switch {
		case existing == nil:
			return nil, nil, ferry.Errorf(ferry.Modified, "If-Match names a file that does not exist")
		case !existing.Matches(im):
			return nil, nil, ferry.Errorf(ferry.Modified, "the file has changed (If-Match does not match its eTag)")
		case existing.Folder:
			return nil, nil, ferry.Errorf(ferry.Invalid, "%q is a folder; only files have content", existing.Name)
		}
		s.ItemID, s.IfMatch = existing.ID, im
	}
	if inm := strings.TrimSpace(r.Header.Get("If-None-Match")); inm != "" && existing != nil && (inm == "*" || existing.Matches(inm)) {
		return nil, nil, ferry.Errorf(ferry.Modified, "If-None-Match: the item exists")
	}
	switch {
	case s.ItemID != "":
		s.Conflict = ferry.ConflictReplace
	case existing != nil && conflict == ferry.ConflictFail:
		return nil, nil, ferry.Errorf(ferry.NameConflict, "an item named %q already exists in this folder", s.Name)
	case existing != nil && existing.Folder && conflict == ferry.ConflictReplace:
		return nil, nil, errFolderHoldsName(existing)
	}
	return s, existing, nil
}

// handlePutFragment answers PUT {uploadUrl}: one fragment, Content-Range
// "bytes a-b/total", Content-Length b-a+1, at most the fragment cap (413),
// in any order. No token is needed; an Authorization header is ignored.
//
// A fragment is checked against the bytes received and in flight before
// any byte is written (416 on overlap), streamed into the staging area at
// offset a with bounded, pooled buffers, made durable, and only then
// recorded: a body that ends short is 400 and leaves no record. The first
// fragment of a session without a fileSize tells the total, which must fit
// the quota as at creation (507). The answer is 202 with the ranges still
// expected, or, for the fragment that
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
		s, err := up.session(ctx, id)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if s.Complete() && !s.DeferCommit && s.Size == cr.total && received(s, rng) {
			// The last fragment again: its answer (the commit's) was
			// lost, or the commit failed for a passing reason. Its bytes
			// are here; commit them.
			writeCommit(w, r, log, up, view, id)
			return
		}
		if err := checkFragment(s, rng, cr.total); err != nil {
			writeError(w, r, log, err)
			return
		}
		// Claim the range in the store, so that no request on any node
		// writes the same bytes meanwhile.
		if err := up.sessions.BeginFragment(ctx, id, rng, up.now().Add(fragmentLease)); err != nil {
			switch ferry.KindOf(err) {
			case ferry.NotFound:
				err = errSessionGone()
			case ferry.Conflict:
				err = errOverlap() // a commit or cancel runs
			}
			writeError(w, r, log, err)
			return
		}
		recorded := false
		defer func() {
			if !recorded {
				if err := up.sessions.EndFragment(context.WithoutCancel(ctx), id, rng); err != nil {
					log.WarnContext(ctx, "could not drop the claim of a fragment", "err", err)
				}
			}
		}()
		if s.Size < 0 {
			// The first fragment tells the size: refuse now what could
			// never be committed, or would take room other sessions hold.
			existing, err := up.target(ctx, s)
			if err == nil {
				err = up.checkQuota(ctx, s, existing, cr.total, atFragment)
			}
			if err != nil {
				writeError(w, r, log, err)
				return
			}
		}
		if err := up.stage(ctx, s, rng, cr.total, r.Body); err != nil {
			writeError(w, r, log, err)
			return
		}
		s, err = up.sessions.AddFragment(context.WithoutCancel(ctx), id, rng, cr.total, up.now().Add(up.ttl))
		recorded = err == nil // AddFragment drops the claim
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
		up.hashPrefix(ctx, s)
		if !s.Complete() || s.DeferCommit {
			encode(w, http.StatusAccepted, newUploadSessionJSON(s))
			return
		}
		writeCommit(w, r, log, up, view, id)
	})
}

// received reports whether all of r has arrived in s.
func received(s *ferry.UploadSession, r ferry.Range) bool {
	for _, x := range s.Received {
		if x.Start <= r.Start && r.End <= x.End {
			return true
		}
	}
	return false
}

// hashPrefix hashes the bytes that have become contiguous from the start
// of the file since the session's saved hash state, and saves the new
// state, so that the commit of a complete file has (nearly) nothing left
// to hash. Fragments sent in order hash exactly their own bytes; one that
// fills a gap hashes the run it joins up. A failure is logged, not
// answered: the commit hashes what is left.
func (u *uploads) hashPrefix(ctx context.Context, s *ferry.UploadSession) {
	if len(s.Received) == 0 || s.Received[0].Start != 0 || s.Received[0].End <= s.Hashed {
		return
	}
	ctx = context.WithoutCancel(ctx)
	to := s.Received[0].End
	state, _, err := u.files.HashFrom(ctx, s.StagingID, s.HashState, s.Hashed, to)
	if err == nil {
		// Saved only if no other fragment moved the state meanwhile.
		err = u.sessions.SaveSessionHash(ctx, s.ID, s.Hashed, to, state)
	}
	if err != nil {
		u.log.WarnContext(ctx, "could not hash the received prefix of an upload session", "err", err)
	}
}

// checkFragment refuses a fragment whose total disagrees with the session
// (400 fragmentLengthMismatch) or that overlaps bytes already received
// (416 fragmentOverlap).
// The first fragment recorded sets the size, so a session with bytes
// always has one.
func checkFragment(s *ferry.UploadSession, rng ferry.Range, total int64) error {
	if s.Size >= 0 && s.Size != total {
		return ferry.Errorf(ferry.Invalid, "the fragment gives a total of %d bytes, but the upload is %d bytes long", total, s.Size).WithCode("fragmentLengthMismatch")
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

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
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
// rng.Start and makes it durable, through the one path that reserves room
// on the local disk for the whole file first (503 when there is none). A
// body shorter than the range is 400.
func (u *uploads) stage(ctx context.Context, s *ferry.UploadSession, rng ferry.Range, total int64, body io.Reader) error {
	n, err := u.files.WriteAt(ctx, s.StagingID, rng.Start, markedBody{body}, rng.Len(), total)
	var be *bodyError
	switch {
	case ferry.KindOf(err) == ferry.NotFound:
		return errSessionGone()
	case errors.As(err, &be) || ctx.Err() != nil || (err == nil && n < rng.Len()):
		return &ferry.Error{Kind: ferry.Invalid, Err: err,
			Message: fmt.Sprintf("the fragment body ended after %d of %d bytes; send the fragment again", n, rng.Len())}
	}
	return err
}

// writeCommit commits the complete session id and answers 201 (new file)
// or 200 (replaced) with the driveItem.
func writeCommit(w http.ResponseWriter, r *http.Request, log *slog.Logger, up *uploads, view *itemView, id string) {
	ctx := context.WithoutCancel(r.Context())
	c, err := up.commit(ctx, id)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	di, err := view.renderOne(ctx, r, up.items, c.drive, c.item)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	status := http.StatusOK
	if c.created {
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
// staged bytes are freed. An unknown session is 404; a session being
// committed is 409, and the commit goes on.
func handleCancelUploadSession(log *slog.Logger, up *uploads) http.Handler {
	if up == nil {
		return handleUploadsUnavailable(log)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := up.cancel(r.Context(), r.PathValue("id")); err != nil {
			writeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleCommitUploadSession answers POST {uploadUrl} (the body, normally
// empty, is ignored): it commits a complete session, as deferCommit
// sessions need. An incomplete one is 400 uploadSessionIncomplete; one
// being committed or cancelled is 409.
func handleCommitUploadSession(log *slog.Logger, up *uploads, view *itemView) http.Handler {
	if up == nil {
		return handleUploadsUnavailable(log)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeCommit(w, r, log, up, view, r.PathValue("id"))
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
