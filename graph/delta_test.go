package graph_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/graph"
	"github.com/google/go-cmp/cmp"
)

// follow GETs path and every @odata.nextLink after it, checking that each
// link is absolute on the test server, and returns all entries and the
// final @odata.deltaLink.
func (e *env) follow(t *testing.T, path string) (entries []map[string]any, deltaLink string) {
	t.Helper()
	next := path
	for range 1000 {
		page := e.do("GET", next, nil).must(t, http.StatusOK).json(t)
		for _, v := range page["value"].([]any) {
			entries = append(entries, v.(map[string]any))
		}
		nl, hasNext := page["@odata.nextLink"].(string)
		dl, hasDelta := page["@odata.deltaLink"].(string)
		if hasNext == hasDelta {
			t.Fatalf("GET %s: a page needs exactly one of nextLink and deltaLink: %v", next, page)
		}
		link := nl + dl
		if !strings.HasPrefix(link, e.srv.URL+"/") {
			t.Fatalf("link %q is not absolute on %s", link, e.srv.URL)
		}
		if hasDelta {
			return entries, dl
		}
		next = nl
	}
	t.Fatal("the delta never ended")
	return nil, ""
}

// entryNames lists names, "-name" for deleted entries, sorted.
func entryNames(entries []map[string]any) []string {
	var out []string
	for _, e := range entries {
		n := e["name"].(string)
		if _, ok := e["deleted"]; ok {
			n = "-" + n
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestDelta(t *testing.T) {
	e := newEnv(t, func(c *graph.Config) { c.DeltaRetention = time.Hour })
	e.mkdir("", "a")
	e.put("/a/x.txt", "x")
	e.put("/top.txt", "top")
	a := string(mustID(t, e, "/a"))
	d := string(e.drive.ID)

	var link string
	for _, p := range []string{
		"/v1.0/me/drive/root/delta", "/v1.0/drive/root/delta()", "/v2.0/drives/" + d + "/root/delta",
		"/v1.0/me/drive/items/root/delta()", "/v1.0/me/drive/items/" + string(e.drive.RootID) + "/delta",
	} {
		entries, dl := e.follow(t, p+"?$top=2")
		if got, want := entryNames(entries), []string{"a", "root", "top.txt", "x.txt"}; !cmp.Equal(got, want) {
			t.Errorf("%s = %v, want %v", p, got, want)
		}
		if !strings.HasPrefix(p, "/v2.0") {
			link = dl
		}
	}
	for _, p := range []string{"/v1.0/me/drive/root:/a:/delta", "/v1.0/me/drive/items/" + a + "/delta()"} {
		entries, _ := e.follow(t, p)
		if got, want := entryNames(entries), []string{"a", "x.txt"}; !cmp.Equal(got, want) {
			t.Errorf("%s = %v, want %v", p, got, want)
		}
	}
	golden(t, "delta", e.do("GET", "/v1.0/me/drive/root:/a:/delta", nil).must(t, http.StatusOK).body)

	// token=latest, in both spellings: nothing, and a link for later.
	latest := map[string]string{}
	for _, p := range []string{"/v1.0/me/drive/root/delta?token=latest", "/v1.0/me/drive/root/delta(token='latest')"} {
		entries, dl := e.follow(t, p)
		if len(entries) != 0 {
			t.Errorf("%s gave %v, want nothing", p, entryNames(entries))
		}
		latest[p] = dl
	}

	e.put("/a/new.txt", "new")
	e.do("DELETE", "/v1.0/me/drive/root:/top.txt", nil).must(t, http.StatusNoContent)
	e.do("PATCH", "/v1.0/me/drive/root:/a/x.txt", map[string]any{"name": "y.txt"}).must(t, http.StatusOK)
	for _, l := range append([]string{link}, latest["/v1.0/me/drive/root/delta?token=latest"], latest["/v1.0/me/drive/root/delta(token='latest')"]) {
		entries, _ := e.follow(t, l)
		if got, want := entryNames(entries), []string{"-top.txt", "new.txt", "y.txt"}; !cmp.Equal(got, want) {
			t.Errorf("%s = %v, want %v", l, got, want)
		}
		for _, en := range entries {
			if en["name"] != "top.txt" {
				continue
			}
			// What rclone needs to see a deletion: a file or folder
			// facet, the name and the parent's path.
			pr := en["parentReference"].(map[string]any)
			if _, ok := en["file"]; !ok || pr["path"] != "/drive/root:" || pr["id"] != string(e.drive.RootID) {
				t.Errorf("deleted entry = %v, want a file facet and the root as parent", en)
			}
		}
	}
	u, _ := url.Parse(link)
	_, l2 := e.follow(t, "/v1.0/me/drive/root/delta?token=latest")
	e.do("DELETE", "/v1.0/me/drive/root:/a/new.txt", nil).must(t, http.StatusNoContent)
	e.do("PATCH", "/v1.0/me/drive/root:/a/y.txt", map[string]any{"name": "z.txt"}).must(t, http.StatusOK)
	golden(t, "delta-changes", e.do("GET", l2, nil).must(t, http.StatusOK).body)

	// Live items carry parentReference.path (rclone's change notification
	// builds paths from it).
	entries, _ := e.follow(t, link)
	for _, en := range entries {
		if en["name"] == "z.txt" && en["parentReference"].(map[string]any)["path"] != "/drive/root:/a" {
			t.Errorf("z.txt's parentReference = %v, want path /drive/root:/a", en["parentReference"])
		}
	}

	// Tokens the server cannot use: 410 resyncRequired, with a Location
	// to start over.
	for _, p := range []string{
		"/v1.0/me/drive/root/delta?token=garbage",
		"/v1.0/me/drive/root/delta?$skiptoken=garbage",
		"/v1.0/me/drive/root:/a:/delta?token=" + url.QueryEscape(u.Query().Get("token")),
	} {
		r := e.do("GET", p, nil)
		r.wantError(t, http.StatusGone, "resyncRequired")
		if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, e.srv.URL+"/") || !strings.HasSuffix(loc, "/delta") {
			t.Errorf("GET %s: Location %q, want an absolute delta URL", p, loc)
		}
	}
	e.clock.advance(2 * time.Hour)
	e.do("GET", link, nil).wantError(t, http.StatusGone, "resyncRequired")
	if _, dl := e.follow(t, "/v1.0/me/drive/root/delta?token=latest"); dl == "" {
		t.Error("token=latest after expiry gave no deltaLink")
	}

	e.do("GET", "/v1.0/me/drive/root:/a/z.txt:/delta", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root/delta?$top=0", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root/delta", nil, bearer(e.ro)).must(t, http.StatusOK)
	e.do("GET", "/v1.0/me/drive/root/delta", nil, noAuth()).wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do("GET", "/v1.0/drives/"+string(e.odrive.ID)+"/root/delta", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}

func TestSearch(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "Reports")
	e.put("/Reports/Q1 report.txt", "1")
	e.put("/Reports/notes.txt", "2")
	e.put("/my REPORT.txt", "3")
	e.put("/gone report.txt", "4")
	e.do("DELETE", "/v1.0/me/drive/root:/gone report.txt", nil).must(t, http.StatusNoContent)
	e.do("PUT", "/v1.0/me/drive/root:/other report.txt:/content", "5", bearer(e.other)).must(t, http.StatusCreated)
	all := []string{"my REPORT.txt", "Q1 report.txt", "Reports"}
	for _, p := range []string{
		"/v1.0/me/drive/root/search(q='report')",
		"/v1.0/me/drive/root/search(q=%27RePort%27)",
		"/v1.0/me/drive/search(q='report')",
		"/v2.0/drives/" + string(e.drive.ID) + "/root/search(q=\"report\")",
		"/v1.0/me/drive/root/search(q='report')?$top=1",
	} {
		entries, ok := []map[string]any(nil), true
		next := p
		for next != "" && ok {
			page := e.do("GET", next, nil).must(t, http.StatusOK).json(t)
			for _, v := range page["value"].([]any) {
				entries = append(entries, v.(map[string]any))
			}
			next, _ = page["@odata.nextLink"].(string)
			ok = len(entries) < 10
		}
		var got []string
		for _, en := range entries {
			got = append(got, en["name"].(string))
		}
		if !cmp.Equal(got, all) {
			t.Errorf("%s = %v, want %v", p, got, all)
		}
	}
	r := e.do("GET", "/v1.0/me/drive/root:/Reports:/search(q='rep')", nil).must(t, http.StatusOK)
	if got := names(t, r.json(t)); !cmp.Equal(got, []string{"Q1 report.txt"}) {
		t.Errorf("search in Reports = %v", got)
	}
	golden(t, "search", r.body)
	e.do("GET", "/v1.0/me/drive/root/search(q='it''s')", nil).must(t, http.StatusOK)
	e.do("GET", "/v1.0/me/drive/root/search(q='')", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root/search(q='a'b')", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root/search(x='a')", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root/search(q='a')?$orderby=size", nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("GET", "/v1.0/me/drive/root/search(q='a')", nil, noAuth()).wantError(t, http.StatusUnauthorized, "unauthenticated")
}
