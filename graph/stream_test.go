package graph_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/graph"
	"github.com/google/go-cmp/cmp"
)

// event is one Server-Sent Event as a client parses it.
type event struct {
	typ, id, data string
}

// sse is an open event stream; its events arrive on c, which is closed
// when the server ends the stream.
type sse struct {
	resp   *http.Response
	c      chan event
	cancel context.CancelFunc
}

// openStream sends GET url with Accept: text/event-stream (and the token,
// unless tok is ""), on a client of its own that keeps no connections.
func openStream(t *testing.T, url, tok string, hdr ...string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DisableKeepAlives: true}
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &sse{resp: res, c: make(chan event, 1000), cancel: cancel}
	t.Cleanup(func() { cancel(); res.Body.Close(); tr.CloseIdleConnections() })
	go func() {
		defer close(s.c)
		br := bufio.NewReader(res.Body)
		var ev event
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.data != "" {
					s.c <- ev
				}
				ev = event{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event: "):
				ev.typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

// next waits for the next event; ok is false once the stream has ended.
func (s *sse) next(t *testing.T, within time.Duration) (event, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.c:
		return ev, ok
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
		return event{}, false
	}
}

func decodeEvent(t *testing.T, ev event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("event data is not JSON: %v\n%s", err, ev.data)
	}
	return m
}

// importJob queues an upload from URL through the API and returns its job.
func (e *env) importJob(name string) *ferry.Job {
	e.t.Helper()
	e.do("POST", "/v1.0/me/drive/root/children", map[string]any{
		"@microsoft.graph.sourceUrl": "https://example.org/" + name, "name": name, "file": map[string]any{},
	}, async).must(e.t, http.StatusAccepted)
	return e.jobs.last(e.t)
}

func TestMonitorStreamFollowsTheJobToItsEnd(t *testing.T) {
	e := newEnv(t)
	j := e.importJob("big.iso")
	mon := e.srv.URL + "/monitor/" + j.ID
	s := openStream(t, mon, "")
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream answered %d %q, want 200 text/event-stream", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	first, _ := s.next(t, 5*time.Second)
	if m := decodeEvent(t, first); m["status"] != "notStarted" {
		t.Errorf("first event %s, want status notStarted", first.data)
	}

	// Each state change shows up as one event carrying the plain GET's
	// JSON of that moment.
	for _, b := range []int64{100, 500} {
		e.jobs.set(j.ID, func(j *ferry.Job) { j.Status, j.Bytes, j.Total = ferry.StatusInProgress, b, 1000 })
		ev, ok := s.next(t, 5*time.Second)
		if !ok {
			t.Fatal("the stream ended while the job runs")
		}
		plain := e.do("GET", mon, nil, noAuth()).must(t, http.StatusAccepted)
		if strings.TrimSpace(string(plain.body)) != ev.data {
			t.Errorf("event at %d bytes:\n%s\nwant the plain GET's JSON:\n%s", b, ev.data, plain.body)
		}
	}
	e.jobs.set(j.ID, func(j *ferry.Job) {
		j.Status, j.Bytes, j.ResourceID, j.Finished = ferry.StatusCompleted, 1000, "ITEM1", time.Now()
	})
	final, ok := s.next(t, 5*time.Second)
	if !ok {
		t.Fatal("the stream ended without a final event")
	}
	if m := decodeEvent(t, final); m["status"] != "completed" || m["percentageComplete"] != 100.0 || m["resourceId"] != "ITEM1" {
		t.Errorf("final event %s, want completed at 100 with resourceId ITEM1", final.data)
	}
	if final.id != "end" {
		t.Errorf("final event id %q, want end", final.id)
	}
	if ev, ok := s.next(t, 5*time.Second); ok {
		t.Errorf("an event after the final one: %+v; want the end of the stream", ev)
	}
	// Plain GET is unchanged.
	plain := e.do("GET", mon, nil, noAuth()).must(t, http.StatusOK)
	if strings.TrimSpace(string(plain.body)) != final.data {
		t.Errorf("final event %s differs from the plain GET %s", final.data, plain.body)
	}
	// An EventSource reconnecting after the end is told to stop.
	again := openStream(t, mon, "", "Last-Event-ID", "end")
	if again.resp.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after the final event answered %d, want 204", again.resp.StatusCode)
	}
}

// TestMonitorStreamEveryState: 200 and exactly one event, the final one,
// for every final state, and plain GET keeps its own status for each.
func TestMonitorStreamEveryState(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		status ferry.JobStatus
		code   ferry.JobErrorCode
		plain  int
	}{
		{ferry.StatusCompleted, "", http.StatusOK},
		{ferry.StatusFailed, "itemNotFound", http.StatusBadRequest},
		{ferry.StatusFailed, "", http.StatusInternalServerError},
		{ferry.StatusCancelled, "", http.StatusGone},
	} {
		t.Run(string(tt.status)+string(tt.code), func(t *testing.T) {
			j := e.importJob("x.bin")
			e.jobs.set(j.ID, func(j *ferry.Job) {
				j.Status, j.ErrorCode, j.Finished = tt.status, tt.code, time.Now()
				if tt.status == ferry.StatusCompleted {
					j.ResourceID = "ITEM"
				}
			})
			mon := e.srv.URL + "/monitor/" + j.ID
			s := openStream(t, mon, "")
			if s.resp.StatusCode != http.StatusOK {
				t.Errorf("stream answered %d, want 200", s.resp.StatusCode)
			}
			ev, ok := s.next(t, 5*time.Second)
			if !ok || ev.id != "end" {
				t.Fatalf("event %+v, %v; want the final one", ev, ok)
			}
			plain := e.do("GET", mon, nil, noAuth()).must(t, tt.plain)
			if strings.TrimSpace(string(plain.body)) != ev.data {
				t.Errorf("event %s, want the plain GET's %s", ev.data, plain.body)
			}
			if _, ok := s.next(t, 5*time.Second); ok {
				t.Error("the stream goes on after the final event")
			}
		})
	}
	// A running job's stream also answers 200, and unknown monitors 404.
	j := e.importJob("y.bin")
	e.jobs.set(j.ID, func(j *ferry.Job) { j.Status = ferry.StatusCancelPending })
	s := openStream(t, e.srv.URL+"/monitor/"+j.ID, "")
	if ev, _ := s.next(t, 5*time.Second); s.resp.StatusCode != http.StatusOK || decodeEvent(t, ev)["status"] != "cancelPending" {
		t.Errorf("stream of a cancelPending job: %d %s", s.resp.StatusCode, ev.data)
	}
	e.do("GET", e.srv.URL+"/monitor/mon_NOSUCH", nil, noAuth(), header("Accept", "text/event-stream")).
		wantError(t, http.StatusNotFound, "itemNotFound")
}

// TestMonitorStreamRate: a job changing a hundred times a second yields at
// most one event per polling period (four a second), and a quiet job none.
func TestMonitorStreamRate(t *testing.T) {
	e := newEnv(t)
	j := e.importJob("fast.bin")
	s := openStream(t, e.srv.URL+"/monitor/"+j.ID, "")
	s.next(t, 5*time.Second) // the first event comes at once
	start := time.Now()
	for i := range 100 {
		e.jobs.set(j.ID, func(j *ferry.Job) { j.Status, j.Bytes, j.Total = ferry.StatusInProgress, int64(i+1), 1000 })
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	n := 0
	for drained := false; !drained; {
		select {
		case <-s.c:
			n++
		case <-time.After(600 * time.Millisecond):
			drained = true
		}
	}
	// At most one event per period the changes lasted, plus one for the
	// last change seen after they stopped.
	if limit := int(took/graph.DefaultStreamPoll) + 2; n > limit || n < 2 {
		t.Errorf("%d events for 100 changes over %v; want between 2 and %d (4 a second)", n, took, limit)
	}
	select {
	case ev := <-s.c:
		t.Errorf("an event for a job that did not change: %s", ev.data)
	case <-time.After(700 * time.Millisecond):
	}
}

// TestStreamClientGoneLeaksNothing: a client that disconnects mid-stream
// leaves no goroutine behind (the handler returns), for both kinds of
// stream; and closing the server's Closing channel ends open streams.
func TestStreamClientGoneLeaksNothing(t *testing.T) {
	closing := make(chan struct{})
	e := newEnv(t)
	e.serve(func(d *graph.Deps) { d.Closing = closing })
	j := e.importJob("slow.bin")
	e.do("GET", "/v1.0/me/drive/operations", nil).must(t, http.StatusOK)
	e.srv.CloseClientConnections()
	keep := goleak.IgnoreCurrent()

	for _, u := range []string{e.srv.URL + "/monitor/" + j.ID, e.srv.URL + "/v1.0/me/drive/operations"} {
		s := openStream(t, u, e.token)
		if _, ok := s.next(t, 5*time.Second); !ok {
			t.Fatalf("%s: no first event", u)
		}
		s.cancel()
		s.resp.Body.Close()
	}
	goleak.VerifyNone(t, keep)

	s := openStream(t, e.srv.URL+"/v1.0/me/drive/operations", e.token)
	s.next(t, 5*time.Second)
	close(closing)
	if _, ok := s.next(t, 5*time.Second); ok {
		t.Error("the stream goes on after the server started closing")
	}
}

func TestListOperations(t *testing.T) {
	e := newEnv(t)
	var jobs []*ferry.Job
	for _, n := range []string{"a.bin", "b.bin", "c.bin"} {
		jobs = append(jobs, e.importJob(n))
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	e.jobs.set(jobs[0].ID, func(j *ferry.Job) {
		j.Status, j.ErrorCode, j.ErrorMessage, j.Finished = ferry.StatusFailed, "itemNotFound", "The source answered 404 Not Found.", time.Now()
	})
	e.jobs.set(jobs[1].ID, func(j *ferry.Job) {
		j.Status, j.Bytes, j.Total, j.BytesPerSecond = ferry.StatusInProgress, 250, 1000, 50
	})
	// Another user's job is never listed.
	e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "https://example.org/o"},
		async, bearer(e.other)).must(t, http.StatusAccepted)

	page := e.do("GET", "/v1.0/me/drive/operations", nil).must(t, http.StatusOK).json(t)
	vals := page["value"].([]any)
	if len(vals) != 3 || page["@odata.nextLink"] != nil {
		t.Fatalf("operations = %v; want me's three jobs and no next link", page)
	}
	var got []string
	for _, v := range vals {
		got = append(got, v.(map[string]any)["name"].(string))
	}
	if diff := cmp.Diff([]string{"c.bin", "b.bin", "a.bin"}, got); diff != "" {
		t.Errorf("names, newest first (-want +got):\n%s", diff)
	}
	// Each entry is the monitor's plain GET plus the list's fields.
	for i, v := range vals {
		m := v.(map[string]any)
		j := jobs[2-i]
		if m["monitorId"] != j.ID || m["monitorUrl"] != e.srv.URL+"/monitor/"+j.ID {
			t.Errorf("entry %d: monitorId %v, monitorUrl %v; want %s", i, m["monitorId"], m["monitorUrl"], j.ID)
		}
		plain := e.do("GET", m["monitorUrl"].(string), nil, noAuth()).json(t)
		for k, want := range plain {
			if !cmp.Equal(m[k], want) {
				t.Errorf("entry %d: %s = %v, want the monitor's %v", i, k, m[k], want)
			}
		}
		for _, k := range []string{"createdDateTime", "lastModifiedDateTime"} {
			if s, _ := m[k].(string); !strings.HasSuffix(s, "Z") {
				t.Errorf("entry %d: %s = %v, want a UTC time", i, k, m[k])
			}
		}
	}
	failed := vals[2].(map[string]any)
	if failed["status"] != "failed" || failed["errorCode"] != "itemNotFound" || failed["error"] == nil {
		t.Errorf("failed entry = %v", failed)
	}

	// Paging with $top, through every prefix; a read-only token suffices.
	for _, p := range []string{"/v1.0/me/drive/operations", "/v2.0/drive/operations", "/v1.0/drives/" + string(e.drive.ID) + "/operations"} {
		var names []string
		next := p + "?$top=2"
		for range 5 {
			r := e.do("GET", next, nil, bearer(e.ro)).must(t, http.StatusOK).json(t)
			for _, v := range r["value"].([]any) {
				names = append(names, v.(map[string]any)["name"].(string))
			}
			n, _ := r["@odata.nextLink"].(string)
			if n == "" {
				break
			}
			if !strings.HasPrefix(n, e.srv.URL+p) {
				t.Errorf("%s: next link %q is not an absolute URL of the same route", p, n)
			}
			next = n
		}
		if diff := cmp.Diff([]string{"c.bin", "b.bin", "a.bin"}, names); diff != "" {
			t.Errorf("%s: pages (-want +got):\n%s", p, diff)
		}
	}

	e.do("GET", "/v1.0/me/drive/operations", nil, noAuth()).wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do("GET", "/v1.0/drives/"+string(e.odrive.ID)+"/operations", nil).wantError(t, http.StatusNotFound, "itemNotFound")
	for _, q := range []string{"$top=0", "$top=201", "$top=x", "$skiptoken=***", "$skiptoken=bm9wZQ"} {
		e.do("GET", "/v1.0/me/drive/operations?"+q, nil).wantError(t, http.StatusBadRequest, "invalidRequest")
	}
	e.do("POST", "/v1.0/me/drive/operations", nil).wantError(t, http.StatusMethodNotAllowed, "notAllowed")
	if got := e.do("GET", "/v1.0/me/drive/operations", nil, bearer(e.other)).json(t)["value"].([]any); len(got) != 1 {
		t.Errorf("other's operations = %v, want its one job", got)
	}
}

func TestOperationsStream(t *testing.T) {
	e := newEnv(t)
	a := e.importJob("a.bin")
	s := openStream(t, e.srv.URL+"/v1.0/me/drive/operations?$top=10", e.token)
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream answered %d %q", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	first, _ := s.next(t, 5*time.Second)
	plain := e.do("GET", "/v1.0/me/drive/operations?$top=10", nil).must(t, http.StatusOK)
	if first.typ != "operations" || first.data != strings.TrimSpace(string(plain.body)) {
		t.Errorf("first event %q %s; want type operations with the plain GET's page %s", first.typ, first.data, plain.body)
	}

	// A change to a listed job and a new job each arrive as one entry.
	e.jobs.set(a.ID, func(j *ferry.Job) { j.Status, j.Bytes, j.Total = ferry.StatusInProgress, 10, 100 })
	ev, _ := s.next(t, 5*time.Second)
	if m := decodeEvent(t, ev); ev.typ != "operation" || m["monitorId"] != a.ID || m["bytesTransferred"] != 10.0 {
		t.Errorf("event after progress: %q %s", ev.typ, ev.data)
	}
	b := e.importJob("b.bin")
	ev, _ = s.next(t, 5*time.Second)
	if m := decodeEvent(t, ev); ev.typ != "operation" || m["monitorId"] != b.ID || m["name"] != "b.bin" {
		t.Errorf("event after a new job: %q %s", ev.typ, ev.data)
	}
	// Nothing changes: nothing is sent. Another user's jobs are not sent.
	e.do("POST", "/v1.0/me/drive/root/children", map[string]any{"@microsoft.graph.sourceUrl": "https://example.org/o"},
		async, bearer(e.other)).must(t, http.StatusAccepted)
	select {
	case ev := <-s.c:
		t.Errorf("an event with no change of me's jobs: %s", ev.data)
	case <-time.After(time.Second):
	}
	e.jobs.set(b.ID, func(j *ferry.Job) { j.Status, j.Finished = ferry.StatusCancelled, time.Now() })
	ev, _ = s.next(t, 5*time.Second)
	if m := decodeEvent(t, ev); m["monitorId"] != b.ID || m["status"] != "cancelled" {
		t.Errorf("event after a cancel: %s", ev.data)
	}

	if r := openStream(t, e.srv.URL+"/v1.0/me/drive/operations", ""); r.resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("stream without a token answered %d, want 401", r.resp.StatusCode)
	}
}
