package graph

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// itemRoute keys the item operations: an HTTP method and the action
// segment after the item address ("" for the item itself).
type itemRoute struct {
	method string
	action string
}

// A target is the drive and item address of one item request, resolved
// by handleItemRequest before the operation's handler runs.
type target struct {
	drive *ferry.Drive
	ref   itemRef
	// guest is set when the drive is another user's, reached through a
	// grant: every item the request names must be shared with the caller,
	// with the role the method needs.
	guest *guest
}

// A guest is a caller working in a drive shared with them.
type guest struct {
	user   ferry.UserID
	shares ferry.ShareStore
	write  bool // the request changes something: it needs the write role
}

// check decides whether the guest may use it: NotFound (exactly like a
// missing item) without a grant on it or a folder above it, Forbidden when
// the grant only allows reading and the request writes.
func (g *guest) check(ctx context.Context, it *ferry.Item) error {
	role, err := g.shares.Access(ctx, g.user, it.ID)
	if ferry.KindOf(err) == ferry.NotFound {
		return errNoItem()
	}
	if err != nil {
		return err
	}
	if g.write && role != ferry.RoleWrite {
		return ferry.Errorf(ferry.Forbidden, "the item is shared with you for reading only")
	}
	return nil
}

func targetOf(r *http.Request) *target {
	t, _ := r.Context().Value(targetKey).(*target)
	return t
}

// handleItemRequest parses the item address after the drive prefix (the
// first prefixSegments segments of the escaped path), finds the caller's
// drive and hands the request to the operation registered for its method
// and action. Colon addressing and its percent-encoded form cannot be
// ServeMux patterns, hence this second, small table.
func handleItemRequest(log *slog.Logger, accounts ferry.AccountStore, shares ferry.ShareStore, prefixSegments int, ops map[itemRoute]http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref, err := parseItemRef(trimSegments(r.URL.EscapedPath(), prefixSegments))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		h, ok := ops[itemRoute{r.Method, ref.action}]
		if !ok && r.Method == http.MethodHead {
			h, ok = ops[itemRoute{http.MethodGet, ref.action}] // the server drops the body
		}
		if !ok {
			var allow []string
			for k := range ops {
				if k.action == ref.action {
					allow = append(allow, k.method)
					if k.method == http.MethodGet {
						allow = append(allow, http.MethodHead)
					}
				}
			}
			if len(allow) == 0 {
				writeError(w, r, log, apiNotFound())
				return
			}
			slices.Sort(allow)
			methodNotAllowed(log, allow...).ServeHTTP(w, r)
			return
		}
		setRoute(r, itemRouteName(r, ref.action))
		t, err := itemTarget(r, accounts, shares, ref)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey, t)))
	})
}

// itemRouteName is the route of an item request for logs and metrics: the
// drive prefix's pattern, {item} for any item address (by id or path) and
// the action, which is one of the table's (never client text).
func itemRouteName(r *http.Request, action string) string {
	route := r.Method + " " + strings.TrimSuffix(r.Pattern, "{ref...}") + "{item}"
	if action != "" {
		route += "/" + action
	}
	return route
}

// trimSegments drops the first n segments of an escaped path.
func trimSegments(p string, n int) string {
	p = strings.TrimPrefix(p, "/")
	for range n {
		_, p, _ = strings.Cut(p, "/")
	}
	return p
}

// callerDrive returns the drive a request addresses: the caller's own for
// /me/drive and /drive, or /drives/{driveID} if the caller owns it. Other
// users' drives do not exist as far as the caller can tell.
func callerDrive(r *http.Request, accounts ferry.AccountStore) (*ferry.Drive, error) {
	p := principal(r)
	if p == nil {
		return nil, ferry.Errorf(ferry.Unauthenticated, "an access token is required")
	}
	id := r.PathValue("driveID")
	if id == "" {
		return accounts.DriveOf(r.Context(), p.User.ID)
	}
	if !cleanText(id) {
		return nil, ferry.Errorf(ferry.NotFound, "the drive does not exist")
	}
	d, err := accounts.Drive(r.Context(), ferry.DriveID(id))
	if (err == nil && d.Owner != p.User.ID) || ferry.KindOf(err) == ferry.NotFound {
		return nil, ferry.Errorf(ferry.NotFound, "the drive does not exist")
	}
	return d, err
}

// itemTarget finds the drive an item request addresses. A drive of another
// user is reachable only by /drives/{driveID}, with a token whose scopes
// reach shared items (Files.Read.All or Files.ReadWrite.All), and then only
// the items shared with the caller (see guest); otherwise it does not exist
// as far as the caller can tell.
func itemTarget(r *http.Request, accounts ferry.AccountStore, shares ferry.ShareStore, ref itemRef) (*target, error) {
	d, err := callerDrive(r, accounts)
	if err == nil {
		return &target{drive: d, ref: ref}, nil
	}
	p, id := principal(r), r.PathValue("driveID")
	if ferry.KindOf(err) != ferry.NotFound || shares == nil || p == nil || id == "" || !p.Scopes.CanReadShared() || !cleanText(id) {
		return nil, err
	}
	d, derr := accounts.Drive(r.Context(), ferry.DriveID(id))
	if derr != nil {
		return nil, err // NotFound, like any drive the caller cannot see
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	return &target{drive: d, ref: ref, guest: &guest{user: p.User.ID, shares: shares, write: write}}, nil
}

// resolve finds the item a target addresses. Items of other drives are
// reported exactly like missing ones.
func resolve(ctx context.Context, items ferry.ItemStore, t *target) (*ferry.Item, error) {
	return resolveNames(ctx, items, t, t.ref.names())
}

// resolveParent finds the folder that holds the last name of a path
// address, and that name; for PUT …:/name:/content.
func resolveParent(ctx context.Context, items ferry.ItemStore, t *target) (*ferry.Item, string, error) {
	names := t.ref.names()
	if len(names) == 0 {
		return nil, "", ferry.Errorf(ferry.Invalid, "the address must end with the file's name")
	}
	parent, err := resolveNames(ctx, items, t, names[:len(names)-1])
	if err != nil {
		return nil, "", err
	}
	if !parent.Folder {
		return nil, "", ferry.Errorf(ferry.Invalid, "the parent %q is a file, not a folder", parent.Name)
	}
	return parent, names[len(names)-1], nil
}

func resolveNames(ctx context.Context, items ferry.ItemStore, t *target, names []string) (*ferry.Item, error) {
	base := t.ref.id
	if base == ferry.RootAlias {
		base = t.drive.RootID
	}
	var it *ferry.Item
	var err error
	if len(names) == 0 {
		it, err = items.Item(ctx, base)
	} else {
		it, err = items.ItemByPath(ctx, base, names)
	}
	if (err == nil && it.DriveID != t.drive.ID) || ferry.KindOf(err) == ferry.NotFound {
		return nil, errNoItem()
	}
	if err == nil && t.guest != nil {
		if err := t.guest.check(ctx, it); err != nil {
			return nil, err
		}
	}
	return it, err
}

// handleGetDrive answers GET {drive}.
func handleGetDrive(log *slog.Logger, accounts ferry.AccountStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := callerDrive(r, accounts)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newDriveJSON(d))
	})
}

// handleGetItem answers GET and HEAD {item}, with $select and
// $expand=children (the first page). If-None-Match naming the current eTag
// or cTag gives 304.
func handleGetItem(log *slog.Logger, items ferry.ItemStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		q, err := parseListQuery(r.URL.Query(), false)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		it, err := resolve(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		w.Header().Set("ETag", it.ETag())
		if inm := r.Header.Get("If-None-Match"); inm != "" && it.Matches(inm) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		di, err := view.renderOne(r.Context(), r, items, t.drive, it)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var keep []string
		if q.expandChildren && it.Folder {
			names, err := items.Path(r.Context(), it.ID)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			kids, next, err := items.Children(r.Context(), it.ID, ferry.ListQuery{})
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			di.Children = make([]any, 0, len(kids))
			for _, k := range kids {
				di.Children = append(di.Children, selectFields(view.render(r, t.drive, k, names), q.childSelects))
			}
			if next != "" {
				p := apiVersion(r) + "/drives/" + url.PathEscape(string(t.drive.ID)) + "/items/" + url.PathEscape(string(it.ID)) + "/children"
				di.ChildrenNextLink = view.urls.abs(r, p+"?"+url.Values{"$skiptoken": {wrapCursor(ferry.ListQuery{Cursor: next})}}.Encode())
			}
			keep = []string{"children", "children@odata.nextLink"}
		}
		encode(w, http.StatusOK, selectFields(di, q.selects, keep...))
	})
}

// apiVersion is the request's "/v1.0" or "/v2.0" prefix.
func apiVersion(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/v2.0/") {
		return "/v2.0"
	}
	return "/v1.0"
}

// listQuery holds the OData query options of a listing.
type listQuery struct {
	ferry.ListQuery
	selects        []string
	expandChildren bool
	childSelects   []string // $select inside $expand=children(…)
}

// splitFields splits a $select list into its trimmed, non-empty names.
func splitFields(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// splitOutsideParens splits s at the commas that are not inside
// parentheses: "children($select=id,name),thumbnails" gives two parts.
func splitOutsideParens(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth = max(depth-1, 0)
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// queryValue reads an OData option spelled with or without '$'.
func queryValue(q url.Values, names ...string) (string, bool) {
	for _, n := range names {
		for _, k := range []string{"$" + n, n} {
			if v, ok := q[k]; ok && len(v) > 0 {
				return v[0], true
			}
		}
	}
	return "", false
}

// parseListQuery parses $select and $expand, and for listings also $top,
// $orderby and $skiptoken.
func parseListQuery(q url.Values, listing bool) (listQuery, error) {
	var lq listQuery
	if s, ok := queryValue(q, "select"); ok {
		lq.selects = splitFields(s)
	}
	if s, ok := queryValue(q, "expand"); ok {
		for _, f := range splitOutsideParens(s) {
			name, opts, _ := strings.Cut(strings.TrimSpace(f), "(")
			if strings.TrimSpace(name) != "children" {
				continue
			}
			lq.expandChildren = true
			// children($select=id,name) or children(select=id,name);
			// several options are separated by ';'.
			for o := range strings.SplitSeq(strings.TrimSuffix(opts, ")"), ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(o), "=")
				if strings.TrimPrefix(k, "$") == "select" {
					lq.childSelects = splitFields(v)
				}
			}
		}
	}
	if !listing {
		return lq, nil
	}
	if s, ok := queryValue(q, "top"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1000 {
			return lq, ferry.Errorf(ferry.Invalid, "$top must be a whole number from 1 to 1000, not %q", s).WithCode("invalidQueryOption")
		}
		lq.Limit = n
	}
	if s, ok := queryValue(q, "orderby"); ok {
		field, dir, _ := strings.Cut(strings.TrimSpace(s), " ")
		dir = strings.TrimSpace(dir)
		switch {
		case strings.EqualFold(field, "name"):
			lq.OrderBy = "name"
		case strings.EqualFold(field, "size"):
			lq.OrderBy = "size"
		case strings.EqualFold(field, "lastModifiedDateTime"):
			lq.OrderBy = "lastModifiedDateTime"
		default:
			return lq, ferry.Errorf(ferry.Invalid, "$orderby must be name, size or lastModifiedDateTime, optionally followed by asc or desc").WithCode("invalidQueryOption")
		}
		switch strings.ToLower(dir) {
		case "", "asc":
		case "desc":
			lq.Desc = true
		default:
			return lq, ferry.Errorf(ferry.Invalid, "$orderby direction must be asc or desc, not %q", dir).WithCode("invalidQueryOption")
		}
	}
	if s, ok := queryValue(q, "skiptoken", "skipToken"); ok {
		c, err := unwrapCursor(s)
		if err != nil {
			return lq, err
		}
		lq.OrderBy, lq.Desc, lq.Cursor = c.OrderBy, c.Desc, c.Cursor
	}
	return lq, nil
}

// wrapCursor makes the $skiptoken of a page: the store's cursor together
// with the order it belongs to, so that a next link stays self-contained.
func wrapCursor(q ferry.ListQuery) string {
	dir := "a"
	if q.Desc {
		dir = "d"
	}
	return base64.RawURLEncoding.EncodeToString([]byte("1|" + q.OrderBy + "|" + dir + "|" + q.Cursor))
}

func unwrapCursor(s string) (ferry.ListQuery, error) {
	bad := ferry.Errorf(ferry.Invalid, "the $skiptoken is not valid").WithCode("invalidQueryOption")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ferry.ListQuery{}, bad
	}
	parts := strings.SplitN(string(b), "|", 4)
	if len(parts) != 4 || parts[0] != "1" || parts[3] == "" || (parts[2] != "a" && parts[2] != "d") {
		return ferry.ListQuery{}, bad
	}
	return ferry.ListQuery{OrderBy: parts[1], Desc: parts[2] == "d", Cursor: parts[3]}, nil
}

// childrenPage is the body of GET …/children.
type childrenPage struct {
	Value    []any  `json:"value"`
	NextLink string `json:"@odata.nextLink,omitempty"`
}

// handleListChildren answers GET {item}/children, one page at a time. The
// children of a file are an empty list (200), as OneDrive answers.
func handleListChildren(log *slog.Logger, items ferry.ItemStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		q, err := parseListQuery(r.URL.Query(), true)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		it, err := resolve(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		page := childrenPage{Value: []any{}}
		if !it.Folder {
			encode(w, http.StatusOK, page)
			return
		}
		names, err := items.Path(r.Context(), it.ID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		kids, next, err := items.Children(r.Context(), it.ID, q.ListQuery)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		for _, k := range kids {
			page.Value = append(page.Value, selectFields(view.render(r, t.drive, k, names), q.selects))
		}
		if next != "" {
			page.NextLink = nextPageLink(r, view.urls, q.ListQuery, next)
		}
		encode(w, http.StatusOK, page)
	})
}

// nextPageLink is the absolute @odata.nextLink of a listing: the request's
// own URL with the $skiptoken of the page after cursor next.
func nextPageLink(r *http.Request, urls *urlBuilder, q ferry.ListQuery, next string) string {
	nq := r.URL.Query()
	for _, k := range []string{"$skiptoken", "skiptoken", "$skipToken", "skipToken"} {
		nq.Del(k)
	}
	q.Cursor = next
	nq.Set("$skiptoken", wrapCursor(q))
	return urls.abs(r, r.URL.EscapedPath()+"?"+nq.Encode())
}

// fsInfoRequest is fileSystemInfo as clients send it.
type fsInfoRequest struct {
	CreatedDateTime      string `json:"createdDateTime"`
	LastModifiedDateTime string `json:"lastModifiedDateTime"`
}

// times parses the client's timestamps; "" stays nil.
func (f *fsInfoRequest) times() (created, modified *time.Time, err error) {
	if f == nil {
		return nil, nil, nil
	}
	parse := func(field, s string) (*time.Time, error) {
		if s == "" {
			return nil, nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, ferry.Errorf(ferry.Invalid, "fileSystemInfo.%s must be an ISO 8601 time such as 2024-01-02T03:04:05Z, not %q", field, s)
		}
		t = t.UTC()
		return &t, nil
	}
	if created, err = parse("createdDateTime", f.CreatedDateTime); err != nil {
		return nil, nil, err
	}
	if modified, err = parse("lastModifiedDateTime", f.LastModifiedDateTime); err != nil {
		return nil, nil, err
	}
	return created, modified, nil
}

// conflictBehavior reads the conflict annotation from the body (either
// spelling) or else the query string; def when absent.
func conflictBehavior(r *http.Request, body string, legacy string, def ferry.ConflictBehavior) (ferry.ConflictBehavior, error) {
	v := body
	if v == "" {
		v = legacy
	}
	if v == "" {
		q := r.URL.Query()
		if v = q.Get("@microsoft.graph.conflictBehavior"); v == "" {
			v = q.Get("@name.conflictBehavior")
		}
	}
	return ferry.ParseConflictBehavior(v, def)
}

// createChildRequest is the body of POST {item}/children.
type createChildRequest struct {
	Name            string         `json:"name"`
	Folder          *struct{}      `json:"folder"`
	File            *struct{}      `json:"file"`
	SourceURL       string         `json:"@microsoft.graph.sourceUrl"`
	LegacySourceURL string         `json:"@content.sourceUrl"`
	Conflict        string         `json:"@microsoft.graph.conflictBehavior"`
	LegacyConflict  string         `json:"@name.conflictBehavior"`
	ExpectSHA256    *string        `json:"@ferry.sha256"`
	Mirrors         []string       `json:"@ferry.mirrors"`
	Description     string         `json:"description"`
	FileSystemInfo  *fsInfoRequest `json:"fileSystemInfo"`
}

func (req *createChildRequest) sourceURL() string {
	if req.SourceURL != "" {
		return req.SourceURL
	}
	return req.LegacySourceURL
}

// handleCreateChild answers POST {item}/children: with a folder facet it
// creates a folder (201; conflict default fail); with a source URL it
// queues an upload from URL (202, see createFromURL). Anything else is 400.
func handleCreateChild(log *slog.Logger, items ferry.ItemStore, jobs ferry.JobQueue, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		req, err := decode[createChildRequest](r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if req.sourceURL() == "" && req.Folder == nil {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid,
				"give a folder facet to create a folder, or @microsoft.graph.sourceUrl to upload from a URL (simple uploads use PUT …/content)"))
			return
		}
		conflict, err := conflictBehavior(r, req.Conflict, req.LegacyConflict, ferry.ConflictFail)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		parent, err := resolve(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if !parent.Folder {
			writeError(w, r, log, ferry.Errorf(ferry.Invalid, "%q is a file; children can only be created in folders", parent.Name))
			return
		}
		if req.sourceURL() != "" {
			createFromURL(w, r, log, items, jobs, view.urls, t, parent, &req, conflict)
			return
		}
		if err := ferry.ValidateName(req.Name, true); err != nil {
			writeError(w, r, log, err)
			return
		}
		created, modified, err := req.FileSystemInfo.times()
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		n := ferry.NewItem{
			DriveID:     t.drive.ID,
			ParentID:    parent.ID,
			Name:        req.Name,
			Folder:      true,
			Description: req.Description,
			By:          principal(r).User.Name,
		}
		if created != nil {
			n.FSCreated = *created
		}
		if modified != nil {
			n.FSModified = *modified
		}
		it, _, err := items.CreateItem(r.Context(), n, conflict)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		di, err := view.renderOne(r.Context(), r, items, t.drive, it)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusCreated, di)
	})
}

// parentReference names the folder a PATCH moves an item to or a copy
// goes to: by id, or else by path. Empty strings count as absent, as
// rclone sends every field.
type parentReference struct {
	DriveID string `json:"driveId"`
	ID      string `json:"id"`
	Path    string `json:"path"`
}

// updateRequest is the body of PATCH {item}. Empty strings count as
// absent, as rclone sends them; read-only fields are ignored.
type updateRequest struct {
	Name            *string          `json:"name"`
	ParentReference *parentReference `json:"parentReference"`
	FileSystemInfo  *fsInfoRequest   `json:"fileSystemInfo"`
	Description     *string          `json:"description"`
	Conflict        string           `json:"@microsoft.graph.conflictBehavior"`
	LegacyConflict  string           `json:"@name.conflictBehavior"`
}

// handleUpdateItem answers PATCH {item}: rename, move (parentReference id
// or path such as /drive/root:/a/b; see moveTarget), fileSystemInfo and
// description.
// If-Match is honoured (412); a taken name is 409 unless the conflict
// annotation says otherwise.
func handleUpdateItem(log *slog.Logger, items ferry.ItemStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := targetOf(r)
		req, err := decode[updateRequest](r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		conflict, err := conflictBehavior(r, req.Conflict, req.LegacyConflict, ferry.ConflictFail)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		u := ferry.ItemUpdate{
			Description: req.Description,
			IfMatch:     r.Header.Get("If-Match"),
			Conflict:    conflict,
			By:          principal(r).User.Name,
		}
		if req.Name != nil && *req.Name != "" {
			u.Name = req.Name
		}
		if u.FSCreated, u.FSModified, err = req.FileSystemInfo.times(); err != nil {
			writeError(w, r, log, err)
			return
		}
		it, err := resolve(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if u.Name != nil {
			if err := ferry.ValidateName(*u.Name, it.Folder); err != nil {
				writeError(w, r, log, err)
				return
			}
		}
		if pr := req.ParentReference; pr != nil {
			dest, err := moveTarget(r.Context(), items, t, pr)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if dest != "" {
				u.ParentID = &dest
			}
		}
		it, err = items.UpdateItem(r.Context(), it.ID, u)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		di, err := view.renderOne(r.Context(), r, items, t.drive, it)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, di)
	})
}

// moveTarget resolves a parentReference inside the caller's drive d: its
// id ("root" allowed) or, without an id, its path (see parseParentPath);
// "" when it names neither. A driveId, or a drive in the path, other than
// d is NotFound, as another user's drive is invisible (and moving or
// copying between drives is not supported), and so is an id that no item
// can have.
func moveTarget(ctx context.Context, items ferry.ItemStore, from *target, pr *parentReference) (ferry.ItemID, error) {
	d := from.drive
	errNoDrive := func() error { return ferry.Errorf(ferry.NotFound, "the destination drive does not exist") }
	if pr.DriveID != "" && pr.DriveID != string(d.ID) {
		return "", errNoDrive()
	}
	t := &target{drive: d, ref: itemRef{id: ferry.ItemID(pr.ID)}, guest: from.guest}
	switch {
	case pr.ID != "":
		if !cleanText(pr.ID) {
			return "", errNoItem()
		}
	case pr.Path != "":
		drive, path, err := parseParentPath(pr.Path)
		if err != nil {
			return "", err
		}
		if drive != "" && drive != string(d.ID) {
			return "", errNoDrive()
		}
		t.ref = itemRef{id: ferry.RootAlias, path: path}
	default:
		return "", nil
	}
	dest, err := resolve(ctx, items, t)
	if err != nil {
		return "", err
	}
	if !dest.Folder {
		return "", ferry.Errorf(ferry.Invalid, "the new parent %q is a file, not a folder", dest.Name)
	}
	return dest.ID, nil
}

// parseParentPath parses parentReference.path, the form OneDrive writes
// it in: /drive/root:, /me/drive/root: or /drives/{driveID}/root:,
// followed by nothing, "/" or "/a/b" (percent-encoded names, an optional
// trailing slash). It returns the drive ID the path names ("" for the
// caller's own) and the clean path below the root ("" for the root).
func parseParentPath(p string) (drive, path string, err error) {
	bad := ferry.Errorf(ferry.Invalid, "parentReference.path must look like /drive/root:/folder, not %q", p).WithCode("invalidPath")
	var rest string
	switch {
	case strings.HasPrefix(p, "/drive/root:"):
		rest = p[len("/drive/root:"):]
	case strings.HasPrefix(p, "/me/drive/root:"):
		rest = p[len("/me/drive/root:"):]
	case strings.HasPrefix(p, "/drives/"):
		id, after, ok := strings.Cut(p[len("/drives/"):], "/")
		if !ok || !strings.HasPrefix(after, "root:") {
			return "", "", bad
		}
		if drive, err = url.PathUnescape(id); err != nil || drive == "" {
			return "", "", bad
		}
		rest = after[len("root:"):]
	default:
		return "", "", bad
	}
	unescaped, err := url.PathUnescape(rest)
	if err != nil {
		return "", "", ferry.Errorf(ferry.Invalid, "parentReference.path is not correctly percent-encoded").WithCode("invalidPath")
	}
	if path, err = cleanItemPath(unescaped); err != nil {
		return "", "", err
	}
	return drive, path, nil
}

// handleDeleteItem answers DELETE {item} with 204; If-Match is honoured.
// The root cannot be deleted: 403 accessDenied.
func handleDeleteItem(log *slog.Logger, items ferry.ItemStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		it, err := resolve(r.Context(), items, targetOf(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if it.IsRoot() {
			writeError(w, r, log, ferry.Errorf(ferry.Forbidden, "the root folder cannot be deleted"))
			return
		}
		if err := items.DeleteItem(r.Context(), it.ID, r.Header.Get("If-Match")); err != nil {
			writeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
