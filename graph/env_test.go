package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/fsblob"
	"github.com/ferrydrive/ferry/graph"
	"github.com/ferrydrive/ferry/sqlstore"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// env is one running API on a fresh SQLite store and blob directory, with
// a user "me" (read-write token), a read-only token for "me", and a second
// user "other".
type env struct {
	t      *testing.T
	cfg    graph.Config
	deps   graph.Deps
	srv    *httptest.Server
	store  *sqlstore.Store
	blobs  *fsblob.Store
	jobs   *fakeJobs
	clock  *clock
	token  string // me, Files.ReadWrite
	ro     string // me, Files.Read
	other  string // other, Files.ReadWrite
	me     *ferry.User
	drive  *ferry.Drive
	odrive *ferry.Drive
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newEnv(t *testing.T, configure ...func(*graph.Config)) *env {
	t.Helper()
	return newEnvOn(t, filepath.Join(t.TempDir(), "ferry.db"), configure...)
}

// newEnvOn is newEnv on the database dsn names (a SQLite file, or an empty
// PostgreSQL database from ferrytest.PostgresDSN).
func newEnvOn(t *testing.T, dsn string, configure ...func(*graph.Config)) *env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	store, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := fsblob.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, blobs: blobs, jobs: newFakeJobs(), clock: &clock{t: time.Now()}}
	e.me, e.drive, e.token = e.user("me", ferry.ScopeReadWrite)
	var err2 error
	if e.ro, err2 = store.CreateToken(ctx, e.me.ID, ferry.Scopes{ferry.ScopeRead}); err2 != nil {
		t.Fatal(err2)
	}
	_, e.odrive, e.other = e.user("other", ferry.ScopeReadWriteAll)

	cfg := graph.Config{SigningKey: []byte("test key"), MaxUploadSize: 1 << 20}
	for _, f := range configure {
		f(&cfg)
	}
	e.cfg = cfg
	e.deps = graph.Deps{Accounts: store, Items: store, Blobs: blobs, Jobs: e.jobs, Sessions: store, Shares: store, Now: e.clock.now}
	e.serve(func(*graph.Deps) {})
	return e
}

// serve starts the API again, on a new server, with the dependencies
// change makes of e's (a wrapped store, a logger); requests go there from
// then on.
func (e *env) serve(change func(*graph.Deps)) {
	e.t.Helper()
	d := e.deps
	change(&d)
	e.srv = httptest.NewServer(graph.NewHandler(e.cfg, d))
	e.t.Cleanup(e.srv.Close)
}

func (e *env) user(name string, scope ferry.Scope) (*ferry.User, *ferry.Drive, string) {
	e.t.Helper()
	ctx := e.t.Context()
	u, _, err := e.store.EnsureUser(ctx, name, 1<<30)
	if err != nil {
		e.t.Fatal(err)
	}
	tok, err := e.store.CreateToken(ctx, u.ID, ferry.Scopes{scope})
	if err != nil {
		e.t.Fatal(err)
	}
	d, err := e.store.DriveOf(ctx, u.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return u, d, tok
}

// resp is a finished response with its body read.
type resp struct {
	*http.Response
	body []byte
}

func (r *resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v\n%s", r.Request.Method, r.Request.URL, err, r.body)
	}
	return m
}

// errorCode returns error.code of a Graph error body.
func (r *resp) errorCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.body)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error without a message: %s", r.body)
	}
	code, _ := e["code"].(string)
	return code
}

type reqOpt func(*http.Request)

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func bearer(tok string) reqOpt { return header("Authorization", "Bearer "+tok) }

// noAuth removes the default token.
func noAuth() reqOpt { return func(r *http.Request) { r.Header.Del("Authorization") } }

// do sends a request with the read-write token unless opts change it. A
// path starting with "http" is used as is; redirects are not followed.
func (e *env) do(method, path string, body any, opts ...reqOpt) *resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	u := path
	if !strings.HasPrefix(path, "http") {
		u = e.srv.URL + path
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, u, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, ok := body.(map[string]any); ok {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	for _, o := range opts {
		o(req)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return &resp{Response: res, body: b}
}

// must fails the test unless the response has the status.
func (r *resp) must(t *testing.T, status int) *resp {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d\n%s", r.Request.Method, r.Request.URL, r.StatusCode, status, r.body)
	}
	return r
}

// wantError checks a Graph error response: status, code, JSON type.
func (r *resp) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.StatusCode != status {
		t.Errorf("%s %s: status %d, want %d\n%s", r.Request.Method, r.Request.URL, r.StatusCode, status, r.body)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, want application/json", r.Request.Method, r.Request.URL, ct)
	}
	if got := r.errorCode(t); got != code {
		t.Errorf("%s %s: error code %q, want %q\n%s", r.Request.Method, r.Request.URL, got, code, r.body)
	}
	if r.Header.Get("request-id") == "" {
		t.Errorf("%s %s: no request-id header", r.Request.Method, r.Request.URL)
	}
}

// mkdir creates a folder under the parent path ("" for the root) and
// returns its JSON.
func (e *env) mkdir(parent, name string) map[string]any {
	e.t.Helper()
	p := "/v1.0/me/drive/root/children"
	if parent != "" {
		p = "/v1.0/me/drive/root:" + escapePath(parent) + ":/children"
	}
	return e.do("POST", p, map[string]any{"name": name, "folder": map[string]any{}}).must(e.t, http.StatusCreated).json(e.t)
}

// put uploads a file by path and returns its JSON.
func (e *env) put(path, content string) map[string]any {
	e.t.Helper()
	r := e.do("PUT", "/v1.0/me/drive/root:"+escapePath(path)+":/content", content)
	if r.StatusCode != http.StatusCreated && r.StatusCode != http.StatusOK {
		e.t.Fatalf("PUT %s: status %d\n%s", path, r.StatusCode, r.body)
	}
	return r.json(e.t)
}

// escapePath percent-encodes each segment of a /a/b path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// volatile are keys whose values change from run to run.
var volatile = map[string]bool{
	"id": true, "driveId": true, "eTag": true, "cTag": true, "createdDateTime": true,
	"lastModifiedDateTime": true, "date": true, "request-id": true, "resourceId": true,
	"@microsoft.graph.downloadUrl": true, "@odata.nextLink": true, "resourceLocation": true,
	"uploadUrl": true, "expirationDateTime": true,
}

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if _, isString := val.(string); isString && volatile[k] {
				x[k] = "<" + k + ">"
				continue
			}
			x[k] = normalize(val)
		}
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
	}
	return v
}

// golden compares a JSON body, with volatile values normalised, against
// testdata/name.golden.json; -update rewrites the file.
func golden(t *testing.T, name string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("golden %s: %v\n%s", name, err, body)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(normalize(v)); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	file := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./graph -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", file, diff)
	}
}

// fakeJobs is a ferry.JobQueue in memory; tests set job states directly.
type fakeJobs struct {
	mu       sync.Mutex
	jobs     map[string]*ferry.Job
	order    []string
	throttle bool
	panicky  bool
}

func newFakeJobs() *fakeJobs { return &fakeJobs{jobs: map[string]*ferry.Job{}} }

func (f *fakeJobs) Enqueue(ctx context.Context, j *ferry.Job) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicky {
		panic("fake queue exploded")
	}
	if f.throttle {
		return &ferry.Error{Kind: ferry.Throttled, Message: "too many imports", RetryAfter: 7}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	j.ID = ferry.NewID("mon_", 16)
	j.Status = ferry.StatusNotStarted
	j.Total = -1
	j.Created = time.Now().Truncate(time.Millisecond)
	j.Updated = j.Created
	c := *j
	f.jobs[j.ID] = &c
	f.order = append(f.order, j.ID)
	return nil
}

// errBadText is what the fake queue answers for an id that PostgreSQL
// would refuse to compare: the API must never pass one on.
var errBadText = errors.New("fake queue: id is not valid UTF-8 or holds a control character")

func badText(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 })
}

func (f *fakeJobs) Job(_ context.Context, id string) (*ferry.Job, error) {
	if badText(id) {
		return nil, errBadText
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, ferry.Errorf(ferry.NotFound, "no job %s", id)
	}
	c := *j
	return &c, nil
}

func (f *fakeJobs) Cancel(_ context.Context, id string) (*ferry.Job, error) {
	if badText(id) {
		return nil, errBadText
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, ferry.Errorf(ferry.NotFound, "no job %s", id)
	}
	if j.Status.Final() {
		return nil, ferry.Errorf(ferry.Conflict, "job %s has ended", id)
	}
	if j.Status == ferry.StatusNotStarted {
		j.Status = ferry.StatusCancelled
	} else {
		j.Status = ferry.StatusCancelPending
	}
	c := *j
	return &c, nil
}

// last returns the most recently enqueued job.
func (f *fakeJobs) last(t *testing.T) *ferry.Job {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.order) == 0 {
		t.Fatal("no job was enqueued")
	}
	return f.jobs[f.order[len(f.order)-1]]
}

// set changes a job as a store would, marking the change with a time
// later than the job's last one.
func (f *fakeJobs) set(id string, change func(*ferry.Job)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	change(j)
	next := time.Now().Truncate(time.Millisecond)
	if !next.After(j.Updated) {
		next = j.Updated.Add(time.Millisecond)
	}
	j.Updated = next
}

// UserJobs lists the user's jobs newest first; the cursor is the index
// of the next page's first job.
func (f *fakeJobs) UserJobs(_ context.Context, user ferry.UserID, p ferry.JobPage) ([]*ferry.Job, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []*ferry.Job
	for i := len(f.order) - 1; i >= 0; i-- {
		if j := f.jobs[f.order[i]]; j.UserID == user {
			c := *j
			c.ItemName = c.Name
			all = append(all, &c)
		}
	}
	start := 0
	if p.Cursor != "" {
		n, err := strconv.Atoi(p.Cursor)
		if err != nil || n < 0 || n > len(all) {
			return nil, "", ferry.Errorf(ferry.Invalid, "bad cursor")
		}
		start = n
	}
	limit := p.Limit
	if limit == 0 {
		limit = ferry.DefaultJobPage
	}
	end := min(start+limit, len(all))
	next := ""
	if end < len(all) {
		next = strconv.Itoa(end)
	}
	return all[start:end], next, nil
}

// JobChanges lists the user's jobs changed after the mark, in the order
// of their changes.
func (f *fakeJobs) JobChanges(_ context.Context, user ferry.UserID, after ferry.ChangeMark, limit int) ([]*ferry.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*ferry.Job
	for _, id := range f.order {
		j := f.jobs[id]
		if j.UserID == user && (j.Updated.After(after.Updated) || (j.Updated.Equal(after.Updated) && j.ID > after.ID)) {
			c := *j
			c.ItemName = c.Name
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].Updated.Equal(out[b].Updated) {
			return out[a].Updated.Before(out[b].Updated)
		}
		return out[a].ID < out[b].ID
	})
	return out[:min(limit, len(out))], nil
}

func (f *fakeJobs) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

func names(t *testing.T, page map[string]any) []string {
	t.Helper()
	vals, ok := page["value"].([]any)
	if !ok {
		t.Fatalf("no value array in %v", page)
	}
	var out []string
	for _, v := range vals {
		out = append(out, v.(map[string]any)["name"].(string))
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// mustID returns the id of the item at a path.
func mustID(t *testing.T, e *env, path string) ferry.ItemID {
	t.Helper()
	r := e.do("GET", "/v1.0/me/drive/root:"+escapePath(path), nil).must(t, http.StatusOK).json(t)
	return ferry.ItemID(r["id"].(string))
}
