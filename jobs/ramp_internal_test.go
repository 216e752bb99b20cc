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

// The first step opens 4 connections, or, after a connection far slower
// than a fast stream, as many as would together still be no faster than
// one fast stream; the transfer's cap applies on top.
func TestRampFirstStep(t *testing.T) {
	const fast = 256 << 20
	for _, tt := range []struct {
		rate float64
		want int
	}{
		{20e6, 13},      // throttled at 20 MB/s: 13 × 20 MB/s ≤ 256 MiB/s
		{100e6, 4},      // 2 would do; never fewer than 4
		{fast / 4, 4},   // exactly 4
		{fast / 4.5, 4}, // 4.5 rounds down
		{40e6, 6},       // 6.7 rounds down
		{0, 4},          // no bytes measured: no division
		{1, 1 << 10},    // a trickle: bounded
	} {
		if got := firstStep(tt.rate, fast); got != tt.want {
			t.Errorf("firstStep(%.0f) = %d, want %d", tt.rate, got, tt.want)
		}
	}
}
