package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferrydrive/ferry/ferrytest"
)

// TestThreeNodesOnS3 runs three server processes on one PostgreSQL
// database and one S3 bucket. An import posted to one node is polled on
// another; the node that runs it is SIGKILLed after it has uploaded a
// part, and another node finishes the job with the right hashes, having
// refetched from the origin at most one part (16 MiB) more than the file.
// Items and tokens work across nodes, and the bucket holds no unfinished
// upload and no staged byte afterwards.
func TestThreeNodesOnS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real server processes and waits for a stale heartbeat (30s)")
	}
	dsn := ferrytest.PostgresDSN(t)
	e := newS3Env(t, "drive")
	content := make([]byte, 40<<20)
	for i := range content {
		content[i] = byte(i*29 + i>>13)
	}
	// 2 MiB/s per connection, 8 MiB/s in all: the import takes seconds
	// however many connections it opens, so the kill lands mid-import.
	o := &slowOrigin{content: content, pause: 32 * time.Millisecond, rate: 8 << 20}
	srcSrv := httptest.NewServer(o)
	t.Cleanup(srcSrv.Close)

	type node struct {
		id  string
		cmd *exec.Cmd
		s   server
	}
	start := func(n int) *node {
		id := fmt.Sprintf("node%d", n)
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--db", dsn, "--node-id", id, "--data", t.TempDir()}, e.args...)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "FERRY_TEST_RUN_MAIN=1",
			"AWS_ACCESS_KEY_ID="+e.srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+e.srv.SecretKey)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return &node{id: id, cmd: cmd, s: scanServerOutput(t, out)}
	}
	nodes := []*node{start(1)}
	token := nodes[0].s.token
	if token == "" {
		t.Fatal("the first node printed no token")
	}
	for i := 2; i <= 3; i++ {
		nodes = append(nodes, start(i))
	}
	for _, n := range nodes {
		n.s.token = token // one database: a token made on one node works on all
	}

	uploadAcrossNodes(t, []server{nodes[0].s, nodes[1].s, nodes[2].s})

	monitor := nodes[0].s.importURL(t, srcSrv.URL+"/big.bin", "big.bin").Header.Get("Location")
	path := monitor[len(nodes[0].s.base):]

	// Wait, polling another node, until the runner has a part in S3,
	// then find the runner in the database and kill it.
	db, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var victim *node
	deadline := time.Now().Add(90 * time.Second)
	for victim == nil {
		if time.Now().After(deadline) {
			t.Fatal("the import did not pass 20 MiB within 90s")
		}
		r, err := http.Get(nodes[1].s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		st := decodeJSON(t, r.Body)
		r.Body.Close()
		if b, _ := st["bytesTransferred"].(float64); b > 20<<20 {
			var runner string
			if err := db.QueryRow(t.Context(), `SELECT runner FROM ferry_job_runs`).Scan(&runner); err != nil {
				t.Fatalf("runner of the import: %v", err)
			}
			for _, n := range nodes {
				if strings.HasPrefix(runner, n.id+"/") {
					victim = n
				}
			}
			if victim == nil {
				t.Fatalf("runner %q is none of the nodes", runner)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	servedBefore := o.served.Load()
	victimConns := o.peakConns()
	var alive []*node
	for _, n := range nodes {
		if n != victim {
			alive = append(alive, n)
		}
	}

	code, st := pollMonitor(t, alive[0].s.base+path, 150*time.Second)
	if code != http.StatusOK || st["status"] != "completed" {
		t.Fatalf("after killing %s the job ended %d %v", victim.id, code, st)
	}
	id := st["resourceId"].(string)
	item := decodeJSON(t, alive[1].s.do(t, "GET", "/v1.0/me/drive/items/"+id, "").Body)
	sum := sha256.Sum256(content)
	if got, want := item["file"].(map[string]any)["hashes"].(map[string]any)["sha256Hash"], strings.ToUpper(hex.EncodeToString(sum[:])); got != want {
		t.Fatalf("sha256Hash = %v, want %s", got, want)
	}
	refetched := o.served.Load() - int64(len(content))
	t.Logf("killed %s after the origin served %d bytes over up to %d connections; %d in all, %d refetched",
		victim.id, servedBefore, victimConns, o.served.Load(), refetched)
	if servedBefore >= int64(len(content)) {
		t.Errorf("the origin had sent the whole file before the kill: the takeover was not tested")
	}
	if refetched > 16<<20 {
		t.Errorf("the origin sent %d bytes more than the file; want at most one 16 MiB part", refetched)
	}
	dl := alive[0].s.do(t, "GET", "/v1.0/me/drive/items/"+id+"/content", "", "Range", "bytes=100-199")
	if dl.StatusCode != http.StatusPartialContent {
		t.Errorf("ranged download on another node: %d", dl.StatusCode)
	}
	objs := e.objects(t)
	if len(objs) != 2 || e.uploads(t) != 0 {
		t.Errorf("bucket after the takeover: objects %q, %d uploads; want two blobs (the session's and the import's) and no upload", objs, e.uploads(t))
	}
	for _, k := range objs {
		if !strings.HasPrefix(k, "drive/blobs/") {
			t.Errorf("object %s is no blob under the prefix", k)
		}
	}
}

// uploadAcrossNodes creates an upload session on the first server and
// sends its fragments (320 KiB multiples, below S3's 5 MiB part minimum,
// out of order) to all of them in turn; the last fragment commits the
// file, which every server then serves whole.
func uploadAcrossNodes(t *testing.T, servers []server) {
	t.Helper()
	content := make([]byte, 17<<20+1000)
	for i := range content {
		content[i] = byte(i*31 + i>>9)
	}
	resp := servers[0].do(t, "POST", "/v1.0/me/drive/root:/session.bin:/createUploadSession", "{}", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("createUploadSession: %d", resp.StatusCode)
	}
	upload, _ := decodeJSON(t, resp.Body)["uploadUrl"].(string)
	path := upload[len(servers[0].base):]
	const frag = 10 * 320 << 10 // 3.125 MiB
	var offs []int
	for off := 0; off < len(content); off += frag {
		offs = append(offs, off)
	}
	// Last fragment first but one, then the others backwards, the first
	// fragment last: it completes the file.
	order := append([]int{offs[len(offs)-1]}, offs[:len(offs)-1]...)
	for i, j := 1, len(order)-1; i < j; i, j = i+1, j-1 {
		order[i], order[j] = order[j], order[i]
	}
	var item map[string]any
	for i, off := range order {
		end := min(off+frag, len(content))
		s := servers[i%len(servers)]
		req, _ := http.NewRequest(http.MethodPut, s.base+path, bytes.NewReader(content[off:end]))
		req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end-1, len(content)))
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		last := i == len(order)-1
		switch {
		case !last && r.StatusCode != http.StatusAccepted:
			b, _ := io.ReadAll(r.Body)
			t.Fatalf("fragment at %d on %s: %d %s", off, s.base, r.StatusCode, b)
		case last && r.StatusCode != http.StatusCreated:
			b, _ := io.ReadAll(r.Body)
			t.Fatalf("last fragment on %s: %d %s, want 201", s.base, r.StatusCode, b)
		case last:
			item = decodeJSON(t, r.Body)
		}
		r.Body.Close()
	}
	sum := sha256.Sum256(content)
	if got, want := item["file"].(map[string]any)["hashes"].(map[string]any)["sha256Hash"], strings.ToUpper(hex.EncodeToString(sum[:])); got != want {
		t.Fatalf("session file sha256Hash = %v, want %s", got, want)
	}
	for _, s := range servers {
		dl := s.do(t, "GET", "/v1.0/me/drive/items/"+item["id"].(string)+"/content", "")
		got, _ := io.ReadAll(dl.Body)
		if !bytes.Equal(got, content) {
			t.Fatalf("session file from %s: %d bytes, not the uploaded ones", s.base, len(got))
		}
	}
}
