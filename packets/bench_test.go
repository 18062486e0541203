package packets

import (
	"bytes"
	"fmt"
	"testing"
)

// The benchmark packets of the issue; bench/codec builds the same ones.
func benchPublishQoS0(version byte) *Publish {
	return &Publish{Version: version, Topic: s("sensors/room1/temp"), Payload: bytes.Repeat([]byte{'x'}, 64)}
}

func benchPublishQoS1(version byte) *Publish {
	p := &Publish{Version: version, QoS: 1, PacketID: 7, Topic: s("sensors/room1/temp"), Payload: bytes.Repeat([]byte{'y'}, 256)}
	p.Properties = Properties{
		Present:       1<<PropMessageExpiry | 1<<PropContentType | 1<<PropResponseTopic | 1<<PropCorrelationData,
		MessageExpiry: 3600, ContentType: s("application/json"), ResponseTopic: s("replies/room1"),
		CorrelationData: s("req-0001"),
		User:            []UserProperty{{s("origin"), s("gateway-7")}, {s("trace"), s("a1b2c3d4")}},
	}
	return p
}

func benchConnect(version byte) *Connect {
	c := &Connect{Version: version, CleanStart: true, KeepAlive: 30, ClientID: s("sensor-client-0001"),
		WillFlag: true, WillQoS: 1, WillTopic: s("clients/sensor-client-0001/status"), WillPayload: s("offline"),
		UsernameFlag: true, Username: s("sensor"), PasswordFlag: true, Password: s("s3cr3t-passw0rd")}
	c.Properties = Properties{Present: 1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropMaximumPacketSize,
		SessionExpiry: 3600, ReceiveMaximum: 100, MaximumPacketSize: 1 << 20}
	c.WillProperties = Properties{Present: 1 << PropWillDelay, WillDelay: 10}
	return c
}

func benchSubscribe(version byte) *Subscribe {
	return &Subscribe{Version: version, PacketID: 9,
		Properties: Properties{Present: 1 << PropSubscriptionID, SubscriptionIDs: []uint32{42}},
		Subscriptions: []Subscription{
			{Filter: s("sensors/+/temp"), QoS: 1},
			{Filter: s("alerts/#"), QoS: 2},
			{Filter: s("cmd/room1/set"), QoS: 0},
		}}
}

func benchPuback(version byte) *Ack {
	return &Ack{Type: TypePuback, Version: version, PacketID: 7, Reason: NoMatchingSubscribers}
}

var benchVersions = []struct {
	name    string
	version byte
}{{"5.0", V5}, {"3.1.1", V311}}

// body strips the fixed header from an encoded packet.
func body(tb testing.TB, wire []byte) (FixedHeader, []byte) {
	fh, b := splitPacket(tb, 0, wire)
	return fh, b
}

func BenchmarkDecode(b *testing.B) {
	for _, v := range benchVersions {
		cases := []struct {
			name   string
			wire   []byte
			decode func(fh FixedHeader, body []byte) error
		}{}
		var pub Publish
		var conn Connect
		var sub Subscribe
		var ack Ack
		var pkt Packet
		add := func(name string, wire []byte, decode func(FixedHeader, []byte) error) {
			cases = append(cases, struct {
				name   string
				wire   []byte
				decode func(fh FixedHeader, body []byte) error
			}{name, wire, decode})
		}
		ver := v.version
		add("PublishQoS0", benchPublishQoS0(ver).Append(nil), func(fh FixedHeader, body []byte) error { return pub.Decode(ver, fh.Flags, body) })
		add("PublishQoS1Props", benchPublishQoS1(ver).Append(nil), func(fh FixedHeader, body []byte) error { return pub.Decode(ver, fh.Flags, body) })
		add("Connect", benchConnect(ver).Append(nil), func(fh FixedHeader, body []byte) error { return conn.Decode(body) })
		add("Subscribe3", benchSubscribe(ver).Append(nil), func(fh FixedHeader, body []byte) error { return sub.Decode(ver, fh.Flags, body) })
		add("PubackReason", benchPuback(ver).Append(nil), func(fh FixedHeader, body []byte) error { return ack.Decode(ver, fh.Type, fh.Flags, body) })
		add("Pingreq", AppendPingreq(nil), func(fh FixedHeader, body []byte) error { return pkt.Decode(ver, fh, body) })
		for _, c := range cases {
			fh, bd := body(b, c.wire)
			b.Run(fmt.Sprintf("%s/%s", c.name, v.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(c.wire)))
				for b.Loop() {
					if err := c.decode(fh, bd); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// Direct (non-closure) benchmarks of the hottest paths, so the numbers
// compare with bench/codec without an indirect call in the loop.
func BenchmarkDecodePublishQoS0(b *testing.B) {
	for _, v := range benchVersions {
		fh, bd := body(b, benchPublishQoS0(v.version).Append(nil))
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			var p Publish
			for b.Loop() {
				if err := p.Decode(v.version, fh.Flags, bd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, v := range benchVersions {
		ver := v.version
		pub0, pub1, conn, sub, ack := benchPublishQoS0(ver), benchPublishQoS1(ver), benchConnect(ver), benchSubscribe(ver), benchPuback(ver)
		cases := []struct {
			name string
			enc  func([]byte) []byte
		}{
			{"PublishQoS0", pub0.Append},
			{"PublishQoS1Props", pub1.Append},
			{"Connect", conn.Append},
			{"Subscribe3", sub.Append},
			{"PubackReason", ack.Append},
			{"Pingreq", AppendPingreq},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("%s/%s", c.name, v.name), func(b *testing.B) {
				b.ReportAllocs()
				buf := make([]byte, 0, 1024)
				for b.Loop() {
					buf = c.enc(buf[:0])
				}
				b.SetBytes(int64(len(buf)))
			})
		}
	}
}

func BenchmarkReader(b *testing.B) {
	wire := benchPublishQoS0(V5).Append(nil)
	stream := bytes.Repeat(wire, 64)
	src := bytes.NewReader(stream)
	r := NewReader(src, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		if _, _, err := r.ReadPacket(); err != nil {
			src.Reset(stream)
			r = NewReader(src, 4096)
		}
	}
}

func BenchmarkValidUTF8String(b *testing.B) {
	topic := s("sensors/building-7/floor-3/room-12/temperature")
	b.ReportAllocs()
	for b.Loop() {
		if !ValidUTF8String(topic) {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkEncodePublish is the encode of every delivery, called directly.
func BenchmarkEncodePublish(b *testing.B) {
	for _, v := range benchVersions {
		for _, c := range []struct {
			name string
			p    *Publish
		}{{"QoS0", benchPublishQoS0(v.version)}, {"QoS1Props", benchPublishQoS1(v.version)}} {
			b.Run(c.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				buf := make([]byte, 0, 1024)
				for b.Loop() {
					buf = c.p.Append(buf[:0])
				}
				b.SetBytes(int64(len(buf)))
			})
		}
	}
}
