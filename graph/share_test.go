package graph_test

import (
	"bytes"
	"encoding/base64"
	"mime/multipart"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

// createLink posts createLink on the item at path and returns the
// permission and the status.
func (e *env) createLink(path string, body map[string]any) (map[string]any, int) {
	e.t.Helper()
	r := e.do("POST", "/v1.0/me/drive/root:"+escapePath(path)+":/createLink", body)
	if r.StatusCode != http.StatusCreated && r.StatusCode != http.StatusOK {
		e.t.Fatalf("createLink %s: %d %s", path, r.StatusCode, r.body)
	}
	return r.json(e.t), r.StatusCode
}

func webURL(t *testing.T, perm map[string]any) string {
	t.Helper()
	link, _ := perm["link"].(map[string]any)
	u, _ := link["webUrl"].(string)
	if !strings.HasPrefix(u, "http") || !strings.Contains(u, "/s/") {
		t.Fatalf("link.webUrl = %q in %v", u, perm)
	}
	return u
}

func TestShareLinkToFile(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "docs")
	e.put("/docs/a.txt", "hello, shared world")
	e.put("/docs/b.txt", "another")

	perm, status := e.createLink("/docs/a.txt", map[string]any{"type": "view", "scope": "anonymous"})
	if status != http.StatusCreated {
		t.Errorf("first createLink: status %d, want 201", status)
	}
	if roles, _ := perm["roles"].([]any); len(roles) != 1 || roles[0] != "read" {
		t.Errorf("roles = %v, want [read]", perm["roles"])
	}
	link := webURL(t, perm)
	again, status := e.createLink("/docs/a.txt", map[string]any{"type": "view"})
	if status != http.StatusOK || again["id"] != perm["id"] {
		t.Errorf("second createLink: %d %v, want 200 with the same permission %v", status, again["id"], perm["id"])
	}
	other, _ := e.createLink("/docs/b.txt", map[string]any{"type": "view"})
	if webURL(t, other) == link {
		t.Error("links to different files are the same")
	}

	// The bytes, with no token, whatever the Accept header; ranges too.
	for _, accept := range []string{"", "application/json", "text/html"} {
		r := e.do("GET", link, nil, noAuth(), header("Accept", accept)).must(t, http.StatusOK)
		if string(r.body) != "hello, shared world" {
			t.Errorf("Accept %q: body %q", accept, r.body)
		}
	}
	if r := e.do("GET", link, nil, noAuth(), header("Range", "bytes=7-12")).must(t, http.StatusPartialContent); string(r.body) != "shared" {
		t.Errorf("range: %q", r.body)
	}

	// The shares API, by shareId and by the encoded URL.
	enc := "u!" + base64.RawURLEncoding.EncodeToString([]byte(link))
	for _, id := range []string{perm["shareId"].(string), enc} {
		di := e.do("GET", "/v1.0/shares/"+id+"/driveItem", nil, noAuth()).must(t, http.StatusOK).json(t)
		if di["name"] != "a.txt" {
			t.Errorf("shares/%s/driveItem: name %v", id, di["name"])
		}
		if pr, _ := di["parentReference"].(map[string]any); pr["path"] != nil {
			t.Errorf("the driveItem shows the path above the shared item: %v", pr)
		}
		if r := e.do("GET", "/v1.0/shares/"+id+"/driveItem/content", nil, noAuth()).must(t, http.StatusOK); string(r.body) != "hello, shared world" {
			t.Errorf("shares content: %q", r.body)
		}
	}
	e.do("GET", "/v1.0/shares/u!bm90IGEgbGluaw/driveItem", nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")

	// Listed, then deleted: it stops working at once.
	list := e.do("GET", "/v1.0/me/drive/root:/docs/a.txt:/permissions", nil).must(t, http.StatusOK).json(t)
	if v, _ := list["value"].([]any); len(v) != 2 || v[0].(map[string]any)["id"] != "owner" || v[1].(map[string]any)["id"] != perm["id"] {
		t.Fatalf("permissions: %s, want the owner's, then the link", list)
	}
	e.do("DELETE", "/v1.0/me/drive/root:/docs/a.txt:/permissions/owner", nil).wantError(t, http.StatusForbidden, "accessDenied")
	if o := e.do("GET", "/v1.0/me/drive/root:/docs/a.txt:/permissions/owner", nil).must(t, http.StatusOK).json(t); o["roles"].([]any)[0] != "owner" {
		t.Errorf("owner permission %v", o)
	}
	e.do("GET", "/v1.0/me/drive/root:/docs/a.txt:/permissions/"+perm["id"].(string), nil).must(t, http.StatusOK)
	e.do("DELETE", "/v1.0/me/drive/root:/docs/a.txt:/permissions/"+perm["id"].(string), nil).must(t, http.StatusNoContent)
	e.do("GET", link, nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("DELETE", "/v1.0/me/drive/root:/docs/a.txt:/permissions/"+perm["id"].(string), nil).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("GET", webURL(t, other), nil, noAuth()).must(t, http.StatusOK)

	// Deleting the item takes its links with it.
	e.do("DELETE", "/v1.0/me/drive/root:/docs/b.txt", nil).must(t, http.StatusNoContent)
	e.do("GET", webURL(t, other), nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
}

func TestShareLinkToFolder(t *testing.T) {
	e := newEnv(t)
	e.mkdir("", "pub")
	e.mkdir("/pub", "sub")
	e.put("/pub/one.txt", "1")
	e.put("/pub/sub/two.txt", "22")
	e.put("/private.txt", "secret")

	view := webURL(t, first(e.createLink("/pub", map[string]any{"type": "view"})))
	html := e.do("GET", view, nil, noAuth(), header("Accept", "text/html")).must(t, http.StatusOK)
	if ct := html.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{"one.txt", "sub/"} {
		if !bytes.Contains(html.body, []byte(want)) {
			t.Errorf("the listing lacks %q:\n%s", want, html.body)
		}
	}
	if bytes.Contains(html.body, []byte("<form")) {
		t.Error("a view link's page offers an upload form")
	}
	js := e.do("GET", view, nil, noAuth(), header("Accept", "application/json")).must(t, http.StatusOK).json(t)
	if got := names(t, js); strings.Join(got, ",") != "one.txt,sub" {
		t.Errorf("JSON listing names %v", got)
	}
	if r := e.do("GET", view+"/sub/two.txt", nil, noAuth()).must(t, http.StatusOK); string(r.body) != "22" {
		t.Errorf("file below the folder: %q", r.body)
	}
	e.do("GET", view+"/sub/nothing.txt", nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("GET", view+"/../private.txt", nil, noAuth()).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("PUT", view+"/new.txt", "x", noAuth()).wantError(t, http.StatusForbidden, "accessDenied")

	// An edit link takes uploads, by PUT and by the page's form.
	edit := webURL(t, first(e.createLink("/pub", map[string]any{"type": "edit"})))
	up := e.do("PUT", edit+"/sub/new.txt", "fresh bytes", noAuth()).must(t, http.StatusCreated).json(t)
	if up["name"] != "new.txt" {
		t.Errorf("uploaded item %v", up)
	}
	if r := e.do("GET", "/v1.0/me/drive/root:/pub/sub/new.txt:/content", nil); r.StatusCode != http.StatusFound {
		t.Errorf("the owner does not see the upload: %d", r.StatusCode)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", `C:\Users\x\form.txt`)
	fw.Write([]byte("from a form"))
	mw.Close()
	page := e.do("POST", edit, form.Bytes(), noAuth(), header("Content-Type", mw.FormDataContentType()), header("Accept", "text/html")).must(t, http.StatusOK)
	if !bytes.Contains(page.body, []byte("Uploaded form.txt")) || !bytes.Contains(page.body, []byte("form.txt")) {
		t.Errorf("form upload page:\n%s", page.body)
	}
	if r := e.do("GET", edit+"/form.txt", nil, noAuth()).must(t, http.StatusOK); string(r.body) != "from a form" {
		t.Errorf("form upload stored %q", r.body)
	}
	e.do("PUT", edit, "x", noAuth()).wantError(t, http.StatusMethodNotAllowed, "notAllowed")
}

func first(m map[string]any, _ int) map[string]any { return m }

func TestShareLinkExpiryAndPassword(t *testing.T) {
	e := newEnv(t)
	e.put("/f.txt", "data")
	past := e.clock.now().Add(-time.Minute).UTC().Format(time.RFC3339)
	e.do("POST", "/v1.0/me/drive/root:/f.txt:/createLink", map[string]any{"type": "view", "expirationDateTime": past}).
		wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("POST", "/v1.0/me/drive/root:/f.txt:/createLink", map[string]any{"type": "embed"}).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("POST", "/v1.0/me/drive/root:/f.txt:/createLink", map[string]any{"type": "view", "scope": "organization"}).wantError(t, http.StatusBadRequest, "invalidRequest")
	e.do("POST", "/v1.0/me/drive/root:/f.txt:/createLink", map[string]any{"type": "view"}, bearer(e.ro)).wantError(t, http.StatusForbidden, "accessDenied")
	e.do("POST", "/v1.0/me/drive/root:/f.txt:/createLink", map[string]any{"type": "view"}, bearer(e.other)).wantError(t, http.StatusNotFound, "itemNotFound")

	soon := e.clock.now().Add(time.Hour).UTC().Format(time.RFC3339)
	perm, _ := e.createLink("/f.txt", map[string]any{"type": "view", "expirationDateTime": soon})
	if perm["expirationDateTime"] == nil {
		t.Errorf("no expirationDateTime in %v", perm)
	}
	link := webURL(t, perm)
	e.do("GET", link, nil, noAuth()).must(t, http.StatusOK)
	e.clock.advance(2 * time.Hour)
	e.do("GET", link, nil, noAuth()).wantError(t, http.StatusNotFound, "itemNotFound")

	locked, _ := e.createLink("/f.txt", map[string]any{"type": "view", "password": "open sesame"})
	if locked["hasPassword"] != true {
		t.Errorf("hasPassword missing: %v", locked)
	}
	link = webURL(t, locked)
	r := e.do("GET", link, nil, noAuth())
	r.wantError(t, http.StatusUnauthorized, "unauthenticated")
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
	}
	basic := func(pw string) reqOpt {
		return header("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("x:"+pw)))
	}
	e.do("GET", link, nil, basic("wrong")).wantError(t, http.StatusUnauthorized, "unauthenticated")
	if r := e.do("GET", link, nil, basic("open sesame")).must(t, http.StatusOK); string(r.body) != "data" {
		t.Errorf("body %q", r.body)
	}
	for _, bad := range []string{"/s/", "/s/nonexistent-token", "/s/%00"} {
		if r := e.do("GET", bad, nil, noAuth()); r.StatusCode != http.StatusNotFound && r.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d", bad, r.StatusCode)
		}
	}
}

func TestShareGrants(t *testing.T) {
	e := newEnv(t)
	team := e.mkdir("", "team")["id"].(string)
	e.put("/team/a.txt", "team notes")
	secret := e.put("/secret.txt", "mine")["id"].(string)
	guestID := string(e.odrive.Owner)
	drive := "/v1.0/drives/" + string(e.drive.ID)

	invite := func(recipient map[string]any, role string) *resp {
		return e.do("POST", "/v1.0/me/drive/items/"+team+"/invite", map[string]any{
			"recipients": []any{recipient}, "roles": []string{role}, "requireSignIn": true, "sendInvitation": false})
	}
	invite(map[string]any{"email": "nobody@example.org"}, "read").wantError(t, http.StatusBadRequest, "invalidRequest")
	if r := invite(map[string]any{"email": "nobody@example.org"}, "read"); !bytes.Contains(r.body, []byte("sharingFailed")) {
		t.Errorf("unknown address: %s, want sharingFailed", r.body)
	}
	if self := invite(map[string]any{"objectId": string(e.me.ID)}, "read").must(t, http.StatusOK).json(t)["value"].([]any); len(self) != 1 || self[0].(map[string]any)["id"] != "owner" {
		t.Errorf("inviting the owner answered %v, want only the owner's permission", self)
	}
	invite(map[string]any{"objectId": guestID}, "owner").wantError(t, http.StatusBadRequest, "invalidRequest")

	// Before the grant the guest sees nothing of the drive.
	e.do("GET", drive+"/items/"+team+"/children", nil, bearer(e.other)).wantError(t, http.StatusNotFound, "itemNotFound")

	res := invite(map[string]any{"objectId": guestID}, "read").must(t, http.StatusOK).json(t)
	perms, _ := res["value"].([]any)
	if len(perms) != 1 {
		t.Fatalf("invite answered %v", res)
	}
	perm := perms[0].(map[string]any)
	permID := perm["id"].(string)
	for _, field := range []string{"grantedTo", "grantedToV2"} {
		who, _ := perm[field].(map[string]any)["user"].(map[string]any)
		if who["id"] != guestID {
			t.Errorf("%s.user = %v, want id %s", field, who, guestID)
		}
	}

	// Read access: the shared folder and what is below it, nothing else.
	kids := e.do("GET", drive+"/items/"+team+"/children", nil, bearer(e.other)).must(t, http.StatusOK).json(t)
	if got := names(t, kids); len(got) != 1 || got[0] != "a.txt" {
		t.Errorf("guest listing: %v", got)
	}
	e.do("GET", drive+"/root:/team/a.txt:/content", nil, bearer(e.other)).must(t, http.StatusFound)
	e.do("GET", drive+"/items/"+secret, nil, bearer(e.other)).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("GET", drive+"/root", nil, bearer(e.other)).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("GET", drive+"/root:/secret.txt", nil, bearer(e.other)).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("GET", drive, nil, bearer(e.other)).wantError(t, http.StatusNotFound, "itemNotFound")
	e.do("PUT", drive+"/items/"+team+":/new.txt:/content", "x", bearer(e.other)).wantError(t, http.StatusForbidden, "accessDenied")
	e.do("GET", drive+"/items/"+team+"/permissions", nil, bearer(e.other)).wantError(t, http.StatusForbidden, "accessDenied")
	e.do("POST", drive+"/items/"+team+"/createLink", map[string]any{"type": "view"}, bearer(e.other)).wantError(t, http.StatusForbidden, "accessDenied")

	// A token without an .All scope does not reach shared items.
	plain, err := e.store.CreateToken(t.Context(), e.odrive.Owner, ferry.Scopes{ferry.ScopeReadWrite})
	if err != nil {
		t.Fatal(err)
	}
	e.do("GET", drive+"/items/"+team, nil, bearer(plain)).wantError(t, http.StatusNotFound, "itemNotFound")

	shared := e.do("GET", "/v1.0/me/drive/sharedWithMe", nil, bearer(e.other)).must(t, http.StatusOK).json(t)
	list, _ := shared["value"].([]any)
	if len(list) != 1 {
		t.Fatalf("sharedWithMe: %v", shared)
	}
	remote, _ := list[0].(map[string]any)["remoteItem"].(map[string]any)
	if remote["id"] != team || remote["parentReference"].(map[string]any)["driveId"] != string(e.drive.ID) {
		t.Errorf("remoteItem = %v", remote)
	}

	// Write access after the owner changes the role.
	up := e.do("PATCH", "/v1.0/me/drive/items/"+team+"/permissions/"+permID, map[string]any{"roles": []string{"write"}}).must(t, http.StatusOK).json(t)
	if roles, _ := up["roles"].([]any); len(roles) != 1 || roles[0] != "write" || up["id"] != permID {
		t.Errorf("PATCH answered %v", up)
	}
	e.do("PUT", drive+"/items/"+team+":/new.txt:/content", "from the guest", bearer(e.other)).must(t, http.StatusCreated)
	e.do("GET", "/v1.0/me/drive/root:/team/new.txt", nil).must(t, http.StatusOK)
	e.do("PATCH", drive+"/items/"+team+"/permissions/"+permID, map[string]any{"roles": []string{"write"}}, bearer(e.other)).wantError(t, http.StatusForbidden, "accessDenied")

	// Revoked: gone at once.
	e.do("DELETE", "/v1.0/me/drive/items/"+team+"/permissions/"+permID, nil).must(t, http.StatusNoContent)
	e.do("GET", drive+"/items/"+team+"/children", nil, bearer(e.other)).wantError(t, http.StatusNotFound, "itemNotFound")
	if v := e.do("GET", "/v1.0/me/drive/sharedWithMe", nil, bearer(e.other)).must(t, http.StatusOK).json(t)["value"].([]any); len(v) != 0 {
		t.Errorf("sharedWithMe after the revoke: %v", v)
	}
}

// TestShareInviteByEmail follows what rclone's permission tests do: invite
// ryan@contoso.com with read, read the permissions, change the role to
// write, read them again (the same, but for the role), then delete it.
func TestShareInviteByEmail(t *testing.T) {
	e := newEnv(t)
	ryan, err := e.store.CreateUser(t.Context(), "ryan", "ryan@contoso.com", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	file := e.put("/report.txt", "numbers")["id"].(string)
	base := "/v1.0/drives/" + string(e.drive.ID) + "/items/" + file
	res := e.do("POST", base+"/invite", map[string]any{
		"recipients": []any{map[string]any{"email": "Ryan@Contoso.com"}}, "roles": []string{"read"}, "requireSignIn": true,
	}).must(t, http.StatusOK).json(t)
	perm := res["value"].([]any)[0].(map[string]any)
	for _, field := range []string{"grantedToIdentities", "grantedToIdentitiesV2"} {
		ids, _ := perm[field].([]any)
		if len(ids) != 1 || ids[0].(map[string]any)["user"].(map[string]any)["displayName"] != "Ryan@Contoso.com" {
			t.Errorf("%s = %v, want one user shown as the invited address", field, perm[field])
		}
	}
	if perm["grantedTo"].(map[string]any)["user"].(map[string]any)["id"] != string(ryan.ID) {
		t.Errorf("grantedTo = %v, want the user id %s", perm["grantedTo"], ryan.ID)
	}
	before := e.do("GET", base+"/permissions", nil).must(t, http.StatusOK).json(t)["value"].([]any)
	e.do("PATCH", base+"/permissions/"+perm["id"].(string), map[string]any{"roles": []string{"write"}}).must(t, http.StatusOK)
	after := e.do("GET", base+"/permissions", nil).must(t, http.StatusOK).json(t)["value"].([]any)
	if len(before) != 2 || len(after) != 2 {
		t.Fatalf("permissions before %v, after %v; want the owner's and ryan's", before, after)
	}
	before[1].(map[string]any)["roles"] = []any{"write"}
	if b, a := normalize(before), normalize(after); !reflect.DeepEqual(b, a) {
		t.Errorf("after the role change the permission differs by more than its role:\n%v\n%v", b, a)
	}
	e.do("DELETE", base+"/permissions/"+perm["id"].(string), nil).must(t, http.StatusNoContent)
	if v := e.do("GET", base+"/permissions", nil).must(t, http.StatusOK).json(t)["value"].([]any); len(v) != 1 {
		t.Errorf("permissions after delete: %v, want only the owner's", v)
	}
}
