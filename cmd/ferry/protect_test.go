package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// counts is a connCounter for the listener test.
type counts struct{ open, refused atomic.Int64 }

func (c *counts) HTTPConnections(d int)  { c.open.Add(int64(d)) }
func (c *counts) HTTPConnectionRefused() { c.refused.Add(1) }

// TestConnsPerClient holds the most connections one client may have; the
// next is closed at once, and once one of the first closes, a new one is
// served again.
func TestConnsPerClient(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &counts{}
	ln := limitPerClient(inner, 3, c)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dial := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// get makes a request on conn and reports whether it was answered.
	get := func(conn net.Conn) bool {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		b := make([]byte, 12)
		n, _ := io.ReadFull(conn, b)
		return strings.HasPrefix(string(b[:n]), "HTTP/1.1 200")
	}
	var held []net.Conn
	for range 3 {
		conn := dial()
		if !get(conn) {
			t.Fatal("a connection within the limit was not served")
		}
		held = append(held, conn)
	}
	if extra := dial(); get(extra) {
		t.Fatal("a fourth connection from one client was served, want it closed")
	}
	if c.refused.Load() != 1 || c.open.Load() != 3 {
		t.Errorf("refused %d, open %d; want 1 and 3", c.refused.Load(), c.open.Load())
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.open.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if again := dial(); !get(again) {
		t.Fatal("after one of its connections closed, the client could not connect again")
	}
}

// TestSecondSignalForcesExit runs the server as a process, holds a request
// open so that a graceful stop has to wait, and sends SIGTERM twice: the
// second ends the process at once.
func TestSecondSignalForcesExit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "FERRY_TEST_RUN_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := scanServerOutput(t, out)
	go io.Copy(io.Discard, out)

	// A body that never finishes keeps a handler busy (its idle timeout
	// is a minute).
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1.0/me/drive/root:/held.bin:/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\nabc", s.token)
	time.Sleep(200 * time.Millisecond)

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		t.Fatalf("the server exited (%v) while a handler was running; want it to wait", err)
	case <-time.After(time.Second):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err == nil {
			t.Error("a forced exit reported success")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not exit within 5s of a second SIGTERM")
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ferry test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s := startLogged(t, nil, "--data", t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(s.base, "https://127.0.0.1:") {
		t.Fatalf("ready line says %q, want https://", s.base)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	req, _ := http.NewRequest("POST", s.base+"/v1.0/me/drive/root:/t.bin:/createUploadSession", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("createUploadSession over TLS: %d %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if up, _ := decodeJSON(t, resp.Body)["uploadUrl"].(string); !strings.HasPrefix(up, s.base+"/upload/") {
		t.Errorf("uploadUrl %q, want it under %s", up, s.base)
	}
	// Plain HTTP on the TLS port gets no API answer.
	if resp, err := http.Get(strings.Replace(s.base, "https://", "http://", 1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP on the TLS listener answered 200")
		}
	}

	for _, bad := range [][]string{{"--tls-cert", certFile}, {"--tls-cert", keyFile, "--tls-key", keyFile}} {
		err := run(t.Context(), append([]string{"serve", "--listen", "127.0.0.1:0", "--data", t.TempDir()}, bad...), func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("serve %v started", bad)
		}
	}
}
