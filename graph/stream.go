package graph

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// Event streams (Server-Sent Events) follow job state that lives in the
// database, so that any node can serve any stream: a stream polls its
// store at most once per Config.StreamPoll (default 250 ms, so at most
// four events a second) and sends an event only when what it would send
// has changed. A comment line every keepAliveEvery keeps proxies from
// closing a quiet stream. Streams end when the client goes, when the
// server starts shutting down (Deps.Closing), or, for a monitor, after the
// final state.

// DefaultStreamPoll is the default of Config.StreamPoll.
const DefaultStreamPoll = 250 * time.Millisecond

// keepAliveEvery is how often a quiet stream sends a comment line.
const keepAliveEvery = 15 * time.Second

// finalEventID is the id of a monitor stream's final event. A client that
// reconnects with it in Last-Event-ID (an EventSource does so on its own
// after the server closes the stream) gets 204, which tells an
// EventSource to stop.
const finalEventID = "end"

// wantsEventStream reports whether the request's Accept header lists
// text/event-stream.
func wantsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			media, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(media), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// eventStream writes Server-Sent Events to one response. Flushes go
// through http.ResponseController, so that middleware wrapping the writer
// (with an Unwrap method) does not hold events back.
type eventStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	n    int
	last time.Time // of the last write, for keep-alives
}

// startEventStream sends the stream's 200 and headers.
func startEventStream(w http.ResponseWriter) (*eventStream, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	h.Del("Content-Length")
	rc := http.NewResponseController(w)
	// A server-wide write timeout would cut every long stream; this one
	// response has none. Servers without one answer ErrNotSupported.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, err
	}
	w.WriteHeader(http.StatusOK)
	s := &eventStream{w: w, rc: rc}
	return s, s.flush()
}

func (s *eventStream) flush() error {
	s.last = time.Now()
	return s.rc.Flush()
}

// send writes one event of the given type ("" for the default, message)
// with data, a single line of JSON, and id (a counter when "").
func (s *eventStream) send(typ string, data []byte, id string) error {
	s.n++
	if id == "" {
		id = strconv.Itoa(s.n)
	}
	var b bytes.Buffer
	if typ != "" {
		b.WriteString("event: " + typ + "\n")
	}
	b.WriteString("id: " + id + "\n")
	b.WriteString("data: ")
	b.Write(bytes.TrimRight(data, "\n"))
	b.WriteString("\n\n")
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	return s.flush()
}

// keepAlive writes a comment line if nothing was written for a while.
func (s *eventStream) keepAlive() error {
	if time.Since(s.last) < keepAliveEvery {
		return nil
	}
	if _, err := s.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return err
	}
	return s.flush()
}

// streamer holds what every stream needs: the polling period and the
// server's closing signal.
type streamer struct {
	log     *slog.Logger
	poll    time.Duration
	closing <-chan struct{}
}

// wait sleeps one polling period; false when the stream must end because
// the client went away or the server is closing.
func (st *streamer) wait(r *http.Request, t *time.Ticker) bool {
	select {
	case <-r.Context().Done():
		return false
	case <-st.closing:
		return false
	case <-t.C:
		return true
	}
}

// maxStreamErrors is how many store errors in a row end a stream; a
// client that reconnects starts afresh.
const maxStreamErrors = 20

// streamMonitor answers a monitor's event stream: 200 whatever the job's
// state, one event (the plain GET's JSON) each time that JSON changes, at
// most one per polling period, and after the final state's event, which
// has the id finalEventID, the end of the stream.
func (st *streamer) streamMonitor(w http.ResponseWriter, r *http.Request, jobs ferry.JobQueue, urls *urlBuilder, j *ferry.Job) {
	if j.Status.Final() && r.Header.Get("Last-Event-ID") == finalEventID {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s, err := startEventStream(w)
	if err != nil {
		return
	}
	t := time.NewTicker(st.poll)
	defer t.Stop()
	var last []byte
	failures := 0
	for {
		_, body := monitorAnswer(r, urls, j)
		data := marshal(body)
		switch {
		case j.Status.Final():
			s.send("", data, finalEventID)
			return
		case !bytes.Equal(data, last):
			err = s.send("", data, "")
		default:
			err = s.keepAlive()
		}
		if err != nil {
			return // the client is gone
		}
		last = data
		for {
			if !st.wait(r, t) {
				return
			}
			next, err := jobs.Job(r.Context(), j.ID)
			if err == nil {
				j, failures = next, 0
				break
			}
			if ferry.KindOf(err) == ferry.NotFound || r.Context().Err() != nil {
				return // expired meanwhile, or the client went
			}
			if failures++; failures >= maxStreamErrors {
				st.log.Warn("monitor stream: giving up after store errors", "err", err, "request_id", requestID(r))
				return
			}
		}
	}
}
