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

// SessionStore keeps upload sessions.
type SessionStore interface {
	// CreateSession stores s; the caller has set ID, StagingID and Expires
	// (Invalid if one is missing). A taken ID is Conflict.
	CreateSession(ctx context.Context, s *UploadSession) error
	// Session returns a live session, or NotFound (code
	// uploadSessionNotFound) if it does not exist or has expired.
	Session(ctx context.Context, id string) (*UploadSession, error)
	// AddFragment records that the bytes r of a file of total size have
	// been staged, and extends the expiry to expires. It fails with
	// InvalidRange (code fragmentOverlap) when r overlaps bytes already
	// recorded, and with Invalid (code fragmentLengthMismatch) when total
	// differs from the size already known; an empty r, or one outside
	// [0, total), is Invalid; a missing or expired session is NotFound
	// (code uploadSessionNotFound). It is atomic against concurrent
	// fragments of the same session.
	AddFragment(ctx context.Context, id string, r Range, total int64, expires time.Time) (*UploadSession, error)
	// DeleteSession removes a session record. Deleting a missing session is
	// not an error.
	DeleteSession(ctx context.Context, id string) error
	// ExpiredSessions returns up to limit sessions whose expiry is before t.
	ExpiredSessions(ctx context.Context, t time.Time, limit int) ([]*UploadSession, error)
	// SessionUsage reports what the live (unexpired) sessions of drive
	// will add to it: bytes is the sum over them of the declared Size
	// when it is known, else of the bytes received, and count is how many
	// there are. The API counts bytes against the drive's quota before
	// they are committed, and caps count.
	SessionUsage(ctx context.Context, drive DriveID) (bytes int64, count int, err error)
}
