package graph

import (
	"net/url"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry"
)

func TestParseItemRef(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want itemRef
	}{
		{"root", itemRef{id: "root"}},
		{"root/children", itemRef{id: "root", action: "children"}},
		{"root:", itemRef{id: "root"}},
		{"root:/", itemRef{id: "root"}},
		{"root:/:", itemRef{id: "root"}},
		{"root:/a", itemRef{id: "root", path: "/a"}},
		{"root:/a/b", itemRef{id: "root", path: "/a/b"}},
		{"root:/a/b:", itemRef{id: "root", path: "/a/b"}},
		{"root:/a/b/:", itemRef{id: "root", path: "/a/b"}},
		{"root:/a/b:/content", itemRef{id: "root", path: "/a/b", action: "content"}},
		{"root:/a/b.txt:/content", itemRef{id: "root", path: "/a/b.txt", action: "content"}},
		{"root:/a:/children", itemRef{id: "root", path: "/a", action: "children"}},
		{"items/ABC", itemRef{id: "ABC"}},
		{"items/ABC/content", itemRef{id: "ABC", action: "content"}},
		{"items/ABC:/name.txt:/content", itemRef{id: "ABC", path: "/name.txt", action: "content"}},
		{"items/ABC:/x/y:", itemRef{id: "ABC", path: "/x/y"}},
		{"items/ABC:/x/y", itemRef{id: "ABC", path: "/x/y"}},
		{"items/root:/pictures:/children", itemRef{id: "root", path: "/pictures", action: "children"}},
		{"items/root", itemRef{id: "root"}},
		{"items/ABC:/a:/createUploadSession", itemRef{id: "ABC", path: "/a", action: "createUploadSession"}},
		// Percent-encoded structure, as the Go SDK sends it.
		{"root%3A%2Fa%2Fb%3A%2Fcontent", itemRef{id: "root", path: "/a/b", action: "content"}},
		{"root%3A%2Fa%2Fb%3A", itemRef{id: "root", path: "/a/b"}},
		{"items/ABC%3A%2Fn.txt%3A%2Fcontent", itemRef{id: "ABC", path: "/n.txt", action: "content"}},
		{"root:%2Fa%2Fb:%2Fchildren", itemRef{id: "root", path: "/a/b", action: "children"}},
		// Names with spaces, '#' and '%' survive exactly one unescape.
		{"root:/a%20b/c%23d%25e:/content", itemRef{id: "root", path: "/a b/c#d%e", action: "content"}},
		{"root:/100%2525:", itemRef{id: "root", path: "/100%25"}},
		{"root:/caf%C3%A9", itemRef{id: "root", path: "/café"}},
		// OData functions, as the SDKs spell them.
		{"root/delta", itemRef{id: "root", action: "delta"}},
		{"root/delta()", itemRef{id: "root", action: "delta"}},
		{"items/root/delta()", itemRef{id: "root", action: "delta"}},
		{"root/delta(token='latest')", itemRef{id: "root", action: "delta", args: "token='latest'"}},
		{"root/delta(token=%27abc%27)", itemRef{id: "root", action: "delta", args: "token='abc'"}},
		{"items/ABC/delta", itemRef{id: "ABC", action: "delta"}},
		{"root:/a:/delta", itemRef{id: "root", path: "/a", action: "delta"}},
		{"root/search(q='x y')", itemRef{id: "root", action: "search", args: "q='x y'"}},
		{"root/search(q=%27x%20y%27)", itemRef{id: "root", action: "search", args: "q='x y'"}},
		{"search(q='x')", itemRef{id: "root", action: "search", args: "q='x'"}},
		{"items/ABC/search(q='x')", itemRef{id: "ABC", action: "search", args: "q='x'"}},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseItemRef(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseItemRef(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseItemRefErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"items",
		"items/",
		"items/:/a",
		"rooty",
		"drive",
		"root/children/more",
		"root/",
		"root:/a:/content/more",
		"root:/a:content",
		"root:a",
		"root:/a//b",
		"root:/../etc/passwd",
		"root:/a/..:",
		"root:/./a",
		"root%2F..%2F..",
		"root:/a%2",
		"root:/a%zz",
		"root:/a:/b:/c",
		"items/ABC/",
		"root:/" + strings.Repeat("a/", maxPathSegments+1),
		// Names that are not UTF-8 or hold control characters.
		"root:/%FF",
		"root:/a%00b",
		"root:/a%0Ab:/content",
		"items/ABC:/x%7F:",
		"root:/caf%E9",
	} {
		t.Run(in, func(t *testing.T) {
			got, err := parseItemRef(in)
			if err == nil {
				t.Fatalf("parseItemRef(%q) = %+v, want an error", in, got)
			}
			if k := ferry.KindOf(err); k != ferry.Invalid {
				t.Errorf("parseItemRef(%q) error kind = %v, want %v", in, k, ferry.Invalid)
			}
		})
	}
}

// TestParseItemRefBadID answers an item id no item can have as missing
// (404), before any store is asked.
func TestParseItemRefBadID(t *testing.T) {
	for _, in := range []string{"items/%00", "items/%FF", "items/A%00B/content", "items/%FF:/a:", "items/A%1FB"} {
		t.Run(in, func(t *testing.T) {
			got, err := parseItemRef(in)
			if k := ferry.KindOf(err); err == nil || k != ferry.NotFound {
				t.Errorf("parseItemRef(%q) = %+v, %v; want an error of kind %v", in, got, err, ferry.NotFound)
			}
		})
	}
}

// escapeRef writes ref back in the plain colon form.
func escapeRef(ref itemRef) string {
	var b strings.Builder
	if ref.id == ferry.RootAlias {
		b.WriteString("root")
	} else {
		b.WriteString("items/" + url.PathEscape(string(ref.id)))
	}
	if ref.path != "" {
		b.WriteString(":" + escapeItemPath(ref.names()) + ":")
	}
	if ref.action != "" {
		b.WriteString("/" + url.PathEscape(ref.action))
	}
	if ref.args != "" {
		b.WriteString(url.PathEscape("(" + ref.args + ")"))
	}
	return b.String()
}

func FuzzParseItemRef(f *testing.F) {
	for _, s := range []string{
		"root", "root/children", "root:/a/b:/content", "items/X:/a:", "items/root:/p:/children",
		"root%3A%2Fa%2Fb%3A%2Fcontent", "root:/a%20b/c%23d%25e:", "root:/../x", "items/%2F", "root:/a//b:",
		"root/delta()", "root/delta(token='x')", "search(q='a')", "items/A/search(q=%27b%27)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ref, err := parseItemRef(in)
		if err != nil {
			// NotFound is only for an id that no item can have.
			if k := ferry.KindOf(err); k != ferry.Invalid && k != ferry.NotFound {
				t.Fatalf("parseItemRef(%q): error of kind %v, want invalid or not found", in, k)
			}
			return
		}
		if ref.id == "" || strings.ContainsAny(string(ref.id), ":/") || !cleanText(string(ref.id)) {
			t.Fatalf("parseItemRef(%q): bad id %q", in, ref.id)
		}
		if strings.ContainsAny(ref.action, "/:") {
			t.Fatalf("parseItemRef(%q): bad action %q", in, ref.action)
		}
		for _, n := range ref.names() {
			if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/:") || !cleanText(n) {
				t.Fatalf("parseItemRef(%q): bad name %q in %q", in, n, ref.path)
			}
		}
		// What parsed must print and parse back to the same thing.
		again, err := parseItemRef(escapeRef(ref))
		if err != nil {
			t.Fatalf("parseItemRef(%q) = %+v, but its escaped form %q fails: %v", in, ref, escapeRef(ref), err)
		}
		if again != ref {
			t.Fatalf("round trip of %q: got %+v, want %+v", in, again, ref)
		}
	})
}
