package ferry

import "time"

// LatestToken is the delta token that asks only for the current position:
// no items, and a token for the changes from now on.
const LatestToken = "latest"

// DeltaQuery asks for one page of what changed in the subtree of a folder
// (the scope, itself included): everything there is, when Token and Cursor
// are empty; the changes after a token otherwise.
type DeltaQuery struct {
	Token  string // from the last page of an earlier call; "" enumerates everything; LatestToken skips to now
	Cursor string // from the previous page's Next; when set, Token is ignored
	Limit  int    // items per page, 1..1000; 0 means 200
	// Oldest is when the oldest token still accepted was issued; older
	// tokens are Gone (resyncRequired). Zero accepts any token whose
	// changes are still recorded.
	Oldest time.Time
}

// A Change is one item of a delta page: the item as it is now, or, when
// Deleted, what was last known of an item that was deleted or left the
// scope (ID, ParentID, Name and Folder only).
type Change struct {
	Item       *Item
	ParentPath []string // names from the root down to the item's parent; nil for the root and its children
	Deleted    bool
}

// DeltaPage is one page of a delta. Exactly one of Next and Token is set:
// Next on every page but the last, Token on the last.
type DeltaPage struct {
	Changes []Change
	Next    string // the cursor of the next page
	Token   string // the token of the next delta call
}
