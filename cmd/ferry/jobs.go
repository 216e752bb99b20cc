package main

// ferry jobs and ferry cancel: the user's imports and copies, from
// GET /v1.0/me/drive/operations and the monitor URLs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// jobStatus is a monitor's JSON, and an entry of /operations, which adds
// the monitor's id and URL, the item's name and two times.
type jobStatus struct {
	Operation         string  `json:"operation"`
	Status            string  `json:"status"`
	Percentage        float64 `json:"percentageComplete"`
	Bytes             int64   `json:"bytesTransferred"`
	Total             *int64  `json:"totalBytes"`
	BytesPerSecond    float64 `json:"bytesPerSecond"`
	ResourceID        string  `json:"resourceId"`
	StatusDescription string  `json:"statusDescription"`
	ErrorCode         string  `json:"errorCode"`
	Error             *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`

	MonitorID  string    `json:"monitorId"`
	MonitorURL string    `json:"monitorUrl"`
	Name       string    `json:"name"`
	Created    time.Time `json:"createdDateTime"`
	Modified   time.Time `json:"lastModifiedDateTime"`
}

func (s *jobStatus) finished() bool {
	switch s.Status {
	case "completed", "failed", "cancelled":
		return true
	}
	return false
}

// why is a failed job's reason in words.
func (s *jobStatus) why() string {
	msg, code := s.StatusDescription, s.ErrorCode
	if s.Error != nil {
		if msg == "" {
			msg = s.Error.Message
		}
		if code == "" {
			code = s.Error.Code
		}
	}
	switch {
	case msg == "" && code == "":
		return "no reason given"
	case code == "":
		return msg
	case msg == "":
		return code
	}
	return msg + " (" + code + ")"
}

// pollMonitor reads a monitor. Its status code varies with the job's state
// (202 running, 200/303 done, 4xx/5xx failed), so the body decides; a body
// without a status is the monitor's own error (404: gone).
func (c *apiClient) pollMonitor(ctx context.Context, monitor string) (*jobStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, monitor, nil)
	if err != nil {
		return nil, fmt.Errorf("%q is not a monitor URL", monitor)
	}
	// Keep a 303 to the item from being followed: the body says it all.
	client := *c.http
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachableError{c.base}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var st jobStatus
	if json.Unmarshal(b, &st) == nil && st.Status != "" {
		return &st, nil
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, errors.New("the monitor does not exist or has expired")
	}
	return nil, fmt.Errorf("the monitor answered HTTP %d without a status", resp.StatusCode)
}

func runJobs(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("jobs", "ferry jobs [--all] [--json]   (your running and recent imports and copies, newest first)", stderr)
	all := fs.Bool("all", false, "list every job the server keeps, not just the newest 50")
	asJSON := fs.Bool("json", false, "print the entries as a JSON array")
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if err := wantArgs(rest, 0, 0, ""); err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	var raw []json.RawMessage
	next := "/v1.0/me/drive/operations?$top=50"
	if *all {
		next = "/v1.0/me/drive/operations?$top=200"
	}
	for next != "" {
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"@odata.nextLink"`
		}
		if _, err := c.call(ctx, http.MethodGet, next, nil, &page); err != nil {
			if e := (*apiError)(nil); errors.As(err, &e) && (e.Status == http.StatusBadRequest && e.Message == "API not found" || e.Status == http.StatusNotFound && e.Code != "itemNotFound") {
				return fmt.Errorf("the server at %s cannot list jobs (it has no /me/drive/operations; it may be an older Ferry)", c.base)
			}
			return c.explain(err, "")
		}
		raw = append(raw, page.Value...)
		next = c.nextLink(page.NextLink)
		if !*all {
			break
		}
	}
	if *asJSON {
		if raw == nil {
			raw = []json.RawMessage{}
		}
		b, _ := json.MarshalIndent(raw, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	if len(raw) == 0 {
		fmt.Fprintln(stderr, "no jobs")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tDONE\tBYTES\tSPEED\tSTARTED\tNAME")
	for _, r := range raw {
		var j jobStatus
		if err := json.Unmarshal(r, &j); err != nil {
			return fmt.Errorf("the server at %s sent a job this ferry cannot read", c.base)
		}
		id := j.MonitorID
		if id == "" {
			id = monitorID(j.MonitorURL)
		}
		done, bytes, speed := "-", humanSize(j.Bytes), "-"
		if j.Total != nil {
			bytes += " / " + humanSize(*j.Total)
			done = strconv.FormatFloat(j.Percentage, 'f', 0, 64) + "%"
		}
		if j.BytesPerSecond > 0 && !j.finished() {
			speed = humanSize(int64(j.BytesPerSecond)) + "/s"
		}
		name := j.Name
		if name == "" {
			name = "(name not known yet)"
		}
		if j.Status == "failed" {
			name += ": " + j.why()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, cmpOr(j.Operation, "-"), j.Status, done, bytes, speed, cmpOr(since(j.Created), "-"), name)
	}
	return tw.Flush()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// monitorID is the id in a monitor URL …/monitor/{id}, or "".
func monitorID(monitor string) string {
	u, err := url.Parse(monitor)
	if err != nil {
		return ""
	}
	_, id, ok := strings.Cut(u.Path, "/monitor/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return ""
	}
	return id
}

func runCancel(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, o := newClientFlags("cancel", "ferry cancel MONITOR|ID…   (a monitor URL, or the ID that ferry jobs shows)", stderr)
	rest, err := parseClientFlags(fs, args, getenv)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageError{"give the monitor URL or ID of the job to cancel (ferry jobs lists them)"}
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	for _, arg := range rest {
		id, monitor := arg, ""
		if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
			if id = monitorID(arg); id == "" {
				return usageError{fmt.Sprintf("%s is not a monitor URL (…/monitor/ID)", arg)}
			}
			monitor = arg
		} else {
			if strings.ContainsAny(id, "/?# ") {
				return usageError{fmt.Sprintf("%q is not a job ID (ferry jobs lists them)", arg)}
			}
			monitor = c.base + "/monitor/" + url.PathEscape(id)
		}
		resp, err := c.send(ctx, http.MethodDelete, monitor, nil, nil)
		if err != nil {
			switch statusOf(err) {
			case http.StatusNotFound:
				return fmt.Errorf("job %s does not exist or has expired", id)
			case http.StatusConflict:
				state := "finished"
				if st, perr := c.pollMonitor(ctx, monitor); perr == nil {
					state = st.Status
				}
				return fmt.Errorf("job %s is already %s", id, finishedWord(state))
			}
			return c.explain(err, "")
		}
		var st jobStatus
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
		resp.Body.Close()
		fmt.Fprintf(stdout, "cancelled %s\n", id)
	}
	return nil
}

func finishedWord(state string) string {
	switch state {
	case "completed", "failed", "cancelled":
		return state
	}
	return "finished"
}

// since is how long ago t was, for people: "5s ago", "3m ago".
func since(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}
