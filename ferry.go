// Package ferry defines the drive server's domain: users, drives, items,
// upload-from-URL and copy jobs, upload sessions, and the stores that hold
// them. It imports nothing from this module; adapters (sqlstore, fsblob,
// graph, jobs, fetch) import it.
package ferry

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// UserID identifies a user. DriveID identifies a drive. ItemID identifies a
// file or folder. All three are case-sensitive and URL-safe: they never
// contain '#', '/', '?', '%' or ':'.
type (
	UserID  string
	DriveID string
	ItemID  string
)

// RootAlias is the name clients may use in place of a drive's root item ID.
const RootAlias = "root"

// idEncoding is lower-case-free base32 without padding: URL-safe and free of
// characters that have meaning in Graph paths.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a random identifier with the given prefix and n bytes (at
// least 16, i.e. 128 bits) of entropy, suitable for capability URLs.
func NewID(prefix string, n int) string {
	if n < 16 {
		n = 16
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("ferry: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return prefix + strings.ToUpper(idEncoding.EncodeToString(b))
}
