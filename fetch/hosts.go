package fetch

import (
	"context"
	"net/url"
	"strings"
	"sync"
)

// hostSlots bounds the responses open at once to one origin host across
// every user of the Client (Options.HostConns): the per-host politeness
// limit of segmented downloads, shared by all imports of a node. A slot is
// taken before a request is sent and given back when its body is closed
// (or the request fails), so it counts connections in use, not idle
// keep-alive ones.
//
// The host is the request URL's host and port, lower-cased: a redirect to
// another host still counts against the host the caller asked for, which
// is the one the caller can see and choose to spread over.
type hostSlots struct {
	limit int

	mu    sync.Mutex
	used  map[string]int
	wake  map[string]chan struct{} // closed when a slot of the host frees
	total int
}

func newHostSlots(limit int) *hostSlots {
	return &hostSlots{limit: limit, used: map[string]int{}, wake: map[string]chan struct{}{}}
}

// hostKey is the key of u's host in hostSlots.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = strings.ToLower(u.Scheme)
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// acquire takes a slot of host, waiting for one while ctx lasts unless
// wait is false; ok reports whether a slot was taken.
func (h *hostSlots) acquire(ctx context.Context, host string, wait bool) (ok bool, err error) {
	for {
		h.mu.Lock()
		if h.used[host] < h.limit {
			h.used[host]++
			h.total++
			h.mu.Unlock()
			return true, nil
		}
		if !wait {
			h.mu.Unlock()
			return false, nil
		}
		ch, found := h.wake[host]
		if !found {
			ch = make(chan struct{})
			h.wake[host] = ch
		}
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-ch:
		}
	}
}

// release gives back a slot of host.
func (h *hostSlots) release(host string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total--
	if h.used[host]--; h.used[host] <= 0 {
		delete(h.used, host)
	}
	if ch, ok := h.wake[host]; ok {
		close(ch)
		delete(h.wake, host)
	}
}

// inUse reports the slots of host in use.
func (h *hostSlots) inUse(host string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.used[host]
}

// releaser wraps a body so that closing it gives back its host slot once.
type releaser struct {
	*body
	once sync.Once
	free func()
}

func (r *releaser) Close() error {
	err := r.body.Close()
	r.once.Do(r.free)
	return err
}
