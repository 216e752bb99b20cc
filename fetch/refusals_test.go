package fetch_test

import (
	"sync/atomic"
	"testing"

	"github.com/ferrydrive/ferry/fetch"
)

type refusalCount struct{ n atomic.Int64 }

func (c *refusalCount) SSRFRefused() { c.n.Add(1) }

// TestRefusalsCounted: every dial the guard refuses is reported to
// Options.Refusals, for the ferry_ssrf_refusals_total metric.
func TestRefusalsCounted(t *testing.T) {
	var count refusalCount
	c := newClient(t, fetch.Options{Refusals: &count})
	for _, u := range []string{"http://10.0.0.1/", "http://[::1]/"} {
		resp, err := c.Open(t.Context(), fetch.Request{URL: u})
		if err == nil {
			resp.Body.Close()
			t.Fatalf("Open(%s) succeeded", u)
		}
	}
	if got := count.n.Load(); got < 2 {
		t.Errorf("refusals counted: %d, want at least 2", got)
	}
}
