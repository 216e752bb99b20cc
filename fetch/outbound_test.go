package fetch_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// outboundAllowlist names files (or folders, ending in "/") outside fetch/
// that may build their own HTTP clients, with the reason. Each must talk only
// to Ferry's own API or to origins it started itself, never to user URLs.
var outboundAllowlist = map[string]string{
	"cmd/ferry/client.go": "the CLI (ferry ls, get, put, import …) calls the Ferry server the user names with --server, and the download, upload and monitor URLs that server hands out",
	"cmd/ferry-bench/":    "the bench command talks to the Ferry server and the loopback origin it starts",
}

// TestOnlyFetchMakesOutboundRequests enforces that package fetch is the only
// code that makes requests to user-supplied URLs: no other non-test file
// may use http.Get/Head/Post/PostForm, http.DefaultClient or
// http.DefaultTransport, or build an http.Client or http.Transport.
func TestOnlyFetchMakesOutboundRequests(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			if rel == "fetch" {
				return filepath.SkipDir
			}
			if rel != "." && fileExists(filepath.Join(path, "go.mod")) {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || allowlisted(rel) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Logf("skipping %s: %v", rel, err) // another package may be mid-edit
			return nil
		}
		checked++
		for _, v := range outboundViolations(fset, f) {
			t.Errorf("%s: %s; only package fetch may make outbound requests (or add the file to outboundAllowlist with a reason)", rel, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no Go files checked: the walk is broken")
	}
}

func allowlisted(rel string) bool {
	for p := range outboundAllowlist {
		if rel == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(rel, p)) {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for !fileExists(filepath.Join(dir, "go.mod")) {
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
	return dir
}

// outboundViolations reports the uses of net/http in f that send requests
// with a default or home-made client. It follows import aliases; a dot
// import of net/http is itself a violation.
func outboundViolations(fset *token.FileSet, f *ast.File) []string {
	var names []string // local names of net/http
	var out []string
	report := func(n ast.Node, what string) {
		out = append(out, fset.Position(n.Pos()).String()+": "+what)
	}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != "net/http" {
			continue
		}
		switch {
		case imp.Name == nil:
			names = append(names, "http")
		case imp.Name.Name == ".":
			report(imp, "dot import of net/http")
		case imp.Name.Name != "_":
			names = append(names, imp.Name.Name)
		}
	}
	if len(names) == 0 {
		return out
	}
	// httpSel reports the name selected from net/http by e, if any.
	httpSel := func(e ast.Expr) string {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return ""
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok || !slices.Contains(names, id.Name) {
			return ""
		}
		return sel.Sel.Name
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			switch name := httpSel(n); name {
			case "Get", "Head", "Post", "PostForm", "DefaultClient", "DefaultTransport":
				report(n, "uses http."+name)
			}
		case *ast.CompositeLit:
			if name := httpSel(n.Type); name == "Client" || name == "Transport" {
				report(n, "builds an http."+name)
			}
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "new" && len(n.Args) == 1 {
				if name := httpSel(n.Args[0]); name == "Client" || name == "Transport" {
					report(n, "builds an http."+name+" with new")
				}
			}
		case *ast.ValueSpec: // var c http.Client: a zero Client uses the default transport
			if name := httpSel(n.Type); name == "Client" || name == "Transport" {
				report(n, "declares an http."+name+" value")
			}
		}
		return true
	})
	return out
}

func TestOutboundViolationsDetector(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      int
	}{
		{"clean", `package p
import "net/http"
type S struct{ c *http.Client; t http.RoundTripper }
func f(h http.Handler, r *http.Request) { _, _ = http.NewRequest("GET", "/", nil); _ = http.StatusOK }`, 0},
		{"no net/http", `package p
import "example.com/http"
var _ = http.Get`, 0},
		{"get", `package p
import "net/http"
func f() { http.Get("http://x/") }`, 1},
		{"head post postform", `package p
import "net/http"
func f() { http.Head("u"); http.Post("u", "", nil); http.PostForm("u", nil) }`, 3},
		{"default client", `package p
import "net/http"
func f(r *http.Request) { http.DefaultClient.Do(r) }`, 1},
		{"default transport", `package p
import "net/http"
var t = http.DefaultTransport.(*http.Transport).Clone()`, 1},
		{"client literal", `package p
import "net/http"
var c = &http.Client{}`, 1},
		{"transport literal", `package p
import "net/http"
func f() any { return http.Transport{} }`, 1},
		{"new client", `package p
import "net/http"
var c = new(http.Client)`, 1},
		{"zero client var", `package p
import "net/http"
var c http.Client`, 1},
		{"alias", `package p
import nethttp "net/http"
func f() { nethttp.Get("u") }`, 1},
		{"dot import", `package p
import . "net/http"
func f() { Get("u") }`, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x.go", tt.src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			if got := outboundViolations(fset, f); len(got) != tt.want {
				t.Errorf("got %d violations %v, want %d", len(got), got, tt.want)
			}
		})
	}
}
