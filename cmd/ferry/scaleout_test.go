package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
	o := &slowOrigin{content: content}
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
	t.Logf("killed %s after the origin served %d bytes; %d in all, %d refetched", victim.id, servedBefore, o.served.Load(), refetched)
	if refetched > 16<<20 {
		t.Errorf("the origin sent %d bytes more than the file; want at most one 16 MiB part", refetched)
	}
	dl := alive[0].s.do(t, "GET", "/v1.0/me/drive/items/"+id+"/content", "", "Range", "bytes=100-199")
	if dl.StatusCode != http.StatusPartialContent {
		t.Errorf("ranged download on another node: %d", dl.StatusCode)
	}
	objs := e.objects(t)
	if len(objs) != 1 || e.uploads(t) != 0 {
		t.Errorf("bucket after the takeover: objects %q, %d uploads; want one blob and no upload", objs, e.uploads(t))
	}
}
