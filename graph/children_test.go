package graph_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// fill creates n empty files named f0000.txt … directly in the store.
func (e *env) fill(parent ferry.ItemID, n int) {
	e.t.Helper()
	r := e.do("PUT", "/v1.0/me/drive/root:/seed.bin:/content", "").must(e.t, http.StatusCreated).json(e.t)
	seed, err := e.store.Item(e.t.Context(), ferry.ItemID(r["id"].(string)))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range n {
		_, _, err := e.store.CreateItem(e.t.Context(), ferry.NewItem{
			DriveID: e.drive.ID, ParentID: parent, Name: fmt.Sprintf("f%04d.txt", i),
			Content: ferry.Content{BlobKey: seed.BlobKey, Size: 0, MimeType: "text/plain"}, By: "me",
		}, ferry.ConflictFail)
		if err != nil {
			e.t.Fatal(err)
		}
	}
	e.do("DELETE", "/v1.0/me/drive/root:/seed.bin", nil).must(e.t, http.StatusNoContent)
}

func TestListChildrenPaging(t *testing.T) {
	e := newEnv(t)
	dir := e.mkdir("", "many")
	dirID := ferry.ItemID(dir["id"].(string))
	e.fill(dirID, 450)

	seen := map[string]int{}
	next := "/v1.0/me/drive/items/" + string(dirID) + "/children?$top=200"
	var pages int
	for next != "" {
		r := e.do("GET", next, nil).must(t, http.StatusOK).json(t)
		got := names(t, r)
		if len(got) > 200 {
			t.Fatalf("page of %d items", len(got))
		}
		for _, n := range got {
			seen[n]++
		}
		pages++
		if pages == 1 {
			// Between pages: delete an item already listed and one not yet
			// listed, and add one before and one after the cursor.
			e.do("DELETE", "/v1.0/me/drive/root:/many/f0000.txt", nil).must(t, http.StatusNoContent)
			e.do("DELETE", "/v1.0/me/drive/root:/many/f0300.txt", nil).must(t, http.StatusNoContent)
			e.put("/many/a-early.txt", "x")
			e.put("/many/z-late.txt", "x")
		}
		nl, _ := r["@odata.nextLink"].(string)
		if nl != "" && !strings.HasPrefix(nl, e.srv.URL+"/v1.0/") {
			t.Fatalf("nextLink %q is not absolute", nl)
		}
		if nl != "" {
			u, err := url.Parse(nl)
			if err != nil {
				t.Fatal(err)
			}
			if u.Query().Get("$top") != "200" || u.Query().Get("$skiptoken") == "" {
				t.Errorf("nextLink %q lost $top or has no $skiptoken", nl)
			}
		}
		next = nl
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
	for i := 1; i < 450; i++ {
		n := fmt.Sprintf("f%04d.txt", i)
		if i == 300 {
			if seen[n] != 0 {
				t.Errorf("%s was deleted before it was reached but listed", n)
			}
			continue
		}
		if seen[n] != 1 {
			t.Errorf("%s listed %d times, want 1", n, seen[n])
		}
	}
	if seen["z-late.txt"] != 1 {
		t.Errorf("an item added after the cursor was listed %d times, want 1", seen["z-late.txt"])
	}
	if seen["a-early.txt"] > 1 {
		t.Errorf("a-early.txt listed %d times", seen["a-early.txt"])
	}

	// Default page size is 200; $top up to 1000; top without $.
	r := e.do("GET", "/v1.0/me/drive/root:/many:/children", nil).must(t, http.StatusOK).json(t)
	if n := len(names(t, r)); n != 200 || r["@odata.nextLink"] == nil {
		t.Errorf("default page: %d items, nextLink %v", n, r["@odata.nextLink"])
	}
	r = e.do("GET", "/v1.0/me/drive/root:/many:/children?top=1000", nil).must(t, http.StatusOK).json(t)
	if n := len(names(t, r)); n != 450 || r["@odata.nextLink"] != nil {
		t.Errorf("top=1000: %d items, nextLink %v", n, r["@odata.nextLink"])
	}
	for _, bad := range []string{"$top=0", "$top=1001", "$top=-1", "$top=abc", "$top=", "$orderby=color", "$orderby=name%20sideways", "$skiptoken=garbage", "$skiptoken=" + url.QueryEscape("MXxuYW1lfGF8")} {
		e.do("GET", "/v1.0/me/drive/root:/many:/children?"+bad, nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	}
}

func TestListChildrenOrderAndSelect(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "d")
	e.put("/d/b.txt", "22")
	e.put("/d/a.txt", "333")
	e.put("/d/c.txt", "1")
	e.mkdir("/d", "Folder")
	list := func(q string) []string {
		t.Helper()
		return names(t, e.do("GET", "/v1.0/me/drive/root:/d:/children"+q, nil).must(t, http.StatusOK).json(t))
	}
	for q, want := range map[string][]string{
		"":                             {"a.txt", "b.txt", "c.txt", "Folder"},
		"?$orderby=name":               {"a.txt", "b.txt", "c.txt", "Folder"},
		"?$orderby=name%20desc":        {"Folder", "c.txt", "b.txt", "a.txt"},
		"?orderby=name+desc":           {"Folder", "c.txt", "b.txt", "a.txt"},
		"?$orderby=size%20desc&$top=3": {"a.txt", "b.txt", "c.txt"},
	} {
		if got := list(q); !cmp.Equal(got, want) {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
	// Items made in one millisecond tie on lastModifiedDateTime, so check
	// the order of the values rather than of the names.
	for q, desc := range map[string]bool{"?$orderby=lastModifiedDateTime": false, "?$orderby=lastModifiedDateTime%20desc": true} {
		var times []string
		r := e.do("GET", "/v1.0/me/drive/root:/d:/children"+q, nil).must(t, http.StatusOK).json(t)
		for _, v := range r["value"].([]any) {
			times = append(times, v.(map[string]any)["lastModifiedDateTime"].(string))
		}
		sorted := slices.Clone(times)
		slices.SortFunc(sorted, func(a, b string) int {
			ta, _ := time.Parse(time.RFC3339Nano, a)
			tb, _ := time.Parse(time.RFC3339Nano, b)
			if desc {
				return tb.Compare(ta)
			}
			return ta.Compare(tb)
		})
		if len(times) != 4 || !slices.Equal(times, sorted) {
			t.Errorf("%q: times %v are not in order", q, times)
		}
	}
	// Paging by size keeps the order across pages.
	var all []string
	next := "/v1.0/me/drive/root:/d:/children?$orderby=size&$top=1"
	for next != "" {
		r := e.do("GET", next, nil).must(t, http.StatusOK).json(t)
		all = append(all, names(t, r)...)
		next, _ = r["@odata.nextLink"].(string)
	}
	if want := []string{"Folder", "c.txt", "b.txt", "a.txt"}; !cmp.Equal(all, want) {
		t.Errorf("paged by size: %v, want %v", all, want)
	}

	r := e.do("GET", "/v1.0/me/drive/root:/d:/children?$select=name,size", nil).must(t, http.StatusOK).json(t)
	for _, v := range r["value"].([]any) {
		if keys := sortedKeys(v.(map[string]any)); !slices.Equal(keys, []string{"id", "name", "size"}) {
			t.Errorf("$select: keys %v", keys)
		}
	}
	golden(t, "children", e.do("GET", "/v1.0/me/drive/root:/d:/children?$top=2", nil).must(t, http.StatusOK).body)

	if h := e.do("HEAD", "/v1.0/me/drive/root:/d:/children", nil).must(t, http.StatusOK); len(h.body) != 0 {
		t.Errorf("HEAD children: body %q", h.body)
	}
	// The children of a file: an empty list.
	r = e.do("GET", "/v1.0/me/drive/root:/d/a.txt:/children", nil).must(t, http.StatusOK).json(t)
	if v, ok := r["value"].([]any); !ok || len(v) != 0 {
		t.Errorf("children of a file: %v", r)
	}
	e.do("GET", "/v1.0/me/drive/root:/nope:/children", nil).wantError(t, http.StatusNotFound, "itemNotFound")
}
