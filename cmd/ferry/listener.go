package main

import (
	"io"
	"net"
	"sync"
)

// connCounter receives the listener's measurements (*metrics.Metrics).
type connCounter interface {
	HTTPConnections(delta int)
	HTTPConnectionRefused()
}

// clientLimit is a listener that lets one client address (IP, without the
// port) hold at most max connections at once. A connection beyond that is
// closed as soon as it is accepted, before any byte is read: the client
// sees a reset or EOF and may try again once one of its others closes.
// HTTP/2 multiplexes a client's requests over one connection, and HTTP/1.1
// clients (SDKs, rclone, browsers) open a handful, so the default of 256
// only stops floods.
type clientLimit struct {
	net.Listener
	max int
	m   connCounter

	mu    sync.Mutex
	conns map[string]int
}

func limitPerClient(ln net.Listener, max int, m connCounter) *clientLimit {
	return &clientLimit{Listener: ln, max: max, m: m, conns: map[string]int{}}
}

// Accept returns the next connection whose client is under its limit.
func (l *clientLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientHost(c.RemoteAddr())
		l.mu.Lock()
		ok := l.conns[host] < l.max
		if ok {
			l.conns[host]++
		}
		l.mu.Unlock()
		if !ok {
			c.Close()
			l.m.HTTPConnectionRefused()
			continue
		}
		l.m.HTTPConnections(1)
		return &limitedConn{Conn: c, release: func() { l.release(host) }}, nil
	}
}

func (l *clientLimit) release(host string) {
	l.mu.Lock()
	if l.conns[host]--; l.conns[host] <= 0 {
		delete(l.conns, host)
	}
	l.mu.Unlock()
	l.m.HTTPConnections(-1)
}

func clientHost(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitedConn gives its client's slot back when closed (once, however
// often Close is called).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ReadFrom keeps sendfile for downloads: the HTTP server uses it when the
// connection has it, as a *net.TCPConn does.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite lets the server half-close the connection after an error
// response, as it does with a *net.TCPConn.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
