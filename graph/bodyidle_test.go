package graph_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/graph"
)

// countingMetrics counts the body cut-offs graph reports.
type countingMetrics struct{ timeouts chan struct{} }

func (countingMetrics) HTTPRequest(string, int, time.Duration) {}
func (countingMetrics) SessionFragment()                       {}
func (countingMetrics) SessionCommit(string)                   {}
func (m countingMetrics) BodyTimeout()                         { m.timeouts <- struct{}{} }

// TestSlowBodyCutOff sends the headers and the first bytes of an
// upload-session fragment, then nothing: the server cuts the body off
// after BodyIdleTimeout and closes the connection, the fragment's range is
// free again (the same fragment, sent whole, is accepted rather than
// refused as overlapping bytes still arriving), and the server keeps
// serving.
func TestSlowBodyCutOff(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newEnv(t, func(c *graph.Config) { c.BodyIdleTimeout = idle })
	m := countingMetrics{timeouts: make(chan struct{}, 10)}
	e.serve(func(d *graph.Deps) { d.Metrics = m })
	up := e.createSession("/v1.0/me/drive/root:/slow.bin:/createUploadSession", map[string]any{})
	u, err := url.Parse(up)
	if err != nil {
		t.Fatal(err)
	}

	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 1000
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nContent-Range: bytes 0-%d/%d\r\n\r\n",
		u.RequestURI(), u.Host, size, size-1, size)
	conn.Write(make([]byte, 10)) // then silence
	start := time.Now()

	// Whatever the server answers, it must close the connection soon
	// after the idle timeout.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("a body cut off answered %d", resp.StatusCode)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer the connection gave %v, want EOF (closed)", err)
	}
	took := time.Since(start)
	if took < idle || took > idle+5*time.Second {
		t.Errorf("connection closed after %v, want about %v", took, idle)
	}
	select {
	case <-m.timeouts:
	case <-time.After(5 * time.Second):
		t.Error("the cut-off was not counted")
	}

	// The range the stalled fragment held is free: sending it whole now
	// completes the file.
	data := make([]byte, size)
	e.fragment(up, data, 0, size).must(t, http.StatusCreated)
	e.do("GET", "/v1.0/me/drive/root:/slow.bin", nil).must(t, http.StatusOK)
	e.do("GET", "/healthz", nil).must(t, http.StatusOK)
}

// TestSlowButSteadyBody sends a body in small pieces, each within the idle
// timeout but all together well beyond it: the deadline is per read, so the
// upload goes through.
func TestSlowButSteadyBody(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newEnv(t, func(c *graph.Config) { c.BodyIdleTimeout = idle })
	pr, pw := io.Pipe()
	go func() {
		for range 8 {
			time.Sleep(idle / 3)
			pw.Write([]byte("0123456789"))
		}
		pw.Close()
	}()
	req, err := http.NewRequest("PUT", e.srv.URL+"/v1.0/me/drive/root:/steady.txt:/content", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 80
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("a steady upload slower than the idle timeout in total: %d", resp.StatusCode)
	}
}
