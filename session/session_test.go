package session

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/x0a1b/promptmq/packets"
)

func testMessage(pool *MessagePool, topic string, qos byte, payload string) *Message {
	p := packets.Publish{Version: packets.V5, QoS: qos, Topic: []byte(topic), Payload: []byte(payload)}
	if pool == nil {
		return NewMessage(&p, p.Topic, 1, 0, 0)
	}
	return pool.Get(&p, p.Topic, 1, 0, 0)
}

type dropCount [NumDropReasons]int

func newTestSession(limits Limits, drops *dropCount) *Session {
	limits.Dropped = func(r DropReason, n int) { drops[r] += n }
	return New("c", 1, limits)
}

func TestEnqueueBounds(t *testing.T) {
	tests := []struct {
		name      string
		limits    Limits
		online    bool
		qos       []byte
		wantQueue int
		wantDrops dropCount
	}{
		{"unbounded keeps all", Limits{}, true, []byte{0, 1, 2, 1}, 4, dropCount{}},
		{"offline QoS 0 dropped without queue-qos0", Limits{}, false, []byte{0, 1, 0}, 1, dropCount{DropOfflineQoS0: 2}},
		{"offline QoS 0 kept with queue-qos0", Limits{QueueQoS0: true}, false, []byte{0, 1, 0}, 3, dropCount{}},
		{"full queue drops new QoS 0", Limits{MaxQueuedMessages: 2}, true, []byte{1, 1, 0, 0}, 2, dropCount{DropQueueFull: 2}},
		{"full queue makes room for QoS 1 by dropping the oldest", Limits{MaxQueuedMessages: 2}, true, []byte{1, 1, 1, 2}, 2, dropCount{DropQueueFull: 2}},
		{"byte bound", Limits{MaxQueuedBytes: 10}, true, []byte{1, 1, 1}, 2, dropCount{DropQueueFull: 1}}, // 5 bytes each
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var drops dropCount
			var memory atomic.Int64
			tt.limits.Memory = &memory
			s := newTestSession(tt.limits, &drops)
			for i, q := range tt.qos {
				s.Enqueue(Outgoing{Message: testMessage(nil, "t", q, fmt.Sprintf("m%d/4", i)[:4]), QoS: q}, tt.online)
			}
			if s.Queued() != tt.wantQueue {
				t.Errorf("queued %d, want %d", s.Queued(), tt.wantQueue)
			}
			if drops != tt.wantDrops {
				t.Errorf("drops %v, want %v", drops, tt.wantDrops)
			}
			if memory.Load() != s.QueuedBytes() {
				t.Errorf("broker memory %d, session bytes %d", memory.Load(), s.QueuedBytes())
			}
			s.Clear()
			if memory.Load() != 0 {
				t.Errorf("memory after Clear %d", memory.Load())
			}
		})
	}
}

func TestWindowAndPacketIDs(t *testing.T) {
	var drops dropCount
	s := newTestSession(Limits{}, &drops)
	s.SendQuota = 2
	for i := 0; i < 5; i++ {
		s.Enqueue(Outgoing{Message: testMessage(nil, "t", 1, "x"), QoS: 1}, true)
	}
	var ids []uint16
	for {
		o, ok := s.Next(0)
		if !ok {
			break
		}
		ids = append(ids, o.PacketID)
		o.Sent = true
	}
	if len(ids) != 2 || s.Inflight() != 2 || s.Queued() != 3 {
		t.Fatalf("window of 2: sent %v, inflight %d, queued %d", ids, s.Inflight(), s.Queued())
	}
	if ids[0] == 0 || ids[0] == ids[1] {
		t.Fatalf("packet ids %v must be non-zero and distinct", ids)
	}
	if !s.Acked(ids[1]) || s.Acked(ids[1]) {
		t.Fatal("ack of an inflight id must succeed exactly once")
	}
	o, ok := s.Next(0)
	if !ok || o.PacketID == ids[0] {
		t.Fatalf("next after ack: ok %v id %d (id %d still inflight)", ok, o.PacketID, ids[0])
	}
	if _, ok := s.Next(0); ok {
		t.Fatal("window must be full again")
	}
}

func TestPacketIDsSkipInflightAcrossWrap(t *testing.T) {
	var drops dropCount
	s := newTestSession(Limits{}, &drops)
	s.Enqueue(Outgoing{Message: testMessage(nil, "t", 1, "x"), QoS: 1}, true)
	first, _ := s.Next(0)
	held := first.PacketID
	for i := 0; i < 70000; i++ {
		s.Enqueue(Outgoing{Message: testMessage(nil, "t", 1, "x"), QoS: 1}, true)
		o, ok := s.Next(0)
		if !ok {
			t.Fatal("window closed")
		}
		if o.PacketID == held {
			t.Fatalf("id %d reused while inflight", held)
		}
		s.Acked(o.PacketID)
	}
}

func TestQoS2Outbound(t *testing.T) {
	var drops dropCount
	s := newTestSession(Limits{}, &drops)
	s.Enqueue(Outgoing{Message: testMessage(nil, "t", 2, "x"), QoS: 2}, true)
	o, _ := s.Next(0)
	id := o.PacketID
	o.Sent = true
	if s.Completed(id) {
		t.Fatal("PUBCOMP before PUBREC must be refused")
	}
	if !s.Received(id, false) || !s.Completed(id) || s.Inflight() != 0 {
		t.Fatal("PUBREC then PUBCOMP must complete")
	}
	s.Enqueue(Outgoing{Message: testMessage(nil, "t", 2, "y"), QoS: 2}, true)
	o, _ = s.Next(0)
	if !s.Received(o.PacketID, true) || s.Inflight() != 0 {
		t.Fatal("a failed PUBREC ends the delivery")
	}
}

func TestResendMarksDupAndReleased(t *testing.T) {
	var drops dropCount
	s := newTestSession(Limits{}, &drops)
	for _, q := range []byte{1, 2, 2} {
		s.Enqueue(Outgoing{Message: testMessage(nil, "t", q, "x"), QoS: q}, true)
		o, _ := s.Next(0)
		o.Sent = true
	}
	s.Received(3, false)
	s.Acked(1)
	var got []string
	s.Resend(func(o *Outgoing) { got = append(got, fmt.Sprintf("%d:%v:%v", o.PacketID, o.Sent, o.Released)) })
	want := []string{"2:true:false", "3:true:true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resend %v, want %v", got, want)
	}
}

func TestExpiredDroppedFromQueue(t *testing.T) {
	var drops dropCount
	s := newTestSession(Limits{}, &drops)
	p := packets.Publish{Version: packets.V5, QoS: 1, Topic: []byte("t"), Payload: []byte("x")}
	p.Properties.Set(packets.PropMessageExpiry)
	p.Properties.MessageExpiry = 10
	m := NewMessage(&p, p.Topic, 1, 0, 0)
	if got := m.RemainingExpiry(3_500_000_000); got != 7 {
		t.Errorf("remaining expiry %d, want 7 (rounded up)", got)
	}
	s.Enqueue(Outgoing{Message: m, QoS: 1}, true)
	if _, ok := s.Next(11_000_000_000); ok || drops[DropExpired] != 1 {
		t.Fatalf("expired message must be dropped and counted: drops %v", drops)
	}
}

func TestInboundQoS2(t *testing.T) {
	s := New("c", 1, Limits{})
	if !s.InboundQoS2(7) || s.InboundQoS2(7) {
		t.Fatal("first receipt is new, a retransmission is not")
	}
	if !s.Release(7) || s.Release(7) || s.InboundPending() != 0 {
		t.Fatal("PUBREL releases the id once")
	}
}

func TestPooledMessageReturnsWhenLastHolderReleases(t *testing.T) {
	var pool MessagePool
	var drops dropCount
	a := newTestSession(Limits{}, &drops)
	b := newTestSession(Limits{}, &drops)
	m := testMessage(&pool, "a/b", 1, "payload")
	a.Enqueue(Outgoing{Message: m, QoS: 1}, true)
	b.Enqueue(Outgoing{Message: m, QoS: 0}, true)
	m.Release() // creator
	if m.refs.Load() != 2 {
		t.Fatalf("refs %d, want 2", m.refs.Load())
	}
	o, _ := b.Next(0)
	o.Message.Release()
	oa, _ := a.Next(0)
	if m.Topic != "a/b" {
		t.Fatal("message recycled while held")
	}
	a.Acked(oa.PacketID)
	if m.refs.Load() != 0 || m.Topic != "" {
		t.Fatalf("message not recycled: refs %d topic %q", m.refs.Load(), m.Topic)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a release past zero must panic")
		}
	}()
	m.pool = &pool
	m.Release()
}

func TestMessageCopiesForwardableProperties(t *testing.T) {
	p := packets.Publish{Version: packets.V5, QoS: 1, Topic: []byte("t"), Payload: []byte("p")}
	for _, id := range []packets.PropertyID{packets.PropPayloadFormat, packets.PropContentType, packets.PropResponseTopic, packets.PropCorrelationData, packets.PropUserProperty, packets.PropTopicAlias} {
		p.Properties.Set(id)
	}
	p.Properties.PayloadFormat = 1
	p.Properties.ContentType = []byte("application/json")
	p.Properties.ResponseTopic = []byte("r")
	p.Properties.CorrelationData = []byte{1, 2}
	p.Properties.User = []packets.UserProperty{{Key: []byte("k1"), Value: []byte("v1")}, {Key: []byte("k2"), Value: []byte("v2")}}
	p.Properties.TopicAlias = 3
	var pool MessagePool
	m := pool.Get(&p, p.Topic, 1, 0, 0)
	p.Properties.User[0].Key[0] = 'X' // the message must not alias the packet
	if m.Properties.Has(packets.PropTopicAlias) {
		t.Error("topic alias is per connection and must not be kept")
	}
	got := fmt.Sprintf("%d %s %s %v %s=%s %s=%s", m.Properties.PayloadFormat, m.Properties.ContentType, m.Properties.ResponseTopic,
		m.Properties.CorrelationData, m.Properties.User[0].Key, m.Properties.User[0].Value, m.Properties.User[1].Key, m.Properties.User[1].Value)
	if want := "1 application/json r [1 2] k1=v1 k2=v2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	pin := m.Pinned()
	m.Release()
	if pin.Topic != "t" || string(pin.Properties.User[1].Value) != "v2" {
		t.Error("pinned copy must survive the original's recycling")
	}
}

func TestInboundAliases(t *testing.T) {
	a := InboundAliases{Maximum: 2}
	pub := func(topic string, alias uint16) (string, error) {
		p := packets.Publish{Topic: []byte(topic)}
		if alias != 0 || topic == "" {
			p.Properties.Set(packets.PropTopicAlias)
			p.Properties.TopicAlias = alias
		}
		got, err := a.Resolve(&p)
		return string(got), err
	}
	code := func(err error) packets.ReasonCode {
		var pe *packets.Error
		if errors.As(err, &pe) {
			return pe.Code
		}
		return 0
	}
	if _, err := pub("", 1); code(err) != packets.ProtocolError {
		t.Errorf("unset alias: %v", err)
	}
	if got, err := pub("a/b", 1); err != nil || got != "a/b" {
		t.Errorf("set alias: %q %v", got, err)
	}
	if got, err := pub("", 1); err != nil || got != "a/b" {
		t.Errorf("use alias: %q %v", got, err)
	}
	if _, err := pub("x", 3); code(err) != packets.TopicAliasInvalid {
		t.Errorf("alias above maximum: %v", err)
	}
	p := packets.Publish{}
	if _, err := a.Resolve(&p); code(err) != packets.ProtocolError {
		t.Errorf("empty topic without alias: %v", err)
	}
}

func TestOutboundAliases(t *testing.T) {
	var a OutboundAliases
	a.Reset(1)
	if alias, known := a.Lookup("a"); alias != 1 || known {
		t.Fatalf("first use: %d %v", alias, known)
	}
	if alias, known := a.Lookup("a"); alias != 1 || !known {
		t.Fatalf("second use: %d %v", alias, known)
	}
	if alias, _ := a.Lookup("b"); alias != 0 {
		t.Fatalf("beyond the maximum no alias: %d", alias)
	}
	a.Reset(0)
	if alias, _ := a.Lookup("a"); alias != 0 {
		t.Fatal("maximum 0 means no aliases")
	}
}

// TestOutboundAliasOutlivesTheMessage: the topic an alias was assigned for is a view of a
// pooled message's buffer; the message is released and its buffer reused, and the topic
// still has its alias.
func TestOutboundAliasOutlivesTheMessage(t *testing.T) {
	var pool MessagePool
	var a OutboundAliases
	a.Reset(1)
	first := pool.Get(&packets.Publish{Version: packets.V5, Topic: []byte("ta/one")}, []byte("ta/one"), 1, 0, 0)
	if alias, known := a.Lookup(first.Topic); alias != 1 || known {
		t.Fatalf("first use: %d %v", alias, known)
	}
	first.Release()
	second := pool.Get(&packets.Publish{Version: packets.V5, Topic: []byte("ta/two")}, []byte("ta/two"), 1, 0, 0)
	defer second.Release()
	if alias, known := a.Lookup("ta/one"); alias != 1 || !known {
		t.Fatalf("after the message was reused: alias %d known %v, want 1 true", alias, known)
	}
}

// BenchmarkEnqueueNext is the deliver step of the hot path: one message into a session's
// queue and out through the window, acknowledged.
func BenchmarkEnqueueNext(b *testing.B) {
	var pool MessagePool
	s := New("c", 1, Limits{MaxQueuedMessages: 1000})
	p := packets.Publish{Version: packets.V5, QoS: 1, Topic: []byte("sensors/room1/temp"), Payload: make([]byte, 64)}
	b.ReportAllocs()
	for b.Loop() {
		m := pool.Get(&p, p.Topic, 2, 0, 0)
		s.Enqueue(Outgoing{Message: m, QoS: 1}, true)
		m.Release()
		o, _ := s.Next(0)
		s.Acked(o.PacketID)
	}
}
