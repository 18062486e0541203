package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
)

// TestPublishQoSMatrix: every publish QoS against every subscription QoS, with paho.golang
// on both sides; the delivery QoS is the lower of the two [MQTT-3.8.4-8].
func TestPublishQoSMatrix(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	r := newReceived()
	sub, _ := connect5(t, addr, &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30}, r, nil)
	pub, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30}, nil, nil)
	for subQoS := byte(0); subQoS <= 2; subQoS++ {
		if _, err := sub.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: fmt.Sprint("m/", subQoS), QoS: subQoS}}}); err != nil {
			t.Fatal(err)
		}
	}
	for subQoS := byte(0); subQoS <= 2; subQoS++ {
		for pubQoS := byte(0); pubQoS <= 2; pubQoS++ {
			payload := fmt.Sprintf("pub %d sub %d", pubQoS, subQoS)
			pr, err := pub.Publish(ctx5(t), &paho.Publish{Topic: fmt.Sprint("m/", subQoS), QoS: pubQoS, Payload: []byte(payload)})
			if err != nil {
				t.Fatalf("%s: %v", payload, err)
			}
			if pubQoS > 0 && pr.ReasonCode != 0 {
				t.Fatalf("%s: ack reason 0x%02X", payload, pr.ReasonCode)
			}
			got := r.next(t)
			if string(got.Payload) != payload || got.QoS != min(pubQoS, subQoS) {
				t.Fatalf("got %q at QoS %d, want %q at QoS %d", got.Payload, got.QoS, payload, min(pubQoS, subQoS))
			}
		}
	}
}

// TestQoS2ExactlyOnce: an inbound QoS 2 id is held until PUBREL, so a retransmission with
// DUP before it is acknowledged again but not delivered again; after PUBREL the id is free.
func TestQoS2ExactlyOnce(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	s := dialRaw(t, addr, packets.V5)
	s.mustConnect("s", nil)
	s.subscribe(1, 0, sub("eo", 0), sub("marker", 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	pp := &packets.Publish{Version: packets.V5, Topic: []byte("eo"), QoS: 2, PacketID: 7, Payload: []byte("once")}
	p.send(pp)
	p.expect(packets.TypePubrec)
	pp.Dup = true
	p.send(pp) // retransmission: PUBREC again, no second delivery
	if rec := p.expect(packets.TypePubrec).Ack; rec.PacketID != 7 || rec.Reason != packets.Success {
		t.Fatalf("PUBREC %+v", rec)
	}
	p.send(&packets.Ack{Type: packets.TypePubrel, Version: packets.V5, PacketID: 7})
	if comp := p.expect(packets.TypePubcomp).Ack; comp.Reason != packets.Success {
		t.Fatalf("PUBCOMP %v", comp.Reason)
	}
	p.send(&packets.Ack{Type: packets.TypePubrel, Version: packets.V5, PacketID: 7}) // unknown now
	if comp := p.expect(packets.TypePubcomp).Ack; comp.Reason != packets.PacketIdentifierNotFound {
		t.Fatalf("PUBCOMP for a released id: %v, want 0x92", comp.Reason)
	}
	if m := s.nextPublish(); m.Payload != "once" {
		t.Fatalf("got %q", m.Payload)
	}
	p.pub("marker", 0, 0, "m")
	expectMarker(t, s.nextPublish())
	// The id is free again: a new message with it is delivered.
	pp.Dup, pp.Payload = false, []byte("twice")
	p.publish(pp)
	if m := s.nextPublish(); m.Payload != "twice" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestOutboundQoS2Flow: the broker's side of QoS 2 towards a subscriber: PUBREC gets PUBREL,
// PUBCOMP frees the id, an unknown PUBREC gets PUBREL 0x92.
func TestOutboundQoS2Flow(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	s := dialRaw(t, addr, packets.V5)
	s.mustConnect("s", nil)
	s.subscribe(1, 0, sub("q2", 2))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.pub("q2", 2, 1, "x")
	m := s.nextPublish()
	if m.QoS != 2 || m.PacketID == 0 {
		t.Fatalf("got %+v", m)
	}
	s.ackPublish(m)
	s.send(&packets.Ack{Type: packets.TypePubrec, Version: packets.V5, PacketID: 999})
	if rel := s.expect(packets.TypePubrel).Ack; rel.PacketID != 999 || rel.Reason != packets.PacketIdentifierNotFound {
		t.Fatalf("PUBREL for an unknown PUBREC: %+v", rel)
	}
}

// TestMaximumPacketSize: the broker refuses a packet over its maximum (0x95, in the bad input
// table) and never sends a client a PUBLISH over the client's maximum: it is dropped, and
// the next message goes through.
func TestMaximumPacketSize(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	s := dialRaw(t, addr, packets.V5)
	s.mustConnect("small", func(p *packets.Connect) {
		p.Properties.Set(packets.PropMaximumPacketSize)
		p.Properties.MaximumPacketSize = 100
	})
	s.subscribe(1, 0, sub("mps", 1))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.pub("mps", 1, 1, strings.Repeat("x", 200))
	p.pub("mps", 0, 0, strings.Repeat("y", 200))
	p.pub("mps", 1, 2, "fits")
	if m := s.receive(); m.Payload != "fits" {
		t.Fatalf("got %d bytes, want the small message only", len(m.Payload))
	}
	// paho.golang announces its maximum the same way.
	r := newReceived()
	ps := uint32(100)
	c, _ := connect5(t, addr, &paho.Connect{ClientID: "paho-small", CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{MaximumPacketSize: &ps}}, r, nil)
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "mps", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	p.pub("mps", 1, 3, strings.Repeat("z", 200))
	p.pub("mps", 1, 4, "fits too")
	if got := r.next(t); string(got.Payload) != "fits too" {
		t.Fatalf("paho got %d bytes", len(got.Payload))
	}
}

// TestTopicAliases: inbound aliases are resolved (set, then used with an empty topic);
// outbound aliases are assigned up to the client's Topic Alias Maximum and the topic is
// left out on reuse.
func TestTopicAliases(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	s := dialRaw(t, addr, packets.V5)
	s.mustConnect("s", func(p *packets.Connect) {
		p.Properties.Set(packets.PropTopicAliasMaximum)
		p.Properties.TopicAliasMaximum = 1
	})
	s.subscribe(1, 0, sub("ta/#", 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	aliased := func(topic string, alias uint16, payload string) {
		pp := &packets.Publish{Version: packets.V5, Topic: []byte(topic), Payload: []byte(payload)}
		pp.Properties.Set(packets.PropTopicAlias)
		pp.Properties.TopicAlias = alias
		p.send(pp)
	}
	aliased("ta/one", 1, "1")   // sets alias 1
	aliased("", 1, "2")         // uses it
	aliased("ta/two", 2, "3")   // sets alias 2
	aliased("", 2, "4")         // uses it
	aliased("ta/three", 1, "5") // rebinds alias 1
	aliased("", 1, "6")
	want := []struct {
		topic      string // as sent on the wire
		alias      uint16
		resolvedTo string
	}{
		{"ta/one", 1, "ta/one"}, {"", 1, "ta/one"},
		{"ta/two", 0, "ta/two"}, {"ta/two", 0, "ta/two"}, // the client allows one alias only
		{"ta/three", 0, "ta/three"}, {"ta/three", 0, "ta/three"},
	}
	for i, w := range want {
		m := s.nextPublish()
		if m.Topic != w.topic || m.Props.TopicAlias != w.alias || m.Payload != fmt.Sprint(i+1) {
			t.Fatalf("delivery %d: topic %q alias %d payload %q, want %q alias %d", i, m.Topic, m.Props.TopicAlias, m.Payload, w.topic, w.alias)
		}
	}
}

// TestForwardedProperties: Payload Format Indicator, Content Type, Response Topic,
// Correlation Data and User Properties arrive unchanged and in order [MQTT-3.3.2-17]
// [MQTT-3.3.2-18], through paho.golang on both sides.
func TestForwardedProperties(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	r := newReceived()
	sc, _ := connect5(t, addr, &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30}, r, nil)
	if _, err := sc.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "fp", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pc, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30}, nil, nil)
	format := byte(1)
	user := paho.UserProperties{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"}}
	if _, err := pc.Publish(ctx5(t), &paho.Publish{Topic: "fp", QoS: 1, Payload: []byte("ünïcode"), Properties: &paho.PublishProperties{
		PayloadFormat: &format, ContentType: "text/plain", ResponseTopic: "fp/reply", CorrelationData: []byte{0, 1, 2}, User: user,
	}}); err != nil {
		t.Fatal(err)
	}
	got := r.next(t)
	pr := got.Properties
	if pr == nil || pr.PayloadFormat == nil || *pr.PayloadFormat != 1 || pr.ContentType != "text/plain" || pr.ResponseTopic != "fp/reply" ||
		!bytes.Equal(pr.CorrelationData, []byte{0, 1, 2}) || !slices.Equal(pr.User, user) {
		t.Fatalf("properties %+v", pr)
	}
}

// TestMaximumQoSDowngrade: with mqtt.max-qos 1, a QoS 2 subscription is granted QoS 1 and
// deliveries go at QoS 1; paho.golang, told Maximum QoS 1, publishes within it.
func TestMaximumQoSDowngrade(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) { c.MQTT.MaxQoS = 1 })
	r := newReceived()
	sc, ca := connect5(t, addr, &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30}, r, nil)
	if ca.Properties == nil || ca.Properties.MaximumQoS == nil || *ca.Properties.MaximumQoS != 1 {
		t.Fatalf("CONNACK Maximum QoS %+v", ca.Properties)
	}
	sa, err := sc.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "dq", QoS: 2}}})
	if err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("SUBACK %v %+v, want granted QoS 1", err, sa)
	}
	pc, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30}, nil, nil)
	if _, err := pc.Publish(ctx5(t), &paho.Publish{Topic: "dq", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); got.QoS != 1 {
		t.Fatalf("delivered at QoS %d", got.QoS)
	}
}

// TestReceiveMaximumInbound: the broker's Receive Maximum (max-inflight) bounds inbound QoS 2
// awaiting PUBREL; at the limit the next is refused with 0x93 (TestBadInput), and below it
// releasing one lets another in.
func TestReceiveMaximumInbound(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) { c.MQTT.MaxInflight = 2 })
	p := dialRaw(t, addr, packets.V5)
	if ca := p.mustConnect("p", nil); ca.Properties.ReceiveMaximum != 2 {
		t.Fatalf("Receive Maximum %d", ca.Properties.ReceiveMaximum)
	}
	for round := range 3 {
		for id := uint16(1); id <= 2; id++ {
			p.send(&packets.Publish{Version: packets.V5, QoS: 2, PacketID: id, Topic: []byte("rmi"), Payload: []byte("x")})
			p.expect(packets.TypePubrec)
		}
		for id := uint16(1); id <= 2; id++ {
			p.send(&packets.Ack{Type: packets.TypePubrel, Version: packets.V5, PacketID: id})
			if c := p.expect(packets.TypePubcomp).Ack; c.Reason != packets.Success {
				t.Fatalf("round %d: PUBCOMP %v", round, c.Reason)
			}
		}
	}
}

// TestWriterCoalesces: every packet ready for a client goes out in one write. A subscriber
// with Receive Maximum 1 holds one QoS 1 delivery unacknowledged, so the next QoS 1 and
// 100 QoS 0 behind it wait in its queue; its PUBACK releases them all at once, and the
// first read after it returns every one of them (one write is one segment on loopback).
func TestWriterCoalesces(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	s := dialRaw(t, addr, packets.V5)
	s.mustConnect("s", func(p *packets.Connect) {
		p.Properties.Set(packets.PropReceiveMaximum)
		p.Properties.ReceiveMaximum = 1
	})
	s.subscribe(1, 0, sub("co/#", 1))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.pub("co/1", 1, 1, "first")
	first := s.nextPublish()
	p.pub("co/2", 1, 2, "second")
	const n = 100
	var want int
	want += len((&packets.Publish{Version: packets.V5, Topic: []byte("co/2"), QoS: 1, PacketID: 2, Payload: []byte("second")}).Append(nil))
	for i := range n {
		p.send(&packets.Publish{Version: packets.V5, Topic: []byte("co/0"), Payload: []byte(fmt.Sprintf("%03d", i))})
		want += len((&packets.Publish{Version: packets.V5, Topic: []byte("co/0"), Payload: []byte("000")}).Append(nil))
	}
	p.ping() // all routed: they wait in the subscriber's queue
	if s.r.Buffered() != 0 {
		t.Fatalf("%d bytes arrived while the window was full", s.r.Buffered())
	}
	s.ackPublish(first)
	buf := make([]byte, 64<<10)
	s.conn.SetReadDeadline(time.Now().Add(rawWait))
	got, err := s.conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("first read after the ack returned %d bytes, want all %d in one write", got, want)
	}
}
