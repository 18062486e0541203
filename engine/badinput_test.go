package engine

import (
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
)

// publishBytes encodes a 5.0 PUBLISH after edit, for cases that corrupt it afterwards.
func publishBytes(version byte, edit func(*packets.Publish)) []byte {
	p := &packets.Publish{Version: version, Topic: []byte("bad/topic"), Payload: []byte("x")}
	if edit != nil {
		edit(p)
	}
	return p.Append(nil)
}

// withProps appends a raw property block to a 5.0 PUBLISH of topic t (QoS 0, payload "x").
func publishWithRawProps(topic string, props ...byte) []byte {
	body := []byte{byte(len(topic) >> 8), byte(len(topic))}
	body = append(body, topic...)
	body = packets.AppendVarint(body, len(props))
	body = append(body, props...)
	body = append(body, 'x')
	return append(packets.AppendVarint([]byte{0x30}, len(body)), body...)
}

// badInputCase is one malformed or forbidden input and the reason code the broker must
// end the connection with (for 3.x: a close without DISCONNECT).
type badInputCase struct {
	name    string
	version byte
	edit    func(*conf.Config)
	// send writes the offending bytes; it may first exchange valid packets.
	send func(c *rawClient)
	want packets.ReasonCode
}

var badInputCases = []badInputCase{
	{name: "reserved packet type 0", send: func(c *rawClient) { c.write([]byte{0x00, 0x00}) }, want: packets.MalformedPacket},
	{name: "PUBLISH with QoS 3", send: func(c *rawClient) {
		b := publishBytes(packets.V5, nil)
		b[0] |= 0x06
		c.write(b)
	}, want: packets.MalformedPacket},
	{name: "remaining length of 5 bytes", send: func(c *rawClient) { c.write([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}) }, want: packets.MalformedPacket},
	{name: "remaining length not minimal", send: func(c *rawClient) { c.write([]byte{0xC0, 0x80, 0x00}) }, want: packets.MalformedPacket},
	{name: "PINGREQ with a body", send: func(c *rawClient) { c.write([]byte{0xC0, 0x01, 0x00}) }, want: packets.MalformedPacket},
	{name: "SUBSCRIBE with flags 0", send: func(c *rawClient) {
		b := (&packets.Subscribe{Version: packets.V5, PacketID: 1, Subscriptions: []packets.Subscription{sub("a", 0)}}).Append(nil)
		b[0] &^= 0x0F
		c.write(b)
	}, want: packets.MalformedPacket},
	{name: "SUBSCRIBE with reserved option bits", send: func(c *rawClient) {
		b := (&packets.Subscribe{Version: packets.V5, PacketID: 1, Subscriptions: []packets.Subscription{sub("a", 0)}}).Append(nil)
		b[len(b)-1] |= 0xC0
		c.write(b)
	}, want: packets.MalformedPacket},
	{name: "SUBSCRIBE with Retain Handling 3", send: func(c *rawClient) {
		c.send(&packets.Subscribe{Version: packets.V5, PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("a"), RetainHandling: 3}}})
	}, want: packets.ProtocolError},
	{name: "SUBSCRIBE without filters", send: func(c *rawClient) { c.write([]byte{0x82, 0x03, 0x00, 0x01, 0x00}) }, want: packets.ProtocolError},
	{name: "SUBSCRIBE with Subscription Identifier 0", send: func(c *rawClient) {
		c.write([]byte{0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, 'a', 0x00})
	}, want: packets.ProtocolError},
	{name: "shared subscription with No Local", send: func(c *rawClient) {
		c.send(&packets.Subscribe{Version: packets.V5, PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("$share/g/a"), NoLocal: true}}})
	}, want: packets.ProtocolError},
	{name: "topic not UTF-8", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.Topic = []byte{'a', 0xFF} }))
	}, want: packets.MalformedPacket},
	{name: "topic with a wildcard", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.Topic = []byte("a/+") }))
	}, want: packets.TopicNameInvalid},
	{name: "DUP on QoS 0", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.Dup = true }))
	}, want: packets.ProtocolError},
	{name: "packet identifier 0 on QoS 1", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.QoS = 1 }))
	}, want: packets.ProtocolError},
	{name: "unknown property", send: func(c *rawClient) { c.write(publishWithRawProps("a", 0x7F, 0x00)) }, want: packets.MalformedPacket},
	{name: "property twice", send: func(c *rawClient) { c.write(publishWithRawProps("a", 0x01, 0x00, 0x01, 0x00)) }, want: packets.ProtocolError},
	{name: "Subscription Identifier sent by a client", send: func(c *rawClient) { c.write(publishWithRawProps("a", 0x0B, 0x01)) }, want: packets.ProtocolError},
	{name: "property length past the packet", send: func(c *rawClient) {
		c.write([]byte{0x30, 0x05, 0x00, 0x01, 'a', 0x09, 0x01})
	}, want: packets.MalformedPacket},
	{name: "CONNACK from a client", send: func(c *rawClient) { c.write([]byte{0x20, 0x03, 0x00, 0x00, 0x00}) }, want: packets.ProtocolError},
	{name: "second CONNECT", send: func(c *rawClient) {
		c.send(&packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte("again")})
	}, want: packets.ProtocolError},
	{name: "AUTH without an authentication method", send: func(c *rawClient) { c.write([]byte{0xF0, 0x00}) }, want: packets.ProtocolError},
	{name: "empty topic without a Topic Alias", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.Topic = nil }))
	}, want: packets.ProtocolError},
	{name: "Topic Alias used before it was set", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) {
			p.Topic = nil
			p.Properties.Set(packets.PropTopicAlias)
			p.Properties.TopicAlias = 1
		}))
	}, want: packets.ProtocolError},
	{name: "Topic Alias 0", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) {
			p.Properties.Set(packets.PropTopicAlias)
			p.Properties.TopicAlias = 0
		}))
	}, want: packets.TopicAliasInvalid},
	{name: "Topic Alias above the maximum", edit: func(c *conf.Config) { c.MQTT.MaxTopicAlias = 4 }, send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) {
			p.Properties.Set(packets.PropTopicAlias)
			p.Properties.TopicAlias = 5
		}))
	}, want: packets.TopicAliasInvalid},
	{name: "packet above max-packet-size", edit: func(c *conf.Config) { c.MQTT.MaxPacketSize = 1024 }, send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.Payload = make([]byte, 1024) }))
	}, want: packets.PacketTooLarge},
	{name: "payload not UTF-8 as its format indicator says", send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) {
			p.Properties.Set(packets.PropPayloadFormat)
			p.Properties.PayloadFormat = 1
			p.Payload = []byte{0xC3, 0x28}
		}))
	}, want: packets.PayloadFormatInvalid},
	{name: "QoS 2 publishes beyond Receive Maximum", edit: func(c *conf.Config) { c.MQTT.MaxInflight = 2 }, send: func(c *rawClient) {
		for id := uint16(1); id <= 2; id++ {
			c.send(&packets.Publish{Version: packets.V5, QoS: 2, PacketID: id, Topic: []byte("a"), Payload: []byte("x")})
			c.expect(packets.TypePubrec)
		}
		c.send(&packets.Publish{Version: packets.V5, QoS: 2, PacketID: 3, Topic: []byte("a"), Payload: []byte("x")})
	}, want: packets.ReceiveMaximumExceeded},
	{name: "QoS above Maximum QoS", edit: func(c *conf.Config) { c.MQTT.MaxQoS = 1 }, send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.QoS, p.PacketID = 2, 1 }))
	}, want: packets.QoSNotSupported},
	{name: "retain when not available", edit: func(c *conf.Config) { c.MQTT.RetainAvailable = false }, send: func(c *rawClient) {
		c.write(publishBytes(packets.V5, func(p *packets.Publish) { p.Retain = true }))
	}, want: packets.RetainNotSupported},
	{name: "Subscription Identifier when not available", edit: func(c *conf.Config) { c.MQTT.SubscriptionIDAvailable = false }, send: func(c *rawClient) {
		c.send(&packets.Subscribe{Version: packets.V5, PacketID: 1, Properties: packets.Properties{Present: 1 << packets.PropSubscriptionID, SubscriptionIDs: []uint32{7}},
			Subscriptions: []packets.Subscription{sub("a", 0)}})
	}, want: packets.SubscriptionIdentifiersNotSupported},
	{name: "Session Expiry set at DISCONNECT after 0", send: func(c *rawClient) {
		c.send(&packets.Disconnect{Version: packets.V5, Properties: packets.Properties{Present: 1 << packets.PropSessionExpiry, SessionExpiry: 60}})
	}, want: packets.ProtocolError},
	{name: "3.1.1 PUBLISH with QoS 3", version: packets.V311, send: func(c *rawClient) {
		b := publishBytes(packets.V311, nil)
		b[0] |= 0x06
		c.write(b)
	}, want: packets.MalformedPacket},
	{name: "3.1.1 AUTH", version: packets.V311, send: func(c *rawClient) { c.write([]byte{0xF0, 0x00}) }, want: packets.MalformedPacket},
	{name: "3.1.1 second CONNECT", version: packets.V311, send: func(c *rawClient) {
		c.send(&packets.Connect{Version: packets.V311, CleanStart: true, ClientID: []byte("again")})
	}, want: packets.ProtocolError},
}

// TestBadInput sends each class of malformed or forbidden packet and asserts the exact
// reason code that ends the connection, while a bystander connected to the same broker
// keeps receiving before, during and after.
func TestBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range badInputCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, addr := testBroker(t, tc.edit)
			r := newReceived()
			by, _ := connect5(t, addr, &paho.Connect{ClientID: "bystander", CleanStart: true, KeepAlive: 30}, r, nil)
			if _, err := by.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "bystander/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			say := func(n int) {
				t.Helper()
				want := fmt.Sprintf("m%d", n)
				if _, err := by.Publish(ctx5(t), &paho.Publish{Topic: "bystander/x", QoS: 1, Payload: []byte(want)}); err != nil {
					t.Fatal(err)
				}
				if got := r.next(t); string(got.Payload) != want {
					t.Fatalf("bystander got %q, want %q", got.Payload, want)
				}
			}
			say(1)
			version := tc.version
			if version == 0 {
				version = packets.V5
			}
			c := dialRaw(t, addr, version)
			c.mustConnect("bad", nil)
			before := b.Stats().Disconnects[tc.want].Load()
			tc.send(c)
			say(2)
			c.expectDisconnect(tc.want)
			say(3)
			eventually(t, rawWait, "disconnect counted", func() bool { return b.Stats().Disconnects[tc.want].Load() > before })
		})
	}
}
