package main

// This file is a client of Ferry's own API, used by `ferry import`. It never
// fetches user-supplied URLs itself (the server does, through package fetch),
// which is why fetch's outbound-client test allows it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

func runImport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o struct{ to, name, conflict, sha, server, token string }
	var wait bool
	fs := flag.NewFlagSet("ferry import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.to, "to", "/", "drive folder to put the file in, e.g. /Downloads")
	fs.StringVar(&o.name, "name", "", "file name (default: from the server's answer or the URL)")
	fs.StringVar(&o.conflict, "conflict", "fail", "when the name is taken: fail, replace or rename")
	fs.StringVar(&o.sha, "sha256", "", "expected SHA-256 of the file (hex); the import fails on a mismatch")
	fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "base URL of the Ferry server")
	fs.StringVar(&o.token, "token", "", "bearer token")
	fs.BoolVar(&wait, "wait", true, "wait for the import to finish, with a progress bar")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry import URL [flags]   (FERRY_SERVER and FERRY_TOKEN work too)\n\nflags:")
		fs.PrintDefaults()
	}
	rest, err := parseFlags(fs, args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	var source string
	switch len(rest) {
	case 1:
		source = rest[0]
	case 0:
		return usageError{"give the URL to import"}
	default:
		return usageError{fmt.Sprintf("unexpected argument %q", rest[1])}
	}
	if o.token == "" {
		return usageError{"give --token or FERRY_TOKEN"}
	}

	c := &apiClient{base: strings.TrimSuffix(o.server, "/"), token: o.token, http: &http.Client{Timeout: 30 * time.Second}}
	body := map[string]any{
		"@microsoft.graph.sourceUrl":        source,
		"@microsoft.graph.conflictBehavior": o.conflict,
		"file":                              map[string]any{},
	}
	if o.name != "" {
		body["name"] = o.name
	}
	if o.sha != "" {
		body["@ferry.sha256"] = o.sha
	}
	monitor, err := c.startImport(ctx, childrenPath(o.to), body)
	if err != nil {
		return err
	}
	if !wait {
		fmt.Fprintln(stdout, monitor)
		return nil
	}
	st, err := c.watch(ctx, monitor, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ferry: imported item %s\n", st.ResourceID)
	return nil
}

// childrenPath is the API path of a folder's children, given a drive path.
func childrenPath(folder string) string {
	folder = strings.Trim(folder, "/")
	if folder == "" {
		return "/v1.0/me/drive/root/children"
	}
	parts := strings.Split(folder, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1.0/me/drive/root:/" + strings.Join(parts, "/") + ":/children"
}

type apiClient struct {
	base, token string
	http        *http.Client
}

// apiError is a Graph error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (c *apiClient) startImport(ctx context.Context, path string, body any) (string, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", readAPIError(resp)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", errors.New("the server accepted the import but gave no monitor URL")
	}
	return loc, nil
}

func readAPIError(resp *http.Response) error {
	var e apiError
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
	if e.Error.Message != "" {
		return fmt.Errorf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
	}
	return fmt.Errorf("HTTP %s", resp.Status)
}

// monitorStatus is what a monitor URL answers.
type monitorStatus struct {
	Status            string  `json:"status"`
	Percentage        float64 `json:"percentageComplete"`
	Bytes             int64   `json:"bytesTransferred"`
	Total             *int64  `json:"totalBytes"`
	ResourceID        string  `json:"resourceId"`
	StatusDescription string  `json:"statusDescription"`
	ErrorCode         string  `json:"errorCode"`
}

// watch polls a monitor until the job ends, drawing a progress bar.
func (c *apiClient) watch(ctx context.Context, monitor string, out io.Writer) (*monitorStatus, error) {
	var bar *progressbar.ProgressBar
	defer func() {
		if bar != nil {
			_ = bar.Finish()
			fmt.Fprintln(out)
		}
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.poll(ctx, monitor)
		if err != nil {
			return nil, err
		}
		if bar == nil && (st.Total != nil || st.Bytes > 0) {
			total := int64(-1)
			if st.Total != nil {
				total = *st.Total
			}
			bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(out),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetDescription("importing"),
				progressbar.OptionShowCount(),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetWidth(30),
			)
		}
		if bar != nil {
			_ = bar.Set64(st.Bytes)
		}
		switch st.Status {
		case "completed":
			return st, nil
		case "failed":
			return nil, fmt.Errorf("import failed: %s (%s)", st.StatusDescription, st.ErrorCode)
		case "cancelled":
			return nil, errors.New("import cancelled")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

func (c *apiClient) poll(ctx context.Context, monitor string) (*monitorStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, monitor, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st monitorStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil || st.Status == "" {
		return nil, fmt.Errorf("monitor answered HTTP %s without a status", resp.Status)
	}
	return &st, nil
}
