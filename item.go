package ferry

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// An Item is a file or folder in a drive.
type Item struct {
	ID       ItemID
	DriveID  DriveID
	ParentID ItemID // empty for a drive's root
	Name     string // as the user spelled it; unique per parent, ignoring case
	Folder   bool

	// Size is a file's length, or for a folder the total of the files in
	// its subtree. The rest is file content; empty for folders.
	Size     int64
	MimeType string
	Hashes   Hashes
	BlobKey  string

	// Version grows on every change and makes the eTag; ContentVersion
	// grows when the bytes change and makes the cTag.
	Version        int64
	ContentVersion int64

	Created  time.Time // when the server created the item
	Modified time.Time // when the server last changed it
	// FSCreated and FSModified are the client's fileSystemInfo timestamps;
	// they default to Created and Modified.
	FSCreated  time.Time
	FSModified time.Time

	Description string
	CreatedBy   string // user name
	ModifiedBy  string // user name

	ChildCount int64 // folders only; filled by stores on read
}

// IsRoot reports whether it is a drive's root folder.
func (it *Item) IsRoot() bool { return it.ParentID == "" }

// Hashes are the content hashes of a file, computed while its bytes stream
// in. QuickXor is standard base64; SHA1 and SHA256 are upper-case hex.
type Hashes struct {
	QuickXor string
	SHA1     string
	SHA256   string
}

// NewItem describes an item to create.
type NewItem struct {
	DriveID  DriveID
	ParentID ItemID
	Name     string
	Folder   bool

	Content // files only

	FSCreated   time.Time // zero means now
	FSModified  time.Time // zero means now
	Description string
	By          string // user name for createdBy/lastModifiedBy
}

// ItemUpdate lists the changes PATCH may make; nil fields keep their value.
type ItemUpdate struct {
	Name        *string
	ParentID    *ItemID
	FSCreated   *time.Time
	FSModified  *time.Time
	Description *string
	IfMatch     string // eTag or cTag the item must still have; "" or "*" for any
	Conflict    ConflictBehavior
	By          string
}

// ConflictBehavior says what to do when a name is already taken.
type ConflictBehavior string

const (
	ConflictFail    ConflictBehavior = "fail"
	ConflictReplace ConflictBehavior = "replace"
	ConflictRename  ConflictBehavior = "rename"
)

// ParseConflictBehavior parses a Graph conflictBehavior value. The empty
// string gives def.
func ParseConflictBehavior(s string, def ConflictBehavior) (ConflictBehavior, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return def, nil
	case "fail":
		return ConflictFail, nil
	case "replace":
		return ConflictReplace, nil
	case "rename":
		return ConflictRename, nil
	}
	return "", Errorf(Invalid, "conflictBehavior must be fail, replace or rename, not %q", s)
}

// MaxNameLength is the longest name, in characters, an item may have.
const MaxNameLength = 255

// reservedNameChars are the characters OneDrive Personal refuses in names.
const reservedNameChars = `/\*<>?:|"`

// ValidateName checks a file or folder name against the OneDrive Personal
// rules: not empty, not "." or "..", at most 255 characters, valid UTF-8, no
// control characters or U+FFFD, none of / \ * < > ? : | ", no leading or
// trailing space, and no trailing "." on folders. '#' and '%' are allowed.
func ValidateName(name string, folder bool) error {
	switch {
	case name == "":
		return Errorf(Invalid, "the name must not be empty").WithCode("invalidName")
	case name == "." || name == "..":
		return Errorf(Invalid, "%q is not a valid name", name).WithCode("invalidName")
	case !utf8.ValidString(name):
		return Errorf(Invalid, "the name is not valid UTF-8").WithCode("invalidName")
	case utf8.RuneCountInString(name) > MaxNameLength:
		return Errorf(Invalid, "the name is longer than %d characters", MaxNameLength).WithCode("invalidName")
	case strings.ContainsAny(name, reservedNameChars):
		return Errorf(Invalid, "the name %q contains one of the reserved characters %s", name, reservedNameChars).WithCode("invalidName")
	case strings.TrimSpace(name) != name:
		return Errorf(Invalid, "the name must not start or end with a space").WithCode("invalidName")
	case folder && strings.HasSuffix(name, "."):
		return Errorf(Invalid, "a folder name must not end with '.'").WithCode("invalidName")
	}
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f:
			return Errorf(Invalid, "the name contains a control character").WithCode("invalidName")
		case r == utf8.RuneError:
			// What JSON decoding makes of a lone UTF-16 surrogate or of
			// bytes that are not UTF-8: the name the client meant is lost.
			return Errorf(Invalid, "the name contains an invalid character (U+FFFD)").WithCode("invalidName")
		}
	}
	return nil
}

// MaxDescriptionLength is the longest description, in characters, an
// item may have (OneDrive Personal's limit).
const MaxDescriptionLength = 1024

// ValidateDescription checks an item's description: valid UTF-8, at most
// MaxDescriptionLength characters.
func ValidateDescription(d string) error {
	switch {
	case !utf8.ValidString(d):
		return Errorf(Invalid, "the description is not valid UTF-8")
	case utf8.RuneCountInString(d) > MaxDescriptionLength:
		return Errorf(Invalid, "the description is longer than %d characters", MaxDescriptionLength)
	}
	return nil
}

// NameKey is the form of a name used for uniqueness within a folder: names
// keep their case, but two names that differ only in case collide.
func NameKey(name string) string { return strings.ToLower(name) }

// RenameCandidate returns the n-th alternative for a taken name, the way
// OneDrive's "rename" conflict behaviour does: "report.pdf" gives
// "report 1.pdf", a folder "Photos" gives "Photos 1".
func RenameCandidate(name string, folder bool, n int) string {
	suffix := " " + strconv.Itoa(n)
	if folder {
		return name + suffix
	}
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		return name[:i] + suffix + name[i:]
	}
	return name + suffix
}

// ETag is the item's entity tag as Graph shows it: a quoted string that
// changes on every change to the item.
func (it *Item) ETag() string {
	return `"{` + string(it.ID) + `},` + strconv.FormatInt(it.Version, 10) + `"`
}

// CTag is the item's content tag: a quoted string that changes only when the
// file's bytes change.
func (it *Item) CTag() string {
	return `"c:{` + string(it.ID) + `},` + strconv.FormatInt(it.ContentVersion, 10) + `"`
}

// Matches reports whether an If-Match value names the item's current eTag
// or cTag. The empty value and "*" match anything; a weak "W/" prefix, a
// bare tag without quotes and a comma-separated list of quoted tags are
// tolerated. (Our tags contain commas, so the list is split on quotes.)
func (it *Item) Matches(ifMatch string) bool {
	ifMatch = strings.TrimSpace(ifMatch)
	if ifMatch == "" || ifMatch == "*" {
		return true
	}
	etag, ctag := it.ETag(), it.CTag()
	if !strings.Contains(ifMatch, `"`) {
		t := `"` + ifMatch + `"`
		return t == etag || t == ctag
	}
	for rest := ifMatch; ; {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			return false
		}
		j := strings.IndexByte(rest[i+1:], '"')
		if j < 0 {
			return false
		}
		t := rest[i : i+j+2]
		if t == etag || t == ctag {
			return true
		}
		rest = rest[i+j+2:]
	}
}
