package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// The payload of every PUBLISH starts with a header the subscribers decode
// to check order and measure latency; the rest of -size is zeros.
const (
	payloadPublisher = 0  // uint32: index of the publisher
	payloadSeq       = 4  // uint64: 0, 1, 2, ... per publisher
	payloadSentAt    = 12 // int64: nanoseconds since the run's base time
	payloadHeader    = 20
)

// maxWriteBatch bounds the bytes a publisher encodes before one write.
const maxWriteBatch = 64 << 10

// publisher sends numbered messages on one topic as fast as two windows
// allow, encoding every message that fits into one buffer and one write.
//
// Invariants: sent, acked and delivered only grow; acked <= sent;
// delivered <= sent*fanout (a subscriber counts a message only after the
// write that carried it began, since sent is stored before writing).
// Only the run goroutine writes to the socket; the ack reader hands the
// PUBRELs it owes to the writer through pendingRel.
//
// Design: two windows. The broker's (QoS 1/2): at most inflight
// unacknowledged publishes, as the protocol requires. The end-to-end one
// (every QoS): at most window messages sent but not yet received by the
// subscribers, so that a publisher faster than its subscribers measures
// the broker's throughput instead of filling its queues until it drops
// messages. A blocked publisher sleeps on a channel and is woken by the
// ack reader or the subscribers once half of the blocking window is free,
// so it wakes to write a large batch. Rejected: a fixed publish rate per
// publisher, which needs knowing the broker's speed in advance, and
// polling, which burns the generator's single core.
type publisher struct {
	index   int
	session *session
	topic   []byte
	qos     byte
	size    int
	fanout  uint64 // subscribers that receive each message
	// window is the end-to-end bound; inflight the broker's (QoS 1/2).
	window, inflight uint64
	// interval paces the publisher (latency scenario); 0 means unpaced.
	interval time.Duration
	phase    time.Duration // offset of a paced publisher's schedule, to spread the sends
	base     time.Time

	sent      atomic.Uint64
	acked     atomic.Uint64 // PUBACK (QoS 1) or PUBCOMP (QoS 2) received
	delivered atomic.Uint64 // deliveries counted by subscribers
	refused   atomic.Uint64 // acks with an error reason code (5.0)

	// forgiven is the number of messages the publisher stopped waiting
	// for after a stall (lost ones); only run touches it.
	forgiven uint64

	waiting       atomic.Bool
	wakeDelivered atomic.Uint64
	wakeAcked     atomic.Uint64
	wake          chan struct{}

	relMu      sync.Mutex
	pendingRel []uint16 // PUBREC ids that still need a PUBREL

	ackErr  error // set by readAcks before it returns
	ackDone chan struct{}
}

// stallTimeout is how long a publisher waits for deliveries that do not
// come before it counts them as lost and carries on.
const stallTimeout = 2 * time.Second

func (p *publisher) outstanding(sent uint64) uint64 {
	got := p.delivered.Load()/p.fanout + p.forgiven
	if got >= sent {
		return 0
	}
	return sent - got
}

// allowance is how many messages may be sent now.
func (p *publisher) allowance(sent uint64) uint64 {
	out := p.outstanding(sent)
	if out >= p.window {
		return 0
	}
	allow := p.window - out
	if p.qos > 0 {
		unacked := sent - p.acked.Load()
		if unacked >= p.inflight {
			return 0
		}
		allow = min(allow, p.inflight-unacked)
	}
	return allow
}

// notify wakes the publisher if it waits and enough of its windows has
// come free. Subscribers and the ack reader call it after counting.
func (p *publisher) notify() {
	if p.waiting.Load() && p.delivered.Load() >= p.wakeDelivered.Load() &&
		p.acked.Load() >= p.wakeAcked.Load() {
		p.wakeNow()
	}
}

func (p *publisher) wakeNow() {
	if p.waiting.CompareAndSwap(true, false) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// block waits until notify finds half a window free, a PUBREL is owed,
// stop closes, or the deliveries stall.
func (p *publisher) block(sent uint64, stop <-chan struct{}, stall *time.Timer) {
	half := p.window / 2
	need := uint64(0)
	if sent-p.forgiven > half {
		need = (sent - p.forgiven - half) * p.fanout
	}
	p.wakeDelivered.Store(need)
	p.wakeAcked.Store(0)
	if p.qos > 0 && sent > p.inflight/2 {
		p.wakeAcked.Store(sent - p.inflight/2)
	}
	p.waiting.Store(true)
	if p.allowance(sent) > 0 || p.relsPending() {
		if p.waiting.CompareAndSwap(true, false) {
			return // a window opened between the check and the flag
		}
	}
	progress := p.delivered.Load() + p.acked.Load()
	for {
		stall.Reset(stallTimeout)
		select {
		case <-p.wake:
			stall.Stop()
			return
		case <-stop:
			stall.Stop()
			p.waiting.Store(false)
			return
		case <-stall.C:
		}
		if now := p.delivered.Load() + p.acked.Load(); now != progress {
			progress = now // slow, not stalled: keep waiting
			continue
		}
		if p.waiting.CompareAndSwap(true, false) {
			p.forgiven += p.outstanding(sent)
		} else {
			<-p.wake // a notify raced the timer and owes us its token
		}
		return
	}
}

func (p *publisher) relsPending() bool {
	p.relMu.Lock()
	defer p.relMu.Unlock()
	return len(p.pendingRel) > 0
}

// appendRels appends the PUBRELs the ack reader has queued.
func (p *publisher) appendRels(dst []byte, scratch []uint16) ([]byte, []uint16) {
	p.relMu.Lock()
	scratch = append(scratch[:0], p.pendingRel...)
	p.pendingRel = p.pendingRel[:0]
	p.relMu.Unlock()
	for _, id := range scratch {
		rel := packets.Ack{Type: packets.TypePubrel, Version: p.session.version, PacketID: id}
		dst = rel.Append(dst)
	}
	return dst, scratch
}

// run publishes until stop closes and returns the first write error.
func (p *publisher) run(stop <-chan struct{}) error {
	payload := make([]byte, p.size)
	binary.BigEndian.PutUint32(payload[payloadPublisher:], uint32(p.index))
	pub := packets.Publish{Version: p.session.version, QoS: p.qos, Topic: p.topic, Payload: payload}
	packetSize := len(pub.Append(nil)) + 2
	maxBatch := uint64(max(1, maxWriteBatch/packetSize))
	buf := make([]byte, 0, maxWriteBatch+4096)
	var rels []uint16
	stall := time.NewTimer(time.Hour)
	stall.Stop()
	var packetID uint16
	var seq uint64
	for {
		select {
		case <-stop:
			return p.releaseRest(seq, buf, rels)
		default:
		}
		allow := min(p.allowance(seq), maxBatch)
		if p.interval > 0 {
			due := uint64(0)
			if elapsed := time.Since(p.base) - p.phase; elapsed >= 0 {
				due = uint64(elapsed/p.interval) + 1
			}
			if due <= seq {
				allow = 0
			} else {
				allow = min(allow, due-seq)
			}
		}
		buf = buf[:0]
		if p.qos == 2 {
			buf, rels = p.appendRels(buf, rels)
		}
		if allow == 0 && len(buf) == 0 {
			if p.interval > 0 && p.allowance(seq) > 0 {
				p.sleepUntilDue(seq, stop, stall)
			} else {
				p.block(seq, stop, stall)
			}
			continue
		}
		sentAt := int64(time.Since(p.base))
		for range allow {
			binary.BigEndian.PutUint64(payload[payloadSeq:], seq)
			binary.BigEndian.PutUint64(payload[payloadSentAt:], uint64(sentAt))
			if p.qos > 0 {
				packetID++
				if packetID == 0 {
					packetID = 1 // [MQTT-2.2.1-3] a packet identifier is never 0
				}
				pub.PacketID = packetID
			}
			buf = pub.Append(buf)
			seq++
		}
		p.sent.Store(seq)
		if _, err := p.session.conn.Write(buf); err != nil {
			return fmt.Errorf("publisher %d: %w", p.index, err)
		}
	}
}

// releaseRest keeps sending the PUBRELs a QoS 2 publisher owes after it
// stopped publishing, until every flow is complete or nothing has moved
// for drainQuiet: a broker may deliver a QoS 2 message only once it is
// released, so stopping the PUBRELs with the publishes would lose them.
func (p *publisher) releaseRest(sent uint64, buf []byte, rels []uint16) error {
	if p.qos != 2 {
		return nil
	}
	quiet := time.NewTimer(drainQuiet)
	defer quiet.Stop()
	for p.acked.Load() < sent {
		buf, rels = p.appendRels(buf[:0], rels)
		if len(buf) > 0 {
			if _, err := p.session.conn.Write(buf); err != nil {
				return fmt.Errorf("publisher %d: %w", p.index, err)
			}
			continue
		}
		p.wakeDelivered.Store(0)
		p.wakeAcked.Store(0)
		p.waiting.Store(true)
		if (p.relsPending() || p.acked.Load() >= sent) && p.waiting.CompareAndSwap(true, false) {
			continue
		}
		quiet.Reset(drainQuiet)
		select {
		case <-p.wake:
		case <-quiet.C:
			return nil
		}
	}
	return nil
}

// sleepUntilDue waits for the paced publisher's next send time.
func (p *publisher) sleepUntilDue(seq uint64, stop <-chan struct{}, timer *time.Timer) {
	next := p.base.Add(p.phase + time.Duration(seq)*p.interval)
	timer.Reset(time.Until(next))
	select {
	case <-timer.C:
	case <-stop:
		timer.Stop()
	}
}

// readAcks consumes PUBACK, PUBREC and PUBCOMP until the connection ends,
// counting acks in batches: one atomic add and one notify per read.
func (p *publisher) readAcks() {
	defer close(p.ackDone)
	r := p.session.reader
	var ack packets.Ack
	var acked uint64
	var rels []uint16
	for {
		fh, body, err := r.ReadPacket()
		if err != nil {
			if !isClosed(err) {
				p.ackErr = fmt.Errorf("publisher %d acks: %w", p.index, err)
			}
			return
		}
		switch fh.Type {
		case packets.TypePuback, packets.TypePubrec, packets.TypePubcomp:
			if err := ack.Decode(p.session.version, fh.Type, fh.Flags, body); err != nil {
				p.ackErr = fmt.Errorf("publisher %d: %s: %w", p.index, fh.Type, err)
				return
			}
			if ack.Reason.IsError() {
				p.refused.Add(1)
			}
			switch {
			case fh.Type == packets.TypePubrec && !ack.Reason.IsError():
				rels = append(rels, ack.PacketID)
			default:
				acked++ // PUBACK, PUBCOMP, or a refusing PUBREC ends the flow
			}
		case packets.TypePingresp:
		default:
			p.ackErr = fmt.Errorf("publisher %d: unexpected %s", p.index, fh.Type)
			return
		}
		if r.Buffered() > 0 {
			continue
		}
		if len(rels) > 0 {
			p.relMu.Lock()
			p.pendingRel = append(p.pendingRel, rels...)
			p.relMu.Unlock()
			rels = rels[:0]
			p.wakeNow()
		}
		if acked > 0 {
			p.acked.Add(acked)
			acked = 0
			p.notify()
		}
	}
}

// subscriber receives messages, acknowledges them as its QoS requires and
// checks each publisher's stream for loss, duplicates and order.
type subscriber struct {
	index      int
	session    *session
	publishers []*publisher
	streams    []stream // by publisher index
	base       time.Time
	latency    *histogram // nil: not recorded

	received atomic.Uint64 // messages counted, for the measurement window
	// drains counts the times the Reader's buffer ran empty, about one per
	// read syscall: messages per drain shows how well the broker coalesces.
	drains  uint64
	foreign uint64 // payloads not from this run
	err     error
}

// run reads until the connection ends. Deliveries are credited to their
// publishers once per read (when the Reader's buffer is empty), and the
// acknowledgements owed are written then, in one write.
func (s *subscriber) run() {
	r := s.session.reader
	version := s.session.version
	var pub packets.Publish
	var ack packets.Ack
	out := make([]byte, 0, 16<<10)
	pending := make([]uint64, len(s.publishers))
	touched := make([]int, 0, len(s.publishers))
	var now int64
	fresh := true // the next ReadPacket may read from the socket
	var count uint64
	for {
		fh, body, err := r.ReadPacket()
		if err != nil {
			if !isClosed(err) {
				s.err = fmt.Errorf("subscriber %d: %w", s.index, err)
			}
			return
		}
		if fresh {
			now = int64(time.Since(s.base))
			fresh = false
		}
		switch fh.Type {
		case packets.TypePublish:
			if err := pub.Decode(version, fh.Flags, body); err != nil {
				s.err = fmt.Errorf("subscriber %d: %w", s.index, err)
				return
			}
			if pi, ok := s.observe(pub.Payload, now); ok {
				if pending[pi] == 0 {
					touched = append(touched, pi)
				}
				pending[pi]++
				count++
			}
			switch pub.QoS {
			case 1:
				ack = packets.Ack{Type: packets.TypePuback, Version: version, PacketID: pub.PacketID}
				out = ack.Append(out)
			case 2:
				ack = packets.Ack{Type: packets.TypePubrec, Version: version, PacketID: pub.PacketID}
				out = ack.Append(out)
			}
		case packets.TypePubrel:
			if err := ack.Decode(version, fh.Type, fh.Flags, body); err != nil {
				s.err = fmt.Errorf("subscriber %d: %w", s.index, err)
				return
			}
			ack = packets.Ack{Type: packets.TypePubcomp, Version: version, PacketID: ack.PacketID}
			out = ack.Append(out)
		case packets.TypePingresp:
		default:
			s.err = fmt.Errorf("subscriber %d: unexpected %s", s.index, fh.Type)
			return
		}
		if r.Buffered() > 0 && len(out) < 32<<10 {
			continue
		}
		if len(out) > 0 {
			if _, err := s.session.conn.Write(out); err != nil {
				if !isClosed(err) {
					s.err = fmt.Errorf("subscriber %d: %w", s.index, err)
				}
				return
			}
			out = out[:0]
		}
		if r.Buffered() > 0 {
			continue
		}
		fresh = true
		s.drains++
		s.received.Add(count)
		count = 0
		for _, pi := range touched {
			p := s.publishers[pi]
			p.delivered.Add(pending[pi])
			pending[pi] = 0
			p.notify()
		}
		touched = touched[:0]
	}
}

// observe checks one payload and reports the publisher it came from.
func (s *subscriber) observe(payload []byte, now int64) (int, bool) {
	if len(payload) < payloadHeader {
		s.foreign++
		return 0, false
	}
	pi := int(binary.BigEndian.Uint32(payload[payloadPublisher:]))
	if pi >= len(s.streams) {
		s.foreign++
		return 0, false
	}
	s.streams[pi].observe(binary.BigEndian.Uint64(payload[payloadSeq:]))
	if s.latency != nil {
		s.latency.record(now - int64(binary.BigEndian.Uint64(payload[payloadSentAt:])))
	}
	return pi, true
}

// isClosed reports an error that only means the run closed the socket or
// the broker hung up at the end.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET)
}
