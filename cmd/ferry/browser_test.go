package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser;
// .ci/run installs it.
const chromiumPath = "/usr/bin/chromium"

// page is one headless Chromium tab on the page, with what it reported:
// console errors, uncaught exceptions and failed requests.
type page struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	mu        sync.Mutex
	problems  []string
	shots     int
	dropped   map[network.RequestID]bool // requests the test failed on purpose
	drop      func(*fetch.EventRequestPaused) bool
}

// artifactDir is where screenshots go: $FERRY_TEST_ARTIFACTS/NAME when
// set (CI keeps them), else a temporary folder.
func artifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("FERRY_TEST_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newPage(t *testing.T) *page {
	t.Helper()
	exe := chromiumPath
	if _, err := os.Stat(exe); err != nil {
		p, err := exec.LookPath("chromium")
		if err != nil {
			t.Skip("the browser tests need Chromium at " + chromiumPath + " (apt-get install chromium; .ci/run installs it)")
		}
		exe = p
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	p := &page{t: t, ctx: ctx, artifacts: artifactDir(t), dropped: map[network.RequestID]bool{}}
	err := chromedp.Listen(ctx, func(ev any) {
		var problem string
		switch e := ev.(type) {
		case *fetch.EventRequestPaused:
			p.mu.Lock()
			fail := p.drop != nil && p.drop(e)
			if fail {
				p.dropped[e.NetworkID] = true
			}
			p.mu.Unlock()
			go func() { // commands may not run inside the listener
				var err error
				if fail {
					_, err = chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: e.RequestID, ErrorReason: network.ErrorReasonConnectionReset})
				} else {
					_, err = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("intercepted request: %v", err)
				}
			}()
		case *runtime.EventExceptionThrown:
			problem = "exception: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				problem += " " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problem = fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " "))
			}
		case *log.EventEntryAdded:
			p.mu.Lock()
			expected := p.dropped[e.Entry.NetworkRequestID]
			p.mu.Unlock()
			if e.Entry.Level == log.EntryLevelError && !expected {
				problem = "log: " + e.Entry.Text + " " + e.Entry.URL
			}
		case *network.EventLoadingFailed:
			p.mu.Lock()
			expected := p.dropped[e.RequestID]
			p.mu.Unlock()
			if !e.Canceled && !expected {
				problem = "request failed: " + e.ErrorText
			}
		case *network.EventResponseReceived:
			if e.Response.Status >= 400 {
				problem = fmt.Sprintf("response %d for %s", e.Response.Status, e.Response.URL)
			}
		case *network.EventRequestWillBeSent:
			if strings.Contains(e.Request.URL, "fy_") {
				problem = "a token in a request URL: " + e.Request.URL
			}
		}
		if problem != "" {
			p.mu.Lock()
			p.problems = append(p.problems, problem)
			p.mu.Unlock()
		}
	})
	if err != nil {
		t.Skipf("Chromium at %s does not start: %v", exe, err)
	}
	return p
}

// clean fails the test for every console error, exception or failed
// request seen so far.
func (p *page) clean() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.problems {
		p.t.Errorf("page problem: %s", pr)
	}
	p.problems = nil
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatal(err)
	}
}

// shot saves a screenshot of the viewport as NN-name.png.
func (p *page) shot(name string) {
	p.t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatal(err)
	}
	p.shots++
	file := filepath.Join(p.artifacts, fmt.Sprintf("%02d-%s.png", p.shots, name))
	if err := os.WriteFile(file, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", file)
}

// find waits for an element with the accessible role and name, as
// assistive technology and outside tests see it, and returns a handle for
// scripts. hidden also finds elements that assistive technology ignores.
func (p *page) find(role, name string, hidden bool) runtime.RemoteObjectID {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute) // a loaded CI machine is slow
	for {
		doc, err := chromedp.Call(p.ctx, dom.GetDocument, dom.GetDocumentParams{})
		if err != nil {
			p.t.Fatal(err)
		}
		// The page may replace the document or the node between these
		// calls (it renders as it loads): an unknown node is looked for
		// again, until the deadline.
		res, err := chromedp.Call(p.ctx, accessibility.QueryAXTree, accessibility.QueryAXTreeParams{
			NodeID: doc.Root.NodeID, AccessibleName: name, Role: role,
		})
		if err != nil && time.Now().After(deadline) {
			p.t.Fatal(err)
		}
		var nodes []*accessibility.Node
		if err == nil {
			nodes = res.Nodes
		}
		for _, n := range nodes {
			if (hidden || !n.Ignored) && n.BackendDOMNodeID != 0 {
				obj, err := chromedp.Call(p.ctx, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: n.BackendDOMNodeID})
				if err == nil {
					return obj.Object.ObjectID
				}
				if time.Now().After(deadline) {
					p.t.Fatal(err)
				}
			}
		}
		if time.Now().After(deadline) {
			p.shot("not-found")
			p.t.Fatalf("no %s named %q on the page", role, name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// call runs fn (a JavaScript function) with this bound to the object and
// returns its JSON result.
func (p *page) call(obj runtime.RemoteObjectID, fn string) string {
	p.t.Helper()
	res, err := chromedp.Call(p.ctx, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
		FunctionDeclaration: fn, ObjectID: obj, ReturnByValue: ptrTo(true), AwaitPromise: ptrTo(true),
	})
	if err != nil {
		p.t.Fatal(err)
	}
	if res.ExceptionDetails != nil {
		p.t.Fatalf("%s: %s", fn, res.ExceptionDetails.Text)
	}
	if res.Result == nil {
		return ""
	}
	return string(res.Result.Value)
}

func (p *page) click(role, name string) {
	p.t.Helper()
	p.call(p.find(role, name, false), `function() { this.scrollIntoView({block: "center"}); this.click(); }`)
}

// typeInto focuses the field and types text as a keyboard would.
func (p *page) typeInto(name, text string) {
	p.t.Helper()
	p.call(p.find("textbox", name, false), `function() { this.focus(); this.value = ""; }`)
	if _, err := chromedp.Call(p.ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *page) pressEnter() {
	p.t.Helper()
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeKeyDown, input.DispatchKeyEventTypeKeyUp} {
		params := input.DispatchKeyEventParams{Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}
		if typ == input.DispatchKeyEventTypeKeyDown {
			params.Text = "\r"
		}
		if _, err := chromedp.Call(p.ctx, input.DispatchKeyEvent, params); err != nil {
			p.t.Fatal(err)
		}
	}
}

// eval evaluates a JavaScript expression in the page and returns its JSON.
func (p *page) eval(expr string) string {
	p.t.Helper()
	res, err := chromedp.Call(p.ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: expr, ReturnByValue: ptrTo(true), AwaitPromise: ptrTo(true)})
	if err != nil {
		p.t.Fatal(err)
	}
	if res.ExceptionDetails != nil {
		p.t.Fatalf("%s: %s", expr, res.ExceptionDetails.Text)
	}
	return string(res.Result.Value)
}

// waitFor polls a JavaScript expression until it is true.
func (p *page) waitFor(what, expr string, limit time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for p.eval("!!("+expr+")") != "true" {
		if time.Now().After(deadline) {
			p.shot("timeout")
			p.t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// importRow is a JavaScript expression for the list entry of the import
// named name.
func importRow(name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#imports li")].find(li => li.querySelector(".tname").textContent === %q)`, name)
}

// TestBrowser drives the page in headless Chromium against a real server:
// sign in, browse, create a folder, upload (picker, drop, and an upload
// session), import with progress to 100 %, cancel an import, see a failed
// one's error, download; with no console error and no failed request.
func TestBrowser(t *testing.T) {
	p := newPage(t)
	content := bytes.Repeat([]byte("ferry page test\n"), 256<<10) // 4 MiB
	paced := pacedOrigin(t, content)
	slowDone := make(chan struct{})
	slow := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/missing") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", "100000000")
		for i := 0; i < 100000; i++ {
			if _, err := w.Write(make([]byte, 1000)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-slowDone:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	defer close(slowDone)
	s := startInProcess(t, map[string]string{"FERRY_FETCH_ALLOW": "127.0.0.1/32"}, "--data", t.TempDir())
	files := t.TempDir()
	small := filepath.Join(files, "hello.txt")
	if err := os.WriteFile(small, []byte("hello from the picker\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(files, "big.bin")
	if err := os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 6<<16), 0o644); err != nil { // 6 MiB: two session chunks
		t.Fatal(err)
	}
	downloads := t.TempDir()

	// Sign in: the Token field, Enter.
	p.do(chromedp.Navigate(s.base + "/"))
	p.typeInto("Token", s.token)
	p.pressEnter()
	p.find("button", "New folder", false)
	p.waitFor("the empty folder", `!document.getElementById("empty").hidden`, 30*time.Second)
	p.shot("signed-in")
	if strings.Contains(p.eval("location.href"), "fy_") {
		t.Error("the token is in the address bar")
	}

	// Create a folder and browse into it.
	p.click("button", "New folder")
	p.typeInto("Folder name", "Inbox")
	p.click("button", "Create folder")
	p.click("link", "Inbox")
	p.waitFor("the breadcrumbs of Inbox", `document.querySelector("#crumbs [aria-current]")?.textContent === "Inbox"`, 30*time.Second)

	// Upload: the picker (a small file and one through an upload
	// session), then a drop.
	// The file input sits hidden behind the Upload button; set its files
	// as a file chooser would.
	picker, err := chromedp.Call(p.ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: `document.getElementById("file-picker")`})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(p.ctx, dom.SetFileInputFiles, dom.SetFileInputFilesParams{Files: []string{small, big}, ObjectID: picker.Result.ObjectID}); err != nil {
		t.Fatal(err)
	}
	p.find("link", "hello.txt", false)
	p.find("link", "big.bin", false)
	p.eval(`(() => {
		const dt = new DataTransfer();
		dt.items.add(new File(["dropped bytes\n"], "dropped.txt", {type: "text/plain"}));
		document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
	})()`)
	p.find("link", "dropped.txt", false)
	p.shot("uploaded")

	// Import from a loopback origin and watch it reach 100 %.
	p.typeInto("URL", paced.URL+"/paced.bin")
	p.typeInto("Name (optional)", "paced.bin")
	p.click("button", "Import")
	bar := p.find("progressbar", "paced.bin progress", false)
	sawPartial := false
	deadline := time.Now().Add(90 * time.Second)
	for {
		v := p.call(bar, `function() { return [this.value, this.max, this.hasAttribute("value")]; }`)
		if v == "[100,100,true]" {
			break
		}
		if v != "[0,100,true]" && !strings.HasPrefix(v, "[100") {
			sawPartial = true
			if p.shots < 5 {
				p.shot("importing")
			}
		}
		if time.Now().After(deadline) {
			p.shot("import-timeout")
			t.Fatalf("the import's progress is %s after 90s, want 100 of 100", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawPartial {
		t.Error("the progress bar never showed the import between 0 and 100")
	}
	// Its item appears in the folder without a reload.
	p.find("link", "paced.bin", false)

	// Cancel a slow import; see a failed one's error.
	p.typeInto("URL", slow.URL+"/slow.iso")
	p.typeInto("Name (optional)", "slow.iso")
	p.click("button", "Import")
	p.find("progressbar", "slow.iso progress", false)
	p.waitFor("the slow import running", importRow("slow.iso")+`?.classList.contains("inProgress")`, 30*time.Second)
	p.shot("slow-import")
	p.click("button", "Cancel slow.iso")
	p.waitFor("the slow import cancelled", importRow("slow.iso")+`?.classList.contains("cancelled")`, 30*time.Second)

	p.typeInto("URL", slow.URL+"/missing/gone.zip")
	p.typeInto("Name (optional)", "gone.zip")
	p.click("button", "Import")
	p.waitFor("the failed import", importRow("gone.zip")+`?.classList.contains("failed")`, 30*time.Second)
	msg := p.eval(importRow("gone.zip") + `.querySelector(".error").textContent`)
	if !strings.Contains(msg, "404") && !strings.Contains(strings.ToLower(msg), "not found") {
		t.Errorf("the failed import says %s; want words about the missing file", msg)
	}
	p.shot("imports")

	// Download through the item's download URL.
	if _, err := chromedp.CallBrowser(p.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
	}); err != nil {
		t.Fatal(err)
	}
	p.click("link", "hello.txt")
	deadline = time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(downloads, "hello.txt"))
		if err == nil && string(b) == "hello from the picker\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download of hello.txt (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Rename, move and delete.
	p.click("button", "Rename dropped.txt")
	p.typeInto("New name", "renamed.txt")
	p.click("button", "Rename")
	p.find("link", "renamed.txt", false)
	p.click("button", "Move renamed.txt")
	p.typeInto("Move to folder", "/")
	p.click("button", "Move")
	p.waitFor("renamed.txt moved away", `![...document.querySelectorAll("#items a")].some(a => a.textContent === "renamed.txt")`, 30*time.Second)
	p.click("button", "Delete hello.txt")
	p.click("button", "Delete")
	p.waitFor("hello.txt deleted", `![...document.querySelectorAll("#items a")].some(a => a.textContent === "hello.txt")`, 30*time.Second)
	p.click("link", "My files")
	p.find("link", "renamed.txt", false)
	p.shot("laptop")

	// Sign out, then in again through /#token=: the fragment leaves the
	// address bar at once.
	p.click("button", "Sign out")
	p.find("textbox", "Token", false)
	p.do(chromedp.Navigate(s.base + "/#token=" + s.token))
	p.find("link", "Inbox", false)
	if loc := p.eval("location.href"); strings.Contains(loc, "token") {
		t.Errorf("after signing in by the fragment the address is %s", loc)
	}

	// The same page on a phone.
	p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	p.find("link", "Inbox", false)
	if w := p.eval(`document.documentElement.scrollWidth <= window.innerWidth`); w != "true" {
		t.Errorf("the page is wider than a phone's screen (%s px in %s)", p.eval("document.documentElement.scrollWidth"), p.eval("window.innerWidth"))
	}
	p.shot("phone")
	p.clean()
}

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func ptrTo[T any](v T) *T { return &v }
