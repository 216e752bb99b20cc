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
	Email   string // "" when none; unique among users, ignoring case
	Created time.Time
}

// A Token is what is known about a bearer token. The secret itself is
// shown once, when the token is issued, and never stored.
type Token struct {
	ID       string // public handle ("tok_…"), for listing and revoking
	UserID   UserID
	UserName string
	Name     string // the label given at creation, may be ""
	Scopes   Scopes
	Created  time.Time
	Expires  time.Time // zero: never
	LastUsed time.Time // zero: not used yet; updated at most once a minute
}

// Expired reports whether the token has expired at t.
func (t *Token) Expired(at time.Time) bool { return !t.Expires.IsZero() && !at.Before(t.Expires) }

// TokenOptions describe a token to issue.
type TokenOptions struct {
	Scopes  Scopes
	Name    string    // label, at most 255 characters
	Expires time.Time // zero: never
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
