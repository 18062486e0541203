package session

import (
	"sync/atomic"

	"github.com/x0a1b/promptmq/topics"
)

// DropReason says why a message meant for a session was not delivered. Every drop is
// counted by reason; none is silent.
type DropReason uint8

const (
	// DropQueueFull: a QoS 0 message met a full queue, or a QoS 1/2 message pushed the
	// oldest queued message out (until persist holds the overflow).
	DropQueueFull DropReason = iota
	// DropOfflineQoS0: QoS 0 for an offline session with queue-qos0 off.
	DropOfflineQoS0
	// DropExpired: the Message Expiry Interval passed while the message waited.
	DropExpired
	// DropTooLarge: the PUBLISH would exceed the client's Maximum Packet Size [MQTT-3.1.2-25].
	DropTooLarge
	// DropMemory: the broker-wide max-memory bound was reached.
	DropMemory
	// NumDropReasons bounds arrays indexed by DropReason.
	NumDropReasons
)

func (r DropReason) String() string {
	switch r {
	case DropQueueFull:
		return "queue_full"
	case DropOfflineQoS0:
		return "offline_qos0"
	case DropExpired:
		return "expired"
	case DropTooLarge:
		return "too_large"
	case DropMemory:
		return "max_memory"
	}
	return "unknown"
}

// Limits bound one session's queue. Memory, when not nil, is the broker-wide count of
// queued bytes, shared by every session.
type Limits struct {
	MaxQueuedMessages int
	MaxQueuedBytes    int64
	QueueQoS0         bool
	Memory            *atomic.Int64
	// Dropped, when not nil, is called for every drop (it must not block).
	Dropped func(reason DropReason, n int)
}

// Outgoing is one delivery to this session: queued, or inflight awaiting its acknowledgement.
type Outgoing struct {
	Message         *Message
	QoS             byte
	Retain          bool
	SubscriptionIDs []uint32
	PacketID        uint16
	// Sent is set once the PUBLISH has been written; a resend carries DUP [MQTT-3.3.1-1].
	Sent bool
	// Released is set for QoS 2 once PUBREC arrived and PUBREL is owed or sent.
	Released bool
}

// Subscription is what a session remembers of one SUBSCRIBE filter, to resubscribe on
// recovery and unsubscribe when the session ends.
type Subscription struct {
	Filter  string
	Options topics.SubOptions
	ID      uint32
}

// Will is the Will Message of the current connection and its delay.
type Will struct {
	Message *Message
	// Delay is the Will Delay Interval in seconds.
	Delay uint32
}

// Session is one client's protocol state. It is not safe for concurrent use: the engine
// holds its lock around every call.
//
// Invariants: every entry of inflight has a non-zero PacketID unique among inflight
// entries (ids holds exactly those ids) [MQTT-2.2.1-3]; queue holds no packet ids; the
// number of live inflight entries never exceeds SendQuota, the client's Receive Maximum
// [MQTT-3.3.4-7]; queuedBytes is the sum of the sizes of the queued messages.
//
// Design: the queue and the inflight window are two rings of values, not lists of pointers,
// so a delivery costs no allocation once the rings have grown. Inflight entries are found by
// packet id through a map to their sequence number, and removed by leaving a hole that the
// head skips: acknowledgements come almost always in order, so the ring stays dense. A single
// list with a "sent" flag was rejected: the writer would rescan sent entries on every wake.
type Session struct {
	ClientID string
	// Key identifies the session to the router; it changes if the id is reused later.
	Key     uint64
	Version byte
	// ExpiryInterval is the Session Expiry Interval in seconds (0xFFFFFFFF: never).
	ExpiryInterval uint32
	// Subscriptions by filter as sent (including any $share prefix).
	Subscriptions map[string]Subscription
	Will          *Will
	// SendQuota is the client's Receive Maximum: how many QoS 1/2 PUBLISH may be
	// unacknowledged at once.
	SendQuota int

	limits      Limits
	queue       ring
	queuedBytes int64
	inflight    ring
	inflightSeq uint64 // sequence number of inflight.head
	live        int    // inflight entries not yet acknowledged
	ids         map[uint16]uint64
	lastID      uint16
	inbound     map[uint16]struct{}
	scratch     Outgoing // the QoS 0 delivery Next hands out
}

// New returns an empty session.
func New(clientID string, key uint64, limits Limits) *Session {
	return &Session{
		ClientID:      clientID,
		Key:           key,
		Subscriptions: make(map[string]Subscription),
		SendQuota:     65535,
		limits:        limits,
		// ids and inbound are made on first use: most sessions of a large broker are idle
		// subscribers that never hold a packet id, and an empty map costs ~50 bytes.
	}
}

// SetLimits replaces the queue bounds (configuration reload or recovery).
func (s *Session) SetLimits(l Limits) { s.limits = l }

func (s *Session) drop(reason DropReason, n int) {
	if s.limits.Dropped != nil && n > 0 {
		s.limits.Dropped(reason, n)
	}
}

func (s *Session) addBytes(n int64) {
	s.queuedBytes += n
	if s.limits.Memory != nil {
		s.limits.Memory.Add(n)
	}
}

// Enqueue queues a delivery. online says whether a connection will drain it; an offline
// session keeps QoS 0 only with queue-qos0 [MQTT-3.1.2-?: QoS 0 for offline sessions is
// optional]. It reports whether o was queued.
func (s *Session) Enqueue(o Outgoing, online bool) bool {
	if o.QoS == 0 && !online && !s.limits.QueueQoS0 {
		s.drop(DropOfflineQoS0, 1)
		return false
	}
	size := int64(o.Message.Size())
	for s.full(size) {
		if o.QoS == 0 {
			s.drop(DropQueueFull, 1)
			return false
		}
		// Until persist holds the overflow, the oldest queued message makes room, and the
		// drop is counted.
		old, ok := s.queue.popFront()
		if !ok {
			break
		}
		s.addBytes(-int64(old.Message.Size()))
		old.Message.Release()
		s.drop(DropQueueFull, 1)
	}
	o.PacketID = 0
	o.Sent = false
	o.Released = false
	o.Message.Hold()
	s.queue.pushBack(o)
	s.addBytes(size)
	return true
}

func (s *Session) full(size int64) bool {
	if s.queue.len() == 0 {
		return false
	}
	if s.limits.MaxQueuedMessages > 0 && s.queue.len() >= s.limits.MaxQueuedMessages {
		return true
	}
	return s.limits.MaxQueuedBytes > 0 && s.queuedBytes+size > s.limits.MaxQueuedBytes
}

// Queued is the number of deliveries waiting to be sent.
func (s *Session) Queued() int { return s.queue.len() }

// QueuedBytes is the size of the messages waiting to be sent.
func (s *Session) QueuedBytes() int64 { return s.queuedBytes }

// Inflight is the number of QoS 1/2 deliveries sent and not yet completed.
func (s *Session) Inflight() int { return s.live }

// Next takes the next queued delivery that may be sent now, in order. A QoS 1/2 delivery
// enters the inflight window with a fresh packet id, and waits while the window is full
// (so QoS 0 behind it waits too: order is kept [MQTT-4.6.0-6]). Expired messages are
// dropped on the way [MQTT-3.3.2-5]. The returned pointer is valid until the next call
// that changes the session. The caller releases a QoS 0 message (o.Message.Release) once
// it has encoded it; a QoS 1/2 message stays held by its inflight slot.
func (s *Session) Next(now int64) (*Outgoing, bool) {
	for {
		head := s.queue.front()
		if head == nil {
			return nil, false
		}
		if head.Message.Expired(now) {
			s.addBytes(-int64(head.Message.Size()))
			head.Message.Release()
			s.queue.popFront()
			s.drop(DropExpired, 1)
			continue
		}
		if head.QoS > 0 && s.live >= s.SendQuota {
			return nil, false
		}
		o, _ := s.queue.popFront()
		s.addBytes(-int64(o.Message.Size()))
		if o.QoS == 0 {
			s.scratch = o
			return &s.scratch, true
		}
		o.PacketID = s.allocateID()
		seq := s.inflightSeq + uint64(s.inflight.len())
		s.inflight.pushBack(o)
		s.trackID(o.PacketID, seq)
		s.live++
		return s.inflight.at(s.inflight.len() - 1), true
	}
}

// allocateID returns a packet id not in use by any inflight delivery [MQTT-2.2.1-3]. The
// window is at most 65535 wide, so a free id always exists when the window has room.
func (s *Session) allocateID() uint16 {
	for {
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if _, used := s.ids[s.lastID]; !used {
			return s.lastID
		}
	}
}

func (s *Session) lookup(id uint16) *Outgoing {
	seq, ok := s.ids[id]
	if !ok {
		return nil
	}
	return s.inflight.at(int(seq - s.inflightSeq))
}

func (s *Session) complete(id uint16) {
	seq := s.ids[id]
	delete(s.ids, id)
	o := s.inflight.at(int(seq - s.inflightSeq))
	o.Message.Release()
	*o = Outgoing{}
	s.live--
	for {
		head := s.inflight.front()
		if head == nil || head.Message != nil {
			return
		}
		s.inflight.popFront()
		s.inflightSeq++
	}
}

// InflightStoreID is the StoreID of the message inflight under packet id, 0 if none.
func (s *Session) InflightStoreID(id uint16) uint64 {
	if o := s.lookup(id); o != nil {
		return o.Message.StoreID
	}
	return 0
}

// Acked handles PUBACK for a QoS 1 delivery. It reports whether the id was inflight at QoS 1.
func (s *Session) Acked(id uint16) bool {
	o := s.lookup(id)
	if o == nil || o.QoS != 1 {
		return false
	}
	s.complete(id)
	return true
}

// Received handles PUBREC for a QoS 2 delivery; the caller sends PUBREL. It reports whether
// the id was inflight at QoS 2. A PUBREC with an error reason ends the delivery
// [MQTT-4.3.3-?]: pass failed true and no PUBREL follows.
func (s *Session) Received(id uint16, failed bool) bool {
	o := s.lookup(id)
	if o == nil || o.QoS != 2 {
		return false
	}
	if failed {
		s.complete(id)
		return true
	}
	o.Released = true
	return true
}

// Completed handles PUBCOMP. It reports whether the id was awaiting it.
func (s *Session) Completed(id uint16) bool {
	o := s.lookup(id)
	if o == nil || o.QoS != 2 || !o.Released {
		return false
	}
	s.complete(id)
	return true
}

// Resend visits every inflight delivery in order, for a resumed session: a PUBLISH not yet
// acknowledged is sent again with DUP, a released QoS 2 delivery gets its PUBREL again
// [MQTT-4.4.0-1]. fn may encode o.
func (s *Session) Resend(fn func(o *Outgoing)) {
	for i := 0; i < s.inflight.len(); i++ {
		o := s.inflight.at(i)
		if o.Message != nil {
			fn(o)
		}
	}
}

// Restore puts back an inflight delivery recovered from the store, with the packet id it
// was sent with, so a resumed session resends it with DUP (or its PUBREL) [MQTT-4.4.0-1].
// It reports false when the id is already in use.
func (s *Session) Restore(o Outgoing) bool {
	if o.PacketID == 0 || o.QoS == 0 {
		return false
	}
	if _, used := s.ids[o.PacketID]; used {
		return false
	}
	o.Message.Hold()
	o.Sent = true
	seq := s.inflightSeq + uint64(s.inflight.len())
	s.inflight.pushBack(o)
	s.trackID(o.PacketID, seq)
	s.live++
	return true
}

// trackID maps an inflight packet id to its sequence number.
func (s *Session) trackID(id uint16, seq uint64) {
	if s.ids == nil {
		s.ids = make(map[uint16]uint64)
	}
	s.ids[id] = seq
}

// HasInflight reports whether any delivery awaits its acknowledgement (or its PUBCOMP).
func (s *Session) HasInflight() bool { return s.inflight.len() > 0 }

// DropInflight forgets a delivery the client can never take (too large for it): the
// window slot is freed so later messages flow.
func (s *Session) DropInflight(id uint16) {
	if _, ok := s.ids[id]; ok {
		s.complete(id)
	}
}

// InboundQoS2 records an inbound QoS 2 packet id until PUBREL. It reports false when the id
// is already held: a retransmission that must not be delivered again [MQTT-4.3.3-10].
func (s *Session) InboundQoS2(id uint16) bool {
	if _, held := s.inbound[id]; held {
		return false
	}
	if s.inbound == nil {
		s.inbound = make(map[uint16]struct{})
	}
	s.inbound[id] = struct{}{}
	return true
}

// Release handles PUBREL: it reports whether the id was held, and forgets it.
func (s *Session) Release(id uint16) bool {
	if _, held := s.inbound[id]; !held {
		return false
	}
	delete(s.inbound, id)
	return true
}

// InboundPending is the number of inbound QoS 2 ids awaiting PUBREL.
func (s *Session) InboundPending() int { return len(s.inbound) }

// Clear empties queue, window and inbound state, releasing accounted memory (session end).
func (s *Session) Clear() {
	for {
		o, ok := s.queue.popFront()
		if !ok {
			break
		}
		s.addBytes(-int64(o.Message.Size()))
		o.Message.Release()
	}
	for i := 0; i < s.inflight.len(); i++ {
		if o := s.inflight.at(i); o.Message != nil {
			o.Message.Release()
		}
	}
	s.inflight = ring{}
	s.inflightSeq = 0
	s.live = 0
	clear(s.ids)
	clear(s.inbound)
}
