package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/topics"
)

// client is one network connection. Its reader goroutine (serve) owns everything not marked
// otherwise; the writer goroutine (writeLoop) drains what the entry's lock guards.
//
// Lifecycle: serve reads CONNECT, attaches to a session entry, starts the writer and reads
// packets until an error, a DISCONNECT or a kick. It then closes stop; the writer writes
// what is left (a final DISCONNECT included) and exits; serve closes the socket and
// detaches from the session, which decides about the will and session expiry. done is
// closed last, so a takeover can wait for the old connection to be fully gone.
type client struct {
	b       *Broker
	conn    net.Conn
	log     *slog.Logger
	version byte
	id      string
	e       *entry
	reader  *packets.Reader
	// packet is the decode target while bytes are arriving; it goes back to the broker's pool
	// whenever the reader has nothing buffered, so an idle connection does not hold its
	// ~4 KB (see pk and releasePacket).
	packet *packets.Packet
	// disconnectCode is the reason code of the client's DISCONNECT.
	disconnectCode packets.ReasonCode
	matches        topics.Matches
	aliases        session.InboundAliases
	// keepAlive is the negotiated keep-alive; the read deadline is 1.5 times it [MQTT-3.1.2-22].
	keepAlive time.Duration
	// requestProblemInfo is the client's Request Problem Information (default 1).
	requestProblemInfo bool
	// who is the identity CONNECT authenticated, for the ACL.
	who identity
	// pendingAcks counts this client's publishes waiting for the store (see ackPublish).
	pendingAcks atomic.Int32
	// storeFailed: a store write the reader waits for failed (see awaitStore).
	storeFailed atomic.Bool
	// storeUpdates is the writer's scratch for delivery rows changed by sending.
	storeUpdates []storeUpdate

	// Guarded by e.mu (the writer shares them):
	ctrl            []byte // encoded acknowledgements and control packets not yet written
	outAliases      session.OutboundAliases
	maxPacketSize   int // the client's Maximum Packet Size; 0: no limit but the protocol's
	closeAfterFlush bool
	kickReason      packets.ReasonCode
	kicked          bool

	// The writer (see wakeWriter): writeMu serializes socket writes between the on-demand
	// writer and the reader's last flush; writerClosed stops new writers for good.
	writerState  atomic.Int32
	writerClosed atomic.Bool
	connDead     atomic.Bool // the writer closed the socket
	writeMu      sync.Mutex
	done         chan struct{}
	doneOnce     sync.Once

	// Parking of an idle connection (poll_idle.go):
	src   connSource
	parks bool         // the connection may park: a TCP socket and a broker with a poller
	state atomic.Int32 // connConnecting, connReading, connParked, connEnded
	// readDeadline is the keep-alive read deadline in unix ns, 0 for none; written by the
	// reader, read by the sweeper.
	readDeadline  atomic.Int64
	parkRequested atomic.Bool // the sweeper asked the reader to park
	active        atomic.Bool // bytes were read since the sweeper last looked
	// idleSweeps counts the sweeps in a row that found no bytes read; the sweeper asks the
	// reader to park after parkAfterSweeps of them.
	idleSweeps atomic.Int32
	fd         int32 // the socket's descriptor while armed; guarded by the poller's mu
	pollArmed  bool  // the socket is in the epoll set; guarded by the poller's mu
	// Arrival order (order.go): orderSeq is the connection's place, 0 for none;
	// orderWatched: the reader waits, watched; orderArmed: the socket is in the order set
	// (both guarded by the order set's mu).
	orderSeq     atomic.Uint64
	orderWatched bool
	orderArmed   bool
	orderFD      int32 // the socket's descriptor while watched
	socket       socketReader
}

// errClientDisconnect ends the read loop when the client sent DISCONNECT.
var errClientDisconnect = errors.New("client sent DISCONNECT")

func newClient(b *Broker, conn net.Conn) *client {
	c := &client{
		b:                  b,
		conn:               conn,
		log:                b.log,
		done:               make(chan struct{}),
		requestProblemInfo: true,
		parks:              b.poller != nil && parkable(conn),
	}
	c.src = connSource{countingReader: countingReader{r: conn, n: &b.stats.BytesReceived}, c: c}
	if c.parks && b.order != nil && c.socket.init(c) {
		c.src.socket = &c.socket
	}
	c.reader = c.newReader()
	return c
}

// serve runs a new connection: CONNECT, CONNACK, then the read loop. The caller has counted
// the connection in b.conns; finish (or a refused CONNECT here) counts it out.
func (c *client) serve() {
	present, ok := c.connect()
	if !ok {
		c.state.Store(connEnded)
		c.reader.Release()
		c.conn.Close()
		c.b.mu.Lock()
		delete(c.b.clients, c)
		c.b.mu.Unlock()
		c.doneOnce.Do(func() { close(c.done) })
		c.b.conns.Done()
		return
	}
	c.b.stats.Connected.Add(1)
	c.logConnected(present)
	c.socket.afterControl()
	// CONNACK (and any resent messages) go out from this goroutine: starting a writer for
	// them cost a goroutine start and park per connection (connection-rate profile).
	c.writeMu.Lock()
	c.flush(false)
	c.writeMu.Unlock()
	c.startReadDeadline()
	c.state.Store(connReading)
	if c.reader.Buffered() == 0 {
		c.socket.placeAfterControl()
	}
	c.run()
}

// run reads until the connection ends or parks. A resumed connection runs it on a fresh
// goroutine with a new Reader and the read deadline it had before parking.
func (c *client) run() {
	if c.reader == nil {
		c.reader = c.newReader()
		c.restoreReadDeadline()
	}
	err := c.readLoop()
	if err == errParked {
		return
	}
	c.state.Store(connEnded)
	if c.src.socket != nil {
		c.b.order.forget(c) // no place in the arrival order can come after this
		c.doneOrder()
		c.socket.releasePlaces()
	}
	// The borrowed read buffer and decode target go back to their pools when reading is
	// over, from this goroutine (never during a ReadPacket).
	c.reader.Release()
	c.releasePacket()
	c.end(err)
	c.doneOnce.Do(func() { close(c.done) })
	c.b.conns.Done()
}

// logConnected is apart from serve so its arguments do not sit in the frame of every parked
// reader: an idle connection's stack must stay small enough for the GC to shrink it.
//
//go:noinline
func (c *client) logConnected(present bool) {
	// Checked first: the arguments (the remote address formatted, the id boxed) cost four
	// allocations per connection even when debug is off.
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	c.log.Debug("client connected", "client", c.id, "version", c.version, "session_present", present, "remote", c.conn.RemoteAddr().String())
}

// end finishes a connection whose read loop returned err: the last DISCONNECT, the last
// flush, the socket and the session.
//
//go:noinline
func (c *client) end(err error) {
	graceful := errors.Is(err, errClientDisconnect) && c.disconnectReason() == packets.NormalDisconnection
	reason, send := c.endReason(err)
	c.e.mu.Lock()
	if send && c.version == packets.V5 && !c.closeAfterFlush {
		c.appendDisconnect(reason)
	}
	c.closeAfterFlush = true
	c.e.mu.Unlock()
	if send {
		c.b.stats.disconnect(reason)
	}
	if reason != packets.NormalDisconnection || !graceful {
		c.logEnded(reason, err)
	}
	// The last flush is the reader's own: no writer starts after it, and a running one is
	// waited for through writeMu.
	c.writerClosed.Store(true)
	c.writeMu.Lock()
	if !c.connDead.Load() {
		c.flush(true)
	}
	c.writeMu.Unlock()
	if send {
		c.lingerClose()
	}
	// The session goes offline before the socket closes: a client that saw the close and
	// publishes must find it offline, so its QoS 0 is not queued without queue-qos0.
	c.b.detach(c, graceful)
	c.conn.Close()
}

// appendDisconnect queues a DISCONNECT. Apart from its callers so the packet (with its
// 320-byte Properties) is not in their frames: the end of a connection must fit the 2 KB
// stack a goroutine starts with (see connect). The caller holds c.e.mu.
//
//go:noinline
func (c *client) appendDisconnect(reason packets.ReasonCode) {
	c.ctrl = (&packets.Disconnect{Version: c.version, Reason: reason}).Append(c.ctrl)
}

//go:noinline
func (c *client) logEnded(reason packets.ReasonCode, err error) {
	c.log.Debug("client connection ended", "client", c.id, "reason", reason.String(), "err", err)
}

// lingerClose half-closes a connection the broker ends for an error and discards what the
// client still sends for a moment. Closing a socket with unread input makes the kernel send
// RST, and the client would lose the DISCONNECT that says why before it could read it.
func (c *client) lingerClose() {
	tcp, ok := c.conn.(*net.TCPConn)
	if !ok {
		return
	}
	tcp.CloseWrite()
	tcp.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, tcp, lingerBytes)
}

const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

// disconnectReason is the reason code of the DISCONNECT the client sent.
func (c *client) disconnectReason() packets.ReasonCode { return c.disconnectCode }

// pk returns the decode target, from the pool when the connection was idle.
func (c *client) pk() *packets.Packet {
	if c.packet == nil {
		c.packet = c.b.packets.Get().(*packets.Packet)
	}
	return c.packet
}

func (c *client) releasePacket() {
	if c.packet != nil {
		c.b.packets.Put(c.packet)
		c.packet = nil
	}
}

// endReason maps how the read loop ended to the reason code the broker gives the client,
// and whether a DISCONNECT carrying it should be sent.
func (c *client) endReason(err error) (packets.ReasonCode, bool) {
	c.e.mu.Lock()
	kicked, kickReason := c.kicked, c.kickReason
	c.e.mu.Unlock()
	if kicked {
		return kickReason, false // kick already queued the DISCONNECT
	}
	if errors.Is(err, errClientDisconnect) {
		return packets.NormalDisconnection, false
	}
	var perr *packets.Error
	if errors.As(err, &perr) {
		return perr.Code, true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return packets.KeepAliveTimeout, true
	}
	return packets.UnspecifiedError, false
}

// readLoop reads and handles packets until the connection must end.
func (c *client) readLoop() error {
	for {
		fh, body, err := c.reader.ReadPacket()
		if err != nil {
			if err != errPark {
				return err
			}
			if c.park() {
				return errParked
			}
			continue
		}
		c.b.stats.PacketsReceived.Add(1)
		c.b.stats.PacketsReceivedByType[fh.Type].Add(1)
		if err := c.pk().Decode(c.version, fh, body); err != nil {
			return err
		}
		if fh.Type == packets.TypeSubscribe || fh.Type == packets.TypeUnsubscribe {
			c.socket.afterControl()
		}
		if err := c.handle(fh.Type); err != nil {
			return err
		}
		if c.reader.Buffered() == 0 {
			c.releasePacket()
			c.doneOrder()
			c.socket.placeAfterControl()
		}
		c.moveReadDeadline()
	}
}

// kick ends the connection from another goroutine: takeover, shutdown or an administrative
// action. A 5.0 client is told why with DISCONNECT before the socket closes.
func (c *client) kick(reason packets.ReasonCode) {
	e := c.e
	if e == nil {
		c.conn.Close()
		return
	}
	e.mu.Lock()
	if c.closeAfterFlush || c.kicked {
		e.mu.Unlock()
		return
	}
	c.kicked = true
	c.kickReason = reason
	var updates []storeUpdate
	if reason == packets.ServerShuttingDown {
		// Nothing left unwritten: what the window allows goes before the DISCONNECT.
		c.ctrl = c.appendQueued(c.ctrl, maxShutdownFlush, &updates)
	}
	if c.version == packets.V5 {
		c.ctrl = (&packets.Disconnect{Version: c.version, Reason: reason}).Append(c.ctrl)
	}
	c.closeAfterFlush = true
	e.mu.Unlock()
	if len(updates) > 0 {
		c.b.applyUpdates(c.id, updates)
	}
	c.b.stats.disconnect(reason)
	c.wakeWriter()
	// The reader may be parked in Read with no deadline; the writer closes the socket after
	// its last write, and this deadline bounds the wait if the writer is itself stuck.
	c.conn.SetReadDeadline(time.Now().Add(c.writeTimeout()))
	c.resume() // a parked connection needs its reader to end
}

func (c *client) writeTimeout() time.Duration {
	if t := c.b.cfg.Server.WriteTimeout; t > 0 {
		return t
	}
	return 10 * time.Second
}

// wakeWriter makes sure a writer runs: it starts one when none does, or tells the running
// one to look again before it exits. The writer exists only while there is something to
// write, so an idle connection holds one parked goroutine (its reader) and no write buffer.
func (c *client) wakeWriter() {
	for {
		switch c.writerState.Load() {
		case writerIdle:
			if c.writerClosed.Load() {
				return
			}
			if c.writerState.CompareAndSwap(writerIdle, writerRunning) {
				go c.writeRun()
				return
			}
		case writerRunning:
			if c.writerState.CompareAndSwap(writerRunning, writerDirty) {
				return
			}
		default:
			return
		}
	}
}

const (
	writerIdle int32 = iota
	writerRunning
	writerDirty // running, and woken again since it last looked
)

// send queues an encoded control packet for the writer. The caller holds c.e.mu.
func (c *client) queueAck(a *packets.Ack) { c.ctrl = a.Append(c.ctrl) }

// writeRun is the on-demand writer: it coalesces every ready packet into one buffer and
// writes it with one syscall (the single biggest factor in throughput, DESIGN.md), until
// nothing is left and no wake came meanwhile.
func (c *client) writeRun() {
	for {
		c.writerState.Store(writerRunning)
		c.writeMu.Lock()
		if c.writerClosed.Load() {
			c.writeMu.Unlock()
			c.writerState.Store(writerIdle)
			return
		}
		c.flush(false)
		c.writeMu.Unlock()
		if c.writerState.CompareAndSwap(writerRunning, writerIdle) {
			return
		}
	}
}

// closeFromWriter ends the socket after a write error or a kick's last write: the reader's
// Read fails and it ends the connection.
func (c *client) closeFromWriter() {
	c.connDead.Store(true)
	c.writerClosed.Store(true)
	c.conn.Close()
	c.resume() // a parked connection needs its reader to end
}

// flush writes until nothing is ready. final is the reader's last flush at the end of the
// connection: control packets only (the final DISCONNECT among them). The caller holds
// writeMu. After a write error or a kick's last write the socket is closed and no writer
// runs again.
func (c *client) flush(final bool) {
	bp := c.b.writeBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 256<<10 { // a burst must not pin a large buffer in the pool
			*bp = buf[:0]
			c.b.writeBuffers.Put(bp)
		}
	}()
	for {
		var closeNow bool
		buf, closeNow = c.fill(buf[:0], final)
		if len(c.storeUpdates) > 0 {
			c.b.applyUpdates(c.id, c.storeUpdates)
			c.storeUpdates = c.storeUpdates[:0]
		}
		if !final {
			c.pageIn()
		}
		if len(buf) > 0 {
			n, err := c.write(buf)
			c.b.stats.BytesSent.Add(uint64(n))
			if err != nil {
				c.closeFromWriter()
				return
			}
		}
		if closeNow {
			c.closeFromWriter()
			return
		}
		if len(buf) == 0 || final {
			return
		}
	}
}

// write writes buf to the connection within the write timeout.
func (c *client) write(buf []byte) (int, error) {
	if c.src.socket != nil {
		return c.socket.write(buf, c.writeTimeout())
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout()))
	return c.conn.Write(buf)
}

// maxWriteBatch bounds one write so a deep queue does not build one huge buffer.
const maxWriteBatch = 64 << 10

// maxShutdownFlush bounds what a connection may still write at shutdown.
const maxShutdownFlush = 16 << 20

// fill appends every packet ready to go: control packets first (acknowledgements are never
// held behind messages), then queued messages as far as the client's Receive Maximum
// allows. It reports whether the connection should close once buf is written.
func (c *client) fill(buf []byte, stopping bool) ([]byte, bool) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	c.b.stats.sentPackets(c.ctrl)
	buf = append(buf, c.ctrl...)
	c.ctrl = c.ctrl[:0]
	if cap(c.ctrl) > 64<<10 {
		c.ctrl = nil
	}
	if c.closeAfterFlush || stopping {
		// After a kick the writer closes the socket to end the reader's Read; when the
		// reader itself is stopping, it closes (and lingers) itself.
		return buf, c.kicked && !stopping
	}
	buf = c.appendQueued(buf, maxWriteBatch, &c.storeUpdates)
	return buf, false
}

// appendQueued encodes queued deliveries as far as the client's Receive Maximum allows, until
// buf holds limit bytes. Rows of the store to update are appended to updates, which the caller
// submits once e.mu is released (see store.go). The caller holds e.mu.
func (c *client) appendQueued(buf []byte, limit int, updates *[]storeUpdate) []byte {
	e := c.e
	t := now()
	// The encoding scratch (a 380-byte Publish) comes from the pool, once per batch: in
	// appendPublish's frame it made every on-demand writer outgrow the 2 KB stack a
	// goroutine starts with, a stack copy per writer start (fan-out starts one per
	// subscriber and message).
	var scratch *packets.Packet
	for len(buf) < limit {
		o, ok := e.s.Next(t)
		if !ok {
			break
		}
		if scratch == nil {
			scratch = c.b.packets.Get().(*packets.Packet)
		}
		// appendPublish may drop a QoS 1/2 delivery (too large), which clears *o.
		msg, qos, id, storeID := o.Message, o.QoS, o.PacketID, o.Message.StoreID
		var sent bool
		buf, sent = c.appendPublish(buf, &scratch.Publish, o, t)
		if qos == 0 {
			msg.Release() // encoded: the write buffer holds its bytes now
		} else if storeID != 0 && e.durable.Load() {
			*updates = append(*updates, storeUpdate{messageID: storeID, packetID: id, state: persist.Sent, remove: !sent})
		}
	}
	if scratch != nil {
		scratch.Publish = packets.Publish{} // no message's bytes stay reachable from the pool
		c.b.packets.Put(scratch)
	}
	return buf
}

// appendPublish encodes one delivery. A PUBLISH larger than the client's Maximum Packet Size
// is not sent and the delivery is dropped [MQTT-3.1.2-25]. The caller holds c.e.mu.
func (c *client) appendPublish(buf []byte, scratch *packets.Publish, o *session.Outgoing, t int64) ([]byte, bool) {
	start := len(buf)
	var alias uint16
	var known bool
	if c.version == packets.V5 {
		alias, known = c.outAliases.Lookup(o.Message.Topic)
	}
	buf = session.AppendPublish(buf, scratch, c.version, o, t, alias, known)
	if c.maxPacketSize > 0 && len(buf)-start > c.maxPacketSize {
		buf = buf[:start]
		if alias != 0 && !known {
			c.outAliases.Forget(o.Message.Topic, alias)
		}
		if o.QoS > 0 {
			c.e.s.DropInflight(o.PacketID)
		}
		c.b.stats.dropped(session.DropTooLarge, 1)
		return buf, false
	}
	o.Sent = true
	c.b.stats.MessagesSent.Add(1)
	return buf, true
}
