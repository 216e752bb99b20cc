package ferry_test

import (
	"slices"
	"testing"

	"github.com/ferrydrive/ferry"
)

func TestNextExpectedRanges(t *testing.T) {
	for _, tt := range []struct {
		name     string
		size     int64
		received []ferry.Range
		want     []string
	}{
		{"fresh, size unknown", -1, nil, []string{"0-"}},
		{"fresh, size known", 100, nil, []string{"0-"}},
		{"contiguous prefix", 100, []ferry.Range{{0, 26}}, []string{"26-"}},
		{"gap in the middle", 100, []ferry.Range{{0, 10}, {20, 30}}, []string{"10-19", "30-"}},
		{"tail first", 100, []ferry.Range{{50, 100}}, []string{"0-49"}},
		{"complete", 100, []ferry.Range{{0, 100}}, []string{}},
		{"unknown size with gap", -1, []ferry.Range{{5, 10}}, []string{"0-4", "10-"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &ferry.UploadSession{Size: tt.size, Received: tt.received}
			if got := s.NextExpectedRanges(); !slices.Equal(got, tt.want) {
				t.Errorf("NextExpectedRanges() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAddRange(t *testing.T) {
	var list []ferry.Range
	var ok bool
	for _, r := range []ferry.Range{{20, 30}, {0, 10}, {10, 20}, {40, 50}} {
		if list, ok = ferry.AddRange(list, r); !ok {
			t.Fatalf("AddRange(%v) refused a range that does not overlap %v", r, list)
		}
	}
	if want := []ferry.Range{{0, 30}, {40, 50}}; !slices.Equal(list, want) {
		t.Fatalf("merged = %v, want %v", list, want)
	}
	for _, r := range []ferry.Range{{29, 31}, {0, 1}, {45, 46}, {35, 41}} {
		if got, ok := ferry.AddRange(list, r); ok {
			t.Errorf("AddRange(%v) = %v, accepted an overlap", r, got)
		}
	}
	if got, ok := ferry.AddRange(list, ferry.Range{30, 40}); !ok || !slices.Equal(got, []ferry.Range{{0, 50}}) {
		t.Errorf("filling the gap gave %v, %v; want [{0 50}], true", got, ok)
	}
}
