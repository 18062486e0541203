package engine

import (
	"errors"
	"os"
	"runtime/debug"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// Idle connections without a goroutine.
//
// A connection that has read nothing for a while parks: its reader goroutine gives back its
// read buffer, drops its packets.Reader, arms the socket in the broker's idlePoller and
// returns. An event on the socket (bytes, a close, an error), a kick, a writer closing the
// socket, or a keep-alive deadline coming due resumes it on a fresh goroutine, which starts
// with the runtime's smallest stack. A parked connection costs its client struct, its
// session and the kernel's socket: no stack (2-8 KB), no runtime timer, no Reader. This is
// what brings idle memory under the 4 KB per connection of DESIGN.md (Concurrency).
//
// Who decides: the idle sweeper (one goroutine per broker, every idleCheck) asks a reader
// that read nothing during parkAfterSweeps sweeps in a row to park, by setting its read
// deadline in the past. The reader, woken with os.ErrDeadlineExceeded, parks only at a packet boundary and
// only when no kick is under way and its keep-alive is not about to expire; otherwise it
// restores its deadline and reads on. Deciding in the reader when a read would block was
// rejected: a busy connection finds its socket empty after nearly every batch, and would
// pay an epoll_ctl and a goroutine start per batch.
//
// State (client.state) moves connConnecting -> connReading <-> connParked, and to connEnded.
// Only a CompareAndSwap from connParked to connReading starts a goroutine, so whoever
// resumes (poller, kick, writer, sweeper) does it once. Everything the reader owns is handed
// over by that atomic: the parking goroutine writes its last field before it stores
// connParked, the resumed one reads after its CompareAndSwap.
//
// Keep-alive of a parked connection costs no timer: the sweeper resumes it when its
// deadline is less than two sweeps away, and the resumed reader's own read deadline ends it
// on time [MQTT-3.1.2-22].

const (
	connConnecting int32 = iota // reading CONNECT: not parkable
	connReading                 // a goroutine runs readLoop
	connParked                  // no goroutine; the socket is armed in the poller
	connEnded
)

// idleCheck is the sweeper's period.
const idleCheck = time.Second

// parkAfterSweeps is how many sweeps in a row must find a connection silent before it parks:
// it parks 4 to 5 seconds after its last read. Waking a parked connection costs more than
// waking a blocked reader (the poller's event, then a new goroutine and Reader), and that
// added latency decides races between connections: a client that subscribes and another
// that publishes a moment later expect the subscription to win, as it does on a broker that
// serves sockets in arrival order. The Paho interoperability suite does exactly that after
// pauses of 0.5 to 1 s. With half a second (one to two sweeps) connections of such a
// conversation parked between its steps and the publish often overtook the subscribe; a
// connection that is quiet for seconds is idle in the sense that matters for memory.
const parkAfterSweeps = 4

// minParkKeepAlive is the shortest keep-alive of a connection that may park. A client that
// must send every few seconds is never idle for long, parking it would save little, and its
// deadline must stay well beyond the sweeper's resume margin (two periods) even on a loaded
// machine.
const minParkKeepAlive = 5 * time.Second

// errPark is what the connection's byte source returns to packets.Reader when the reader
// should park. The Reader keeps it (its errors are sticky), so a reader that does not park
// after all continues with a new Reader; nothing was buffered.
var errPark = errors.New("engine: idle connection parks")

// errParked ends readLoop without ending the connection.
var errParked = errors.New("engine: connection parked")

// connSource is the byte source of a connection's packets.Reader: it counts bytes, marks
// the connection active for the sweeper, and turns the sweeper's request into errPark.
type connSource struct {
	countingReader
	c *client
	// socket reads a parkable connection (nil for others: TLS, WebSocket, no poller).
	socket *socketReader
	// first holds what the connection's first read returned beyond the room the Reader
	// offered (its 16 inline bytes): a CONNECT is longer, and reading the rest with a
	// second syscall cost 3-4% of the connection-rate CPU. The buffer is borrowed from the
	// broker's write buffers until the Reader has taken every byte.
	first              *[]byte
	firstOff, firstEnd int
	started            bool
}

func (s *connSource) Read(p []byte) (int, error) {
	if s.first != nil {
		return s.readFirst(p), nil
	}
	if !s.started {
		s.started = true
		return s.readAhead(p)
	}
	c := s.c
	for {
		n, err := s.readSocket(p)
		if n > 0 && !c.active.Load() {
			c.active.Store(true)
		}
		if err == nil || !c.parkRequested.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		// The sweeper's deadline, maybe together with bytes that raced it.
		if n == 0 && c.reader.Buffered() == 0 && c.mayPark() {
			return 0, errPark
		}
		c.cancelPark()
		if n > 0 {
			return n, nil
		}
	}
}

// readSocket reads the connection, counting bytes.
func (s *connSource) readSocket(p []byte) (int, error) {
	if s.socket == nil {
		return s.countingReader.Read(p)
	}
	n, err := s.socket.read(p)
	s.n.Add(uint64(n))
	return n, err
}

// readAhead is the connection's first read, into a borrowed buffer larger than p.
func (s *connSource) readAhead(p []byte) (int, error) {
	bp := s.c.b.writeBuffers.Get().(*[]byte)
	buf := (*bp)[:cap(*bp)]
	if len(buf) <= len(p) {
		s.c.b.writeBuffers.Put(bp)
		return s.readSocket(p)
	}
	n, err := s.readSocket(buf)
	if n > 0 {
		s.c.active.Store(true)
	}
	if n <= len(p) {
		copy(p, buf[:n])
		s.c.b.writeBuffers.Put(bp)
		return n, err
	}
	// The rest waits in buf; an error comes again from the socket on the next read.
	s.first, s.firstOff, s.firstEnd = bp, 0, n
	return s.readFirst(p), nil
}

// readFirst hands out bytes kept by readAhead, and gives the buffer back once empty.
func (s *connSource) readFirst(p []byte) int {
	n := copy(p, (*s.first)[s.firstOff:s.firstEnd])
	s.firstOff += n
	if s.firstOff == s.firstEnd {
		s.c.b.writeBuffers.Put(s.first)
		s.first = nil
	}
	return n
}

// mayPark: no kick is under way and the keep-alive deadline is not within two sweeps (the
// sweeper would resume the connection at once).
func (c *client) mayPark() bool {
	if !c.keepAliveParks() {
		return false
	}
	if d := c.readDeadline.Load(); d != 0 && d-now() < int64(2*idleCheck) {
		return false
	}
	return !c.stopping()
}

// keepAliveParks: no keep-alive, or one long enough to park (minParkKeepAlive).
func (c *client) keepAliveParks() bool {
	return c.keepAlive == 0 || c.keepAlive >= minParkKeepAlive
}

// stopping reports whether the connection is being closed by a kick or the broker.
func (c *client) stopping() bool {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	return c.kicked || c.closeAfterFlush
}

// cancelPark withdraws a park request the reader declines.
func (c *client) cancelPark() {
	c.parkRequested.Store(false)
	c.restoreReadDeadline()
}

// restoreReadDeadline sets the read deadline the reader should have: a kick's bound, the
// keep-alive deadline, or none. The sweeper's past deadline is still on a socket that
// parked or declined to.
func (c *client) restoreReadDeadline() {
	switch d := c.readDeadline.Load(); {
	case c.stopping():
		c.conn.SetReadDeadline(time.Now().Add(c.writeTimeout()))
	case d != 0:
		c.conn.SetReadDeadline(time.Unix(0, d))
	default:
		c.conn.SetReadDeadline(time.Time{})
	}
}

// startReadDeadline replaces the deadline of CONNECT (server.connect-timeout) with the
// keep-alive's, or with none.
func (c *client) startReadDeadline() {
	if c.keepAlive <= 0 {
		if c.b.cfg.Server.ConnectTimeout > 0 && (c.src.socket == nil || c.socket.connectWaited()) {
			c.conn.SetReadDeadline(time.Time{})
		}
		return
	}
	c.moveReadDeadline()
}

// moveReadDeadline pushes the keep-alive deadline after a packet. Moving it costs a runtime
// timer update (7% of the CPU in fan-in when done per packet), so it moves only once less
// than 1.5 keep-alives remain, to 1.625: the connection ends 1.5 to 1.625 keep-alives after
// the last packet [MQTT-3.1.2-22], and a busy connection updates its timer once per eighth
// of a keep-alive.
func (c *client) moveReadDeadline() {
	if c.keepAlive <= 0 {
		return
	}
	if t := time.Now(); c.readDeadline.Load()-t.UnixNano() < int64(c.keepAlive*3/2) {
		d := t.Add(c.keepAlive * 13 / 8)
		c.readDeadline.Store(d.UnixNano())
		c.conn.SetReadDeadline(d)
	}
}

// park hands the connection to the poller. It reports whether the goroutine must return:
// false when the socket could not be armed and this goroutine reads on.
func (c *client) park() bool {
	c.doneOrder()
	c.socket.releasePlaces()
	c.releasePacket()
	c.reader.Release()
	c.reader = nil
	c.parkRequested.Store(false)
	c.state.Store(connParked)
	// From here another goroutine may own the connection.
	if err := c.b.poller.arm(c); err == nil {
		c.b.parkedSinceRelease.Add(1)
		if c.b.parkNotify != nil {
			c.b.parkNotify <- c
		}
		return true
	}
	// Closed meanwhile, or epoll refused: read on here, unless a resume already started a
	// goroutine (which then sees the closed socket).
	if !c.state.CompareAndSwap(connParked, connReading) {
		return true
	}
	c.reader = c.newReader()
	c.restoreReadDeadline()
	return false
}

// resume starts a reader for a parked connection; for any other state it does nothing.
func (c *client) resume() {
	if !c.state.CompareAndSwap(connParked, connReading) {
		return
	}
	c.b.poller.forget(c)
	c.b.workers.start(workItem{c: c, resume: true})
}

// doneOrder gives up the connection's place in the arrival order (order.go) once every byte
// it read is handled, or it parks or ends. One atomic load when it holds none.
func (c *client) doneOrder() {
	if c.orderSeq.Load() == 0 {
		return
	}
	if seq := c.orderSeq.Swap(0); seq != 0 {
		c.b.order.finish(seq)
	}
}

// newReader is the connection's packets.Reader: made at accept, and again each time the
// connection resumes (a parked connection holds none).
func (c *client) newReader() *packets.Reader {
	r := packets.NewPooledReader(&c.src, c.b.readBuffers)
	if max := c.b.cfg.MQTT.MaxPacketSize; max > 0 {
		r.SetMaxPacketSize(max)
	}
	r.SetVersion(c.version)
	return r
}

// openPoller makes the poller, when the platform has one. Listen calls it, so that it
// exists before any connection is accepted.
func (b *Broker) openPoller() {
	if b.poller != nil {
		return
	}
	p, err := newIdlePoller()
	if err != nil {
		b.log.Debug("idle connections keep their goroutine", "err", err)
		return
	}
	b.poller = p
	if o, err := newOrderSet(); err == nil {
		b.order = o
	} else {
		b.log.Debug("connections are served unordered", "err", err)
	}
}

// startIdle starts the poller and the sweeper.
func (b *Broker) startIdle() {
	if b.poller == nil {
		return
	}
	stop := make(chan struct{})
	b.idleStop = stop
	b.idleDone.Add(2)
	go func() {
		defer b.idleDone.Done()
		b.poller.run()
	}()
	go func() {
		defer b.idleDone.Done()
		b.sweepIdle(stop)
	}()
}

// stopSweeper stops parking: shutdown is about to resume every connection.
func (b *Broker) stopSweeper() {
	if b.idleStop != nil {
		close(b.idleStop)
		b.idleStop = nil
	}
}

// stopPoller ends the poller once no connection is left.
func (b *Broker) stopPoller() {
	if b.poller != nil {
		b.poller.close()
	}
	if b.order != nil {
		b.order.close()
	}
	b.idleDone.Wait()
}

// sweepIdle runs sweepOnce every idleCheck until stop.
func (b *Broker) sweepIdle(stop <-chan struct{}) {
	ticker := time.NewTicker(idleCheck)
	defer ticker.Stop()
	var batch []*client
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		batch = b.sweepOnce(batch)
	}
}

// sweepOnce asks readers idle since the last sweep to park, resumes parked connections
// whose keep-alive is about to expire, and gives memory back once a wave of parking is over.
// batch is scratch, returned for the next call.
func (b *Broker) sweepOnce(batch []*client) []*client {
	b.mu.Lock()
	for c := range b.clients {
		if c.parks {
			batch = append(batch, c)
		}
	}
	b.mu.Unlock()
	t := now()
	requested := 0
	for _, c := range batch {
		if c.sweep(t) {
			requested++
		}
	}
	clear(batch)
	if requested == 0 && b.parkedSinceRelease.Load() >= releaseAfterParks && t-b.lastRelease.Load() >= int64(minReleaseInterval) {
		b.parkedSinceRelease.Store(0)
		b.lastRelease.Store(t)
		// The stacks of the goroutines that parked are free only for the runtime: it takes
		// them back at its next GC and returns pages to the OS down to about the heap goal.
		// An idle broker allocates nothing, so that GC would never come, and the memory
		// parking saved would stay resident. One forced GC and release per wave of parking
		// (not per sweep: a wave's last sweep requests no park), at least
		// releaseAfterParks stacks (2 KB or more each) worth it.
		debug.FreeOSMemory()
	}
	return batch[:0]
}

// minReleaseInterval bounds the cost of releases when waves of parking keep coming: a
// forced GC marks the whole heap.
const minReleaseInterval = 10 * time.Second

// releaseAfterParks is how many connections must have parked since the last release for a
// wave's end to give memory back (at least 2 MB of goroutine stacks).
const releaseAfterParks = 1024

// longAgo is a read deadline that has passed: setting it wakes a blocked Read at once.
var longAgo = time.Unix(1, 0)

// sweep is one sweeper visit to c at time t. It reports whether it asked c to park.
func (c *client) sweep(t int64) bool {
	d := c.readDeadline.Load()
	nearExpiry := d != 0 && d-t < int64(2*idleCheck)
	switch c.state.Load() {
	case connReading:
		if c.active.Swap(false) {
			c.idleSweeps.Store(0)
			return false
		}
		if c.idleSweeps.Add(1) < parkAfterSweeps || nearExpiry || c.parkRequested.Load() || !c.keepAliveParks() {
			return false
		}
		c.idleSweeps.Store(0)
		c.parkRequested.Store(true)
		c.conn.SetReadDeadline(longAgo)
		return true
	case connParked:
		if nearExpiry {
			c.resume()
		}
	}
	return false
}
