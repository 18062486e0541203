// Package session owns one client's MQTT protocol state, with no sockets and no logging: the
// shared Message a PUBLISH becomes, the outbound queue and inflight window with packet
// identifiers, inbound QoS 2 identifiers awaiting PUBREL, topic aliases in both directions,
// the will, and the subscriptions that outlive a connection. The engine owns locking and I/O.
package session

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/x0a1b/promptmq/packets"
)

// Message is one accepted PUBLISH: the only copy of its topic, payload and properties the
// broker makes. It is immutable once built and shared by pointer between every recipient,
// the retained index and queues; per-recipient fields (packet id, QoS, retain flag,
// subscription identifiers, alias) are applied when the PUBLISH is encoded.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Properties holds only what is forwarded unchanged: Payload Format Indicator, Content
	// Type, Response Topic, Correlation Data and User Properties, in wire order [MQTT-3.3.2-17].
	Properties packets.Properties
	// Expires is the unix-nanosecond instant the message expires; 0 means never.
	Expires int64
	// Publisher is the session key of the sender, for No Local [MQTT-3.8.3-3]; 0 for the broker.
	Publisher uint64
	// StoreID identifies the stored body when the message has durable recipients; 0 if none.
	StoreID uint64
	size    int

	// refs counts the holders of a pooled message: its creator until routing ends, and
	// every queue or inflight slot that holds it. At zero it returns to pool. A message
	// with no pool (retained copies, wills) is never recycled and ignores Hold and Release.
	refs atomic.Int32
	pool *MessagePool
	buf  []byte
	user []packets.UserProperty
}

// MessagePool recycles Messages and their buffers, because the message allocated per
// PUBLISH is the largest cost after syscalls (DESIGN.md, Concurrency). The broker owns
// one; nothing about it is global.
type MessagePool struct {
	pool sync.Pool
}

// maxPooledBuffer keeps rare huge payloads from being pinned in the pool.
const maxPooledBuffer = 64 << 10

// Hold takes one more reference to m for a queue or inflight slot.
func (m *Message) Hold() {
	if m.pool != nil {
		m.refs.Add(1)
	}
}

// Release drops one reference; the last returns a pooled message to its pool.
func (m *Message) Release() {
	if m.pool == nil {
		return
	}
	switch n := m.refs.Add(-1); {
	case n == 0:
		p := m.pool
		buf, user := m.buf[:0], m.user[:0]
		if cap(buf) > maxPooledBuffer {
			buf = nil
		}
		*m = Message{buf: buf, user: user}
		p.pool.Put(m)
	case n < 0:
		panic("session: Message released more often than held")
	}
}

// Pinned returns a copy of m that is never recycled, for holders with no clear end: the
// retained index.
func (m *Message) Pinned() *Message {
	c := &Message{}
	c.fill(m.Topic, m.QoS, m.Retain, m.Payload, &m.Properties, m.Publisher)
	c.Expires = m.Expires
	return c
}

// Size is the number of bytes the message holds, for queue and memory accounting.
func (m *Message) Size() int { return m.size }

// Expired reports whether the message has outlived its Message Expiry Interval at now.
func (m *Message) Expired(now int64) bool { return m.Expires != 0 && now >= m.Expires }

// RemainingExpiry is the Message Expiry Interval to forward at now, in whole seconds rounded
// up so a live message never goes out with 0 [MQTT-3.3.2-6].
func (m *Message) RemainingExpiry(now int64) uint32 {
	left := m.Expires - now
	if left <= 0 {
		return 0
	}
	return uint32((left + 999_999_999) / 1_000_000_000)
}

// NewMessage copies what the broker keeps of a PUBLISH into one allocation (plus one for
// user properties when there are any). topic is passed apart from p because an inbound topic
// alias may have supplied it. now is unix nanoseconds; maxExpiry (seconds, 0 = none) caps the
// Message Expiry Interval the publisher asked.
func NewMessage(p *packets.Publish, topic []byte, publisher uint64, now int64, maxExpiry uint32) *Message {
	return newMessage(&Message{}, p, topic, publisher, now, maxExpiry)
}

// Get is NewMessage from the pool: the message starts with one reference, its creator's.
func (mp *MessagePool) Get(p *packets.Publish, topic []byte, publisher uint64, now int64, maxExpiry uint32) *Message {
	m, _ := mp.pool.Get().(*Message)
	if m == nil {
		m = &Message{}
	}
	m.pool = mp
	m.refs.Store(1)
	return newMessage(m, p, topic, publisher, now, maxExpiry)
}

func newMessage(m *Message, p *packets.Publish, topic []byte, publisher uint64, now int64, maxExpiry uint32) *Message {
	m.fill(unsafe.String(unsafe.SliceData(topic), len(topic)), p.QoS, p.Retain, p.Payload, &p.Properties, publisher)
	props := &p.Properties
	if props.Has(packets.PropMessageExpiry) {
		expiry := props.MessageExpiry
		if maxExpiry != 0 && expiry > maxExpiry {
			expiry = maxExpiry
		}
		m.Expires = now + int64(expiry)*1_000_000_000
	} else if maxExpiry != 0 {
		m.Expires = now + int64(maxExpiry)*1_000_000_000
	}
	return m
}

// fill copies topic, payload and the forwardable properties into m's own buffer.
func (m *Message) fill(topic string, qos byte, retain bool, payload []byte, props *packets.Properties, publisher uint64) {
	n := len(topic) + len(payload)
	n += len(props.ContentType) + len(props.ResponseTopic) + len(props.CorrelationData)
	for _, u := range props.User {
		n += len(u.Key) + len(u.Value)
	}
	m.QoS, m.Retain, m.Publisher, m.size = qos, retain, publisher, n
	buf := m.buf[:0]
	if cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	take := func(b []byte) []byte {
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	takeString := func(s string) []byte {
		start := len(buf)
		buf = append(buf, s...)
		return buf[start:len(buf):len(buf)]
	}
	m.Topic = ""
	if t := takeString(topic); len(t) > 0 {
		// The buffer is not written again while m lives, so a string view of it is safe
		// and saves a copy.
		m.Topic = unsafe.String(&t[0], len(t))
	}
	m.Payload = take(payload)
	m.Properties.Reset()
	if props.Has(packets.PropPayloadFormat) {
		m.Properties.Set(packets.PropPayloadFormat)
		m.Properties.PayloadFormat = props.PayloadFormat
	}
	if props.Has(packets.PropContentType) {
		m.Properties.Set(packets.PropContentType)
		m.Properties.ContentType = take(props.ContentType)
	}
	if props.Has(packets.PropResponseTopic) {
		m.Properties.Set(packets.PropResponseTopic)
		m.Properties.ResponseTopic = take(props.ResponseTopic)
	}
	if props.Has(packets.PropCorrelationData) {
		m.Properties.Set(packets.PropCorrelationData)
		m.Properties.CorrelationData = take(props.CorrelationData)
	}
	m.Properties.User = nil
	if len(props.User) > 0 {
		m.Properties.Set(packets.PropUserProperty)
		user := m.user[:0]
		for _, u := range props.User {
			user = append(user, packets.UserProperty{Key: take(u.Key), Value: take(u.Value)})
		}
		m.user = user
		m.Properties.User = user
	}
	m.buf = buf
}

// AppendPublish encodes m as a PUBLISH for one recipient into dst. scratch is the caller's
// reused Publish; alias and aliasOnly implement outbound topic aliases (aliasOnly sends an
// empty topic with the alias).
func AppendPublish(dst []byte, scratch *packets.Publish, version byte, o *Outgoing, now int64, alias uint16, aliasOnly bool) []byte {
	m := o.Message
	scratch.Version = version
	scratch.Dup = o.Sent && o.QoS > 0
	scratch.QoS = o.QoS
	scratch.Retain = o.Retain
	scratch.PacketID = o.PacketID
	scratch.Payload = m.Payload
	scratch.Properties = m.Properties
	if aliasOnly {
		scratch.Topic = nil
	} else {
		scratch.Topic = unsafe.Slice(unsafe.StringData(m.Topic), len(m.Topic))
	}
	if alias != 0 {
		scratch.Properties.Set(packets.PropTopicAlias)
		scratch.Properties.TopicAlias = alias
	}
	if m.Expires != 0 {
		scratch.Properties.Set(packets.PropMessageExpiry)
		scratch.Properties.MessageExpiry = m.RemainingExpiry(now)
	}
	if len(o.SubscriptionIDs) > 0 {
		scratch.Properties.Set(packets.PropSubscriptionID)
		scratch.Properties.SubscriptionIDs = o.SubscriptionIDs
	} else {
		scratch.Properties.SubscriptionIDs = nil
	}
	return scratch.Append(dst)
}
