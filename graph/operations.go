package graph

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydrive/ferry"
)

// operation is one entry of GET {drive}/operations (a Ferry extension): the
// job's monitor JSON, as a plain GET of the monitor shows it, plus what a
// list needs to show and follow it.
type operation struct {
	jobStatus
	MonitorID  string `json:"monitorId"`
	MonitorURL string `json:"monitorUrl"`
	Name       string `json:"name"`
	Created    string `json:"createdDateTime"`
	Modified   string `json:"lastModifiedDateTime"`
}

// operationsPage is the body of GET {drive}/operations.
type operationsPage struct {
	Value    []operation `json:"value"`
	NextLink string      `json:"@odata.nextLink,omitempty"`
}

func renderOperation(r *http.Request, urls *urlBuilder, j *ferry.Job) operation {
	_, s := monitorAnswer(r, urls, j)
	return operation{
		jobStatus:  s,
		MonitorID:  j.ID,
		MonitorURL: urls.abs(r, "/monitor/"+url.PathEscape(j.ID)),
		Name:       j.ItemName,
		Created:    graphTime(j.Created),
		Modified:   graphTime(j.Updated),
	}
}

// parseJobPage reads $top (1..200, default 50) and $skiptoken.
func parseJobPage(q url.Values) (ferry.JobPage, error) {
	var p ferry.JobPage
	if s, ok := queryValue(q, "top"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > ferry.MaxJobPage {
			return p, ferry.Errorf(ferry.Invalid, "$top must be a whole number from 1 to %d, not %q", ferry.MaxJobPage, s).WithCode("invalidQueryOption")
		}
		p.Limit = n
	}
	if s, ok := queryValue(q, "skiptoken", "skipToken"); ok {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			return p, ferry.Errorf(ferry.Invalid, "the $skiptoken is not valid").WithCode("invalidQueryOption")
		}
		p.Cursor = string(b)
	}
	return p, nil
}

// handleListOperations answers GET {drive}/operations: the caller's imports
// and copies, newest first, one page at a time ($top, then
// @odata.nextLink). Asked with Accept: text/event-stream, it streams the
// list instead (streamOperations). Only the caller's own jobs are listed;
// reading them needs Files.Read.
func handleListOperations(log *slog.Logger, accounts ferry.AccountStore, jobs ferry.JobQueue, urls *urlBuilder, st *streamer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := callerDrive(r, accounts); err != nil { // a drive the caller does not own: 404
			writeError(w, r, log, err)
			return
		}
		p, err := parseJobPage(r.URL.Query())
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		user := principal(r).User.ID
		js, next, err := jobs.UserJobs(r.Context(), user, p)
		if err != nil {
			if ferry.KindOf(err) == ferry.Invalid {
				err = ferry.Errorf(ferry.Invalid, "the $skiptoken is not valid").WithCode("invalidQueryOption")
			}
			writeError(w, r, log, err)
			return
		}
		page := operationsPage{Value: []operation{}}
		for _, j := range js {
			page.Value = append(page.Value, renderOperation(r, urls, j))
		}
		if next != "" {
			nq := r.URL.Query()
			for _, k := range []string{"$skiptoken", "skiptoken", "$skipToken", "skipToken"} {
				nq.Del(k)
			}
			nq.Set("$skiptoken", base64.RawURLEncoding.EncodeToString([]byte(next)))
			page.NextLink = urls.abs(r, r.URL.EscapedPath()+"?"+nq.Encode())
		}
		if wantsEventStream(r) && r.Method == http.MethodGet {
			st.streamOperations(w, r, jobs, urls, user, page, js)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusOK, page)
	})
}

// changeLookback is how far back in time each poll of an operations stream
// reads changes again. A job's change time is taken before its write
// commits and on whichever node wrote it, so a change may become visible
// after a later one was already read; reading the last few seconds again,
// and sending only what was not sent, catches those.
const changeLookback = 5 * time.Second

// changePages caps the pages of changes one poll reads; more wait for the
// next poll.
const changePages = 5

// streamOperations answers GET {drive}/operations with Accept:
// text/event-stream. The first event, of type "operations", carries the
// same page as the plain GET (first, the $top newest jobs); after it, each
// event of type "operation" carries one entry, for a job that is new or
// has changed since it was last sent, at most one per job and polling
// period. The stream ends only when the client goes or the server closes.
func (st *streamer) streamOperations(w http.ResponseWriter, r *http.Request, jobs ferry.JobQueue, urls *urlBuilder, user ferry.UserID, page operationsPage, js []*ferry.Job) {
	s, err := startEventStream(w)
	if err != nil {
		return
	}
	if s.send("operations", marshal(page), "") != nil {
		return
	}
	sent := map[string]time.Time{} // job → the change last sent
	newest := time.Now()
	for _, j := range js {
		sent[j.ID] = j.Updated
	}
	mark := ferry.ChangeMark{Updated: newest.Add(-changeLookback)}
	t := time.NewTicker(st.poll)
	defer t.Stop()
	failures := 0
	for st.wait(r, t) {
		caughtUp := false
		for range changePages {
			ch, err := jobs.JobChanges(r.Context(), user, mark, ferry.MaxJobPage)
			if err != nil {
				if r.Context().Err() != nil {
					return
				}
				if failures++; failures >= maxStreamErrors {
					st.log.Warn("operations stream: giving up after store errors", "err", err, "request_id", requestID(r))
					return
				}
				break
			}
			failures = 0
			for _, j := range ch {
				mark = ferry.MarkOf(j)
				if j.Updated.After(newest) {
					newest = j.Updated
				}
				if prev, ok := sent[j.ID]; ok && prev.Equal(j.Updated) {
					continue
				}
				if s.send("operation", marshal(renderOperation(r, urls, j)), "") != nil {
					return
				}
				sent[j.ID] = j.Updated
			}
			if len(ch) < ferry.MaxJobPage {
				caughtUp = true
				break
			}
		}
		if !caughtUp {
			continue // more changes than a poll reads: go on from the mark
		}
		mark = ferry.ChangeMark{Updated: newest.Add(-changeLookback)}
		for id, u := range sent {
			if u.Before(mark.Updated) {
				delete(sent, id) // older than anything read again
			}
		}
		if s.keepAlive() != nil {
			return
		}
	}
}
