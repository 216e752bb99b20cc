package ferry

import (
	"slices"
	"strings"
	"time"
)

// A User owns one drive and any number of tokens.
type User struct {
	ID      UserID
	Name    string
	Created time.Time
}

// A Drive is a user's tree of items, with a quota.
type Drive struct {
	ID        DriveID
	Owner     UserID
	OwnerName string
	RootID    ItemID
	Quota     int64 // total bytes the drive may hold
	Used      int64 // bytes of all files; a shared blob counts once per item
	Created   time.Time
	Modified  time.Time
}

// Remaining reports how many bytes may still be added.
func (d *Drive) Remaining() int64 { return max(d.Quota-d.Used, 0) }

// Scope is an OAuth-style permission carried by a token.
type Scope string

const (
	ScopeRead         Scope = "Files.Read"
	ScopeReadWrite    Scope = "Files.ReadWrite"
	ScopeReadAll      Scope = "Files.Read.All"
	ScopeReadWriteAll Scope = "Files.ReadWrite.All"
)

// Scopes is the set of scopes of one token.
type Scopes []Scope

// ParseScopes parses a comma- or space-separated list of scopes.
func ParseScopes(s string) (Scopes, error) {
	var out Scopes
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		switch Scope(f) {
		case ScopeRead, ScopeReadWrite, ScopeReadAll, ScopeReadWriteAll:
			if !slices.Contains(out, Scope(f)) {
				out = append(out, Scope(f))
			}
		default:
			return nil, Errorf(Invalid, "unknown scope %q (want %s, %s, %s or %s)", f, ScopeRead, ScopeReadWrite, ScopeReadAll, ScopeReadWriteAll)
		}
	}
	if len(out) == 0 {
		return nil, Errorf(Invalid, "no scopes given")
	}
	return out, nil
}

// String joins the scopes with commas.
func (ss Scopes) String() string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

// CanRead reports whether the scopes allow reading files.
func (ss Scopes) CanRead() bool { return len(ss) > 0 }

// CanWrite reports whether the scopes allow changing files.
// Files.ReadWrite.All is accepted wherever Files.ReadWrite is, and also
// reaches the items other users shared with write access.
func (ss Scopes) CanWrite() bool {
	return slices.Contains(ss, ScopeReadWrite) || slices.Contains(ss, ScopeReadWriteAll)
}

// CanReadShared reports whether the scopes reach items other users have
// shared with the token's user (Files.Read.All or Files.ReadWrite.All);
// writing to them also needs CanWrite and a write grant.
func (ss Scopes) CanReadShared() bool {
	return slices.Contains(ss, ScopeReadAll) || slices.Contains(ss, ScopeReadWriteAll)
}

// A Principal is an authenticated caller: a user and the token's scopes.
type Principal struct {
	User   User
	Scopes Scopes
}
