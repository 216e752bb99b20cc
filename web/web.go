// Package web serves Ferry's browser page: static files embedded in the
// binary (no build step, no CDN, so the page works offline), whose script
// is a client of the public Graph API, the same routes any SDK uses. The
// package imports neither graph nor a store; the page reaches the server
// only through HTTP, with the token the user gave it in an Authorization
// header, never in a URL.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Paths the page is served at: the page itself at "/", its icon at
// "/favicon.ico" (browsers ask for it unprompted) and its assets under
// "/web/".
const (
	PagePath   = "/"
	IconPath   = "/favicon.ico"
	AssetsPath = "/web/"
)

// policy is the page's Content-Security-Policy: its own scripts and
// styles only, requests to its own origin only, no frames.
const policy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the page at "/", "/favicon.ico" and the assets under
// "/web/"; anything else is 404. Each file carries a strong ETag, so a
// browser revalidates cheaply and always gets the binary's own version.
func Handler() http.Handler {
	files := map[string]file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		files[strings.TrimPrefix(p, "static/")] = file{
			body:  b,
			ctype: contentType(p),
			etag:  `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic("web: embedded files: " + err.Error()) // the build embedded them; cannot happen
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := ""
		switch p := r.URL.Path; {
		case p == PagePath:
			name = "index.html"
		case p == IconPath:
			name = "favicon.svg"
		case strings.HasPrefix(p, AssetsPath):
			name = strings.TrimPrefix(p, AssetsPath)
		}
		f, ok := files[name]
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if name == "index.html" {
			h.Set("Content-Security-Policy", policy)
			h.Set("X-Frame-Options", "DENY")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}
