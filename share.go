package ferry

import (
	"context"
	"time"
)

// Role is what a permission lets its holder do with an item and, for a
// folder, everything below it.
type Role string

const (
	RoleRead  Role = "read"  // see and download
	RoleWrite Role = "write" // also create, change and delete
)

// ParseRole accepts the Graph role names read and write.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleRead, RoleWrite:
		return Role(s), nil
	}
	return "", Errorf(Invalid, "unknown role %q (want read or write)", s)
}

// LinkType is the kind of a sharing link, with Graph's names.
type LinkType string

const (
	LinkView LinkType = "view" // read-only
	LinkEdit LinkType = "edit" // read-write: its holder may upload into a shared folder
)

// Role is the role a link of type t grants.
func (t LinkType) Role() Role {
	if t == LinkEdit {
		return RoleWrite
	}
	return RoleRead
}

// A Permission gives access to an item and its subtree, either to anyone
// holding a link (Link set) or to one user of the server (Grantee set).
type Permission struct {
	ID      string
	DriveID DriveID
	ItemID  ItemID
	Role    Role

	// Link is set for a sharing link: its type and its capability, the
	// random token in its URL. The token is the link: whoever knows it has
	// the role, so it carries at least 128 random bits.
	Link     LinkType
	Token    string
	Password []byte    // a salted key derived from the link's password; nil for none
	Expires  time.Time // zero for never

	// Grantee is set for a grant to a user, found by the address Email.
	Grantee      UserID
	GranteeName  string
	GranteeEmail string

	CreatedBy UserID
	Created   time.Time
}

// Expired reports whether the permission no longer works at now.
func (p *Permission) Expired(now time.Time) bool {
	return !p.Expires.IsZero() && !now.Before(p.Expires)
}

// ShareStore keeps sharing links and grants. A permission belongs to one
// item and goes away with it. Implementations must be safe for concurrent
// use.
type ShareStore interface {
	// CreateLink stores a new link on p.ItemID (p.Link, p.Token, p.Role,
	// p.Password and p.Expires set by the caller) and assigns p.ID and
	// p.Created. NotFound if the item does not exist.
	CreateLink(ctx context.Context, p *Permission) error
	// LinkByToken returns the link with that token, or NotFound when no
	// such link exists, its item is gone or it expired at now.
	LinkByToken(ctx context.Context, token string, now time.Time) (*Permission, error)
	// Grant gives the user role on the item, or changes the role of the
	// grant the user already has there (keeping its ID). NotFound if the
	// item or the user does not exist.
	Grant(ctx context.Context, item ItemID, user UserID, email string, role Role, by UserID) (*Permission, error)
	// Permissions lists the links and grants set on the item itself
	// (not those inherited from its folders), oldest first (in a stable
	// order among those made in the same millisecond), including expired
	// links.
	Permissions(ctx context.Context, item ItemID) ([]*Permission, error)
	// SetRole changes the role of one permission of the item. NotFound
	// if the item has no permission with that ID.
	SetRole(ctx context.Context, item ItemID, id string, role Role) (*Permission, error)
	// DeletePermission removes one permission of the item; it stops
	// working at once. NotFound if the item has no permission with that ID.
	DeletePermission(ctx context.Context, item ItemID, id string) error
	// Access reports the strongest role that grants to user give on the
	// item, through the item itself or any folder above it. NotFound when
	// none does.
	Access(ctx context.Context, user UserID, item ItemID) (Role, error)
	// SharedWith lists the grants made to user, newest first.
	SharedWith(ctx context.Context, user UserID) ([]*Permission, error)
	// UserByEmail finds a user by e-mail address, ignoring case, or
	// NotFound.
	UserByEmail(ctx context.Context, email string) (*User, error)
}
