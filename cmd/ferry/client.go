package main

// This file is the client side of Ferry's own API, shared by the commands
// that talk to a running server (ls, get, put, mkdir, rm, mv, jobs, cancel,
// import). It never fetches user-supplied URLs itself (the server does,
// through package fetch), which is why fetch's outbound-client test allows
// it.
//
// Errors from here are meant for people: one line, in the terms of the
// command ("folder /Downloads does not exist"), never a Go error chain.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// clientOpts are the flags every client command has.
type clientOpts struct {
	server, token string
}

func (o *clientOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "base URL of the Ferry server (env FERRY_SERVER)")
	fs.StringVar(&o.token, "token", "", "bearer token (env FERRY_TOKEN)")
}

// newClientFlags makes the flag set of a client command; usageLine is the
// first line of its --help.
func newClientFlags(name, usageLine string, stderr io.Writer) (*flag.FlagSet, *clientOpts) {
	fs := flag.NewFlagSet("ferry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &clientOpts{}
	o.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n(FERRY_SERVER and FERRY_TOKEN work as --server and --token)\n\nflags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs, o
}

// parseClientFlags parses args and turns flag errors into usage errors.
// Of the environment only FERRY_SERVER and FERRY_TOKEN count: a stray
// FERRY_FORCE or FERRY_NAME must not change what a command does.
func parseClientFlags(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	onlyServerAndToken := func(k string) string {
		if k == "FERRY_SERVER" || k == "FERRY_TOKEN" {
			return getenv(k)
		}
		return ""
	}
	rest, err := parseFlags(fs, args, onlyServerAndToken)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	return rest, nil
}

func (o *clientOpts) client() (*apiClient, error) {
	if o.token == "" {
		return nil, usageError{"give --token or FERRY_TOKEN (ferry serve prints one on first start; ferry token create makes more)"}
	}
	base := strings.TrimSuffix(o.server, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Sprintf("--server %q is not a URL like http://127.0.0.1:8080", o.server)}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute, // a commit of a large upload may take a while
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	// No overall timeout: downloads and uploads take as long as they take.
	return &apiClient{base: base, token: o.token, http: &http.Client{Transport: tr}}, nil
}

type apiClient struct {
	base, token string
	http        *http.Client
}

// apiError is an error answer of the server: its status and Graph error.
type apiError struct {
	Status        int
	Code, Message string
	RetryAfter    time.Duration
}

func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (%s, HTTP %d)", msg, e.Code, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// statusOf is the HTTP status of an apiError, or 0.
func statusOf(err error) int {
	var e *apiError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// transient reports whether trying the same request again may succeed.
func transient(err error) bool {
	var e *apiError
	if errors.As(err, &e) {
		return e.Status == http.StatusTooManyRequests || e.Status >= 500 && e.Status != http.StatusNotImplemented &&
			e.Status != http.StatusInsufficientStorage
	}
	var u unreachableError
	if errors.As(err, &u) {
		return true
	}
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, errTokenRefused)
}

// unreachableError is a request that got no answer at all.
type unreachableError struct{ server string }

func (e unreachableError) Error() string {
	return "the server at " + e.server + " is not reachable"
}

var errTokenRefused = errors.New("the token was refused (401): check --token or FERRY_TOKEN")

// abs makes an API path absolute on the server; absolute URLs stay.
func (c *apiClient) abs(p string) string {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return p
	}
	return c.base + p
}

// nextLink is where an @odata.nextLink leads, on this client's server: a
// server behind a proxy or with another --public-url names itself
// differently from --server, and the token must go only to --server.
func (c *apiClient) nextLink(link string) string {
	if link == "" || strings.HasPrefix(link, c.base+"/") {
		return link
	}
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(u.Path, "/v1.0/") && !strings.HasPrefix(u.Path, "/v2.0/") {
		return link
	}
	return c.base + u.RequestURI()
}

// onServer reports whether u is an API URL of our server, the only place
// the token may go. Monitor, upload and download URLs are capabilities and
// get no token (the server even refuses one on them).
func (c *apiClient) onServer(u string) bool {
	return strings.HasPrefix(u, c.base+"/v1.0/") || strings.HasPrefix(u, c.base+"/v2.0/")
}

// send makes one request and returns the response for any status below
// 400; an error status becomes *apiError (401 becomes errTokenRefused), and
// a request without an answer becomes unreachableError.
func (c *apiClient) send(ctx context.Context, method, u string, body io.Reader, hdr http.Header) (*http.Response, error) {
	u = c.abs(u)
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("cannot make a request to %s", redactURL(u))
	}
	if sr, ok := body.(*io.SectionReader); ok {
		req.ContentLength = sr.Size() // else the body would go chunked
		if sr.Size() == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.onServer(u) {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if strings.HasPrefix(u, c.base) {
			return nil, unreachableError{c.base}
		}
		host := u
		if pu, perr := url.Parse(u); perr == nil {
			host = pu.Scheme + "://" + pu.Host
		}
		return nil, unreachableError{host}
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && c.onServer(u) {
		return nil, errTokenRefused
	}
	return nil, readAPIError(resp)
}

func readAPIError(resp *http.Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	e := &apiError{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
	if s := resp.Header.Get("Retry-After"); s != "" {
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(min(n, 60)) * time.Second
		}
	}
	return e
}

// call sends a JSON request (in may be nil) and decodes a JSON answer into
// out (out may be nil). It returns the response headers.
func (c *apiClient) call(ctx context.Context, method, u string, in, out any) (http.Header, error) {
	var body io.Reader
	hdr := http.Header{}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	resp, err := c.send(ctx, method, u, body, hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
			return nil, fmt.Errorf("the server at %s gave an answer this ferry cannot read (HTTP %d from %s %s)", c.base, resp.StatusCode, method, redactURL(u))
		}
	}
	return resp.Header, nil
}

// redactURL drops the query of a URL, which may hold a capability.
func redactURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// item is the part of a Graph driveItem the CLI uses.
type item struct {
	ID                   string    `json:"id"`
	Name                 string    `json:"name"`
	Size                 int64     `json:"size"`
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime"`
	ParentReference      struct {
		ID   string `json:"id"`
		Path string `json:"path"`
	} `json:"parentReference"`
	File   *struct{} `json:"file"`
	Folder *struct {
		ChildCount int64 `json:"childCount"`
	} `json:"folder"`
	Root *struct{} `json:"root"`
}

func (it *item) isFolder() bool { return it.Folder != nil || it.Root != nil }

// drivePath is the item's absolute path in its drive, from its parent's
// path (/drive/root:/a%20b, percent-encoded) and its name.
func (it *item) drivePath() string {
	if it.Root != nil {
		return "/"
	}
	p := it.ParentReference.Path
	if i := strings.Index(p, "root:"); i >= 0 {
		p = p[i+len("root:"):]
	} else {
		p = ""
	}
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	return path.Join("/", p, it.Name)
}

// cleanPath makes a drive path absolute and clean: "Downloads/" is
// "/Downloads".
func cleanPath(p string) string {
	return path.Clean("/" + p)
}

// escapePath percent-encodes each segment of an absolute drive path for
// Graph's colon addressing (a ':' in a name would end the address).
func escapePath(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
	}
	return strings.Join(parts, "/")
}

// itemURL is the API address of the item at drive path p, with an
// optional action (children, content, createUploadSession).
func itemURL(p, action string) string {
	var u string
	if p = cleanPath(p); p == "/" {
		u = "/v1.0/me/drive/root"
		if action != "" {
			u += "/" + action
		}
		return u
	}
	u = "/v1.0/me/drive/root:/" + escapePath(p) + ":"
	if action != "" {
		u += "/" + action
	}
	return u
}

func itemIDURL(id, action string) string {
	u := "/v1.0/me/drive/items/" + url.PathEscape(id)
	if action != "" {
		u += "/" + action
	}
	return u
}

// lookup returns the item at drive path p, or nil and no error when there
// is none.
func (c *apiClient) lookup(ctx context.Context, p string) (*item, error) {
	var it item
	if _, err := c.call(ctx, http.MethodGet, itemURL(p, ""), nil, &it); err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, nil
		}
		return nil, c.explain(err, "")
	}
	return &it, nil
}

// stat returns the item at p or says it does not exist.
func (c *apiClient) stat(ctx context.Context, p string) (*item, error) {
	it, err := c.lookup(ctx, p)
	if err == nil && it == nil {
		err = errors.New(cleanPath(p) + " does not exist")
	}
	return it, err
}

// folder returns the folder at p, or says it is missing or not a folder.
func (c *apiClient) folder(ctx context.Context, p string) (*item, error) {
	it, err := c.lookup(ctx, p)
	switch {
	case err != nil:
		return nil, err
	case it == nil:
		return nil, fmt.Errorf("folder %s does not exist", cleanPath(p))
	case !it.isFolder():
		return nil, fmt.Errorf("%s is a file, not a folder", cleanPath(p))
	}
	return it, nil
}

// explain turns a server error into words for the user. where is the
// folder a name was to be created in, for 409.
func (c *apiClient) explain(err error, where string) error {
	var e *apiError
	if !errors.As(err, &e) {
		return err
	}
	msg := e.Message
	switch {
	case e.Status == http.StatusForbidden:
		if msg == "" {
			msg = "access denied"
		}
		return fmt.Errorf("the server refused (403): %s", msg)
	case e.Status == http.StatusInsufficientStorage || e.Code == "quotaLimitReached":
		return fmt.Errorf("the drive is full: %s", msg)
	case e.Status == http.StatusTooManyRequests:
		return fmt.Errorf("the server is busy (429): %s; try again later", msg)
	case e.Status == http.StatusServiceUnavailable:
		return fmt.Errorf("the server cannot do this right now (503): %s; try again later", msg)
	case e.Status >= 500:
		return fmt.Errorf("the server at %s failed (HTTP %d): %s", c.base, e.Status, msg)
	case e.Status == http.StatusBadRequest && msg == "API not found":
		return fmt.Errorf("the server at %s does not offer this (it may be an older Ferry)", c.base)
	}
	return e
}

// conflictError is the words for a taken name.
func conflictError(name, folder string) error {
	return fmt.Errorf("name %s is already taken in %s", name, cleanPath(folder))
}
