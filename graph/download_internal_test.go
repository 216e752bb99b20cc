package graph

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrydrive/ferry"
)

func TestParseRange(t *testing.T) {
	const unsat = "416"
	for _, tt := range []struct {
		h    string
		size int64
		want string // "start+length", "" for ignored, "416"
	}{
		{"bytes=0-9", 100, "0+10"},
		{"bytes=0-0", 100, "0+1"},
		{"bytes=10-", 100, "10+90"},
		{"bytes=99-", 100, "99+1"},
		{"bytes=90-200", 100, "90+10"},
		{"bytes=-10", 100, "90+10"},
		{"bytes=-100", 100, "0+100"},
		{"bytes=-500", 100, "0+100"},
		{"BYTES=0-1", 100, "0+2"},
		{" bytes = 5 - 6 ", 100, "5+2"},
		{"bytes=100-", 100, unsat},
		{"bytes=100-200", 100, unsat},
		{"bytes=-0", 100, unsat},
		{"bytes=0-", 0, unsat},
		{"bytes=-1", 0, unsat},
		{"bytes=5-4", 100, ""},
		{"bytes=0-1,5-6", 100, ""},
		{"bytes=a-b", 100, ""},
		{"bytes=-", 100, ""},
		{"bytes=", 100, ""},
		{"bytes=1", 100, ""},
		{"bytes=+1-2", 100, ""},
		{"items=0-1", 100, ""},
		{"0-1", 100, ""},
		{"bytes=99999999999999999999-", 100, ""},
	} {
		t.Run(tt.h, func(t *testing.T) {
			br, ok, err := parseRange(tt.h, tt.size)
			var got string
			switch {
			case err != nil:
				got = unsat
				if k := ferry.KindOf(err); k != ferry.InvalidRange {
					t.Errorf("error kind = %v, want %v", k, ferry.InvalidRange)
				}
			case ok:
				got = itoa(br.start) + "+" + itoa(br.length)
			}
			if got != tt.want {
				t.Errorf("parseRange(%q, %d) = %q, want %q", tt.h, tt.size, got, tt.want)
			}
		})
	}
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=1-2,3-4", "bytes=9-1", "bytes=-0", "x"} {
		f.Add(s, int64(100))
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
			if size < 0 {
				return
			}
		}
		br, ok, err := parseRange(h, size)
		if err != nil && ok {
			t.Fatalf("parseRange(%q, %d): ok with error %v", h, size, err)
		}
		if ok && (br.start < 0 || br.length < 1 || br.start+br.length > size) {
			t.Fatalf("parseRange(%q, %d) = %+v: outside the representation", h, size, br)
		}
	})
}

func TestPrefers(t *testing.T) {
	for _, tt := range []struct {
		headers []string
		want    bool
	}{
		{[]string{"respond-async"}, true},
		{[]string{"Respond-Async"}, true},
		{[]string{"respond-async, wait=10"}, true},
		{[]string{"wait=10, respond-async"}, true},
		{[]string{"wait=10", "respond-async"}, true},
		{[]string{" respond-async ; foo=bar"}, true},
		{[]string{`return=minimal; x="a, respond-async", wait=1`}, false},
		{[]string{`odata.include-annotations="*", respond-async`}, true},
		{[]string{"respond-asynchronously"}, false},
		{[]string{"wait=10"}, false},
		{nil, false},
		{[]string{""}, false},
	} {
		t.Run(strings.Join(tt.headers, "|"), func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.headers {
				h.Add("Prefer", v)
			}
			if got := prefers(h, "respond-async"); got != tt.want {
				t.Errorf("prefers(%q) = %v, want %v", tt.headers, got, tt.want)
			}
		})
	}
}

func TestSigner(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := &signer{key: []byte("k1"), ttl: time.Hour, now: func() time.Time { return now }}
	tok := s.token("ITEM1")
	if id, ok := s.verify(tok); !ok || id != "ITEM1" {
		t.Fatalf("verify(token) = %q, %v; want ITEM1, true", id, ok)
	}
	other := &signer{key: []byte("k2"), ttl: time.Hour, now: s.now}
	if _, ok := other.verify(tok); ok {
		t.Error("a token verified under another key")
	}
	// Flip each byte of the token in turn: none may verify.
	for i := range tok {
		b := []byte(tok)
		b[i] ^= 1
		if id, ok := s.verify(string(b)); ok && id != "ITEM1" {
			t.Errorf("tampered token %q verified as %q", b, id)
		}
	}
	now = now.Add(time.Hour)
	if _, ok := s.verify(tok); ok {
		t.Error("an expired token verified")
	}
	for _, bad := range []string{"", "x", "!!!!", strings.Repeat("A", 60)} {
		if _, ok := s.verify(bad); ok {
			t.Errorf("verify(%q) = ok", bad)
		}
	}
}
