package graph

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// Sharing: links anyone may open (createLink) and grants to other users of
// the server (invite), both listed, changed and deleted through
// {item}/permissions, and only by the drive's owner. A link's URL is
// {base}/s/{token}: the random token is the capability, and GET on it needs
// no token (see link.go). A grant lets its user reach the item through
// /drives/{owner-drive}/items/{id} with a token of scope Files.Read.All or
// Files.ReadWrite.All (see guest in items.go), and lists it under
// /me/drive/sharedWithMe.

// permissionJSON is Graph's permission resource. A grant names its user in
// all four identity fields that clients read (grantedTo and
// grantedToIdentities for OneDrive Personal, their V2 forms for Business),
// with the invited address as the display name.
type permissionJSON struct {
	ID                    string           `json:"id"`
	Roles                 []string         `json:"roles"`
	Link                  *sharingLinkJSON `json:"link,omitempty"`
	ShareID               string           `json:"shareId,omitempty"`
	ExpirationDateTime    string           `json:"expirationDateTime,omitempty"`
	HasPassword           bool             `json:"hasPassword,omitempty"`
	GrantedTo             *identitySet     `json:"grantedTo,omitempty"`
	GrantedToIdentities   []identitySet    `json:"grantedToIdentities,omitempty"`
	GrantedToV2           *identitySet     `json:"grantedToV2,omitempty"`
	GrantedToIdentitiesV2 []identitySet    `json:"grantedToIdentitiesV2,omitempty"`
	Invitation            *invitationJSON  `json:"invitation,omitempty"`
}

type sharingLinkJSON struct {
	Type   string `json:"type"`
	Scope  string `json:"scope"`
	WebURL string `json:"webUrl"`
}

type invitationJSON struct {
	Email          string `json:"email"`
	SignInRequired bool   `json:"signInRequired"`
}

// linkPath is the path of a link's web URL.
func linkPath(token string) string { return "/s/" + token }

// shareIDPrefix marks a permission's shareId; /shares/{id} also takes the
// "u!" + base64url(web URL) form Graph documents.
const shareIDPrefix = "s!"

func (v *itemView) permission(r *http.Request, p *ferry.Permission) permissionJSON {
	out := permissionJSON{ID: p.ID, Roles: []string{string(p.Role)}}
	if !p.Expires.IsZero() {
		out.ExpirationDateTime = graphTime(p.Expires)
	}
	if p.Link != "" {
		out.Link = &sharingLinkJSON{Type: string(p.Link), Scope: "anonymous", WebURL: v.urls.abs(r, linkPath(p.Token))}
		out.ShareID = shareIDPrefix + p.Token
		out.HasPassword = p.Password != nil
		return out
	}
	who := identitySet{User: identity{ID: string(p.Grantee), DisplayName: p.GranteeEmail, Email: p.GranteeEmail}}
	out.GrantedTo, out.GrantedToV2 = &who, &who
	out.GrantedToIdentities, out.GrantedToIdentitiesV2 = []identitySet{who}, []identitySet{who}
	out.Invitation = &invitationJSON{Email: p.GranteeEmail, SignInRequired: true}
	return out
}

// ownedItem resolves the item of a permission request, which only the
// drive's owner may make: a guest gets 403 (they can see the item, so 404
// would be a lie).
func ownedItem(ctx context.Context, items ferry.ItemStore, t *target) (*ferry.Item, error) {
	it, err := resolve(ctx, items, t)
	if err != nil {
		return nil, err
	}
	if t.guest != nil {
		return nil, ferry.Errorf(ferry.Forbidden, "only the owner of the drive can share its items")
	}
	return it, nil
}

// noSharing answers 501 where the server runs without a share store.
func noSharing() error {
	return ferry.Errorf(ferry.NotSupported, "this server does not support sharing")
}

type createLinkRequest struct {
	Type               string `json:"type"`
	Scope              string `json:"scope"`
	ExpirationDateTime string `json:"expirationDateTime"`
	Password           string `json:"password"`
}

// handleCreateLink answers POST {item}/createLink: a new link (201), or the
// item's existing link of the same type, expiry and no password (200), as
// Graph returns an existing link. Only scope anonymous exists here (empty
// means anonymous); an expiry must lie in the future.
func handleCreateLink(log *slog.Logger, items ferry.ItemStore, shares ferry.ShareStore, view *itemView, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shares == nil {
			writeError(w, r, log, noSharing())
			return
		}
		req, err := decode[createLinkRequest](r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var typ ferry.LinkType
		switch req.Type {
		case "view", "edit":
			typ = ferry.LinkType(req.Type)
		case "":
			err = ferry.Errorf(ferry.Invalid, "type is required: view or edit")
		default:
			err = ferry.Errorf(ferry.Invalid, "link type %q is not supported (want view or edit)", req.Type)
		}
		if err == nil && req.Scope != "" && req.Scope != "anonymous" {
			err = ferry.Errorf(ferry.Invalid, "only anonymous links are supported, not scope %q", req.Scope)
		}
		var expires time.Time
		if err == nil && req.ExpirationDateTime != "" {
			if expires, err = time.Parse(time.RFC3339Nano, req.ExpirationDateTime); err != nil {
				err = ferry.Errorf(ferry.Invalid, "expirationDateTime must be an RFC 3339 date and time")
			} else if !expires.After(now()) {
				err = ferry.Errorf(ferry.Invalid, "expirationDateTime lies in the past")
			}
			expires = expires.UTC().Truncate(time.Millisecond)
		}
		if err == nil && len(req.Password) > 256 {
			err = ferry.Errorf(ferry.Invalid, "the password is longer than 256 bytes")
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		it, err := ownedItem(r.Context(), items, targetOf(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if req.Password == "" {
			existing, err := shares.Permissions(r.Context(), it.ID)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			for _, p := range existing {
				if p.Link == typ && p.Password == nil && p.Expires.Equal(expires) {
					encode(w, http.StatusOK, view.permission(r, p))
					return
				}
			}
		}
		p := &ferry.Permission{ItemID: it.ID, Role: typ.Role(), Link: typ, Token: newLinkToken(),
			Expires: expires, CreatedBy: principal(r).User.ID}
		if req.Password != "" {
			p.Password = hashLinkPassword(req.Password)
		}
		if err := shares.CreateLink(r.Context(), p); err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusCreated, view.permission(r, p))
	})
}

// newLinkToken returns 192 random bits, base64url: a link's capability.
func newLinkToken() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Link passwords are kept as a random salt followed by a PBKDF2-SHA256 key.
const (
	passwordSaltLen    = 16
	passwordKeyLen     = 32
	passwordIterations = 100_000
)

func hashLinkPassword(pw string) []byte {
	salt := make([]byte, passwordSaltLen)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, pw, salt, passwordIterations, passwordKeyLen)
	if err != nil {
		panic("graph: pbkdf2: " + err.Error()) // only for lengths out of range
	}
	return append(salt, key...)
}

func linkPasswordMatches(stored []byte, pw string) bool {
	if len(stored) != passwordSaltLen+passwordKeyLen {
		return false
	}
	key, err := pbkdf2.Key(sha256.New, pw, stored[:passwordSaltLen], passwordIterations, passwordKeyLen)
	return err == nil && subtle.ConstantTimeCompare(key, stored[passwordSaltLen:]) == 1
}

type inviteRequest struct {
	Recipients []struct {
		Email    string `json:"email"`
		ObjectID string `json:"objectId"`
		Alias    string `json:"alias"`
	} `json:"recipients"`
	Roles []string `json:"roles"`
}

// handleInvite answers POST {item}/invite: each recipient, a user of this
// server named by e-mail address (or by user id as objectId), gets the role
// on the item; inviting one who already has a grant there changes its role.
// The answer is 200 with the permissions. A recipient who is not a user of
// the server fails the whole request with 400 invalidRequest /
// sharingFailed before anything is granted, as OneDrive answers
// invitations it cannot deliver; inviting the owner changes nothing and
// answers the owner's permission. Several roles mean the strongest.
func handleInvite(log *slog.Logger, accounts ferry.AccountStore, items ferry.ItemStore, shares ferry.ShareStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shares == nil {
			writeError(w, r, log, noSharing())
			return
		}
		req, err := decode[inviteRequest](r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var role ferry.Role
		for _, s := range req.Roles {
			rr, err := ferry.ParseRole(s)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if role == "" || rr == ferry.RoleWrite {
				role = rr
			}
		}
		switch {
		case role == "":
			err = ferry.Errorf(ferry.Invalid, "roles must name read or write")
		case len(req.Recipients) == 0:
			err = ferry.Errorf(ferry.Invalid, "recipients must name at least one user")
		case len(req.Recipients) > 100:
			err = ferry.Errorf(ferry.Invalid, "at most 100 recipients at once")
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		t := targetOf(r)
		it, err := ownedItem(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		me := principal(r).User.ID
		type recipient struct {
			user  ferry.UserID
			email string
		}
		var to []recipient
		ownerToo := false
		for _, rc := range req.Recipients {
			addr := strings.TrimSpace(rc.Email)
			var u *ferry.User
			var err error
			switch {
			case addr != "":
				u, err = shares.UserByEmail(r.Context(), addr)
			case rc.ObjectID != "" && cleanText(rc.ObjectID):
				var d *ferry.Drive
				if d, err = accounts.DriveOf(r.Context(), ferry.UserID(rc.ObjectID)); err == nil {
					u, addr = &ferry.User{ID: d.Owner, Name: d.OwnerName}, d.OwnerName
				}
			default:
				err = ferry.Errorf(ferry.NotFound, "no address")
			}
			if ferry.KindOf(err) == ferry.NotFound {
				who := addr
				if who == "" {
					who = rc.ObjectID
				}
				writeError(w, r, log, (&ferry.Error{Kind: ferry.Invalid,
					Message: "the invitation to " + who + " cannot be delivered: no user of this server has that address"}).WithCode("sharingFailed"))
				return
			}
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if u.ID == me {
				ownerToo = true // the owner has every right already
				continue
			}
			to = append(to, recipient{u.ID, addr})
		}
		out := make([]permissionJSON, 0, len(to)+1)
		if ownerToo {
			out = append(out, ownerPermission(t.drive))
		}
		for _, rc := range to {
			p, err := shares.Grant(r.Context(), it.ID, rc.user, rc.email, role, me)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			out = append(out, view.permission(r, p))
		}
		encode(w, http.StatusOK, map[string]any{"value": out})
	})
}

// ownerPermissionID names the owner's permission, which every item lists
// first, as OneDrive for Business does (rclone's permission tests rely on
// it). It can be read but not changed or deleted.
const ownerPermissionID = "owner"

// ownerPermission is the drive owner's permission on every item.
func ownerPermission(d *ferry.Drive) permissionJSON {
	who := identitySet{User: identity{ID: string(d.Owner), DisplayName: d.OwnerName}}
	return permissionJSON{ID: ownerPermissionID, Roles: []string{"owner"}, GrantedTo: &who, GrantedToV2: &who}
}

// handleListPermissions answers GET {item}/permissions: the owner's
// permission, then the links and grants set on the item itself, oldest
// first (what a folder's permissions give its subtree is not repeated on
// each item).
func handleListPermissions(log *slog.Logger, items ferry.ItemStore, shares ferry.ShareStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shares == nil {
			writeError(w, r, log, noSharing())
			return
		}
		it, err := ownedItem(r.Context(), items, targetOf(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		ps, err := shares.Permissions(r.Context(), it.ID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		out := make([]permissionJSON, 0, len(ps)+1)
		out = append(out, ownerPermission(targetOf(r).drive))
		for _, p := range ps {
			out = append(out, view.permission(r, p))
		}
		encode(w, http.StatusOK, map[string]any{"value": out})
	})
}

// handlePermission answers GET, PATCH and DELETE {item}/permissions/{id}.
// PATCH changes roles only (a link's type follows its role: read is view,
// write is edit); DELETE answers 204 and the permission stops working at
// once.
func handlePermission(log *slog.Logger, items ferry.ItemStore, shares ferry.ShareStore, view *itemView) http.Handler {
	type patch struct {
		Roles []string `json:"roles"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shares == nil {
			writeError(w, r, log, noSharing())
			return
		}
		t := targetOf(r)
		var role ferry.Role
		if r.Method == http.MethodPatch {
			req, err := decode[patch](r)
			if err == nil && len(req.Roles) != 1 {
				err = ferry.Errorf(ferry.Invalid, "roles must name exactly one role: read or write")
			}
			if err == nil {
				role, err = ferry.ParseRole(req.Roles[0])
			}
			if err != nil {
				writeError(w, r, log, err)
				return
			}
		}
		it, err := ownedItem(r.Context(), items, t)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		id := t.ref.sub
		if id == ownerPermissionID {
			if r.Method != http.MethodGet {
				writeError(w, r, log, ferry.Errorf(ferry.Forbidden, "the owner's permission cannot be changed or removed"))
				return
			}
			encode(w, http.StatusOK, ownerPermission(t.drive))
			return
		}
		var p *ferry.Permission
		switch r.Method {
		case http.MethodDelete:
			if err := shares.DeletePermission(r.Context(), it.ID, id); err != nil {
				writeError(w, r, log, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodPatch:
			p, err = shares.SetRole(r.Context(), it.ID, id, role)
		default:
			var ps []*ferry.Permission
			if ps, err = shares.Permissions(r.Context(), it.ID); err == nil {
				err = ferry.Errorf(ferry.NotFound, "the item has no permission %q", id)
				for _, q := range ps {
					if q.ID == id {
						p, err = q, nil
					}
				}
			}
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, view.permission(r, p))
	})
}

// remoteItemJSON is the remoteItem facet of an item in sharedWithMe.
type remoteItemJSON struct {
	ID              string        `json:"id"`
	Name            string        `json:"name"`
	Size            int64         `json:"size"`
	File            *fileFacet    `json:"file,omitempty"`
	Folder          *folderFacet  `json:"folder,omitempty"`
	ParentReference itemReference `json:"parentReference"`
	Shared          sharedJSON    `json:"shared"`
	WebURL          string        `json:"webUrl,omitempty"`
}

type sharedJSON struct {
	Owner          identitySet `json:"owner"`
	SharedDateTime string      `json:"sharedDateTime"`
}

// handleSharedWithMe answers GET {drive}/sharedWithMe: the items other
// users granted the caller, newest grant first, each as a driveItem with a
// remoteItem facet naming the owner's drive, where the caller reaches it
// (with a Files.Read.All or Files.ReadWrite.All token). Only /me/drive and
// /drive have it.
func handleSharedWithMe(log *slog.Logger, accounts ferry.AccountStore, items ferry.ItemStore, shares ferry.ShareStore, view *itemView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shares == nil {
			writeError(w, r, log, noSharing())
			return
		}
		p := principal(r)
		grants, err := shares.SharedWith(r.Context(), p.User.ID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		out := make([]any, 0, len(grants))
		for _, g := range grants {
			it, err := items.Item(r.Context(), g.ItemID)
			if ferry.KindOf(err) == ferry.NotFound {
				continue // deleted meanwhile
			}
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			d, err := accounts.Drive(r.Context(), it.DriveID)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			di := view.render(r, d, it, nil)
			di.ParentReference = itemReference{DriveID: string(d.ID), DriveType: driveType}
			di.DownloadURL = ""
			out = append(out, struct {
				*driveItem
				RemoteItem remoteItemJSON `json:"remoteItem"`
			}{di, remoteItemJSON{
				ID: di.ID, Name: di.Name, Size: di.Size, File: di.File, Folder: di.Folder,
				ParentReference: itemReference{DriveID: string(d.ID), DriveType: driveType},
				Shared: sharedJSON{
					Owner:          identitySet{User: identity{ID: string(d.Owner), DisplayName: d.OwnerName}},
					SharedDateTime: graphTime(g.Created),
				},
			}})
		}
		encode(w, http.StatusOK, map[string]any{"value": out})
	})
}
