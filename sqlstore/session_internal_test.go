package sqlstore

import (
	"slices"
	"testing"

	"github.com/ferrydrive/ferry"
)

func TestRangesColumn(t *testing.T) {
	for _, tt := range []struct {
		text string
		list []ferry.Range
	}{
		{"", nil},
		{"0-1", []ferry.Range{{Start: 0, End: 1}}},
		{"0-327680,655360-983040", []ferry.Range{{Start: 0, End: 327680}, {Start: 655360, End: 983040}}},
		{"5-6,7-9223372036854775807", []ferry.Range{{Start: 5, End: 6}, {Start: 7, End: 1<<63 - 1}}},
	} {
		t.Run(tt.text, func(t *testing.T) {
			if got := formatRanges(tt.list); got != tt.text {
				t.Errorf("formatRanges(%v) = %q, want %q", tt.list, got, tt.text)
			}
			got, err := parseRanges(tt.text)
			if err != nil || !slices.Equal(got, tt.list) {
				t.Errorf("parseRanges(%q) = %v, %v; want %v", tt.text, got, err, tt.list)
			}
		})
	}
	for _, bad := range []string{
		",", "0", "0-", "-5", "a-b", "5-5", "6-5", "-1-5", "0-10,", "0-10,10-20", "0-10,5-20", "20-30,0-10",
		"0-10;20-30", "0-99999999999999999999",
	} {
		if got, err := parseRanges(bad); err == nil {
			t.Errorf("parseRanges(%q) = %v, want an error", bad, got)
		}
	}
}
