package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydrive/ferry/ferrytest"
)

// pacedOrigin serves content at about 2.5 MB/s in all, however many
// connections the importer opens, so that an import lasts long enough to
// report progress in between.
func pacedOrigin(t *testing.T, content []byte) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"paced"`)
		pw := pacedWriter{ResponseWriter: w, mu: &mu}
		http.ServeContent(pw, r, "paced.bin", time.Unix(1700000000, 0), strings.NewReader(string(content)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

type pacedWriter struct {
	http.ResponseWriter
	mu *sync.Mutex
}

func (p pacedWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), 64<<10)
		p.mu.Lock()
		m, err := p.ResponseWriter.Write(b[:n])
		time.Sleep(25 * time.Millisecond)
		p.mu.Unlock()
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

type sseEvent struct{ typ, id, data string }

// readEvents reads Server-Sent Events from url (with the token, if any)
// until the server ends the stream or ctx ends, and sends each on c, which
// it closes at the end.
func readEvents(ctx context.Context, t *testing.T, url, token string, c chan<- sseEvent) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					c <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.typ = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[len("data: "):]
			}
		}
	}()
	return resp
}

// TestEventStreamsEndToEnd follows a real import through its monitor's
// event stream and the operations list and stream, on SQLite and on
// PostgreSQL. On PostgreSQL the import is queued on one node and followed
// on another that shares the database: the streams read the database,
// not one process's memory.
func TestEventStreamsEndToEnd(t *testing.T) {
	content := make([]byte, 4<<20)
	for i := range content {
		content[i] = byte(i * 7)
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			org := pacedOrigin(t, content)
			env := map[string]string{"FERRY_FETCH_ALLOW": "127.0.0.1/32"}
			var a, b server
			if engine == "sqlite" {
				a = startInProcess(t, env, "--data", t.TempDir())
				b = a
			} else {
				dsn := ferrytest.PostgresDSN(t)
				a = startInProcess(t, env, "--data", t.TempDir(), "--db", dsn, "--node-id", "a")
				b = startInProcess(t, env, "--data", t.TempDir(), "--db", dsn, "--node-id", "b")
				b.token = a.token
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()

			ops := make(chan sseEvent, 1000)
			if r := readEvents(ctx, t, b.base+"/v1.0/me/drive/operations", b.token, ops); r.StatusCode != http.StatusOK {
				t.Fatalf("operations stream answered %d", r.StatusCode)
			}
			if ev := <-ops; ev.typ != "operations" || !strings.Contains(ev.data, `"value":[]`) {
				t.Errorf("first operations event %q %s; want an empty page", ev.typ, ev.data)
			}

			resp := a.do(t, "POST", "/v1.0/me/drive/root/children",
				`{"@microsoft.graph.sourceUrl":"`+org.URL+`/paced.bin","name":"paced.bin","file":{}}`,
				"Content-Type", "application/json", "Prefer", "respond-async")
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("import answered %d", resp.StatusCode)
			}
			monitor := resp.Header.Get("Location")
			monitorB := b.base + monitor[strings.Index(monitor, "/monitor/"):]

			evs := make(chan sseEvent, 1000)
			if r := readEvents(ctx, t, monitorB, "", evs); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("monitor stream answered %d %q", r.StatusCode, r.Header.Get("Content-Type"))
			}
			var statuses []string
			var last map[string]any
			progress, finals := 0, 0
			for ev := range evs {
				var m map[string]any
				if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
					t.Fatalf("event is not JSON: %s", ev.data)
				}
				statuses = append(statuses, m["status"].(string))
				if m["status"] == "inProgress" && m["bytesTransferred"].(float64) > 0 {
					progress++
				}
				if ev.id == "end" {
					finals++
				}
				last = m
			}
			if ctx.Err() != nil {
				t.Fatal("the monitor stream did not end within 2 minutes")
			}
			if last["status"] != "completed" || last["percentageComplete"] != 100.0 || finals != 1 {
				t.Errorf("stream ended with %v after %d final events; want one final event, completed at 100", last, finals)
			}
			if progress == 0 {
				t.Errorf("no progress event before the end; statuses %q", statuses)
			}

			// The list, on the other node too, shows the import with the
			// monitor's final JSON, its name and its monitor URL.
			list := decodeJSON(t, b.do(t, "GET", "/v1.0/me/drive/operations", "").Body)
			vals, _ := list["value"].([]any)
			if len(vals) != 1 {
				t.Fatalf("operations = %v, want one", list)
			}
			op := vals[0].(map[string]any)
			if op["name"] != "paced.bin" || op["status"] != "completed" || op["monitorUrl"] != monitorB ||
				op["resourceId"] != last["resourceId"] {
				t.Errorf("operation = %v", op)
			}

			// The operations stream saw it change, ending completed.
			sawDone := false
			for !sawDone {
				select {
				case ev := <-ops:
					sawDone = strings.Contains(ev.data, `"status":"completed"`) && strings.Contains(ev.data, `"name":"paced.bin"`)
				case <-time.After(10 * time.Second):
					t.Fatal("the operations stream did not show the import completed")
				}
			}
		})
	}
}
