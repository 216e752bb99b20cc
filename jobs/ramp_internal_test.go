package jobs

import (
	"testing"
	"time"
)

// A step is ready once as many segments begun since it as it added
// connections have delivered a first byte: segments of the connections
// from before the step do not count, and a step whose new connections
// have not all delivered is not ready.
func TestRampReadyCountsTheStepsConnections(t *testing.T) {
	step := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(ms int) *segment { return &segment{first: step.Add(time.Duration(ms) * time.Millisecond)} }
	tr := &transfer{workers: 4}
	r := &ramp{t: tr, changedAt: step, nBefore: 1}

	tr.segs = []*segment{at(-80), at(3), at(5), {}} // one new connection has not delivered
	if got := r.readyLocked(); !got.IsZero() {
		t.Errorf("ready at %v with one of three new connections silent; want not ready", got.Sub(step))
	}
	tr.segs = append(tr.segs, at(9))
	if got, want := r.readyLocked(), step.Add(9*time.Millisecond); !got.Equal(want) {
		t.Errorf("ready at %v, want 9ms (the third new connection's first byte)", got.Sub(step))
	}
	// Later pieces began after the step too; the earliest three count.
	tr.segs = append(tr.segs, at(60), at(61))
	if got, want := r.readyLocked(), step.Add(9*time.Millisecond); !got.Equal(want) {
		t.Errorf("ready at %v, want still 9ms", got.Sub(step))
	}
	// A step that added nothing (the transfer shed meanwhile) is ready at once.
	tr.workers = 1
	if got := r.readyLocked(); !got.Equal(step) {
		t.Errorf("ready at %v with nothing added, want the step itself", got.Sub(step))
	}
}
