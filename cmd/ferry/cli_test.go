package main

// Tests of the client commands (ls, get, put, mkdir, rm, mv, import, jobs,
// cancel) against a real `ferry serve` on 127.0.0.1:0 with loopback origins
// allowed through --fetch-allow: each command's output on success and the
// exact words of its errors, as a person or a script sees them.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cliResult is what one command left behind.
type cliResult struct {
	stdout, stderr string
	code           int
}

// ferryCLI runs one command with FERRY_SERVER and FERRY_TOKEN set for s,
// and returns its output the way main prints it.
func ferryCLI(t *testing.T, s server, args ...string) cliResult {
	t.Helper()
	// FERRY_FORCE and FERRY_TO must be ignored: only --server and --token
	// come from the environment.
	env := map[string]string{"FERRY_SERVER": s.base, "FERRY_TOKEN": s.token, "FERRY_FORCE": "true", "FERRY_TO": "/Elsewhere"}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
	code := 0
	if err != nil {
		reportError(&errOut, err)
		code = exitCode(err)
	}
	return cliResult{out.String(), errOut.String(), code}
}

// ok fails the test unless the command succeeded, and returns its stdout.
func (r cliResult) ok(t *testing.T, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d, stderr %q", what, r.code, r.stderr)
	}
	return r.stdout
}

// goChain matches what a Go error chain leaks: operation prefixes and
// wrapped causes that mean nothing to a user.
var goChain = regexp.MustCompile(`dial tcp|Get "|Post "|Put "|Patch "|Delete "|: EOF|context canceled|json: |%!|\*main\.|graph: |sqlstore: `)

// fails checks that the command failed with exit code and exactly one
// stderr line "ferry: " + want, with nothing on stdout.
func (r cliResult) fails(t *testing.T, what string, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: exit %d, want %d (stderr %q)", what, r.code, code, r.stderr)
	}
	if got := r.stderr; got != "ferry: "+want+"\n" {
		t.Errorf("%s: stderr %q, want %q", what, got, "ferry: "+want+"\n")
	}
	if goChain.MatchString(r.stderr) {
		t.Errorf("%s: stderr %q holds a Go error chain", what, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("%s: stdout %q, want nothing", what, r.stdout)
	}
}

// startCLIServer starts a server on a fresh drive that may fetch from
// loopback origins.
func startCLIServer(t *testing.T) server {
	t.Helper()
	return startInProcess(t, nil, "--data", t.TempDir(), "--fetch-allow", "127.0.0.1/32")
}

// chdir makes dir the working directory for the rest of the test.
func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(old) })
}

func TestCLIUsageListsEveryCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"help"}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "token create", "token list", "token revoke", "user create", "user list", "user quota", "import", "ls", "get", "put", "mkdir", "rm", "mv", "jobs", "cancel"} {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(cmd) + `\b`).MatchString(out.String()) {
			t.Errorf("usage does not list %q:\n%s", cmd, out.String())
		}
	}
	out.Reset()
	err := run(t.Context(), nil, func(string) string { return "" }, &out, &errOut)
	if exitCode(err) != 2 || !strings.Contains(errOut.String(), "  mkdir") {
		t.Errorf("ferry without a command: exit %d, stderr %q; want 2 and the usage", exitCode(err), errOut.String())
	}
}

// TestCLIConnectionErrors: what a user sees with no token, a wrong token
// and a server that is not there.
func TestCLIConnectionErrors(t *testing.T) {
	data := t.TempDir()
	s := startInProcess(t, nil, "--data", data)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	for _, cmd := range [][]string{{"ls", "/"}, {"get", "/a.txt"}, {"put", "x", "/"}, {"mkdir", "/A"}, {"rm", "/A"}, {"mv", "/A", "/B"}, {"jobs"}, {"cancel", "x"}, {"import", "http://127.0.0.1:1/x"}} {
		name := strings.Join(cmd, " ")
		ferryCLI(t, server{base: s.base}, cmd...).fails(t, name+" without a token", 2,
			"give --token or FERRY_TOKEN (ferry serve prints one on first start; ferry token create makes more)")
		if cmd[0] == "put" || cmd[0] == "cancel" {
			continue // put reads its file first; cancel needs no token at the server
		}
		ferryCLI(t, server{base: s.base, token: "fy_wrong"}, cmd...).fails(t, name+" with a wrong token", 1,
			"the token was refused (401): check --token or FERRY_TOKEN")
		ferryCLI(t, server{base: closed, token: s.token}, cmd...).fails(t, name+" with no server", 1,
			"the server at "+closed+" is not reachable")
	}
	// A token that may only read is told so when it tries to write.
	var tok bytes.Buffer
	if err := run(t.Context(), []string{"token", "create", "--user", "reader", "--scopes", "Files.Read", "--data", data}, func(string) string { return "" }, &tok, io.Discard); err != nil {
		t.Fatal(err)
	}
	reader := server{base: s.base, token: strings.TrimSpace(tok.String())}
	ferryCLI(t, reader, "ls").ok(t, "ls with a read-only token")
	ferryCLI(t, reader, "mkdir", "/A").fails(t, "mkdir with a read-only token", 1,
		"the server refused (403): the token does not allow changing files (it needs Files.ReadWrite)")

	// Flags work after the positional arguments and beat the environment.
	r := ferryCLI(t, server{base: closed, token: "fy_wrong"}, "ls", "/", "--server", s.base, "--token", s.token)
	r.ok(t, "ls with --server and --token after the path")
	ferryCLI(t, s, "ls", "/", "--server", "ftp://x").fails(t, "ls --server ftp://x", 2,
		`--server "ftp://x" is not a URL like http://127.0.0.1:8080`)
}

// TestCLIFiles walks the file commands through a fresh drive.
func TestCLIFiles(t *testing.T) {
	s := startCLIServer(t)
	dir := t.TempDir()
	chdir(t, dir)
	small := filepath.Join(t.TempDir(), "a.txt")
	if err := os.WriteFile(small, []byte("hello ferry\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// ls of the empty root prints nothing; of a missing path, an error.
	if out := ferryCLI(t, s, "ls").ok(t, "ls of an empty drive"); out != "" {
		t.Errorf("ls of an empty drive: %q, want nothing", out)
	}
	ferryCLI(t, s, "ls", "/Nope").fails(t, "ls /Nope", 1, "/Nope does not exist")

	// mkdir
	if out := ferryCLI(t, s, "mkdir", "/Docs").ok(t, "mkdir /Docs"); out != "/Docs\n" {
		t.Errorf("mkdir /Docs printed %q, want /Docs", out)
	}
	ferryCLI(t, s, "mkdir", "/Docs").fails(t, "mkdir /Docs again", 1, "/Docs already exists")
	ferryCLI(t, s, "mkdir", "/New/Deep").fails(t, "mkdir /New/Deep", 1, "folder /New does not exist")
	if out := ferryCLI(t, s, "mkdir", "-p", "/New/Deep").ok(t, "mkdir -p"); out != "/New\n/New/Deep\n" {
		t.Errorf("mkdir -p /New/Deep printed %q, want /New and /New/Deep", out)
	}
	if out := ferryCLI(t, s, "mkdir", "/New/Deep", "--parents").ok(t, "mkdir --parents of an existing folder"); out != "" {
		t.Errorf("mkdir --parents of an existing folder printed %q, want nothing", out)
	}
	ferryCLI(t, s, "mkdir").fails(t, "mkdir without a path", 2, "give the PATH of the folder to create")

	// put (simple)
	if out := ferryCLI(t, s, "put", small, "/").ok(t, "put a.txt /"); out != "/a.txt\n" {
		t.Errorf("put a.txt / printed %q, want /a.txt", out)
	}
	ferryCLI(t, s, "put", small, "/").fails(t, "put a.txt / again", 1, "name a.txt is already taken in / (give --force to replace it)")
	if out := ferryCLI(t, s, "put", small, "/", "--force").ok(t, "put --force"); out != "/a.txt\n" {
		t.Errorf("put --force printed %q", out)
	}
	if out := ferryCLI(t, s, "put", small, "/Docs/renamed.txt").ok(t, "put to a new name"); out != "/Docs/renamed.txt\n" {
		t.Errorf("put to /Docs/renamed.txt printed %q", out)
	}
	ferryCLI(t, s, "put", small, "/Downloads/").fails(t, "put into a missing folder", 1, "folder /Downloads does not exist")
	ferryCLI(t, s, "put", small, "/Downloads/x.txt").fails(t, "put into a missing folder by name", 1, "folder /Downloads does not exist")
	ferryCLI(t, s, "put", small, "/a.txt/x.txt").fails(t, "put under a file", 1, "/a.txt is a file, not a folder")
	ferryCLI(t, s, "put", filepath.Join(dir, "missing.txt"), "/").fails(t, "put of a missing file", 1,
		filepath.Join(dir, "missing.txt")+": no such file or directory")
	ferryCLI(t, s, "put", dir, "/").fails(t, "put of a folder", 1, dir+" is a folder; ferry put uploads one file")
	ferryCLI(t, s, "put", small).fails(t, "put without PATH", 2, "give the local FILE and the drive PATH")

	// ls: type, size, modified, name; folders end in /.
	out := ferryCLI(t, s, "ls", "/").ok(t, "ls /")
	line := regexp.MustCompile(`^(file|folder)\s+\S+ \S+\s+\d{4}-\d\d-\d\d \d\d:\d\d  (.+)$`)
	var names []string
	for l := range strings.Lines(out) {
		m := line.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
		if m == nil {
			t.Fatalf("ls line %q is not TYPE SIZE DATE TIME NAME", l)
		}
		names = append(names, m[1]+" "+m[2])
	}
	if got, want := strings.Join(names, ","), "file a.txt,folder Docs/,folder New/"; got != want {
		t.Errorf("ls / lists %s, want %s", got, want)
	}
	if !strings.Contains(out, "12 B") {
		t.Errorf("ls / does not give a.txt's size as 12 B:\n%s", out)
	}
	if out := ferryCLI(t, s, "ls", "/a.txt").ok(t, "ls of a file"); !strings.HasSuffix(out, "  a.txt\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("ls /a.txt printed %q, want the one file", out)
	}
	if out := ferryCLI(t, s, "ls", "--json", "Docs").ok(t, "ls --json"); !strings.Contains(out, `"name": "renamed.txt"`) || !strings.HasPrefix(out, "[") {
		t.Errorf("ls --json Docs printed %q, want a JSON array with renamed.txt", out)
	}

	// get
	if out := ferryCLI(t, s, "get", "/a.txt").ok(t, "get /a.txt"); out != "a.txt\n" {
		t.Errorf("get /a.txt printed %q, want the file it wrote", out)
	}
	ferryCLI(t, s, "get", "/a.txt").fails(t, "get over an existing file", 1, "a.txt exists; give --force to overwrite it, or name another FILE")
	ferryCLI(t, s, "get", "/a.txt", "--force").ok(t, "get --force")
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "hello ferry\n" {
		t.Errorf("downloaded a.txt holds %q", b)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a.txt")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("downloaded a.txt: %v, mode %v; want 0644 like any new file", err, fi.Mode())
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if out := ferryCLI(t, s, "get", "/Docs/renamed.txt", sub).ok(t, "get into a folder"); out != filepath.Join(sub, "renamed.txt")+"\n" {
		t.Errorf("get into a folder printed %q", out)
	}
	if out := ferryCLI(t, s, "get", "/a.txt", "-").ok(t, "get to stdout"); out != "hello ferry\n" {
		t.Errorf("get - printed %q, want the content", out)
	}
	ferryCLI(t, s, "get", "/a.txt", filepath.Join(dir, "no", "such", "b.txt")).fails(t, "get into a missing local folder", 1,
		"the download of /a.txt to "+filepath.Join(dir, "no", "such", "b.txt")+" failed: cannot write in "+filepath.Join(dir, "no", "such")+": no such file or directory")
	ferryCLI(t, s, "get", "/Docs").fails(t, "get of a folder", 1, "/Docs is a folder; ferry get downloads files (ferry ls lists it)")
	ferryCLI(t, s, "get", "/nope.txt").fails(t, "get of a missing file", 1, "/nope.txt does not exist")
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("the working directory holds %d entries, want a.txt and sub (no partial files)", len(entries))
	}

	// mv: rename, move into a folder, both, and the refusals.
	if out := ferryCLI(t, s, "mv", "/Docs/renamed.txt", "/Docs/b.txt").ok(t, "mv rename"); out != "/Docs/renamed.txt -> /Docs/b.txt\n" {
		t.Errorf("mv rename printed %q", out)
	}
	if out := ferryCLI(t, s, "mv", "/Docs/b.txt", "/New").ok(t, "mv into a folder"); out != "/Docs/b.txt -> /New/b.txt\n" {
		t.Errorf("mv into a folder printed %q", out)
	}
	if out := ferryCLI(t, s, "mv", "/New/b.txt", "/Docs/c.txt").ok(t, "mv and rename"); out != "/New/b.txt -> /Docs/c.txt\n" {
		t.Errorf("mv and rename printed %q", out)
	}
	ferryCLI(t, s, "mv", "/Docs/c.txt", "/a.txt").fails(t, "mv onto a taken name", 1, "name a.txt is already taken in / (give --force to replace a file)")
	ferryCLI(t, s, "mv", "/nope", "/Docs").fails(t, "mv of a missing item", 1, "/nope does not exist")
	ferryCLI(t, s, "mv", "/Docs/c.txt", "/Nope/c.txt").fails(t, "mv into a missing folder", 1, "folder /Nope does not exist")
	ferryCLI(t, s, "mv", "/New", "/New/Deep").fails(t, "mv a folder into itself", 1,
		"cannot move /New to /New/Deep/New: a folder cannot be moved into itself or one of its subfolders")
	ferryCLI(t, s, "mv", "/Docs").fails(t, "mv with one argument", 2, "give SRC and DST")

	// rm says what it removed.
	if out := ferryCLI(t, s, "rm", "/Docs/c.txt").ok(t, "rm a file"); out != "removed /Docs/c.txt (12 B)\n" {
		t.Errorf("rm of a file printed %q", out)
	}
	if out := ferryCLI(t, s, "rm", "/New").ok(t, "rm a folder"); out != "removed folder /New and everything in it (0 B)\n" {
		t.Errorf("rm of a folder printed %q", out)
	}
	if out := ferryCLI(t, s, "rm", "/Docs").ok(t, "rm an empty folder"); out != "removed folder /Docs (empty)\n" {
		t.Errorf("rm of an empty folder printed %q", out)
	}
	ferryCLI(t, s, "rm", "/Docs").fails(t, "rm of a missing item", 1, "/Docs does not exist")
	ferryCLI(t, s, "rm", "/").fails(t, "rm /", 1, "the root folder / cannot be removed")
	if out := ferryCLI(t, s, "ls").ok(t, "ls at the end"); !strings.HasSuffix(out, "  a.txt\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("at the end ls printed %q, want only a.txt", out)
	}
}

// TestCLILsPages: a folder larger than one page is listed whole, through
// the server's @odata.nextLink.
func TestCLILsPages(t *testing.T) {
	s := startCLIServer(t)
	const n = 7
	for i := range n {
		ferryCLI(t, s, "mkdir", "-p", fmt.Sprintf("/Many/f%d", i)).ok(t, "mkdir")
	}
	out := ferryCLI(t, s, "ls", "/Many", "--page-size", "2").ok(t, "ls /Many in pages of 2")
	var got []string
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		got = append(got, f[len(f)-1])
	}
	if want := "f0/ f1/ f2/ f3/ f4/ f5/ f6/"; strings.Join(got, " ") != want {
		t.Errorf("ls /Many in pages of 2 lists %q, want %s", got, want)
	}
	if out := ferryCLI(t, s, "ls", "/Many", "--json", "--page-size", "3").ok(t, "ls --json in pages"); strings.Count(out, `"name"`) != n {
		t.Errorf("ls --json in pages of 3 holds %d names, want %d", strings.Count(out, `"name"`), n)
	}
	ferryCLI(t, s, "ls", "--page-size", "0").fails(t, "ls --page-size 0", 2, "--page-size must be from 1 to 1000")
}

// flakyProxy stands between the CLI and the server and spoils two
// fragments of an upload session: the second PUT is refused with 503
// before the server sees it, and the fourth reaches the server but its
// answer is replaced by a 502.
type flakyProxy struct {
	proxy *httputil.ReverseProxy
	puts  atomic.Int32
	mu    sync.Mutex
	seen  []string // Content-Range of each fragment PUT, in order
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/upload/") {
		n := p.puts.Add(1)
		p.mu.Lock()
		p.seen = append(p.seen, r.Header.Get("Content-Range"))
		p.mu.Unlock()
		switch n {
		case 2:
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"serviceNotAvailable","message":"try again"}}`)
			return
		case 4:
			rec := httptest.NewRecorder()
			p.proxy.ServeHTTP(rec, r)
			w.WriteHeader(http.StatusBadGateway)
			return
		}
	}
	p.proxy.ServeHTTP(w, r)
}

// TestCLIPutLargeResumes: a file above the simple-PUT size goes through an
// upload session in fragments, with a bar, and two spoilt fragments do not
// stop it: the CLI asks the session what is missing and goes on.
func TestCLIPutLargeResumes(t *testing.T) {
	s := startCLIServer(t)
	target, _ := url.Parse(s.base)
	fp := &flakyProxy{proxy: &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // absolute URLs (the upload URL) point at the proxy
	}}}
	px := httptest.NewServer(fp)
	t.Cleanup(px.Close)
	viaProxy := server{base: px.URL, token: s.token}

	content := make([]byte, 5<<20+12345)
	for i := range content {
		content[i] = byte(i*31 + i>>10)
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(big, content, 0o644); err != nil {
		t.Fatal(err)
	}
	r := ferryCLI(t, viaProxy, "put", big, "/", "--fragment-size", "960KiB", "--progress", "always")
	if out := r.ok(t, "put of a large file"); out != "/big.bin\n" {
		t.Errorf("put printed %q, want /big.bin", out)
	}
	if !strings.Contains(r.stderr, "big.bin") || !strings.Contains(r.stderr, "done") {
		t.Errorf("stderr %q shows no finished bar for big.bin", r.stderr)
	}
	fp.mu.Lock()
	seen := append([]string(nil), fp.seen...)
	fp.mu.Unlock()
	// 6 fragments, the refused second one sent twice; the fourth, which
	// reached the server, not again.
	want := []string{"bytes 0-983039/", "bytes 983040-1966079/", "bytes 983040-1966079/", "bytes 1966080-2949119/",
		"bytes 2949120-3932159/", "bytes 3932160-4915199/", "bytes 4915200-5255224/"}
	if len(seen) != len(want) {
		t.Fatalf("fragments sent: %q, want %d like %q", seen, len(want), want)
	}
	for i := range want {
		if !strings.HasPrefix(seen[i], want[i]) {
			t.Errorf("fragment %d: %q, want %s…", i, seen[i], want[i])
		}
	}
	got := filepath.Join(dir, "back.bin")
	ferryCLI(t, s, "get", "/big.bin", got).ok(t, "get /big.bin")
	if b, _ := os.ReadFile(got); !bytes.Equal(b, content) {
		t.Fatalf("downloaded %d bytes, not the %d uploaded", len(b), len(content))
	}
	ferryCLI(t, s, "put", big, "/").fails(t, "put of a large file onto a taken name", 1, "name big.bin is already taken in / (give --force to replace it)")
	ferryCLI(t, s, "put", big, "/", "--force", "--fragment-size", "1000KiB").fails(t, "a bad --fragment-size", 2,
		"--fragment-size must be a multiple of 320KiB, at most 60MiB")
}

// slowBody serves an endless-looking file slowly, until the client goes.
func slowBody(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", fmt.Sprint(100<<20))
	chunk := make([]byte, 16<<10)
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestCLIImport(t *testing.T) {
	one := []byte(strings.Repeat("one ", 100000))
	mux := http.NewServeMux()
	mux.HandleFunc("/files/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "missing.bin" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Unix(1700000000, 0), bytes.NewReader(one))
	})
	mux.HandleFunc("/slow/{name}", slowBody)
	origin := httptest.NewServer(mux)
	t.Cleanup(origin.Close)
	s := startCLIServer(t)
	u := func(p string) string { return origin.URL + p }

	// Several URLs into a folder that does not exist yet: it is made, and
	// the paths come out in the order given.
	r := ferryCLI(t, s, "import", u("/files/one.bin"), u("/files/two.bin"), "--to", "/Downloads", "--progress", "always")
	if out := r.ok(t, "import of two URLs"); out != "/Downloads/one.bin\n/Downloads/two.bin\n" {
		t.Errorf("import printed %q, want both paths", out)
	}
	if !strings.Contains(r.stderr, "one.bin") || !strings.Contains(r.stderr, "two.bin") || !strings.Contains(r.stderr, "total (2/2)") {
		t.Errorf("stderr %q lacks a bar per import and the total", r.stderr)
	}
	if out := ferryCLI(t, s, "get", "/Downloads/two.bin", "-").ok(t, "get the import"); out != string(one) {
		t.Errorf("imported two.bin holds %d bytes, want %d", len(out), len(one))
	}

	// -i FILE, with a comment and a blank line, into a deeper new folder.
	list := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(list, []byte("# my downloads\n\n"+u("/files/three.bin")+"\n  "+u("/files/four.bin")+"  \n"), 0o644)
	if out := ferryCLI(t, s, "import", "-i", list, "--to", "/New/Deep").ok(t, "import -i"); out != "/New/Deep/three.bin\n/New/Deep/four.bin\n" {
		t.Errorf("import -i printed %q", out)
	}
	if out := ferryCLI(t, s, "import", u("/files/x.bin"), "--to", "/Downloads", "--name", "my name.bin").ok(t, "import --name"); out != "/Downloads/my name.bin\n" {
		t.Errorf("import --name printed %q", out)
	}

	// The errors, in the user's words.
	ferryCLI(t, s, "import", u("/files/one.bin"), "--to", "/Nope", "--parents=false").fails(t, "import --parents=false", 1, "folder /Nope does not exist")
	ferryCLI(t, s, "put", "cli_test.go", "/f.txt").ok(t, "put a file")
	ferryCLI(t, s, "import", u("/files/one.bin"), "--to", "/f.txt").fails(t, "import into a file", 1, "/f.txt is a file, not a folder")
	ferryCLI(t, s, "import", u("/files/one.bin"), "--to", "/Downloads").fails(t, "import onto a taken name", 1,
		u("/files/one.bin")+": name one.bin is already taken in /Downloads (give --conflict rename or replace)")
	if out := ferryCLI(t, s, "import", u("/files/one.bin"), "--to", "/Downloads", "--conflict", "rename").ok(t, "import --conflict rename"); out != "/Downloads/one 1.bin\n" {
		t.Errorf("import --conflict rename printed %q", out)
	}
	r = ferryCLI(t, s, "import", u("/files/missing.bin"), "--to", "/Downloads")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "ferry: "+u("/files/missing.bin")+": import failed: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("import of a 404: exit %d, stderr %q; want one line saying the import failed", r.code, r.stderr)
	}
	r = ferryCLI(t, s, "import", u("/files/five.bin"), u("/files/missing.bin"), "--to", "/Downloads")
	if r.code != 1 || r.stdout != "/Downloads/five.bin\n" || !strings.Contains(r.stderr, "missing.bin: import failed") {
		t.Errorf("one good and one bad import: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	ferryCLI(t, s, "import", "--to", "/x").fails(t, "import without a URL", 2, "give the URL to import (several are fine, or -i FILE)")
	ferryCLI(t, s, "import", "ftp://x/y").fails(t, "import of a non-http URL", 2, `"ftp://x/y" is not an http:// or https:// URL`)
	ferryCLI(t, s, "import", u("/a"), u("/b"), "--name", "x").fails(t, "import --name with two URLs", 2, "--name works with one URL only")

	// --wait=false prints the monitor URL; cancel takes it, or its ID.
	r = ferryCLI(t, s, "import", u("/slow/a.bin"), u("/slow/b.bin"), "--to", "/Slow", "--wait=false")
	monitors := strings.Fields(r.ok(t, "import --wait=false"))
	if len(monitors) != 2 || !strings.HasPrefix(monitors[0], s.base+"/monitor/") {
		t.Fatalf("import --wait=false printed %q, want two monitor URLs", r.stdout)
	}
	idB := monitorID(monitors[1])

	// jobs lists them, newest first, with their state.
	r = ferryCLI(t, s, "jobs")
	if strings.Contains(r.stderr, "cannot list jobs") {
		t.Logf("skipping the jobs checks: %s", r.stderr) // the server has no /operations yet
	} else {
		out := r.ok(t, "jobs")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.HasPrefix(lines[0], "ID ") || len(lines) < 3 {
			t.Fatalf("jobs printed %q, want a header and the jobs", out)
		}
		newest := map[string]bool{strings.Fields(lines[1])[0]: true, strings.Fields(lines[2])[0]: true}
		if !newest[idB] || !newest[monitorID(monitors[0])] || !strings.Contains(out, " completed ") || !strings.Contains(out, " failed ") {
			t.Errorf("jobs printed:\n%s\nwant the two running imports first and the finished ones with their state", out)
		}
		if out := ferryCLI(t, s, "jobs", "--json").ok(t, "jobs --json"); !strings.Contains(out, `"monitorId"`) {
			t.Errorf("jobs --json printed %q", out)
		}
	}

	if out := ferryCLI(t, s, "cancel", monitors[0]).ok(t, "cancel a monitor URL"); out != "cancelled "+monitorID(monitors[0])+"\n" {
		t.Errorf("cancel URL printed %q", out)
	}
	if out := ferryCLI(t, s, "cancel", idB).ok(t, "cancel an ID"); out != "cancelled "+idB+"\n" {
		t.Errorf("cancel ID printed %q", out)
	}
	for _, m := range monitors {
		if code, st := pollMonitor(t, m, 30*time.Second); st["status"] != "cancelled" {
			t.Errorf("after cancel the monitor says %d %v", code, st)
		}
	}
	ferryCLI(t, s, "cancel", idB).fails(t, "cancel twice", 1, "job "+idB+" is already cancelled")
	ferryCLI(t, s, "cancel", "nosuchjob").fails(t, "cancel of an unknown job", 1, "job nosuchjob does not exist or has expired")
	ferryCLI(t, s, "cancel", "http://x/y").fails(t, "cancel of a URL that is no monitor", 2, "http://x/y is not a monitor URL (…/monitor/ID)")
}

// TestCLIJobsPages reads /operations in the pinned shape from a stand-in
// server, to check what a real one cannot show cheaply: --all follows
// @odata.nextLink (on --server, though the link names the server by its
// public URL), and a failed job shows its reason. (TestCLIImport runs
// jobs against the real server.)
func TestCLIJobsPages(t *testing.T) {
	var base string
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1.0/me/drive/operations" || r.Header.Get("Authorization") != "Bearer fy_stub" {
			http.Error(w, `{"error":{"code":"itemNotFound","message":"no"}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("$skiptoken") == "" {
			fmt.Fprintf(w, `{"value":[
{"operation":"DownloadUrl","status":"inProgress","percentageComplete":50,"bytesTransferred":1048576,"totalBytes":2097152,"bytesPerSecond":524288,"monitorId":"mon_a","monitorUrl":"%[1]s/monitor/mon_a","name":"a.iso","createdDateTime":"2026-01-01T00:00:00Z"}],
"@odata.nextLink":"https://ferry.example.org/v1.0/me/drive/operations?%%24skiptoken=2&%%24top=200"}`, base)
			return
		}
		fmt.Fprintf(w, `{"value":[
{"operation":"ItemCopy","status":"failed","percentageComplete":0,"bytesTransferred":0,"errorCode":"itemNotFound","statusDescription":"the source is gone","monitorId":"mon_b","monitorUrl":"%[1]s/monitor/mon_b","name":"b.bin","createdDateTime":"2026-01-01T00:00:00Z"}]}`, base)
	}))
	t.Cleanup(stub.Close)
	base = stub.URL
	s := server{base: stub.URL, token: "fy_stub"}

	out := ferryCLI(t, s, "jobs").ok(t, "jobs")
	if strings.Contains(out, "mon_b") || !regexp.MustCompile(`(?m)^mon_a +DownloadUrl +inProgress +50% +1\.0 MiB / 2\.0 MiB +512\.0 KiB/s +\S+ +a\.iso$`).MatchString(out) {
		t.Errorf("jobs printed\n%s\nwant only the first page, with mon_a in full", out)
	}
	out = ferryCLI(t, s, "jobs", "--all").ok(t, "jobs --all")
	if !strings.Contains(out, "mon_a ") || !regexp.MustCompile(`(?m)^mon_b +ItemCopy +failed .* b\.bin: the source is gone \(itemNotFound\)$`).MatchString(out) {
		t.Errorf("jobs --all printed\n%s\nwant both pages, and b.bin's reason", out)
	}
	if out := ferryCLI(t, s, "jobs", "--all", "--json").ok(t, "jobs --json"); strings.Count(out, `"monitorId"`) != 2 {
		t.Errorf("jobs --all --json printed %q, want both entries", out)
	}
}
