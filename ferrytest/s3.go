package ferrytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Server is an S3-compatible server for tests: an endpoint, static
// credentials and a bucket of the test's own.
type S3Server struct {
	Endpoint  string
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string
}

var (
	vgwOnce sync.Once
	vgw     *S3Server
	vgwErr  error
)

// S3 returns an S3 server with a new, empty bucket for this test, or skips
// the test saying how to get one. With FERRY_TEST_S3_ENDPOINT set (and
// FERRY_TEST_S3_ACCESS_KEY, FERRY_TEST_S3_SECRET_KEY) it uses that server,
// which must accept path-style requests and bucket creation; otherwise it
// starts versitygw (found as FERRY_TEST_VERSITYGW, or versitygw on PATH)
// once per test binary on a loopback port with a temporary folder.
func S3(t testing.TB) *S3Server {
	t.Helper()
	srv := &S3Server{Region: "us-east-1"}
	if ep := os.Getenv("FERRY_TEST_S3_ENDPOINT"); ep != "" {
		srv.Endpoint = ep
		srv.AccessKey = os.Getenv("FERRY_TEST_S3_ACCESS_KEY")
		srv.SecretKey = os.Getenv("FERRY_TEST_S3_SECRET_KEY")
	} else {
		vgwOnce.Do(func() { vgw, vgwErr = startVersityGW() })
		if vgwErr != nil {
			t.Skipf("no S3 server: set FERRY_TEST_S3_ENDPOINT (with FERRY_TEST_S3_ACCESS_KEY and FERRY_TEST_S3_SECRET_KEY), or put the versitygw binary on PATH or in FERRY_TEST_VERSITYGW (%v)", vgwErr)
		}
		*srv = *vgw
	}
	var b [8]byte
	rand.Read(b[:])
	srv.Bucket = "ferry-" + hex.EncodeToString(b[:])
	if err := srv.makeBucket(t.Context()); err != nil {
		t.Fatalf("create bucket %s on %s: %v", srv.Bucket, srv.Endpoint, err)
	}
	return srv
}

// startVersityGW starts versitygw on a free loopback port, serving a
// temporary folder. It lives as long as the test binary (it dies with it:
// Pdeathsig), and its folder is removed at exit only by the OS's temp
// clean-up; tests create one bucket each.
func startVersityGW() (*S3Server, error) {
	bin := os.Getenv("FERRY_TEST_VERSITYGW")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("versitygw"); err != nil {
			return nil, fmt.Errorf("versitygw not found on PATH")
		}
	}
	dir, err := os.MkdirTemp("", "ferry-vgw-*")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	srv := &S3Server{Endpoint: "http://" + addr, Region: "us-east-1", AccessKey: "ferrytest", SecretKey: "ferrytestsecret"}
	cmd := exec.Command(bin, "--access", srv.AccessKey, "--secret", srv.SecretKey, "--port", addr, "--quiet", "posix", dir)
	cmd.SysProcAttr = vgwProcAttr()
	out, err := os.Create(filepath.Join(dir, ".versitygw.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return srv, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	return nil, fmt.Errorf("versitygw did not answer on %s (log in %s)", addr, out.Name())
}

// makeBucket creates srv.Bucket.
func (srv *S3Server) makeBucket(ctx context.Context) error {
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		return err
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Region:       srv.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return err
	}
	return c.MakeBucket(ctx, srv.Bucket, minio.MakeBucketOptions{Region: srv.Region})
}
