package jobs

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestOriginName(t *testing.T) {
	long := strings.Repeat("é", 300) + ".bin"
	for _, tt := range []struct {
		disposition, url string
		want             string
	}{
		{"report.pdf", "http://h/x/y.bin", "report.pdf"},
		{"", "http://h/x/y.bin", "y.bin"},
		{"", "http://h/x/y.bin/", "y.bin"},
		{"", "http://h/a%20b%25c.txt?sig=secret", "a b%c.txt"},
		{"", "http://h/a%3Fb%3Ac%7Cd.txt", "a_b_c_d.txt"},
		{"", "http://h/%0Atab%09bed.txt", "tabbed.txt"},
		{"", "http://h/", ""},
		{"", "http://h", ""},
		{"", "http://h/..", ""},
		{"", "http://h/.", ""},
		{"  ", "http://h/%20%20", ""},
		{"", "http://h/.bashrc", ".bashrc"},
		{"", "http://h/" + url.PathEscape(long), strings.Repeat("é", 255)},
		{"bad\xffname", "http://h/ok.txt", "ok.txt"},
	} {
		t.Run(tt.url+"|"+tt.disposition, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := originName(tt.disposition, u); got != tt.want {
				t.Errorf("originName(%q, %s) = %q, want %q", tt.disposition, tt.url, got, tt.want)
			}
		})
	}
	if got := originName("", nil); got != "" {
		t.Errorf("originName with no URL = %q, want empty", got)
	}
}

func TestGeneratedName(t *testing.T) {
	got := generatedName(time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600)))
	if want := "download-2026-03-04-040607"; got != want {
		t.Errorf("generatedName = %q, want %q", got, want)
	}
}

func TestMimeType(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00")
	for _, tt := range []struct {
		contentType, name string
		head              []byte
		want              string
	}{
		{"text/plain; charset=utf-8", "a.bin", nil, "text/plain"},
		{"Image/JPEG", "a.bin", nil, "image/jpeg"},
		{"application/octet-stream", "a.pdf", nil, "application/pdf"},
		{"application/octet-stream", "a", png, "image/png"},
		{"", "a", png, "image/png"},
		{"not a type", "a", png, "image/png"},
		{"", "a", nil, "application/octet-stream"},
	} {
		if got := mimeType(tt.contentType, tt.name, tt.head); got != tt.want {
			t.Errorf("mimeType(%q, %q) = %q, want %q", tt.contentType, tt.name, got, tt.want)
		}
	}
}

func TestMeter(t *testing.T) {
	m := newMeter(5 * time.Second)
	t0 := time.Unix(1000, 0)
	if got := m.add(t0, 0); got != 0 {
		t.Errorf("first sample rate = %v, want 0", got)
	}
	if got := m.add(t0.Add(time.Second), 1000); got != 1000 {
		t.Errorf("rate after 1000 bytes in 1 s = %v, want 1000", got)
	}
	// Samples older than the window drop out: only the last 5 s count.
	m.add(t0.Add(2*time.Second), 1000)
	if got := m.add(t0.Add(8*time.Second), 4000); got != 500 {
		t.Errorf("rate over the window = %v, want 500", got)
	}
	// A reset (bytes went down) reports 0 rather than a negative rate.
	if got := m.add(t0.Add(9*time.Second), 0); got != 0 {
		t.Errorf("rate after a reset = %v, want 0", got)
	}
}
