package graph

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/ferrydrive/ferry"
)

// maxPathSegments bounds how deep a path address may go.
const maxPathSegments = 256

// An itemRef is the item part of an API path, after the drive prefix:
//
//	root                      items/{id}
//	root/children             items/{id}/content
//	root:/a/b:/content        items/{id}:/a/b:/children
//	root:/a/b                 items/root:/a:
//
// id is the item the address starts from (ferry.RootAlias for the root),
// path the names below it, and action the trailing segment, if any.
type itemRef struct {
	id     ferry.ItemID
	path   string // "" for the item itself, else "/a/b" (unescaped names)
	action string // "", "children", "content", …
	sub    string // the permission ID of permissions/{id}
}

// names returns the path's names, nil when the ref names its base item.
func (ref itemRef) names() []string {
	if ref.path == "" {
		return nil
	}
	return strings.Split(ref.path[1:], "/")
}

// parseItemRef parses the escaped item part of a request path. Clients send
// the colon form both plainly (root:/a/b:/content) and fully percent-encoded
// (root%3A%2Fa%2Fb%3A%2Fcontent, as the Go SDK does). Since ':' and '/' can
// never be part of a name or an id, unescaping the whole string once and
// then splitting is unambiguous; '%' and '#' in names arrive as %25 and %23
// and survive the single unescape. An id that is not clean text (see
// cleanText) is NotFound, a path name that is not is Invalid.
func parseItemRef(escaped string) (itemRef, error) {
	s, err := url.PathUnescape(escaped)
	if err != nil {
		return itemRef{}, ferry.Errorf(ferry.Invalid, "the path is not correctly percent-encoded").WithCode("invalidPath")
	}
	var ref itemRef
	var rest string
	switch {
	case strings.HasPrefix(s, "root"):
		ref.id, rest = ferry.RootAlias, s[len("root"):]
	case strings.HasPrefix(s, "items/"):
		s = s[len("items/"):]
		end := strings.IndexAny(s, ":/")
		if end < 0 {
			end = len(s)
		}
		if end == 0 {
			return itemRef{}, apiNotFound()
		}
		if !cleanText(s[:end]) {
			return itemRef{}, errNoItem()
		}
		ref.id, rest = ferry.ItemID(s[:end]), s[end:]
	default:
		return itemRef{}, apiNotFound()
	}
	if strings.HasPrefix(rest, ":") {
		rest = rest[1:]
		var p string
		if i := strings.IndexByte(rest, ':'); i >= 0 {
			p, rest = rest[:i], rest[i+1:]
		} else {
			p, rest = rest, ""
		}
		if ref.path, err = cleanItemPath(p); err != nil {
			return itemRef{}, err
		}
	}
	switch {
	case rest == "":
	case rest[0] == '/' && len(rest) > 1 && !strings.ContainsAny(rest[1:], "/:"):
		ref.action = rest[1:]
	case strings.HasPrefix(rest, "/permissions/") && len(rest) > len("/permissions/") && !strings.ContainsAny(rest[len("/permissions/"):], "/:"):
		ref.action, ref.sub = "permissions/", rest[len("/permissions/"):]
		if !cleanText(ref.sub) {
			return itemRef{}, ferry.Errorf(ferry.NotFound, "the item has no such permission")
		}
	default:
		return itemRef{}, apiNotFound()
	}
	return ref, nil
}

// cleanItemPath checks the path between the colons: empty or "/" for the
// base item itself, else "/name/name" with an optional trailing slash. "."
// and ".." are refused, so a path can never climb out of its base.
func cleanItemPath(p string) (string, error) {
	if p == "" || p == "/" {
		return "", nil
	}
	if p[0] != '/' {
		return "", ferry.Errorf(ferry.Invalid, "a path address must start with '/' after the colon").WithCode("invalidPath")
	}
	p = strings.TrimSuffix(p, "/")
	segs := strings.Split(p[1:], "/")
	if len(segs) > maxPathSegments {
		return "", ferry.Errorf(ferry.Invalid, "the path is deeper than %d levels", maxPathSegments).WithCode("pathTooDeep")
	}
	for _, seg := range segs {
		switch seg {
		case "":
			return "", ferry.Errorf(ferry.Invalid, "the path has an empty segment").WithCode("invalidPath")
		case ".", "..":
			return "", ferry.Errorf(ferry.Invalid, "the path must not contain %q segments", seg).WithCode("invalidPath")
		}
		if !cleanText(seg) {
			return "", ferry.Errorf(ferry.Invalid, "the path holds bytes that are not UTF-8, or control characters").WithCode("invalidPath")
		}
	}
	return p, nil
}

// cleanText reports whether s may be an ID or a name: valid UTF-8 without
// the control characters ferry.ValidateName refuses. No stored ID or name
// fails it, so a lookup of text that does is answered before any store
// sees it (PostgreSQL refuses such text with an error rather than finding
// nothing).
func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// errNoItem is the answer for an item that does not exist, or that the
// caller may not see.
func errNoItem() error {
	return ferry.Errorf(ferry.NotFound, "the item does not exist")
}

func apiNotFound() error {
	return ferry.Errorf(ferry.Invalid, "API not found")
}

// escapeItemPath percent-encodes each name of a path the way OneDrive does
// in parentReference.path: "/a b/c#" becomes "/a%20b/c%23".
func escapeItemPath(names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(n))
	}
	return b.String()
}
