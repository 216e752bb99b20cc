package fetch_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/fetch"
)

// BenchmarkDownload compares reading a 64 MiB body from a loopback origin
// through fetch with reading it through a plain net/http client, as
// io.CopyBuffer with a 1 MiB buffer would.
func BenchmarkDownload(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB
	srv := newOriginB(b, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	})
	buf := make([]byte, 1<<20)
	b.Run("fetch", func(b *testing.B) {
		c := fetch.New(fetch.Options{Allow: allowLoopback})
		defer c.Close()
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			resp, err := c.Open(b.Context(), fetch.Request{URL: srv})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	})
	b.Run("nethttp", func(b *testing.B) {
		tr := &http.Transport{DisableCompression: true, ReadBufferSize: 64 << 10}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			resp, err := hc.Get(srv)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	})
}
