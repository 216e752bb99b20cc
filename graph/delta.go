package graph

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// deltaPage is the body of GET …/delta. Exactly one of the links is set:
// nextLink on every page but the last, deltaLink on the last.
type deltaPage struct {
	Value     []any  `json:"value"`
	NextLink  string `json:"@odata.nextLink,omitempty"`
	DeltaLink string `json:"@odata.deltaLink,omitempty"`
}

// deletedItem is how a delta reports an item that was deleted or left the
// folder: where the client last knew it, with the deleted facet. rclone
// recognises an entry by its file or folder facet and locates it by name
// and parentReference.path, so both are kept.
type deletedItem struct {
	ID              string        `json:"id"`
	Name            string        `json:"name"`
	Deleted         deletedFacet  `json:"deleted"`
	ParentReference itemReference `json:"parentReference"`
	File            *struct{}     `json:"file,omitempty"`
	Folder          *struct{}     `json:"folder,omitempty"`
}

type deletedFacet struct {
	State string `json:"state"`
}

// functionArg reads the value of name in the arguments of an OData
// function call such as token='abc': quoted with single quotes (a quote
// inside is written twice), with double quotes, or bare. ok is false when
// the arguments are empty.
func functionArg(args, name string) (value string, ok bool, err error) {
	args = strings.TrimSpace(args)
	if args == "" {
		return "", false, nil
	}
	k, v, found := strings.Cut(args, "=")
	if !found || strings.TrimSpace(k) != name {
		return "", false, ferry.Errorf(ferry.Invalid, "the function takes one argument, %s", name).WithCode("invalidParameterFormat")
	}
	v = strings.TrimSpace(v)
	switch {
	case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
		inner := v[1 : len(v)-1]
		if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
			return "", false, ferry.Errorf(ferry.Invalid, "a quote inside a quoted %s must be doubled", name).WithCode("invalidParameterFormat")
		}
		return strings.ReplaceAll(inner, "''", "'"), true, nil
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		return v[1 : len(v)-1], true, nil
	case strings.ContainsAny(v, `'"`):
		return "", false, ferry.Errorf(ferry.Invalid, "the %s argument is not quoted correctly", name).WithCode("invalidParameterFormat")
	}
	return v, true, nil
}

// pageSize reads $top (or top) for delta and search: 1..1000, 0 if absent.
func pageSize(q url.Values) (int, error) {
	s, ok := queryValue(q, "top")
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 1000 {
		return 0, ferry.Errorf(ferry.Invalid, "$top must be a whole number from 1 to 1000, not %q", s).WithCode("invalidQueryOption")
	}
	return n, nil
}

// handleDelta answers GET {folder}/delta, also spelled delta() and
// delta(token='…'): the changes below the folder as the store records
// them. Without a token, every item, page by page; the last page carries
// @odata.deltaLink, whose token asks for what changed since. token=latest
// gives no items and a deltaLink for what changes from now on. A token
// that is malformed, of another folder, older than the retention, or whose
// changes were pruned, is 410 resyncRequired with a Location to start
// over. Links keep $top and $select and are absolute.
func handleDelta(log *slog.Logger, items ferry.ItemStore, view *itemView, retention time.Duration, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		qv := r.URL.Query()
		limit, err := pageSize(qv)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var selects []string
		if s, ok := queryValue(qv, "select"); ok {
			selects = splitFields(s)
		}
		dq := ferry.DeltaQuery{Limit: limit, Token: qv.Get("token")}
		if tok, ok, err := functionArg(t.ref.args, "token"); err != nil {
			writeError(w, r, log, err)
			return
		} else if ok {
			dq.Token = tok
		}
		if s, ok := queryValue(qv, "skiptoken", "skipToken"); ok {
			dq.Cursor = s
			if s == "" {
				writeError(w, r, log, ferry.Errorf(ferry.Invalid, "the $skiptoken is empty").WithCode("invalidQueryOption"))
				return
			}
		}
		if retention > 0 {
			dq.Oldest = now().Add(-retention)
		}
		scope, err := resolve(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if !scope.Folder {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "%q is a file; delta works on folders", scope.Name))
			return
		}
		base := apiVersion(r) + "/drives/" + url.PathEscape(string(t.drive.ID)) + "/items/" + url.PathEscape(string(scope.ID)) + "/delta"
		link := func(key, value string) string {
			v := url.Values{key: {value}}
			if limit > 0 {
				v.Set("$top", strconv.Itoa(limit))
			}
			if len(selects) > 0 {
				v.Set("$select", strings.Join(selects, ","))
			}
			return view.urls.abs(r, base+"?"+v.Encode())
		}
		p, err := items.Delta(r.Context(), scope.ID, dq)
		if err != nil {
			if ferry.KindOf(err) == ferry.Gone {
				w.Header().Set("Location", view.urls.abs(r, base))
			}
			writeError(w, r, log, err)
			return
		}
		page := deltaPage{Value: make([]any, 0, len(p.Changes))}
		for _, c := range p.Changes {
			if c.Deleted {
				page.Value = append(page.Value, renderDeleted(t.drive, c))
				continue
			}
			page.Value = append(page.Value, selectFields(view.render(r, t.drive, c.Item, c.ParentPath), selects))
		}
		if p.Next != "" {
			page.NextLink = link("$skiptoken", p.Next)
		} else {
			page.DeltaLink = link("token", p.Token)
		}
		encode(w, http.StatusOK, page)
	})
}

func renderDeleted(d *ferry.Drive, c ferry.Change) *deletedItem {
	di := &deletedItem{
		ID:      string(c.Item.ID),
		Name:    c.Item.Name,
		Deleted: deletedFacet{State: "deleted"},
		ParentReference: itemReference{DriveID: string(d.ID), DriveType: driveType, ID: string(c.Item.ParentID),
			Path: "/drive/root:" + escapeItemPath(c.ParentPath)},
	}
	if c.Item.Folder {
		di.Folder = &struct{}{}
	} else {
		di.File = &struct{}{}
	}
	return di
}

// handleSearch answers GET {folder}/search(q='text') (and {drive}/search,
// which searches the root): the items below the folder whose names contain
// the text, ignoring case, by name, $top at a time (default 200), with
// @odata.nextLink while there are more.
func handleSearch(log *slog.Logger, items ferry.ItemStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		text, ok, err := functionArg(t.ref.args, "q")
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if !ok {
			text = r.URL.Query().Get("q")
		}
		if strings.TrimSpace(text) == "" {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "give the text to search for: search(q='text')").WithCode("invalidParameterFormat"))
			return
		}
		if _, ok := queryValue(r.URL.Query(), "orderby"); ok {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "search results are ordered by name; $orderby is not supported").WithCode("invalidQueryOption"))
			return
		}
		q, err := parseListQuery(r.URL.Query(), true)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		scope, err := resolve(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		page := childrenPage{Value: []any{}}
		found, next, err := items.Search(r.Context(), scope.ID, text, q.ListQuery)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		paths := map[ferry.ItemID][]string{}
		for _, it := range found {
			names, err := parentPath(r.Context(), items, paths, it)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			page.Value = append(page.Value, selectFields(view.render(r, t.drive, it, names), q.selects))
		}
		if next != "" {
			page.NextLink = nextPageLink(r, view.urls, q.ListQuery, next)
		}
		encode(w, http.StatusOK, page)
	})
}

// parentPath returns the names of the path to it's parent, remembering
// each parent's in cache.
func parentPath(ctx context.Context, items ferry.ItemStore, cache map[ferry.ItemID][]string, it *ferry.Item) ([]string, error) {
	if it.IsRoot() {
		return nil, nil
	}
	if names, ok := cache[it.ParentID]; ok {
		return names, nil
	}
	names, err := items.Path(ctx, it.ParentID)
	if err != nil {
		return nil, err
	}
	cache[it.ParentID] = names
	return names, nil
}
