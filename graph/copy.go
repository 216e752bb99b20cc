package graph

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/ferrydrive/ferry"
)

// copyRequest is the optional body of POST {item}/copy. Empty strings
// count as absent: rclone sends every field, unused ones as "".
type copyRequest struct {
	ParentReference *parentReference `json:"parentReference"`
	Name            string           `json:"name"`
	Conflict        string           `json:"@microsoft.graph.conflictBehavior"`
	LegacyConflict  string           `json:"@name.conflictBehavior"`
}

// handleCopy answers POST {item}/copy. It checks all it can before
// answering: the source exists and is not the root (400), the destination
// (parentReference id or path, default the source's folder; see
// moveTarget) is a folder of the caller's drive (another drive, by driveId
// or in the path: 404), the name (default the
// source's) is valid, a folder is not copied into itself or its subtree
// (400), and with conflict behaviour fail (the default; query parameter
// @microsoft.graph.conflictBehavior) the name is free (409); an item may
// not replace its own ancestor or itself (400). Then it queues the copy and
// answers 202 with an empty body and the monitor's absolute URL in
// Location. Prefer: respond-async is not required: copy is always
// asynchronous.
func handleCopy(log *slog.Logger, items ferry.ItemStore, jobs ferry.JobQueue, urls *urlBuilder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		ctx := r.Context()
		req, err := decodeOptional[copyRequest](r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		conflict, err := conflictBehavior(r, req.Conflict, req.LegacyConflict, ferry.ConflictFail)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		src, err := resolve(ctx, items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if src.IsRoot() {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "the root folder cannot be copied"))
			return
		}
		dest := src.ParentID
		if pr := req.ParentReference; pr != nil {
			to, err := moveTarget(ctx, items, t, pr)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if to != "" {
				dest = to
			}
		}
		name := src.Name
		if req.Name != "" {
			name = req.Name
		}
		if err := ferry.ValidateName(name, src.Folder); err != nil {
			writeError(w, r, log, err)
			return
		}
		if src.Folder {
			inside, err := within(ctx, items, dest, src.ID)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if inside {
				writeError(w, r, log, ferry.Errorf(ferry.Invalid, "a folder cannot be copied into itself or one of its subfolders"))
				return
			}
		}
		taken, err := items.ItemByPath(ctx, dest, []string{name})
		switch {
		case ferry.KindOf(err) == ferry.NotFound:
		case err != nil:
			writeError(w, r, log, err)
			return
		case conflict == ferry.ConflictFail:
			writeError(w, r, log, ferry.Errorf(ferry.NameConflict, "an item named %q already exists in the destination", taken.Name))
			return
		case conflict == ferry.ConflictReplace:
			// Replacing the source or a folder holding it would delete
			// what is being copied.
			inside, err := within(ctx, items, src.ID, taken.ID)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if inside {
				writeError(w, r, log, ferry.Errorf(ferry.Invalid, "a copy cannot replace its own source or a folder that holds it"))
				return
			}
		}
		p := principal(r)
		job := &ferry.Job{
			Operation:  ferry.OpCopy,
			UserID:     p.User.ID,
			UserName:   p.User.Name,
			DriveID:    t.drive.ID,
			ParentID:   dest,
			Name:       name,
			Conflict:   conflict,
			SourceItem: src.ID,
		}
		if err := jobs.Enqueue(ctx, job); err != nil {
			writeError(w, r, log, err)
			return
		}
		w.Header().Set("Location", urls.abs(r, "/monitor/"+url.PathEscape(job.ID)))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
	})
}

// maxDepth bounds the walk up a tree, as a guard against a damaged one.
const maxDepth = 4096

// within reports whether id is ancestor or lies below it, walking up the
// parents of id.
func within(ctx context.Context, items ferry.ItemStore, id, ancestor ferry.ItemID) (bool, error) {
	for range maxDepth {
		if id == ancestor {
			return true, nil
		}
		if id == "" {
			return false, nil
		}
		it, err := items.Item(ctx, id)
		if err != nil {
			return false, err
		}
		id = it.ParentID
	}
	return false, fmt.Errorf("graph: item %s is more than %d levels deep", id, maxDepth)
}
