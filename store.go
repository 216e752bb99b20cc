package ferry

import (
	"context"
)

// Content is the bytes of a file as the metadata store sees them: a
// published blob and what was learnt while it streamed in.
type Content struct {
	Size     int64
	MimeType string
	Hashes   Hashes
	BlobKey  string // a published blob; the store takes one reference to it
}

// ListQuery selects one page of a folder's children.
type ListQuery struct {
	OrderBy string // "name" (default), "size" or "lastModifiedDateTime"
	Desc    bool
	Limit   int    // 1..1000; 0 means 200
	Cursor  string // opaque; from the previous page's next cursor
}

// ItemStore stores the item trees of all drives. Implementations must be
// safe for concurrent use, keep names unique within a parent ignoring case
// (NameKey), and apply every change atomically: a crash never leaves a
// half-made item.
//
// A folder's Size is the total size of the files in its subtree, as
// OneDrive reports it, in every item a method returns; the root's Size
// equals the drive's Used. Every change to file bytes updates the sizes of
// all folders above it in the same transaction.
//
// The conflict behaviour replace (CreateItem, UpdateItem, CopyItem) only
// replaces an item of the same kind. When the taken name belongs to an
// item of the other kind (a file where a folder would go, or a folder
// where a file would go), replace fails with NameConflict and nothing
// changes: one name clash must never delete a folder's tree.
type ItemStore interface {
	// Item returns the item with the given ID, or an error of kind
	// NotFound.
	Item(ctx context.Context, id ItemID) (*Item, error)
	// ItemByPath resolves names, one per path segment, below the folder
	// base, comparing names without case. It fails with NotFound when a
	// segment is missing or a file has children asked of it.
	ItemByPath(ctx context.Context, base ItemID, names []string) (*Item, error)
	// Path returns the names from the drive's root down to id; nil for the
	// root itself. NotFound if id does not exist.
	Path(ctx context.Context, id ItemID) ([]string, error)
	// Children returns one page of a folder's children and the cursor of
	// the next page ("" when this is the last). Pages stay consistent while
	// the folder changes: an item present during the whole listing appears
	// exactly once. NotFound if parent does not exist; Invalid for a bad
	// cursor or order.
	Children(ctx context.Context, parent ItemID, q ListQuery) ([]*Item, string, error)

	// CreateItem creates a folder (n.Folder) or a file (n.Content.BlobKey
	// set) under n.ParentID. When the name is taken, c decides: fail gives
	// NameConflict; rename picks "name 1", "name 2", … (RenameCandidate);
	// replace works only on an item of the same kind. A file replacing a
	// file keeps the existing item's ID (its content and version change);
	// a folder replacing a folder deletes the existing folder with its
	// whole subtree and creates a new, empty folder with a new ID. When the
	// existing item is of the other kind, replace fails with NameConflict
	// and nothing changes. replaced reports whether an item was replaced.
	// NotFound if the parent is missing, Invalid if it is a file or the
	// name is invalid, QuotaExceeded if the drive would go over its quota.
	CreateItem(ctx context.Context, n NewItem, c ConflictBehavior) (it *Item, replaced bool, err error)
	// ReplaceContent gives the file id new bytes. ifMatch, unless "" or
	// "*", must equal the item's current eTag or cTag (else Modified).
	// Invalid if id is a folder; QuotaExceeded as for CreateItem.
	ReplaceContent(ctx context.Context, id ItemID, c Content, ifMatch, by string) (*Item, error)
	// UpdateItem renames, moves or retouches an item. Moving a folder into
	// itself or a descendant, or moving the root, is Invalid; a taken name
	// is NameConflict unless u.Conflict says otherwise: rename picks a free
	// name; replace deletes the item holding the name if it is of the same
	// kind (a folder with its whole subtree), and the updated item keeps
	// its own ID. Replace is NameConflict, changing nothing, when the item
	// holding the name is of the other kind, and Invalid when it holds the
	// updated item. A stale u.IfMatch is Modified.
	UpdateItem(ctx context.Context, id ItemID, u ItemUpdate) (*Item, error)
	// DeleteItem deletes an item and, for a folder, everything below it.
	// Deleting the root is Forbidden; a stale ifMatch is Modified. Every
	// read, the drive's usage and the folders' sizes show the deletion
	// when it returns; a store may release the blob references of a large
	// folder's items later (see UnreferencedBlobs), and so may a replace
	// that deletes one.
	DeleteItem(ctx context.Context, id ItemID, ifMatch string) error
	// CopyItem copies the item id, and for a folder its whole subtree, into
	// the folder parent under name ("" keeps the source's name), applying
	// c to the top item's name if it is taken: fail gives NameConflict,
	// rename picks a free name, and replace deletes the existing item if
	// it is of the same kind (a folder with its whole subtree) before the
	// copy, with new IDs, takes its place. Replace is NameConflict, changing
	// nothing, when the existing item is of the other kind, and Invalid
	// when it holds the source. Copied files share the source's blobs. The
	// copy counts against the destination drive's quota (QuotaExceeded).
	// However large, the copy appears at once, complete: until then no
	// listing, path, search or delta shows any of it, and the conflict
	// behaviour applies to the name as it is then.
	CopyItem(ctx context.Context, id, parent ItemID, name string, c ConflictBehavior, by string) (*Item, error)

	// Delta returns one page of what changed in the subtree of the folder
	// scope, scope included (see DeltaQuery): without a token, every item,
	// parents before children; with one, each item changed since, once, as
	// it is now, and each item that was in the subtree then and is gone
	// (deleted, or moved out) once as Deleted, before the others. A folder
	// moved in brings its whole subtree. The pages of one listing are one
	// consistent picture, however the drive changes meanwhile; the last
	// page's token continues from that picture. Every change is recorded in
	// the transaction that makes it. Gone for a token or cursor that is
	// malformed, of another scope, expired (q.Oldest) or pruned; NotFound
	// if scope is missing; Invalid if it is a file or Limit is out of range.
	Delta(ctx context.Context, scope ItemID, q DeltaQuery) (*DeltaPage, error)
	// Search returns one page of the items below the folder scope (scope
	// itself excluded) whose names contain text, ignoring case, ordered by
	// name, and the cursor of the next page ("" on the last). q.OrderBy
	// must be empty or "name". NotFound if scope is missing; Invalid for an
	// empty text or a bad cursor.
	Search(ctx context.Context, scope ItemID, text string, q ListQuery) ([]*Item, string, error)

	// UnreferencedBlobs returns up to limit blob keys that no item uses any
	// more; the caller deletes their bytes, then calls ForgetBlob.
	UnreferencedBlobs(ctx context.Context, limit int) ([]string, error)
	// ForgetBlob drops the record of an unreferenced blob.
	ForgetBlob(ctx context.Context, key string) error
	// BlobKnown reports whether the store records the blob key at all, so
	// that a sweep can delete blob files left by a crash.
	BlobKnown(ctx context.Context, key string) (bool, error)
}

// AccountStore keeps users, their drives and their tokens.
type AccountStore interface {
	// Authenticate returns the principal a bearer token stands for, or an
	// error of kind Unauthenticated — the same for an unknown, revoked or
	// expired token. Only a hash of each token is stored, and no answer is
	// cached: a revoked token fails at once. It records when the token was
	// last used, at most once a minute per token.
	Authenticate(ctx context.Context, token string) (*Principal, error)
	// EnsureUser returns the user called name, creating it and its drive
	// (with the given quota and an empty root folder) if needed; created
	// reports which.
	EnsureUser(ctx context.Context, name string, quota int64) (u *User, created bool, err error)
	// CreateToken issues a new random bearer token for the user; it is
	// IssueToken with scopes only.
	CreateToken(ctx context.Context, user UserID, scopes Scopes) (string, error)
	// IssueToken issues a new random bearer token for the user and returns
	// it (the only time the secret is seen) with its record. NotFound if
	// the user does not exist; Invalid for bad scopes or label.
	IssueToken(ctx context.Context, user UserID, opts TokenOptions) (secret string, t *Token, err error)
	// Tokens lists the tokens of a user, or of every user when user is
	// "", oldest first, expired ones included. Revoked tokens are gone.
	Tokens(ctx context.Context, user UserID) ([]*Token, error)
	// RevokeToken deletes a token by its ID, or returns NotFound. From
	// then on Authenticate refuses it, in every process on the database.
	RevokeToken(ctx context.Context, id string) error
	// CreateUser creates a user, its drive and the drive's root; email may
	// be "". NameConflict if the name, or the email ignoring case, is
	// taken.
	CreateUser(ctx context.Context, name, email string, quota int64) (*User, error)
	// UserByName returns a user, or NotFound.
	UserByName(ctx context.Context, name string) (*User, error)
	// Users lists every user, by name.
	Users(ctx context.Context) ([]*User, error)
	// SetQuota changes the quota of the user's drive (NotFound without
	// one). A quota below what is used refuses new bytes but deletes none.
	SetQuota(ctx context.Context, user UserID, quota int64) error
	// UserCount reports how many users exist.
	UserCount(ctx context.Context) (int, error)
	// Drive returns a drive with Used computed, or NotFound.
	Drive(ctx context.Context, id DriveID) (*Drive, error)
	// DriveOf returns the user's drive, or NotFound.
	DriveOf(ctx context.Context, user UserID) (*Drive, error)
}
