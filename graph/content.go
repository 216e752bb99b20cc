package graph

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

// handleGetContent answers GET and HEAD {item}/content with 302 to the
// item's download URL, which needs no token and serves ranges. A folder has
// no content: 400 invalidRequest.
func handleGetContent(log *slog.Logger, items ferry.ItemStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		it, err := resolve(r.Context(), items, targetOf(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if it.Folder {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "%q is a folder; only files have content", it.Name))
			return
		}
		w.Header().Set("Location", downloadURL(r, view.urls, view.sign, it.ID))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusFound)
	})
}

// handlePutContent answers the simple upload, PUT …/content:
//
//   - items/{parent}:/{name}:/content and root:/{path}:/content create or
//     replace the named file in an existing folder (404 when the folder is
//     missing), by the query's conflict behaviour (default replace): 201
//     new, 200 replaced;
//   - items/{id}/content gives an existing file new bytes: 200.
//
// Content-Length over the limit is refused before reading (413), and the
// limit holds while streaming too. gzip bodies are decoded. If-Match is
// honoured (412). A body that cannot be read (bad chunked encoding, a
// connection cut short) is 400. The bytes go to the one commit path
// (blob.Committer.Put), which reserves their room on the local disk first
// (503 serviceNotAvailable with Retry-After when the disk has none) and,
// when the store refuses the item, deletes the published blob again, so a
// refused upload leaves nothing behind; when the outcome is unknown (an
// internal error) the blob stays for the sweep, which deletes it if no
// item references it.
func handlePutContent(log *slog.Logger, items ferry.ItemStore, files *blob.Committer, maxSize int64, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		ctx := r.Context()
		if r.ContentLength > maxSize {
			writeError(w, r, log, ferry.Errorf(ferry.TooLarge, "the file is larger than the %d-byte limit of a simple upload; use an upload session", maxSize).WithCode("maxFileSizeExceeded"))
			return
		}
		conflict, err := conflictBehavior(r, "", "", ferry.ConflictReplace)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		ifMatch := r.Header.Get("If-Match")

		// Find where the bytes go before reading any of them.
		var existing *ferry.Item // the file whose content is replaced, if known
		var parent *ferry.Item
		var name string
		if t.ref.path == "" && t.ref.id != ferry.RootAlias {
			if existing, err = resolve(ctx, items, t); err != nil {
				writeError(w, r, log, err)
				return
			}
			if existing.Folder {
				writeError(w, r, log, ferry.Errorf(ferry.Invalid, "%q is a folder; only files have content", existing.Name))
				return
			}
			name = existing.Name
		} else {
			if parent, name, err = resolveParent(ctx, items, t); err != nil {
				writeError(w, r, log, err)
				return
			}
			if err := ferry.ValidateName(name, false); err != nil {
				writeError(w, r, log, err)
				return
			}
			if ifMatch != "" {
				// A precondition names an existing file ("*": any, but one
				// must exist, RFC 9110 §13.1.1); check it before taking the
				// bytes (the store checks again at commit).
				existing, err = items.ItemByPath(ctx, parent.ID, []string{name})
				if ferry.KindOf(err) == ferry.NotFound {
					err = ferry.Errorf(ferry.Modified, "If-Match names a file that does not exist")
				}
				if err == nil && !existing.Matches(ifMatch) {
					err = ferry.Errorf(ferry.Modified, "the file has changed (If-Match does not match its eTag)")
				}
				if err != nil {
					writeError(w, r, log, err)
					return
				}
			}
		}

		body, err := bodyReader(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		size := r.ContentLength // -1 when unknown; gzip bodies decode to more
		if r.Header.Get("Content-Encoding") != "" {
			size = -1
		}
		by := principal(r).User.Name
		replaced := true
		it, err := files.Put(ctx, markedBody{body}, size, maxSize, name, func(ctx context.Context, c ferry.Content) (*ferry.Item, error) {
			if existing != nil {
				return items.ReplaceContent(ctx, existing.ID, c, ifMatch, by)
			}
			it, rep, err := items.CreateItem(ctx, ferry.NewItem{
				DriveID:  t.drive.ID,
				ParentID: parent.ID,
				Name:     name,
				Content:  c,
				By:       by,
			}, conflict)
			replaced = rep
			return it, err
		})
		if err != nil {
			var be *bodyError
			switch {
			case ctx.Err() != nil:
				// The client has gone: nobody reads the answer, and the
				// failure is not the server's.
				log.DebugContext(ctx, "simple upload abandoned by the client", "err", err)
				err = &ferry.Error{Kind: ferry.Invalid, Message: "the request was cancelled before its body arrived", Err: err}
			case ferry.KindOf(err) == ferry.TooLarge && ferry.CodeOf(err) == "":
				err = &ferry.Error{Kind: ferry.TooLarge, Code: "maxFileSizeExceeded",
					Message: "the file is larger than the limit of a simple upload; use an upload session", Err: err}
			case errors.As(err, &be) && ferry.KindOf(err) == ferry.Internal:
				// Bad chunked encoding, a connection cut short: the
				// client's fault. (Bad gzip has its own Invalid already.)
				err = &ferry.Error{Kind: ferry.Invalid, Message: "the request body could not be read", Err: err}
			}
			writeError(w, r, log, err)
			return
		}
		di, err := view.renderOne(ctx, r, items, t.drive, it)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		status := http.StatusCreated
		if replaced {
			status = http.StatusOK
		}
		encode(w, status, di)
	})
}
