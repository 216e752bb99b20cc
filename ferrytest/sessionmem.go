package ferrytest

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ferrydrive/ferry"
)

// SessionStore is an in-memory ferry.SessionStore for tests. It passes
// TestSessionStore. The zero value is not usable; call NewSessionStore.
type SessionStore struct {
	mu       sync.Mutex
	sessions map[string]*ferry.UploadSession
}

var _ ferry.SessionStore = (*SessionStore)(nil)

// NewSessionStore returns an empty in-memory session store.
func NewSessionStore() *SessionStore {
	return &SessionStore{sessions: map[string]*ferry.UploadSession{}}
}

// Staging lists the staging IDs of all stored sessions, expired ones
// included, sorted: what a sweep of orphaned staging areas must spare.
func (m *SessionStore) Staging() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, us := range m.sessions {
		out = append(out, us.StagingID)
	}
	slices.Sort(out)
	return out
}

// CreateSession stores a copy of us; see ferry.SessionStore. A zero
// Created becomes now.
func (m *SessionStore) CreateSession(_ context.Context, us *ferry.UploadSession) error {
	if us.ID == "" || us.StagingID == "" || us.Expires.IsZero() {
		return ferry.Errorf(ferry.Invalid, "an upload session needs an ID, a staging area and an expiry")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[us.ID]; ok {
		return ferry.Errorf(ferry.Conflict, "an upload session with that ID already exists")
	}
	if us.Created.IsZero() {
		us.Created = time.Now().UTC()
	}
	m.sessions[us.ID] = cloneSession(us)
	return nil
}

// Session returns a copy of a live session; see ferry.SessionStore.
func (m *SessionStore) Session(_ context.Context, id string) (*ferry.UploadSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	us, err := m.live(id)
	if err != nil {
		return nil, err
	}
	return cloneSession(us), nil
}

// live returns the stored session id unless it is missing or expired.
// The caller holds mu.
func (m *SessionStore) live(id string) (*ferry.UploadSession, error) {
	us, ok := m.sessions[id]
	if !ok || us.Expires.Before(time.Now()) {
		return nil, ferry.Errorf(ferry.NotFound, "the upload session does not exist or has expired").WithCode("uploadSessionNotFound")
	}
	return us, nil
}

// AddFragment records a staged fragment; see ferry.SessionStore.
func (m *SessionStore) AddFragment(_ context.Context, id string, r ferry.Range, total int64, expires time.Time) (*ferry.UploadSession, error) {
	if r.Start < 0 || r.End <= r.Start || r.End > total {
		return nil, ferry.Errorf(ferry.Invalid, "the fragment %d-%d does not lie within a file of %d bytes", r.Start, r.End, total)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	us, err := m.live(id)
	if err != nil {
		return nil, err
	}
	if us.Size >= 0 && us.Size != total {
		return nil, ferry.Errorf(ferry.Invalid, "the fragment gives a total of %d bytes, but the upload is %d bytes long", total, us.Size).
			WithCode("fragmentLengthMismatch")
	}
	received, ok := ferry.AddRange(us.Received, r)
	if !ok {
		return nil, ferry.Errorf(ferry.InvalidRange, "Uploaded fragment overlaps with existing data.").WithCode("fragmentOverlap")
	}
	us.Size, us.Received, us.Expires = total, received, expires.UTC()
	return cloneSession(us), nil
}

// DeleteSession forgets a session; see ferry.SessionStore.
func (m *SessionStore) DeleteSession(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}

// ExpiredSessions returns up to limit sessions whose expiry is before t,
// the longest expired first; see ferry.SessionStore.
func (m *SessionStore) ExpiredSessions(_ context.Context, t time.Time, limit int) ([]*ferry.UploadSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*ferry.UploadSession
	for _, us := range m.sessions {
		if us.Expires.Before(t) {
			out = append(out, cloneSession(us))
		}
	}
	slices.SortFunc(out, func(a, b *ferry.UploadSession) int {
		return cmp.Or(a.Expires.Compare(b.Expires), cmp.Compare(a.ID, b.ID))
	})
	return out[:min(len(out), max(limit, 0))], nil
}

// SessionUsage totals the live sessions of drive; see ferry.SessionStore.
func (m *SessionStore) SessionUsage(_ context.Context, drive ferry.DriveID) (int64, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var bytes int64
	var count int
	now := time.Now()
	for _, us := range m.sessions {
		if us.DriveID != drive || us.Expires.Before(now) {
			continue
		}
		count++
		if us.Size >= 0 {
			bytes += us.Size
		} else {
			bytes += us.ReceivedBytes()
		}
	}
	return bytes, count, nil
}

func cloneSession(us *ferry.UploadSession) *ferry.UploadSession {
	c := *us
	c.Received = slices.Clone(us.Received)
	return &c
}
