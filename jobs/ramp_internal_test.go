package jobs

import (
	"log/slog"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
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

// One connection far below a fast stream steps to every connection after
// its first window; one that is slower than a fast stream but not that
// far is measured over all three windows first.
func TestRampFarBelowFastStepsEarly(t *testing.T) {
	const fast = 256 << 20
	for _, tt := range []struct {
		name      string
		perSecond float64
		maxConns  int
		wantAt    time.Duration // since the first byte, when the step comes
		wantConns int
	}{
		{"throttled at 20 MB/s", 20e6, 8, measureFor + tick, 8},
		{"100 MB/s", 100e6, 8, measureFor + 3*tick, 4},
		// Four connections are all the first step opens, but 100 MB/s is
		// not far below a fast stream: the one connection is measured
		// as long as ever.
		{"100 MB/s, at most 4", 100e6, 4, measureFor + 3*tick, 4},
		{"throttled at 20 MB/s, at most 4", 20e6, 4, measureFor + tick, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
			tr := &transfer{
				a:        &attempt{q: &Queue{log: slog.New(slog.DiscardHandler)}, job: &ferry.Job{ID: "mon_test"}},
				cfg:      &Config{FastStream: fast},
				workers:  1,
				target:   1,
				maxConns: tt.maxConns,
				free:     []blob.Range{{Start: 0, End: 1 << 40}},
				segs:     []*segment{{first: first}},
			}
			r := &ramp{t: tr}
			for at := time.Duration(0); at <= measureFor+4*tick; at += tick {
				now := first.Add(at)
				r.sample(now, int64(tt.perSecond*at.Seconds()))
				r.stepLocked(now)
				if r.phase != 0 {
					if at != tt.wantAt || tr.target != tt.wantConns {
						t.Errorf("stepped at %v to %d connections; want %v and %d", at, tr.target, tt.wantAt, tt.wantConns)
					}
					return
				}
			}
			t.Errorf("no step within %v", measureFor+4*tick)
		})
	}
}
