//go:build linux

package engine

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// orderSet is the epoll set that tells the arrival order of idle readers' bytes (order.go).
//
// Invariants: byFD[fd] is the client whose reader waits watched on fd, nil when none; a
// watched socket is armed with EPOLLONESHOT, so it is reported once per wait. The set is
// never waited on: a reader whose wait ended collects it (woke), so the order costs no
// goroutine of its own and no wake beyond the reader's. Its ready list is in arrival order,
// and a collection takes all of it under mu, so the sequence numbers follow arrival order
// whoever collects.
//
// Rejected: watching in the parked connections' set (poll_linux.go), which the runtime's
// netpoller watches: every watched event then also woke the poller goroutine, and serving
// connections a connect-disconnect cycle at a time cost 10-15% more CPU.
type orderSet struct {
	arrivalOrder
	epfd int

	mu     sync.Mutex // guards the fields below and every client's orderWatched and orderArmed
	byFD   []*client
	events [128]syscall.EpollEvent
}

func newOrderSet() (*orderSet, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	o := &orderSet{epfd: fd}
	o.initOrder()
	return o, nil
}

// watch arms fd, the socket of c's reader, which is about to wait for bytes. Called from
// inside the socket's RawConn.Read, which keeps fd open. A failure leaves the wait
// unordered.
func (o *orderSet) watch(c *client, fd int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.epfd < 0 {
		return
	}
	for fd >= len(o.byFD) {
		o.byFD = append(o.byFD, nil)
	}
	op := syscall.EPOLL_CTL_MOD
	if !c.orderArmed {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
	if syscall.EpollCtl(o.epfd, op, fd, &ev) != nil {
		return
	}
	o.byFD[fd] = c
	c.orderFD = int32(fd)
	c.orderArmed, c.orderWatched = true, true
}

// woke is called by a watched reader whose wait ended: it collects the ready list if the
// reader's event is still in it, so that the reader knows its place before it handles
// anything, and stops watching when nothing arrived (a deadline, a kick).
func (o *orderSet) woke(c *client) {
	o.mu.Lock()
	if c.orderWatched {
		o.collectLocked()
		if c.orderWatched {
			o.forgetLocked(c)
		}
	}
	o.mu.Unlock()
}

// collectLocked takes every event off the ready list and gives each, in arrival order, the
// next sequence. The caller holds o.mu.
func (o *orderSet) collectLocked() {
	for {
		n, err := pollReady(o.epfd, o.events[:])
		if err == syscall.EINTR {
			continue
		}
		for i := 0; i < n; i++ {
			fd := int(o.events[i].Fd)
			if fd >= len(o.byFD) || o.byFD[fd] == nil {
				continue
			}
			c := o.byFD[fd]
			o.byFD[fd] = nil
			c.orderWatched = false
			if old := c.orderSeq.Swap(o.assign()); old != 0 {
				o.finish(old) // a place its reader never took
			}
		}
		if n < len(o.events) {
			return
		}
	}
}

// replace gives c a new place after every event that has come.
func (o *orderSet) replace(c *client) {
	o.mu.Lock()
	o.collectLocked()
	if old := c.orderSeq.Swap(o.assign()); old != 0 {
		o.finish(old)
	}
	o.mu.Unlock()
}

// forget takes c out of the table: its connection ends.
func (o *orderSet) forget(c *client) {
	o.mu.Lock()
	o.forgetLocked(c)
	o.mu.Unlock()
}

func (o *orderSet) forgetLocked(c *client) {
	if fd := int(c.orderFD); fd < len(o.byFD) && o.byFD[fd] == c {
		o.byFD[fd] = nil
	}
	c.orderWatched = false
}

// close releases the epoll instance. The broker calls it once every connection has ended.
func (o *orderSet) close() {
	o.mu.Lock()
	if o.epfd >= 0 {
		syscall.Close(o.epfd)
		o.epfd = -1
	}
	o.byFD = nil
	o.mu.Unlock()
}

// socketReader reads a parkable connection's socket through its RawConn, so that the reader
// sees when it is about to wait for bytes (to be watched for their order, order.go) and
// when a wait ends. A plain conn.Read hides both. The connection's writes go through it too
// (write), so that a write sets a deadline only when it must wait. Made once per
// connection: the callbacks are method values, so a read or write allocates nothing.
type socketReader struct {
	raw    syscall.RawConn
	readFn func(fd uintptr) bool
	c      *client
	// One read's arguments and results, for readFn.
	p      []byte
	n      int
	err    error
	waited bool
	// watchNext: the next wait is watched. True after CONNECT and after a subscription
	// change, and whenever the last wait lasted orderIdleWait or more.
	watchNext bool
	// nextPlace is the place afterControl took, which the reader holds once it has
	// handled what it read (placeAfterControl); 0 for none.
	nextPlace uint64
	// provisional: the place held is the one placeAfterControl took, not one a watch gave.
	provisional bool
	waitStart   int64 // unix ns
	// connectDeadline: the connect timeout's deadline has been set (readOnce).
	connectDeadline bool
	// One write's arguments and results, for writeFn.
	writeFn   func(fd uintptr) bool
	wp        []byte
	wn        int
	werr      error
	wdeadline bool
	wtimeout  time.Duration
}

func (r *socketReader) init(c *client) bool {
	tcp, ok := c.conn.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return false
	}
	r.raw, r.c = raw, c
	r.readFn = r.readOnce
	r.writeFn = r.writeSome
	return true
}

// read is conn.Read for a watched socket, then the reader's turn when the bytes came after
// a watched wait.
func (r *socketReader) read(p []byte) (int, error) {
	r.p, r.n, r.err, r.waited = p, 0, nil, false
	err := r.raw.Read(r.readFn)
	if err == nil {
		err = r.err
	}
	if r.waited {
		r.afterWait()
	}
	if r.n > 0 && r.c.orderSeq.Load() != 0 {
		r.takeTurn()
	}
	r.p = nil
	return r.n, err
}

// takeTurn waits for the connection's place in the arrival order when the bytes just read
// need one, and gives it up at once when they need it no longer. Bytes that follow a partial
// packet are counted as a subscription change: their packet's type is not in them.
func (r *socketReader) takeTurn() {
	kind := orderChanges
	if r.c.reader == nil || r.c.reader.Buffered() == 0 {
		kind = orderKind(r.p[:r.n])
	}
	if kind == orderPublish && r.provisional {
		// Read without a wait under the place taken after a control packet: the PUBLISH
		// may have come long after that place was taken, so it goes after every event
		// that came meanwhile. A subscription change keeps the early place: between the
		// two, a SUBSCRIBE is the one that must not come late.
		r.c.b.order.replace(r.c)
	}
	r.provisional = false
	if kind != orderNeutral {
		r.c.b.order.waitTurn(r.c.orderSeq.Load())
	}
	if kind != orderChanges {
		r.c.doneOrder()
	}
}

// readOnce is one attempt: false sends the runtime to wait for the socket.
func (r *socketReader) readOnce(fd uintptr) bool {
	for {
		n, err := rawRead(int(fd), r.p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if !r.connectDeadline && r.c.state.Load() == connConnecting {
				// The connect timeout starts when the reader first waits for CONNECT.
				r.connectDeadline = true
				if t := r.c.b.cfg.Server.ConnectTimeout; t > 0 {
					r.c.conn.SetReadDeadline(time.Now().Add(t))
				}
			}
			if !r.waited {
				r.waited = true
				r.waitStart = now()
				// A place held since a control packet ends here: what comes next gets
				// its place from the watch.
				r.c.doneOrder()
				r.provisional = false
				if r.watchNext {
					r.c.b.order.watch(r.c, int(fd))
				}
			}
			return false
		case err != nil:
			r.err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
		case n == 0:
			r.err = io.EOF
		default:
			r.n = n
		}
		return true
	}
}

// connectWaited reports whether the reader waited for CONNECT, which set the connect
// timeout's deadline.
func (r *socketReader) connectWaited() bool { return r.connectDeadline }

// write writes all of p. The first attempt costs no deadline: only when the socket's
// buffer is full is the write deadline set, for the wait, and cleared after it.
func (r *socketReader) write(p []byte, timeout time.Duration) (int, error) {
	r.wp, r.wn, r.werr, r.wdeadline = p, 0, nil, false
	r.wtimeout = timeout
	err := r.raw.Write(r.writeFn)
	if err == nil {
		err = r.werr
	}
	if r.wdeadline {
		r.c.conn.SetWriteDeadline(time.Time{})
	}
	r.wp = nil
	return r.wn, err
}

func (r *socketReader) writeSome(fd uintptr) bool {
	for r.wn < len(r.wp) {
		n, err := rawWrite(int(fd), r.wp[r.wn:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if !r.wdeadline {
				r.wdeadline = true
				r.c.conn.SetWriteDeadline(time.Now().Add(r.wtimeout))
			}
			return false
		case err != nil:
			r.werr = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
			return true
		}
		r.wn += n
	}
	return true
}

// afterControl is called as a CONNECT, SUBSCRIBE or UNSUBSCRIBE is answered, before the
// answer can leave: the client's next packet often acts on it (it publishes to the topic,
// or another client publishes to it) and must be ordered against other clients' packets
// whether or not the reader waits for it. The next wait is watched; and a place is taken
// now, before the client can have sent anything in response, for the bytes the reader may
// read next without waiting (the client sent them before the reader was back at its
// socket, and no watch places them). The reader moves to that place once it has handled
// what it read (placeAfterControl).
func (r *socketReader) afterControl() {
	if r.raw == nil {
		return
	}
	r.watchNext = true
	if r.nextPlace == 0 {
		r.nextPlace = r.c.b.order.assign()
	}
}

// placeAfterControl moves the reader to the place afterControl took, once it has handled
// every byte it read and given up its previous place.
func (r *socketReader) placeAfterControl() {
	if r.nextPlace != 0 {
		if old := r.c.orderSeq.Swap(r.nextPlace); old != 0 {
			r.c.b.order.finish(old)
		}
		r.nextPlace = 0
		r.provisional = true
	}
}

// releasePlaces gives up a place taken and not yet moved to: the reader parks or ends.
func (r *socketReader) releasePlaces() {
	if r.nextPlace != 0 {
		r.c.b.order.finish(r.nextPlace)
		r.nextPlace = 0
	}
	r.provisional = false
}

// afterWait ends a wait: a watched reader that nothing collected stops being watched, and
// the wait's length decides whether the next is watched.
func (r *socketReader) afterWait() {
	if r.watchNext {
		r.c.b.order.woke(r.c)
	}
	r.watchNext = now()-r.waitStart >= int64(orderIdleWait)
}
