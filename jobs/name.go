package jobs

import (
	"mime"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

// originName is the name an upload from URL takes when the request named
// none: the origin's Content-Disposition filename (fetch already reduced
// it to a bare name), else the last segment of the final URL's path. Both
// are made valid item names; "" if neither gives one.
func originName(disposition string, final *url.URL) string {
	if n := cleanName(disposition); n != "" {
		return n
	}
	if final == nil {
		return ""
	}
	// URL.Path is already unescaped: "a%20b.txt" is "a b.txt".
	p := strings.TrimRight(final.Path, "/")
	if p == "" {
		return ""
	}
	return cleanName(path.Base(p))
}

// cleanName turns a name from an origin into a valid item name: reserved
// characters become '_', control characters go, surrounding spaces are
// trimmed, and it is cut to MaxNameLength characters. "" if
// nothing valid remains.
func cleanName(s string) string {
	if !utf8.ValidString(s) {
		return ""
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
		case strings.ContainsRune(`/\*<>?:|"`, r):
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	name := strings.TrimSpace(b.String())
	if r := []rune(name); len(r) > ferry.MaxNameLength {
		name = strings.TrimSpace(string(r[:ferry.MaxNameLength]))
	}
	if ferry.ValidateName(name, false) != nil {
		return ""
	}
	return name
}

// generatedName names a download when neither the request nor the origin
// gave a name.
func generatedName(now time.Time) string {
	return "download-" + now.UTC().Format("2006-01-02-150405")
}

// mimeType is the item's mimeType: the origin's Content-Type without
// parameters, unless it is missing, malformed or the meaningless
// application/octet-stream; then whatever blob.DetectMIME sniffs from the
// name and the first bytes.
func mimeType(contentType, name string, head []byte) string {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt != "application/octet-stream" {
		return mt
	}
	return blob.DetectMIME(name, head)
}
