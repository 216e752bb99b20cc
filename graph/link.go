package graph

import (
	"bytes"
	"context"
	"encoding/base64"
	"html/template"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// The anonymous side of sharing links. A link's web URL is /s/{token}; the
// token is the whole credential (an Authorization header is ignored), and a
// link with a password also wants it as the password of HTTP Basic
// authentication (any user name), which browsers prompt for and curl sends
// with -u :PASSWORD. A deleted or expired link, like a forged one, is 404.
//
//	GET  /s/{token}              a file: its bytes (Range, If-Range, whatever
//	                             the Accept header); a folder: its listing, as
//	                             HTML, or JSON with Accept: application/json
//	GET  /s/{token}/a/b          an item below a shared folder, the same way
//	PUT  /s/{token}/a/name       edit links: upload a file into the folder
//	                             (as PUT …/content: 201 new, 200 replaced)
//	POST /s/{token}[/a]          edit links: the listing page's upload form
//	                             (multipart/form-data, field "file")
//
// /v1.0/shares/{shareId}/driveItem[/children|/content] (and root for
// driveItem) answer for a link as Graph does; shareId is the permission's
// shareId or "u!" + unpadded base64url of the link's web URL.

// sharedTarget is what a link request reaches: the link, the drive it lives
// in, and the item the path names.
type sharedTarget struct {
	link  *ferry.Permission
	drive *ferry.Drive
	item  *ferry.Item
	names []string // the path below the link's item
}

// links serves the anonymous routes.
type links struct {
	log      *slog.Logger
	accounts ferry.AccountStore
	items    ferry.ItemStore
	shares   ferry.ShareStore
	view     *itemView
	now      func() time.Time
	download http.Handler // the download URL handler, for a file's bytes
	put      http.Handler // PUT {item}/content, for uploads through edit links
}

// open finds the link of token and the item names reaches below it,
// checking the password. It writes the error itself and returns nil when
// the request cannot go on.
func (l *links) open(w http.ResponseWriter, r *http.Request, token string, names []string) *sharedTarget {
	if l.shares == nil {
		writeError(w, r, l.log, noSharing())
		return nil
	}
	fail := func(err error) *sharedTarget {
		writeError(w, r, l.log, err)
		return nil
	}
	if token == "" || len(token) > 128 || !cleanText(token) {
		return fail(ferry.Errorf(ferry.NotFound, "the link does not exist"))
	}
	p, err := l.shares.LinkByToken(r.Context(), token, l.now())
	if err != nil {
		return fail(err)
	}
	if p.Password != nil {
		_, pw, ok := r.BasicAuth()
		if !ok || !linkPasswordMatches(p.Password, pw) {
			w.Header().Set("WWW-Authenticate", `Basic realm="Ferry shared link", charset="UTF-8"`)
			return fail(ferry.Errorf(ferry.Unauthenticated, "this link needs its password (HTTP Basic authentication, any user name)"))
		}
	}
	d, err := l.accounts.Drive(r.Context(), p.DriveID)
	if err != nil {
		return fail(err)
	}
	var it *ferry.Item
	if len(names) == 0 {
		it, err = l.items.Item(r.Context(), p.ItemID)
	} else {
		it, err = l.items.ItemByPath(r.Context(), p.ItemID, names)
	}
	if ferry.KindOf(err) == ferry.NotFound {
		return fail(ferry.Errorf(ferry.NotFound, "the shared item has nothing at that path"))
	}
	if err != nil {
		return fail(err)
	}
	return &sharedTarget{link: p, drive: d, item: it, names: names}
}

// linkNames splits and checks the path after /s/{token}/.
func linkNames(rest string) ([]string, error) {
	if rest == "" {
		return nil, nil
	}
	p, err := cleanItemPath("/" + rest)
	if err != nil || p == "" {
		return nil, err
	}
	return strings.Split(p[1:], "/"), nil
}

// webURL is the link URL of the item names below the link's item.
func (l *links) webURL(r *http.Request, token string, names []string) string {
	return l.view.urls.abs(r, linkPath(token)+escapeItemPath(names))
}

// handleGet answers GET and HEAD /s/{token}[/{path...}].
func (l *links) handleGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		names, err := linkNames(r.PathValue("path"))
		if err != nil {
			writeError(w, r, l.log, err)
			return
		}
		st := l.open(w, r, r.PathValue("token"), names)
		if st == nil {
			return
		}
		if !st.item.Folder {
			l.serveFile(w, r, st.item)
			return
		}
		l.serveListing(w, r, st, "")
	})
}

// serveFile hands the request to the download URL handler, as if the
// client had followed the item's download URL: one place serves bytes.
func (l *links) serveFile(w http.ResponseWriter, r *http.Request, it *ferry.Item) {
	r2 := r.Clone(r.Context())
	r2.SetPathValue("token", l.view.sign.token(it.ID))
	l.download.ServeHTTP(w, r2)
}

// linkEntry is one child in a link's JSON listing: enough to show and
// fetch it, and nothing of the owner's drive beyond the shared folder.
type linkEntry struct {
	Name                 string       `json:"name"`
	Size                 int64        `json:"size"`
	LastModifiedDateTime string       `json:"lastModifiedDateTime"`
	File                 *fileFacet   `json:"file,omitempty"`
	Folder               *folderFacet `json:"folder,omitempty"`
	WebURL               string       `json:"webUrl"`
}

const linkPageSize = 200

// serveListing shows a shared folder: JSON for clients that ask for it,
// else an HTML page with the names (links to each), and on an edit link an
// upload form. notice is a line to show above the list (an upload's
// outcome).
func (l *links) serveListing(w http.ResponseWriter, r *http.Request, st *sharedTarget, notice string) {
	cursor := r.URL.Query().Get("cursor")
	kids, next, err := l.items.Children(r.Context(), st.item.ID, ferry.ListQuery{Limit: linkPageSize, Cursor: cursor})
	if err != nil {
		writeError(w, r, l.log, err)
		return
	}
	token := st.link.Token
	entries := make([]linkEntry, 0, len(kids))
	for _, k := range kids {
		e := linkEntry{Name: k.Name, Size: k.Size, LastModifiedDateTime: graphTime(k.Modified),
			WebURL: l.webURL(r, token, append(st.names[:len(st.names):len(st.names)], k.Name))}
		if k.Folder {
			e.Folder = &folderFacet{ChildCount: k.ChildCount}
		} else {
			e.File = &fileFacet{MimeType: orDefault(k.MimeType, "application/octet-stream"), Hashes: hashesJSON{
				QuickXorHash: k.Hashes.QuickXor, SHA1Hash: k.Hashes.SHA1, SHA256Hash: k.Hashes.SHA256}}
		}
		entries = append(entries, e)
	}
	var nextURL string
	if next != "" {
		nextURL = l.webURL(r, token, st.names) + "?" + url.Values{"cursor": {next}}.Encode()
	}
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("Referrer-Policy", "no-referrer") // the URL is the capability
	if wantsJSON(r) {
		body := map[string]any{"name": st.item.Name, "value": entries}
		if nextURL != "" {
			body["@odata.nextLink"] = nextURL
		}
		encode(w, http.StatusOK, body)
		return
	}
	crumbs := []crumb{{Name: st.item.Name, URL: l.webURL(r, token, nil)}}
	if len(st.names) > 0 {
		root, err := l.items.Item(r.Context(), st.link.ItemID)
		if err != nil {
			writeError(w, r, l.log, err)
			return
		}
		crumbs[0].Name = root.Name
		for i := range st.names {
			crumbs = append(crumbs, crumb{Name: st.names[i], URL: l.webURL(r, token, st.names[:i+1])})
		}
	}
	var buf bytes.Buffer
	err = linkPage.Execute(&buf, linkPageData{
		Title: st.item.Name, Crumbs: crumbs, Entries: entries, Next: nextURL, Notice: notice,
		CanUpload: st.link.Role == ferry.RoleWrite, UploadURL: l.webURL(r, token, st.names),
	})
	if err != nil {
		writeError(w, r, l.log, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// wantsJSON reports whether the client prefers JSON to HTML.
func wantsJSON(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		t, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch t {
		case "application/json":
			return true
		case "text/html":
			return false
		}
	}
	return false
}

type crumb struct{ Name, URL string }

type linkPageData struct {
	Title     string
	Crumbs    []crumb
	Entries   []linkEntry
	Next      string
	Notice    string
	CanUpload bool
	UploadURL string
}

var linkPage = template.Must(template.New("link").Funcs(template.FuncMap{
	"size": func(n int64) string {
		const unit = 1024
		if n < unit {
			return strconv.FormatInt(n, 10) + " B"
		}
		f, i := float64(n), 0
		for f >= unit && i < 4 {
			f /= unit
			i++
		}
		return strconv.FormatFloat(f, 'f', 1, 64) + " " + [...]string{"B", "KiB", "MiB", "GiB", "TiB"}[i]
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}} · shared with Ferry</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#1d2430}
nav a{color:#35507a}table{width:100%;border-collapse:collapse}td,th{padding:.4rem .5rem;text-align:left;border-bottom:1px solid #e4e7ec}
td.n{text-align:right;white-space:nowrap}p.notice{background:#eef6ee;padding:.5rem}form{margin:1rem 0}
</style></head><body>
<nav aria-label="Breadcrumb">{{range $i, $c := .Crumbs}}{{if $i}} / {{end}}<a href="{{$c.URL}}">{{$c.Name}}</a>{{end}}</nav>
<h1>{{.Title}}</h1>
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
{{if .Entries}}<table><thead><tr><th>Name</th><th class="n">Size</th><th>Modified</th></tr></thead><tbody>
{{range .Entries}}<tr><td><a href="{{.WebURL}}">{{.Name}}{{if .Folder}}/{{end}}</a></td><td class="n">{{size .Size}}</td><td>{{.LastModifiedDateTime}}</td></tr>
{{end}}</tbody></table>{{else}}<p>This folder is empty.</p>{{end}}
{{if .Next}}<p><a href="{{.Next}}">More</a></p>{{end}}
{{if .CanUpload}}<form method="post" enctype="multipart/form-data" action="{{.UploadURL}}">
<label>File <input type="file" name="file" required></label> <button type="submit">Upload</button></form>{{end}}
</body></html>
`))

// handlePut answers PUT /s/{token}/{path...} on an edit link: the simple
// upload of a file named by the path, into the shared folder or a folder
// below it, with the owner's quota and PUT …/content's rules and answers.
func (l *links) handlePut() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		names, err := linkNames(r.PathValue("path"))
		if err == nil && len(names) == 0 {
			err = ferry.Errorf(ferry.Invalid, "name the file to upload after the link: /s/{token}/{name}")
		}
		if err != nil {
			writeError(w, r, l.log, err)
			return
		}
		st := l.open(w, r, r.PathValue("token"), nil)
		if st == nil {
			return
		}
		if err := l.writable(st); err != nil {
			writeError(w, r, l.log, err)
			return
		}
		l.put.ServeHTTP(w, l.asUpload(r, st, names))
	})
}

// writable checks that a link may upload: an edit link to a folder.
func (l *links) writable(st *sharedTarget) error {
	if st.link.Role != ferry.RoleWrite {
		return ferry.Errorf(ferry.Forbidden, "this link only allows viewing")
	}
	if !st.item.Folder {
		return ferry.Errorf(ferry.Forbidden, "only a shared folder takes uploads")
	}
	return nil
}

// anonymous is who uploads through a link, as items record it.
var anonymous = ferry.Principal{User: ferry.User{Name: "Anonymous (shared link)"}, Scopes: ferry.Scopes{ferry.ScopeReadWrite}}

// asUpload makes r a request for PUT {link item}:/{names}:/content in the
// owner's drive, for the API's own upload handler.
func (l *links) asUpload(r *http.Request, st *sharedTarget, names []string) *http.Request {
	t := &target{drive: st.drive, ref: itemRef{id: st.link.ItemID, path: "/" + strings.Join(names, "/"), action: "content"}}
	ctx := context.WithValue(r.Context(), targetKey, t)
	ctx = context.WithValue(ctx, principalKey, &anonymous)
	return r.WithContext(ctx)
}

// maxFormOverhead bounds what a multipart form may carry besides the file.
const maxFormOverhead = 64 << 10

// handlePostForm answers POST /s/{token}[/{path...}] from the listing
// page's upload form on an edit link, then shows the listing again with
// the outcome.
func (l *links) handlePostForm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		names, err := linkNames(r.PathValue("path"))
		if err != nil {
			writeError(w, r, l.log, err)
			return
		}
		st := l.open(w, r, r.PathValue("token"), names)
		if st == nil {
			return
		}
		if err := l.writable(st); err != nil {
			writeError(w, r, l.log, err)
			return
		}
		mr, err := r.MultipartReader()
		if err != nil {
			writeError(w, r, l.log, ferry.Errorf(ferry.Invalid, "send the file as multipart/form-data in a field named file"))
			return
		}
		var notice string
		for {
			part, err := mr.NextPart()
			if err != nil {
				writeError(w, r, l.log, ferry.Errorf(ferry.Invalid, "the form has no field named file"))
				return
			}
			if part.FormName() != "file" {
				continue
			}
			name := path.Base(strings.ReplaceAll(part.FileName(), `\`, "/"))
			if err := ferry.ValidateName(name, false); err != nil || name == "." || name == "/" {
				writeError(w, r, l.log, ferry.Errorf(ferry.Invalid, "the file needs a valid name"))
				return
			}
			up := l.asUpload(r, st, append(st.names[:len(st.names):len(st.names)], name))
			up.Body, up.ContentLength = part, -1
			up.Header = up.Header.Clone()
			up.Header.Del("Content-Encoding")
			up.Header.Del("Content-Length")
			rec := &capture{header: http.Header{}}
			l.put.ServeHTTP(rec, up)
			if rec.status >= 300 {
				notice = "The upload failed: " + errorMessage(rec.body.Bytes())
			} else {
				notice = "Uploaded " + name + "."
			}
			break
		}
		l.serveListing(w, r, st, notice)
	})
}

// capture is a ResponseWriter that keeps the status and a bounded body.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *capture) Header() http.Header { return c.header }
func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *capture) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if room := maxFormOverhead - c.body.Len(); room > 0 {
		c.body.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// errorMessage digs the message out of a Graph error body.
func errorMessage(body []byte) string {
	var e errorBody
	if err := decodeJSON(body, &e); err != nil || e.Error.Message == "" {
		return "the server could not store the file"
	}
	return e.Error.Message
}

// shareRef parses a shareId: a permission's "s!TOKEN", or "u!" + base64url
// of the link's web URL, whose last path segment after /s/ is the token.
func shareRef(id string) (string, bool) {
	switch {
	case strings.HasPrefix(id, shareIDPrefix):
		return id[len(shareIDPrefix):], true
	case strings.HasPrefix(id, "u!"):
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(id[2:], "="))
		if err != nil {
			return "", false
		}
		u, err := url.Parse(string(raw))
		if err != nil {
			return "", false
		}
		_, token, ok := strings.Cut(u.Path, "/s/")
		if !ok || token == "" || strings.Contains(token, "/") {
			return "", false
		}
		return token, true
	}
	return "", false
}

// handleShare answers GET /{version}/shares/{shareId}/{rest...}: driveItem
// (or root) gives the shared item as a driveItem, /children its children
// (for a folder), /content its bytes (for a file). The driveItem's
// parentReference names the drive but no path above the shared item.
func (l *links) handleShare() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := shareRef(r.PathValue("shareID"))
		if !ok {
			writeError(w, r, l.log, ferry.Errorf(ferry.NotFound, "the sharing link does not exist"))
			return
		}
		rest := strings.TrimSuffix(r.PathValue("rest"), "/")
		base, action, _ := strings.Cut(rest, "/")
		if base != "driveItem" && base != "root" {
			writeError(w, r, l.log, apiNotFound())
			return
		}
		st := l.open(w, r, token, nil)
		if st == nil {
			return
		}
		render := func(it *ferry.Item) *driveItem {
			di := l.view.render(r, st.drive, it, nil)
			di.ParentReference = itemReference{DriveID: string(st.drive.ID), DriveType: driveType}
			if it.ID == st.item.ID {
				di.Root = nil
			}
			return di
		}
		switch action {
		case "":
			encode(w, http.StatusOK, render(st.item))
		case "content":
			if st.item.Folder {
				writeError(w, r, l.log, ferry.Errorf(ferry.Invalid, "%q is a folder; only files have content", st.item.Name))
				return
			}
			l.serveFile(w, r, st.item)
		case "children":
			if !st.item.Folder {
				encode(w, http.StatusOK, map[string]any{"value": []any{}})
				return
			}
			kids, _, err := l.items.Children(r.Context(), st.item.ID, ferry.ListQuery{Limit: 1000})
			if err != nil {
				writeError(w, r, l.log, err)
				return
			}
			out := make([]*driveItem, 0, len(kids))
			for _, k := range kids {
				out = append(out, render(k))
			}
			encode(w, http.StatusOK, map[string]any{"value": out})
		default:
			writeError(w, r, l.log, apiNotFound())
		}
	})
}
