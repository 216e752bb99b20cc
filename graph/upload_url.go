package graph

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/ferrydrive/ferry"
)

// createFromURL queues an upload from URL into the folder parent (POST
// children with @microsoft.graph.sourceUrl or @content.sourceUrl). It
// checks all it can before answering: Prefer: respond-async, the URL's
// form and that of every "@ferry.mirrors" URL (checked exactly like it),
// the name when given, the optional "@ferry.sha256" (64 hex digits),
// and with conflict behaviour fail whether the name is already taken (409).
// Whether the address may be reached is decided later, at dial time. It
// answers 202 with an empty body and the absolute monitor URL in Location.
func createFromURL(w http.ResponseWriter, r *http.Request, log *slog.Logger, items ferry.ItemStore, jobs ferry.JobQueue,
	urls *urlBuilder, t *target, parent *ferry.Item, req *createChildRequest, conflict ferry.ConflictBehavior) {
	if req.Folder != nil {
		writeError(w, r, log, ferry.Errorf(ferry.Invalid, "a folder facet cannot be combined with @microsoft.graph.sourceUrl"))
		return
	}
	if !prefers(r.Header, "respond-async") {
		writeError(w, r, log, ferry.Errorf(ferry.Invalid, "upload from URL requires the header 'Prefer: respond-async'"))
		return
	}
	if _, err := ferry.ValidateSourceURL(req.sourceURL()); err != nil {
		writeError(w, r, log, err)
		return
	}
	for i, m := range req.Mirrors {
		if _, err := ferry.ValidateSourceURL(m); err != nil {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "@ferry.mirrors[%d]: %s", i, ferry.Message(err)))
			return
		}
	}
	if req.Name != "" {
		if err := ferry.ValidateName(req.Name, false); err != nil {
			writeError(w, r, log, err)
			return
		}
	}
	var sha string
	if req.ExpectSHA256 != nil {
		sha = strings.ToUpper(strings.TrimSpace(*req.ExpectSHA256))
		if !isHex(sha, 64) {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "@ferry.sha256 must be 64 hexadecimal digits"))
			return
		}
	}
	if req.Name != "" && conflict == ferry.ConflictFail {
		_, err := items.ItemByPath(r.Context(), parent.ID, []string{req.Name})
		switch {
		case err == nil:
			writeError(w, r, log, ferry.Errorf(ferry.NameConflict, "an item named %q already exists in %q", req.Name, parent.Name))
			return
		case ferry.KindOf(err) != ferry.NotFound:
			writeError(w, r, log, err)
			return
		}
	}
	p := principal(r)
	job := &ferry.Job{
		Operation:    ferry.OpDownloadURL,
		UserID:       p.User.ID,
		UserName:     p.User.Name,
		DriveID:      t.drive.ID,
		ParentID:     parent.ID,
		Name:         req.Name,
		Conflict:     conflict,
		SourceURL:    req.sourceURL(),
		Mirrors:      req.Mirrors,
		ExpectSHA256: sha,
	}
	if err := jobs.Enqueue(r.Context(), job); err != nil {
		writeError(w, r, log, err)
		return
	}
	w.Header().Set("Location", urls.abs(r, "/monitor/"+url.PathEscape(job.ID)))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// isHex reports whether s is exactly n hexadecimal digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
