//go:build linux

package engine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// idlePoller watches the sockets of parked connections (see poll_idle.go) for the one event
// that needs a reader again: bytes, a peer close or an error.
//
// Invariants: byFD[fd] is the client parked on fd, nil when none; a client is in byFD only
// while its state is connParked, and its fd is armed in the epoll set with EPOLLONESHOT, so
// the kernel reports it once and then ignores it until it parks again. An event for an fd
// whose client was resumed meanwhile (by a kick) finds nothing in byFD, or finds a newer
// client parked on a reused fd, which then resumes for nothing: harmless, it reads and
// parks again later.
//
// Design: one epoll instance per broker, itself a file the Go runtime's netpoller watches,
// so the poller goroutine sleeps like any blocked reader and wakes through the scheduler.
// Rejected: a goroutine blocked in epoll_wait(-1), which holds an OS thread in a system call
// and, with one core (GOMAXPROCS=1 under taskset), costs a thread handoff on every wake.
type idlePoller struct {
	file *os.File // the epoll instance; closing it ends run
	raw  syscall.RawConn
	epfd int

	mu     sync.Mutex // guards the fields below and every client's pollArmed
	byFD   []*client
	closed bool
}

func newIdlePoller() (*idlePoller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile registers it with the runtime's netpoller.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(fd), "idle-epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("epoll raw conn: %w", err)
	}
	return &idlePoller{file: file, raw: raw, epfd: fd}, nil
}

// parkable reports whether conn can wait in the poller: a plain TCP socket. TLS and
// WebSocket connections buffer bytes above the socket (a record, a frame), which an epoll
// readiness event would not see, so they keep their reader goroutine.
func parkable(conn net.Conn) bool {
	_, ok := conn.(*net.TCPConn)
	return ok
}

// arm registers c's socket for one readable event. The caller has set c's state to
// connParked; from the moment the socket is armed, another goroutine may resume c.
func (p *idlePoller) arm(c *client) error {
	tcp, ok := c.conn.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket raw conn: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	var ctlErr error
	// Control holds the socket open while the fd is used: a concurrent Close waits.
	err = raw.Control(func(fd uintptr) {
		for int(fd) >= len(p.byFD) {
			p.byFD = append(p.byFD, nil)
		}
		p.byFD[fd] = c
		c.fd = int32(fd)
		op := syscall.EPOLL_CTL_MOD
		if !c.pollArmed {
			op = syscall.EPOLL_CTL_ADD
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
		if ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev); ctlErr != nil {
			p.byFD[fd] = nil
			return
		}
		c.pollArmed = true
	})
	if err != nil {
		return fmt.Errorf("socket control: %w", err)
	}
	if ctlErr != nil {
		return fmt.Errorf("epoll_ctl: %w", ctlErr)
	}
	return nil
}

// forget removes c from the parked table once it is resumed by another way than its event.
func (p *idlePoller) forget(c *client) {
	p.mu.Lock()
	if fd := int(c.fd); fd < len(p.byFD) && p.byFD[fd] == c {
		p.byFD[fd] = nil
	}
	p.mu.Unlock()
}

// run resumes each parked client whose socket reports an event, until close.
func (p *idlePoller) run() {
	var events [128]syscall.EpollEvent
	var readyScratch [128]*client
	ready := readyScratch[:0]
	for {
		n := 0
		err := p.raw.Read(func(fd uintptr) bool {
			for {
				var err error
				n, err = pollReady(int(fd), events[:])
				if err != syscall.EINTR {
					// The runtime reports the epoll fd edge-triggered: only an empty
					// ready list may wait for the next edge.
					return n > 0
				}
			}
		})
		if err != nil {
			return // closed
		}
		ready = ready[:0]
		p.mu.Lock()
		for i := range n {
			if fd := int(events[i].Fd); fd < len(p.byFD) && p.byFD[fd] != nil {
				ready = append(ready, p.byFD[fd])
				p.byFD[fd] = nil
			}
		}
		p.mu.Unlock()
		resumeInOrder(ready)
		clear(ready)
	}
}

// resumeInOrder starts the readers of clients whose events epoll reported in this order, so
// that the first runs first. The runtime puts a new goroutine in its P's "next" slot and
// moves the one there to the back of the local queue: started in order, the last would run
// first. Started from the second to the last, then the first, they run in event order. Order
// matters between connections: a SUBSCRIBE that reached the broker before another client's
// PUBLISH should take effect first.
func resumeInOrder(ready []*client) {
	if len(ready) == 0 {
		return
	}
	for _, c := range ready[1:] {
		c.resume()
	}
	ready[0].resume()
}

// close ends run and refuses further arms. The broker calls it once every connection has
// ended.
func (p *idlePoller) close() {
	p.mu.Lock()
	was := p.closed
	p.closed = true
	p.byFD = nil
	p.mu.Unlock()
	if !was {
		p.file.Close()
	}
}
