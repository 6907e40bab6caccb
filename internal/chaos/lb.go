package chaos

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// balancer is the load balancer in front of the two front-ends: a TCP
// proxy on loopback that sends each connection to the next front-end
// that accepts it, as an operator's L4 balancer with health checks
// would. TLS ends at the front-ends.
type balancer struct {
	l        net.Listener
	backends []string
	next     atomic.Uint64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

func startBalancer(backends []string) (*balancer, error) {
	l, err := net.Listen("tcp", loopback+":0")
	if err != nil {
		return nil, err
	}
	b := &balancer{l: l, backends: backends, conns: map[net.Conn]struct{}{}}
	go b.serve()
	return b, nil
}

func (b *balancer) addr() string { return b.l.Addr().String() }

func (b *balancer) serve() {
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		go b.proxy(c)
	}
}

func (b *balancer) proxy(c net.Conn) {
	defer c.Close()
	start := b.next.Add(1)
	var up net.Conn
	for i := range b.backends {
		addr := b.backends[(int(start)+i)%len(b.backends)]
		d, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			up = d
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	if !b.track(c, up) {
		return
	}
	defer b.untrack(c, up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

func (b *balancer) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
	return true
}

func (b *balancer) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		delete(b.conns, c)
	}
}

func (b *balancer) close() {
	b.l.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for c := range b.conns {
		c.Close()
	}
}
