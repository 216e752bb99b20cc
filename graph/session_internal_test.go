package graph

import (
	"testing"

	"github.com/ferrydrive/ferry"
)

func TestParseContentRange(t *testing.T) {
	for _, tt := range []struct {
		h    string
		want contentRange
		ok   bool
	}{
		{"bytes 0-25/128", contentRange{0, 26, 128}, true},
		{"bytes 101-127/128", contentRange{101, 128, 128}, true},
		{"bytes 0-0/1", contentRange{0, 1, 1}, true},
		{"BYTES 5-9/10", contentRange{5, 10, 10}, true},
		{"bytes 327680-655359/10485760", contentRange{327680, 655360, 10485760}, true},
		{"", contentRange{}, false},
		{"bytes", contentRange{}, false},
		{"bytes ", contentRange{}, false},
		{"bytes=0-25/128", contentRange{}, false},
		{"bytes  0-25/128", contentRange{}, false},
		{" bytes 0-25/128", contentRange{}, false},
		{"bytes 0-25/128 ", contentRange{}, false},
		{"bytes 0 - 25/128", contentRange{}, false},
		{"bytes 0-25", contentRange{}, false},
		{"bytes 0-25/*", contentRange{}, false},
		{"bytes */128", contentRange{}, false},
		{"bytes 0--1/0", contentRange{}, false},
		{"bytes 0-0/0", contentRange{}, false},
		{"bytes 26-25/128", contentRange{}, false},
		{"bytes 0-128/128", contentRange{}, false},
		{"bytes -1-5/128", contentRange{}, false},
		{"bytes +1-5/128", contentRange{}, false},
		{"bytes 0x1-5/128", contentRange{}, false},
		{"bytes 1-5/128/9", contentRange{}, false},
		{"bytes 1-5-6/128", contentRange{}, false},
		{"bytes 0-1/99999999999999999999", contentRange{}, false},
		{"items 0-25/128", contentRange{}, false},
	} {
		t.Run(tt.h, func(t *testing.T) {
			got, err := parseContentRange(tt.h)
			if ok := err == nil; ok != tt.ok {
				t.Fatalf("parseContentRange(%q) error = %v, want ok %v", tt.h, err, tt.ok)
			}
			if err != nil && ferry.KindOf(err) != ferry.Invalid {
				t.Errorf("error kind = %v, want %v", ferry.KindOf(err), ferry.Invalid)
			}
			if got != tt.want {
				t.Errorf("parseContentRange(%q) = %+v, want %+v", tt.h, got, tt.want)
			}
		})
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-25/128", "bytes 0--1/0", "bytes */5", "bytes 9-1/10", "BYTES 1-1/2", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		cr, err := parseContentRange(h)
		if err != nil {
			if cr != (contentRange{}) {
				t.Fatalf("parseContentRange(%q) = %+v with error %v", h, cr, err)
			}
			return
		}
		if cr.start < 0 || cr.end <= cr.start || cr.end > cr.total {
			t.Fatalf("parseContentRange(%q) = %+v: not a range within the total", h, cr)
		}
	})
}
