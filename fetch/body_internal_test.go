package fetch

import (
	"context"
	"io"
	"testing"
	"time"
)

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { return len(p), nil }

// TestBodyReadAllocs checks that the hot path allocates nothing per read.
func TestBodyReadAllocs(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	b := newBody(ctx, io.NopCloser(zeros{}), cancel, "origin", -1, time.Minute)
	defer b.Close()
	buf := make([]byte, 256<<10)
	if got := testing.AllocsPerRun(1000, func() {
		if _, err := b.Read(buf); err != nil {
			t.Fatal(err)
		}
	}); got != 0 {
		t.Errorf("got %v allocations per Read, want 0", got)
	}
}

// TestBodyExactLength checks that a body longer than its declared length is
// cut at the length, and reports io.EOF there.
func TestBodyExactLength(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	b := newBody(ctx, io.NopCloser(zeros{}), cancel, "origin", 1000, time.Minute)
	defer b.Close()
	n, err := io.Copy(io.Discard, b)
	if n != 1000 || err != nil {
		t.Errorf("got %d bytes, %v; want 1000, nil", n, err)
	}
}
