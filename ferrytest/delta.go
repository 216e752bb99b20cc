package ferrytest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/google/go-cmp/cmp"
)

// deltaRound is what one delta call, followed through all its pages, said.
type deltaRound struct {
	changes []ferry.Change
	token   string
}

// byID indexes the round's entries; the round must hold each item once.
func (r deltaRound) byID(t *testing.T) map[ferry.ItemID]ferry.Change {
	t.Helper()
	out := map[ferry.ItemID]ferry.Change{}
	for _, c := range r.changes {
		if _, dup := out[c.Item.ID]; dup {
			t.Errorf("item %s (%q) appears twice in one delta", c.Item.ID, c.Item.Name)
		}
		out[c.Item.ID] = c
	}
	return out
}

// names lists the entries as "name" or "-name" for deleted ones, sorted.
func (r deltaRound) names() []string {
	var out []string
	for _, c := range r.changes {
		n := c.Item.Name
		if c.Deleted {
			n = "-" + n
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// delta follows one delta call of the scope through all its pages, with
// limit items per page, and checks the paging contract: every page but
// the last has a cursor and no token, the last a token and no cursor, no
// page is larger than limit, and no item appears twice.
func delta(t *testing.T, s ferry.ItemStore, scope ferry.ItemID, token string, limit int) deltaRound {
	t.Helper()
	q := ferry.DeltaQuery{Token: token, Limit: limit}
	var r deltaRound
	for range 10000 {
		p, err := s.Delta(t.Context(), scope, q)
		if err != nil {
			t.Fatalf("Delta(%s, %+v): %v", scope, q, err)
		}
		if limit > 0 && len(p.Changes) > limit {
			t.Fatalf("Delta gave %d items for a limit of %d", len(p.Changes), limit)
		}
		r.changes = append(r.changes, p.Changes...)
		switch {
		case p.Next != "" && p.Token != "":
			t.Fatalf("a delta page has both a cursor and a token")
		case p.Next != "":
			q = ferry.DeltaQuery{Cursor: p.Next, Limit: limit}
			continue
		case p.Token == "":
			t.Fatalf("the last delta page has no token")
		}
		r.token = p.Token
		r.byID(t)
		return r
	}
	t.Fatal("Delta never reached its last page")
	return r
}

// wantParentsFirst checks that every item whose parent is also in the
// round comes after that parent, and that deleted entries come first.
func wantParentsFirst(t *testing.T, r deltaRound) {
	t.Helper()
	seen := map[ferry.ItemID]bool{}
	in := r.byID(t)
	live := false
	for _, c := range r.changes {
		if c.Deleted {
			if live {
				t.Errorf("deleted entry %q comes after a live one", c.Item.Name)
			}
			continue
		}
		live = true
		if p, ok := in[c.Item.ParentID]; ok && !p.Deleted && !seen[c.Item.ParentID] {
			t.Errorf("%q comes before its parent %q", c.Item.Name, p.Item.Name)
		}
		seen[c.Item.ID] = true
	}
}

func testDeltaEnumerate(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	other := newTestDrive(t, s, "bob", bigQuota)
	other.file(t, other.root, "bobs.txt", 1)
	a := d.folder(t, d.root, "a")
	b := d.folder(t, a.ID, "b")
	c := d.folder(t, b.ID, "c")
	d.file(t, c.ID, "deep.txt", 4)
	d.file(t, b.ID, "b.txt", 3)
	d.file(t, a.ID, "a.txt", 2)
	d.file(t, d.root, "top.txt", 1)
	for _, limit := range []int{0, 1, 2, 3, 1000} {
		t.Run(fmt.Sprint("limit", limit), func(t *testing.T) {
			r := delta(t, s.Items, d.root, "", limit)
			wantParentsFirst(t, r)
			want := []string{"a", "a.txt", "b", "b.txt", "c", "deep.txt", "root", "top.txt"}
			if got := r.names(); !cmp.Equal(got, want) {
				t.Errorf("root delta = %v, want %v", got, want)
			}
			for _, c := range r.changes {
				if c.Deleted {
					t.Errorf("%q is deleted in an enumeration", c.Item.Name)
				}
				cur := d.item(t, c.Item.ID)
				if diff := cmp.Diff(cur, c.Item); diff != "" {
					t.Errorf("delta's %q differs from Item (-Item +delta):\n%s", cur.Name, diff)
				}
			}
		})
	}
	// A folder's delta holds its subtree and itself, never its ancestors;
	// paths are from the root.
	r := delta(t, s.Items, b.ID, "", 2)
	wantParentsFirst(t, r)
	if got, want := r.names(), []string{"b", "b.txt", "c", "deep.txt"}; !cmp.Equal(got, want) {
		t.Errorf("delta of b = %v, want %v", got, want)
	}
	for _, c := range r.changes {
		want := map[string]string{"b": "a", "b.txt": "a/b", "c": "a/b", "deep.txt": "a/b/c"}[c.Item.Name]
		if got := strings.Join(c.ParentPath, "/"); got != want {
			t.Errorf("parent path of %q = %q, want %q", c.Item.Name, got, want)
		}
	}
	// A file has no delta.
	f := d.file(t, d.root, "f", 1)
	_, err := s.Items.Delta(t.Context(), f.ID, ferry.DeltaQuery{})
	wantKind(t, "Delta of a file", err, ferry.Invalid)
	_, err = s.Items.Delta(t.Context(), "nosuchitem", ferry.DeltaQuery{})
	wantKind(t, "Delta of a missing folder", err, ferry.NotFound)
	_, err = s.Items.Delta(t.Context(), d.root, ferry.DeltaQuery{Limit: 1001})
	wantKind(t, "Delta with limit 1001", err, ferry.Invalid)
}

// testDeltaChanges makes every kind of change after a token and checks
// what the root's delta and a folder's delta report.
func testDeltaChanges(t *testing.T, s Stores) {
	ctx := t.Context()
	d := newTestDrive(t, s, "alice", bigQuota)
	scope := d.folder(t, d.root, "scope")
	outside := d.folder(t, d.root, "outside")
	modified := d.file(t, scope.ID, "modified.txt", 1)
	renamed := d.file(t, scope.ID, "renamed.txt", 1)
	retouched := d.file(t, scope.ID, "retouched.txt", 1)
	deleted := d.file(t, scope.ID, "deleted.txt", 1)
	tree := d.folder(t, scope.ID, "tree")
	d.file(t, tree.ID, "in-tree.txt", 1)
	movedOut := d.folder(t, scope.ID, "moved-out")
	d.file(t, movedOut.ID, "under-moved-out.txt", 1)
	movedIn := d.folder(t, outside.ID, "moved-in")
	d.file(t, movedIn.ID, "under-moved-in.txt", 1)
	sub := d.folder(t, scope.ID, "sub")
	movedWithin := d.file(t, scope.ID, "moved-within.txt", 1)
	untouched := d.file(t, scope.ID, "untouched.txt", 1)
	d.file(t, outside.ID, "outside-untouched.txt", 1)

	rootTok := delta(t, s.Items, d.root, "", 0).token
	scopeTok := delta(t, s.Items, scope.ID, "", 0).token
	latest := delta(t, s.Items, scope.ID, ferry.LatestToken, 0)
	if len(latest.changes) != 0 {
		t.Errorf("token=latest gave %v, want no items", latest.names())
	}

	d.file(t, scope.ID, "created.txt", 1)
	if _, err := s.Items.ReplaceContent(ctx, modified.ID, newContent(5), "", "alice"); err != nil {
		t.Fatal(err)
	}
	name := "renamed-now.txt"
	if _, err := s.Items.UpdateItem(ctx, renamed.ID, ferry.ItemUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := s.Items.UpdateItem(ctx, retouched.ID, ferry.ItemUpdate{FSModified: &when}); err != nil {
		t.Fatal(err)
	}
	if err := s.Items.DeleteItem(ctx, deleted.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Items.DeleteItem(ctx, tree.ID, ""); err != nil {
		t.Fatal(err)
	}
	for _, mv := range []struct {
		id ferry.ItemID
		to ferry.ItemID
	}{{movedOut.ID, outside.ID}, {movedIn.ID, scope.ID}, {movedWithin.ID, sub.ID}} {
		if _, err := s.Items.UpdateItem(ctx, mv.id, ferry.ItemUpdate{ParentID: &mv.to}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Items.CopyItem(ctx, untouched.ID, sub.ID, "copied.txt", ferry.ConflictFail, "alice"); err != nil {
		t.Fatal(err)
	}
	gone := d.file(t, scope.ID, "created-and-deleted.txt", 1)
	if err := s.Items.DeleteItem(ctx, gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	d.file(t, outside.ID, "created-outside.txt", 1)

	// The scope's delta: moved-out and the deletions once each, as
	// deleted; moved-in with everything below it; nothing from outside.
	for _, tt := range []struct {
		name  string
		token string
	}{{"token", scopeTok}, {"latest", latest.token}} {
		t.Run("scope/"+tt.name, func(t *testing.T) {
			r := delta(t, s.Items, scope.ID, tt.token, 2)
			wantParentsFirst(t, r)
			want := []string{"-deleted.txt", "-in-tree.txt", "-moved-out", "-tree", "copied.txt", "created.txt",
				"modified.txt", "moved-in", "moved-within.txt", "renamed-now.txt", "retouched.txt", "under-moved-in.txt"}
			if got := r.names(); !cmp.Equal(got, want) {
				t.Errorf("delta of scope = %v\nwant %v", got, want)
			}
			in := r.byID(t)
			if c := in[modified.ID]; c.Item == nil || c.Item.Size != 5 {
				t.Errorf("modified entry = %+v, want the new size 5", c.Item)
			}
			if c := in[retouched.ID]; c.Item == nil || !c.Item.FSModified.Equal(when) {
				t.Errorf("retouched entry = %+v, want fileSystemInfo modified %v", c.Item, when)
			}
			if c := in[movedWithin.ID]; c.Item == nil || c.Item.ParentID != sub.ID || strings.Join(c.ParentPath, "/") != "scope/sub" {
				t.Errorf("moved-within entry = %+v in %v, want it in scope/sub", c.Item, c.ParentPath)
			}
			if c := in[movedOut.ID]; !c.Deleted || c.Item.ParentID != scope.ID || !c.Item.Folder || strings.Join(c.ParentPath, "/") != "scope" {
				t.Errorf("moved-out entry = %+v in %v, want a deleted folder where it was, in scope", c.Item, c.ParentPath)
			}
			if c := in[deleted.ID]; !c.Deleted || c.Item.Folder || c.Item.ParentID != scope.ID {
				t.Errorf("deleted entry = %+v, want a deleted file in scope", c.Item)
			}
		})
	}

	// The root's delta sees the moves as changes, not deletions, and the
	// item created outside.
	r := delta(t, s.Items, d.root, rootTok, 3)
	wantParentsFirst(t, r)
	want := []string{"-deleted.txt", "-in-tree.txt", "-tree", "copied.txt", "created-outside.txt", "created.txt",
		"modified.txt", "moved-in", "moved-out", "moved-within.txt", "renamed-now.txt", "retouched.txt"}
	if got := r.names(); !cmp.Equal(got, want) {
		t.Errorf("delta of root = %v\nwant %v", got, want)
	}

	// With the token of the last page, nothing has changed.
	for _, tok := range []string{r.token} {
		if got := delta(t, s.Items, d.root, tok, 0); len(got.changes) != 0 {
			t.Errorf("delta after the last token = %v, want nothing", got.names())
		}
	}
}

// testDeltaTokens checks the tokens a delta refuses with Gone.
func testDeltaTokens(t *testing.T, s Stores) {
	ctx := t.Context()
	d := newTestDrive(t, s, "alice", bigQuota)
	a := d.folder(t, d.root, "a")
	tok := delta(t, s.Items, d.root, "", 0).token
	for _, tt := range []struct {
		name  string
		scope ferry.ItemID
		q     ferry.DeltaQuery
	}{
		{"garbage", d.root, ferry.DeltaQuery{Token: "not-a-token"}},
		{"other scope", a.ID, ferry.DeltaQuery{Token: tok}},
		{"expired", d.root, ferry.DeltaQuery{Token: tok, Oldest: time.Now().Add(time.Minute)}},
		{"garbage cursor", d.root, ferry.DeltaQuery{Cursor: "bm90LWEtY3Vyc29y"}},
	} {
		_, err := s.Items.Delta(ctx, tt.scope, tt.q)
		wantKind(t, "Delta with a token of "+tt.name, err, ferry.Gone)
	}
	// A token within the retention still works.
	if _, err := s.Items.Delta(ctx, d.root, ferry.DeltaQuery{Token: tok, Oldest: time.Now().Add(-time.Hour)}); err != nil {
		t.Errorf("Delta with a fresh token: %v", err)
	}
	// Another user's token names another drive's folder.
	other := newTestDrive(t, s, "bob", bigQuota)
	_, err := s.Items.Delta(ctx, other.root, ferry.DeltaQuery{Token: tok})
	wantKind(t, "Delta with another drive's token", err, ferry.Gone)
}

// testDeltaWhileChanging pages through deltas while other goroutines
// create, change, move and delete items, and checks that the client's
// picture, built only from the deltas, ends up equal to the drive: nothing
// missed, nothing reported twice in one round, parents always known.
// maxDeltaWriterChanges bounds each writer of testDeltaWhileChanging.
const maxDeltaWriterChanges = 60

func testDeltaWhileChanging(t *testing.T, s Stores) {
	ctx := t.Context()
	d := newTestDrive(t, s, "alice", bigQuota)
	var folders []ferry.ItemID
	for i := range 4 {
		f := d.folder(t, d.root, fmt.Sprint("f", i))
		folders = append(folders, f.ID)
		for j := range 5 {
			d.file(t, f.ID, fmt.Sprintf("f%d-%d", i, j), 1)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			// Bounded, with a pause between changes: on SQLite the
			// reader's snapshot transaction must get the write lock
			// between the writers', and an unbounded loop of writers
			// could starve it (under -race it once did for 40 minutes).
			for n := 0; n < maxDeltaWriterChanges; n++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				parent := folders[(w+n)%len(folders)]
				it, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.drive.ID, ParentID: parent,
					Name: fmt.Sprintf("w%d-%d", w, n), Content: newContent(1)}, ferry.ConflictFail)
				if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				switch n % 4 {
				case 1:
					to := folders[(w+n+1)%len(folders)]
					_, err = s.Items.UpdateItem(ctx, it.ID, ferry.ItemUpdate{ParentID: &to, Conflict: ferry.ConflictRename})
				case 2:
					err = s.Items.DeleteItem(ctx, it.ID, "")
				case 3:
					_, err = s.Items.ReplaceContent(ctx, it.ID, newContent(2), "", "")
				}
				if err != nil {
					t.Errorf("change: %v", err)
					return
				}
				if w == 0 && n%7 == 6 {
					// Move a whole folder under another and back.
					a, b := folders[n%len(folders)], folders[(n+1)%len(folders)]
					if _, err := s.Items.UpdateItem(ctx, a, ferry.ItemUpdate{ParentID: &b}); err != nil {
						t.Errorf("move folder: %v", err)
						return
					}
					root := d.root
					if _, err := s.Items.UpdateItem(ctx, a, ferry.ItemUpdate{ParentID: &root}); err != nil {
						t.Errorf("move folder back: %v", err)
						return
					}
				}
			}
		})
	}
	// The client: apply each round to its picture.
	picture := map[ferry.ItemID]*ferry.Item{}
	apply := func(r deltaRound) {
		for _, c := range r.changes {
			if c.Deleted {
				delete(picture, c.Item.ID)
				continue
			}
			if !c.Item.IsRoot() {
				if _, ok := picture[c.Item.ParentID]; !ok {
					t.Errorf("delta gave %q before its parent %s", c.Item.Name, c.Item.ParentID)
				}
			}
			picture[c.Item.ID] = c.Item
		}
	}
	r := delta(t, s.Items, d.root, "", 3)
	apply(r)
	tok := r.token
	for range 6 {
		r = delta(t, s.Items, d.root, tok, 3)
		apply(r)
		tok = r.token
	}
	close(stop)
	wg.Wait()
	apply(delta(t, s.Items, d.root, tok, 3))
	// Items below a deleted folder may linger in the picture; none of
	// the workers deletes folders, so the picture must be exact.
	want := snapshot(t, s.Items, d.root)
	for id, it := range want {
		got, ok := picture[id]
		switch {
		case !ok:
			t.Errorf("the deltas never reported %q", it.Name)
		case got.Version != it.Version || got.ParentID != it.ParentID || got.Name != it.Name:
			t.Errorf("the deltas left %q at version %d in %s, want version %d in %s", it.Name, got.Version, got.ParentID, it.Version, it.ParentID)
		}
	}
	for id, it := range picture {
		if _, ok := want[id]; !ok {
			t.Errorf("the deltas still show %q, which is gone", it.Name)
		}
	}
}

func testSearch(t *testing.T, s Stores) {
	d := newTestDrive(t, s, "alice", bigQuota)
	other := newTestDrive(t, s, "bob", bigQuota)
	other.file(t, other.root, "Report-bob.txt", 1)
	a := d.folder(t, d.root, "Reports")
	d.file(t, a.ID, "q1 REPORT.pdf", 1)
	d.file(t, a.ID, "notes.txt", 1)
	b := d.folder(t, a.ID, "old")
	d.file(t, b.ID, "report_2019.doc", 1)
	d.file(t, d.root, "50%report", 1)
	gone := d.file(t, d.root, "report-deleted", 1)
	if err := s.Items.DeleteItem(t.Context(), gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	search := func(scope ferry.ItemID, text string, limit int) []string {
		t.Helper()
		var out []string
		q := ferry.ListQuery{Limit: limit}
		for range 100 {
			items, next, err := s.Items.Search(t.Context(), scope, text, q)
			if err != nil {
				t.Fatalf("Search(%q): %v", text, err)
			}
			if limit > 0 && len(items) > limit {
				t.Fatalf("Search gave %d items for a limit of %d", len(items), limit)
			}
			for _, it := range items {
				out = append(out, it.Name)
			}
			if next == "" {
				return out
			}
			q.Cursor = next
		}
		t.Fatal("Search never reached its last page")
		return nil
	}
	for _, tt := range []struct {
		scope ferry.ItemID
		text  string
		limit int
		want  []string
	}{
		{d.root, "report", 0, []string{"50%report", "q1 REPORT.pdf", "report_2019.doc", "Reports"}},
		{d.root, "RePoRt", 1, []string{"50%report", "q1 REPORT.pdf", "report_2019.doc", "Reports"}},
		{d.root, "%", 0, []string{"50%report"}},
		{d.root, "_", 0, []string{"report_2019.doc"}},
		{d.root, "t_2", 0, []string{"report_2019.doc"}},
		{d.root, "zzz", 0, nil},
		{a.ID, "report", 2, []string{"q1 REPORT.pdf", "report_2019.doc"}},
		{b.ID, "o", 0, []string{"report_2019.doc"}},
	} {
		if got := search(tt.scope, tt.text, tt.limit); !cmp.Equal(got, tt.want) {
			t.Errorf("Search(%q, limit %d) = %q, want %q", tt.text, tt.limit, got, tt.want)
		}
	}
	_, _, err := s.Items.Search(t.Context(), d.root, "", ferry.ListQuery{})
	wantKind(t, "Search for nothing", err, ferry.Invalid)
	_, _, err = s.Items.Search(t.Context(), "nosuchitem", "x", ferry.ListQuery{})
	wantKind(t, "Search in a missing folder", err, ferry.NotFound)
}
