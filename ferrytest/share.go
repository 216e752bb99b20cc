package ferrytest

import (
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// ShareStores is what the share suite needs: the share store and the item
// and account stores of the same data.
type ShareStores struct {
	Items    ferry.ItemStore
	Accounts ferry.AccountStore
	Shares   ferry.ShareStore
}

// TestShareStore checks that a ferry.ShareStore keeps its contract.
// newStores must return empty stores each time it is called.
func TestShareStore(t *testing.T, newStores func(t *testing.T) ShareStores) {
	for _, tt := range []struct {
		name string
		fn   func(*testing.T, ShareStores)
	}{
		{"Links", testLinks},
		{"LinkGoesWithItem", testLinkGoesWithItem},
		{"Grants", testGrants},
		{"PermissionErrors", testPermissionErrors},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStores(t)) })
	}
}

// shareTree makes user "owner" with /shared/sub and /private, and user
// "guest"; it returns the owner, the guest and the three folders.
func shareTree(t *testing.T, s ShareStores) (owner, guest *ferry.User, shared, sub, private *ferry.Item) {
	t.Helper()
	ctx := t.Context()
	owner, _, err := s.Accounts.EnsureUser(ctx, "owner", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	guest, _, err = s.Accounts.EnsureUser(ctx, "guest", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Accounts.DriveOf(ctx, owner.ID)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(parent ferry.ItemID, name string) *ferry.Item {
		it, _, err := s.Items.CreateItem(ctx, ferry.NewItem{DriveID: d.ID, ParentID: parent, Name: name, Folder: true}, ferry.ConflictFail)
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	shared = mk(d.RootID, "shared")
	sub = mk(shared.ID, "sub")
	private = mk(d.RootID, "private")
	return owner, guest, shared, sub, private
}

func testLinks(t *testing.T, s ShareStores) {
	ctx := t.Context()
	owner, _, shared, _, _ := shareTree(t, s)
	now := time.Now()
	view := &ferry.Permission{ItemID: shared.ID, Role: ferry.RoleRead, Link: ferry.LinkView, Token: ferry.NewID("tok", 24), CreatedBy: owner.ID}
	if err := s.Shares.CreateLink(ctx, view); err != nil {
		t.Fatal(err)
	}
	if view.ID == "" || view.Created.IsZero() || view.DriveID != shared.DriveID {
		t.Errorf("CreateLink left ID %q, Created %v, DriveID %q", view.ID, view.Created, view.DriveID)
	}
	edit := &ferry.Permission{ItemID: shared.ID, Role: ferry.RoleWrite, Link: ferry.LinkEdit, Token: ferry.NewID("tok", 24),
		Password: []byte("salted key"), Expires: now.Add(time.Hour).UTC().Truncate(time.Millisecond), CreatedBy: owner.ID}
	if err := s.Shares.CreateLink(ctx, edit); err != nil {
		t.Fatal(err)
	}
	got, err := s.Shares.LinkByToken(ctx, edit.Token, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != edit.ID || got.Role != ferry.RoleWrite || got.Link != ferry.LinkEdit || string(got.Password) != "salted key" ||
		!got.Expires.Equal(edit.Expires) || got.ItemID != shared.ID || got.Grantee != "" {
		t.Errorf("LinkByToken = %+v, want %+v", got, edit)
	}
	if _, err := s.Shares.LinkByToken(ctx, edit.Token, now.Add(2*time.Hour)); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("expired link: err %v, want NotFound", err)
	}
	if _, err := s.Shares.LinkByToken(ctx, "no such token", now); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("unknown token: err %v, want NotFound", err)
	}
	if _, err := s.Shares.LinkByToken(ctx, "bad\x00token", now); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("token with NUL: err %v, want NotFound", err)
	}
	ps, err := s.Shares.Permissions(ctx, shared.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || !(ps[0].ID == view.ID && ps[1].ID == edit.ID || ps[0].ID == edit.ID && ps[1].ID == view.ID) {
		t.Errorf("Permissions = %v, want the view link and the edit link", ps)
	}
	if again, err := s.Shares.Permissions(ctx, shared.ID); err != nil || len(again) != 2 || again[0].ID != ps[0].ID {
		t.Errorf("Permissions changed order between two calls: %v, then %v (%v)", ps, again, err)
	}
	if p, err := s.Shares.SetRole(ctx, shared.ID, view.ID, ferry.RoleWrite); err != nil || p.Role != ferry.RoleWrite {
		t.Errorf("SetRole: %+v, %v", p, err)
	}
	if err := s.Shares.DeletePermission(ctx, shared.ID, view.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Shares.LinkByToken(ctx, view.Token, now); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("deleted link: err %v, want NotFound", err)
	}
	if err := s.Shares.DeletePermission(ctx, shared.ID, view.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("second delete: err %v, want NotFound", err)
	}
}

func testLinkGoesWithItem(t *testing.T, s ShareStores) {
	ctx := t.Context()
	owner, guest, shared, sub, _ := shareTree(t, s)
	link := &ferry.Permission{ItemID: sub.ID, Role: ferry.RoleRead, Link: ferry.LinkView, Token: ferry.NewID("tok", 24), CreatedBy: owner.ID}
	if err := s.Shares.CreateLink(ctx, link); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Shares.Grant(ctx, sub.ID, guest.ID, "guest@example.org", ferry.RoleRead, owner.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Items.DeleteItem(ctx, shared.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Shares.LinkByToken(ctx, link.Token, time.Now()); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("link of a deleted item: err %v, want NotFound", err)
	}
	if grants, err := s.Shares.SharedWith(ctx, guest.ID); err != nil || len(grants) != 0 {
		t.Errorf("SharedWith after the delete: %v, %v; want none", grants, err)
	}
}

func testGrants(t *testing.T, s ShareStores) {
	ctx := t.Context()
	owner, guest, shared, sub, private := shareTree(t, s)
	for _, id := range []ferry.ItemID{shared.ID, sub.ID, private.ID} {
		if _, err := s.Shares.Access(ctx, guest.ID, id); ferry.KindOf(err) != ferry.NotFound {
			t.Errorf("Access before any grant: err %v, want NotFound", err)
		}
	}
	g, err := s.Shares.Grant(ctx, shared.ID, guest.ID, "Guest@Example.org", ferry.RoleRead, owner.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID == "" || g.Grantee != guest.ID || g.GranteeName != "guest" || g.GranteeEmail != "Guest@Example.org" || g.Role != ferry.RoleRead || g.Link != "" {
		t.Errorf("Grant = %+v", g)
	}
	for _, tt := range []struct {
		item ferry.ItemID
		want ferry.Role
	}{{shared.ID, ferry.RoleRead}, {sub.ID, ferry.RoleRead}} {
		if got, err := s.Shares.Access(ctx, guest.ID, tt.item); err != nil || got != tt.want {
			t.Errorf("Access(%s) = %q, %v; want %q", tt.item, got, err, tt.want)
		}
	}
	if _, err := s.Shares.Access(ctx, guest.ID, private.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Access to an item not shared: err %v, want NotFound", err)
	}
	if _, err := s.Shares.Access(ctx, owner.ID, shared.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Access of a user without a grant: err %v, want NotFound", err)
	}

	// A stronger grant lower down wins there; granting again changes the role.
	if _, err := s.Shares.Grant(ctx, sub.ID, guest.ID, "guest@example.org", ferry.RoleWrite, owner.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Shares.Access(ctx, guest.ID, sub.ID); got != ferry.RoleWrite {
		t.Errorf("Access(sub) = %q, want write", got)
	}
	if got, _ := s.Shares.Access(ctx, guest.ID, shared.ID); got != ferry.RoleRead {
		t.Errorf("Access(shared) = %q, want read", got)
	}
	again, err := s.Shares.Grant(ctx, shared.ID, guest.ID, "guest@example.org", ferry.RoleWrite, owner.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != g.ID || again.Role != ferry.RoleWrite {
		t.Errorf("second Grant = %+v, want ID %s with role write", again, g.ID)
	}
	list, err := s.Shares.SharedWith(ctx, guest.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("SharedWith = %v, %v; want two grants", list, err)
	}
	if err := s.Shares.DeletePermission(ctx, shared.ID, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Shares.Access(ctx, guest.ID, shared.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Access after the grant was deleted: err %v, want NotFound", err)
	}
	if got, _ := s.Shares.Access(ctx, guest.ID, sub.ID); got != ferry.RoleWrite {
		t.Errorf("Access(sub) after deleting the other grant = %q, want write", got)
	}
}

func testPermissionErrors(t *testing.T, s ShareStores) {
	ctx := t.Context()
	owner, guest, shared, _, private := shareTree(t, s)
	if _, err := s.Shares.Grant(ctx, "no-such-item", guest.ID, "", ferry.RoleRead, owner.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Grant on a missing item: err %v, want NotFound", err)
	}
	if _, err := s.Shares.Grant(ctx, shared.ID, "no-such-user", "", ferry.RoleRead, owner.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Grant to a missing user: err %v, want NotFound", err)
	}
	err := s.Shares.CreateLink(ctx, &ferry.Permission{ItemID: "no-such-item", Role: ferry.RoleRead, Link: ferry.LinkView, Token: ferry.NewID("tok", 24)})
	if ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("CreateLink on a missing item: err %v, want NotFound", err)
	}
	g, err := s.Shares.Grant(ctx, shared.ID, guest.ID, "", ferry.RoleRead, owner.ID)
	if err != nil {
		t.Fatal(err)
	}
	// A permission is addressed through its own item only.
	if _, err := s.Shares.SetRole(ctx, private.ID, g.ID, ferry.RoleWrite); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("SetRole through another item: err %v, want NotFound", err)
	}
	if err := s.Shares.DeletePermission(ctx, private.ID, g.ID); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("DeletePermission through another item: err %v, want NotFound", err)
	}
	if _, err := s.Shares.UserByEmail(ctx, "nobody@example.org"); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("UserByEmail of an unknown address: err %v, want NotFound", err)
	}
	ryan, err := s.Accounts.CreateUser(ctx, "ryan", "ryan@contoso.com", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.Shares.UserByEmail(ctx, "Ryan@Contoso.com"); err != nil || u.ID != ryan.ID || u.Email != "ryan@contoso.com" {
		t.Errorf("UserByEmail ignoring case = %+v, %v; want %s", u, err, ryan.ID)
	}
	if _, err := s.Shares.Access(ctx, guest.ID, "bad\x00id"); ferry.KindOf(err) != ferry.NotFound {
		t.Errorf("Access with a NUL id: err %v, want NotFound", err)
	}
}
