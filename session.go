package ferry

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"
)

// A Range is the half-open byte range [Start, End).
type Range struct {
	Start, End int64
}

// Len is the number of bytes in r.
func (r Range) Len() int64 { return r.End - r.Start }

// Overlaps reports whether r and o share a byte.
func (r Range) Overlaps(o Range) bool { return r.Start < o.End && o.Start < r.End }

// An UploadSession is a resumable upload (createUploadSession): fragments
// arrive at its capability URL, in any order, into one staging area, and
// the file is committed when the last byte arrives (or on an explicit
// commit when DeferCommit is set). Its ID is the capability: it carries at
// least 128 random bits and is never listed anywhere.
type UploadSession struct {
	ID       string
	UserID   UserID
	UserName string
	DriveID  DriveID
	ParentID ItemID
	Name     string
	ItemID   ItemID // set when the session replaces the bytes of this existing file
	Conflict ConflictBehavior
	IfMatch  string // eTag/cTag the replaced item must still have at commit

	Description string
	FSCreated   time.Time // zero: the commit time
	FSModified  time.Time

	DeferCommit bool
	Size        int64   // declared total size; -1 until a fileSize or first fragment gives it
	StagingID   string  // the staging area holding the bytes
	Received    []Range // sorted, merged ranges already stored
	Expires     time.Time
	Created     time.Time

	// Hashed and HashState: the bytes [0, Hashed) are absorbed in
	// HashState (the blob package's hasher state; nil when Hashed is 0),
	// which grows with the contiguous prefix received, so that the commit
	// hashes only what is not hashed yet.
	Hashed    int64
	HashState []byte
	// Held is the published content of a complete session whose commit
	// failed for a passing reason: a retried commit commits it.
	Held *Content
}

// ReceivedBytes reports how many bytes have been stored.
func (s *UploadSession) ReceivedBytes() int64 {
	var n int64
	for _, r := range s.Received {
		n += r.Len()
	}
	return n
}

// Complete reports whether every byte of the declared size has arrived.
func (s *UploadSession) Complete() bool {
	return s.Size >= 0 && s.ReceivedBytes() == s.Size
}

// Missing lists the byte ranges still expected, in order. While the size is
// unknown the last range is open (End -1).
func (s *UploadSession) Missing() []Range {
	var out []Range
	var at int64
	for _, r := range s.Received {
		if r.Start > at {
			out = append(out, Range{at, r.Start})
		}
		at = max(at, r.End)
	}
	switch {
	case s.Size < 0:
		out = append(out, Range{at, -1})
	case at < s.Size:
		out = append(out, Range{at, s.Size})
	}
	return out
}

// NextExpectedRanges renders Missing in Graph's nextExpectedRanges form:
// "start-end" with an inclusive end, and "start-" for the open tail, so a
// contiguous upload always shows exactly one "N-" range.
func (s *UploadSession) NextExpectedRanges() []string {
	m := s.Missing()
	out := make([]string, 0, len(m))
	for i, r := range m {
		last := i == len(m)-1
		if last && (r.End < 0 || r.End == s.Size) {
			out = append(out, strconv.FormatInt(r.Start, 10)+"-")
			continue
		}
		out = append(out, strconv.FormatInt(r.Start, 10)+"-"+strconv.FormatInt(r.End-1, 10))
	}
	return out
}

// AddRange merges r into a sorted, merged range list. It reports false,
// leaving the list unchanged, when r overlaps a range already present.
func AddRange(list []Range, r Range) ([]Range, bool) {
	for _, x := range list {
		if x.Overlaps(r) {
			return list, false
		}
	}
	out := append(slices.Clone(list), r)
	slices.SortFunc(out, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	merged := out[:1]
	for _, x := range out[1:] {
		if last := &merged[len(merged)-1]; x.Start == last.End {
			last.End = x.End
		} else {
			merged = append(merged, x)
		}
	}
	return merged, true
}

// SessionStore keeps upload sessions. Everything that must hold across
// nodes lives here: the ranges received, the claims of fragments being
// written and the mark of a commit or cancel under way, the cap on live
// sessions, the hash state and a published blob awaiting its commit.
type SessionStore interface {
	// CreateSession stores s; the caller has set ID, StagingID and Expires
	// (Invalid if one is missing). A taken ID is Conflict. When limit > 0
	// and s's drive already has limit live sessions, it stores nothing and
	// fails with Throttled (RetryAfter set); the count and the insert are
	// atomic, so simultaneous creations cannot pass the limit.
	CreateSession(ctx context.Context, s *UploadSession, limit int) error
	// Session returns a live session, or NotFound (code
	// uploadSessionNotFound) if it does not exist or has expired.
	Session(ctx context.Context, id string) (*UploadSession, error)
	// BeginFragment claims r of session id for a fragment about to be
	// written, until the time until (a lease: a claim whose writer died
	// lapses). It fails with InvalidRange (code fragmentOverlap) when r
	// overlaps bytes received or another live claim, with Conflict while
	// a commit or cancel holds the session, and NotFound
	// (uploadSessionNotFound) for a missing or expired session. It is
	// atomic against concurrent claims.
	BeginFragment(ctx context.Context, id string, r Range, until time.Time) error
	// EndFragment drops the claim of r; dropping none is not an error.
	EndFragment(ctx context.Context, id string, r Range) error
	// AddFragment records that the bytes r of a file of total size have
	// been staged, drops the claim of r, and extends the expiry to
	// expires. It fails with InvalidRange (code fragmentOverlap) when r
	// overlaps bytes already recorded, and with Invalid (code
	// fragmentLengthMismatch) when total differs from the size already
	// known; an empty r, or one outside [0, total), is Invalid; a missing
	// or expired session is NotFound (code uploadSessionNotFound). It is
	// atomic against concurrent fragments of the same session.
	AddFragment(ctx context.Context, id string, r Range, total int64, expires time.Time) (*UploadSession, error)
	// SaveSessionHash records state as the hash state of the session's
	// first to bytes, if the state stored is still that of its first from
	// bytes (else it changes nothing: another request moved it on).
	SaveSessionHash(ctx context.Context, id string, from, to int64, state []byte) error
	// BeginCommit marks session id as being committed or cancelled until
	// the time until (a lease), and reports false, changing nothing, when
	// another commit or cancel holds the mark. NotFound
	// (uploadSessionNotFound) for a missing or expired session.
	BeginCommit(ctx context.Context, id string, until time.Time) (bool, error)
	// EndCommit clears the mark; on a deleted session it does nothing.
	EndCommit(ctx context.Context, id string) error
	// HoldSessionBlob records c, the published bytes of the complete
	// session id, as its Held content. NotFound if the session is gone.
	HoldSessionBlob(ctx context.Context, id string, c Content) error
	// CommitSession creates the file of the complete session id with
	// content c, or gives the file the session names (ItemID, checked
	// against IfMatch) the bytes, with the session's name, conflict
	// behaviour, fileSystemInfo and description, and deletes the session,
	// in one transaction: a crash leaves both or neither. created reports
	// a new item. NotFound (uploadSessionNotFound) if the session is gone;
	// Invalid (uploadSessionIncomplete) if bytes are missing; otherwise
	// the errors of ItemStore.CreateItem and ReplaceContent, and then
	// nothing changes and the session stays.
	CommitSession(ctx context.Context, id string, c Content) (it *Item, created bool, err error)
	// DeleteSession removes a session record. Deleting a missing session is
	// not an error.
	DeleteSession(ctx context.Context, id string) error
	// ExpiredSessions returns up to limit sessions whose expiry is before t.
	ExpiredSessions(ctx context.Context, t time.Time, limit int) ([]*UploadSession, error)
	// SessionUsage reports what the live (unexpired) sessions of drive
	// will add to it: bytes is the sum over them of the declared Size
	// when it is known, else of the bytes received, and count is how many
	// there are. The API counts bytes against the drive's quota before
	// they are committed. bytes also counts the room that copies under
	// way hold in the drive (ItemStore.CopyItem), which the store counts
	// against the quota the same way.
	SessionUsage(ctx context.Context, drive DriveID) (bytes int64, count int, err error)
}
