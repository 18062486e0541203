package codec

import (
	"bytes"
	"fmt"
	"testing"

	paho "github.com/eclipse/paho.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2/packets"
	"github.com/x0a1b/promptmq/packets"
)

var versions = []struct {
	name    string
	version byte
}{{"5.0", packets.V5}, {"3.1.1", packets.V311}}

// --- promptmq ---

// ours decodes f into reused structs, as the engine's read loop does.
type ours struct {
	pub  packets.Publish
	conn packets.Connect
	sub  packets.Subscribe
	ack  packets.Ack
	pkt  packets.Packet
}

func (o *ours) decode(f *Fixture) error {
	flags := f.Header & 0x0F
	switch f.Name {
	case "PublishQoS0", "PublishQoS1Props":
		return o.pub.Decode(f.Version, flags, f.Body)
	case "Connect":
		return o.conn.Decode(f.Body)
	case "Subscribe3":
		return o.sub.Decode(f.Version, flags, f.Body)
	case "PubackReason":
		return o.ack.Decode(f.Version, packets.TypePuback, flags, f.Body)
	}
	return o.pkt.Decode(f.Version, packets.FixedHeader{Type: packets.Type(f.Header >> 4), Flags: flags}, f.Body)
}

// benchOurs runs a loop calling the fixture's decoder directly, as the
// engine does after switching on the packet type once.
func benchOurs(b *testing.B, f *Fixture) {
	flags, body, version := f.Header&0x0F, f.Body, f.Version
	b.ReportAllocs()
	var err error
	switch f.Name {
	case "PublishQoS0", "PublishQoS1Props":
		var p packets.Publish
		for b.Loop() {
			err = p.Decode(version, flags, body)
		}
	case "Connect":
		var c packets.Connect
		for b.Loop() {
			err = c.Decode(body)
		}
	case "Subscribe3":
		var s packets.Subscribe
		for b.Loop() {
			err = s.Decode(version, flags, body)
		}
	case "PubackReason":
		var a packets.Ack
		for b.Loop() {
			err = a.Decode(version, packets.TypePuback, flags, body)
		}
	default:
		var p packets.Packet
		fh := packets.FixedHeader{Type: packets.Type(f.Header >> 4), Flags: flags}
		for b.Loop() {
			err = p.Decode(version, fh, body)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
}

// --- mochi ---

// mochiDecode decodes f as Mochi's server does: a fresh Packet per read,
// the fixed header byte decoded, then the type's decoder.
func mochiDecode(f *Fixture) (mochi.Packet, error) {
	pk := mochi.Packet{ProtocolVersion: f.Version}
	if err := pk.FixedHeader.Decode(f.Header); err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = len(f.Body)
	switch pk.FixedHeader.Type {
	case mochi.Publish:
		return pk, pk.PublishDecode(f.Body)
	case mochi.Connect:
		return pk, pk.ConnectDecode(f.Body)
	case mochi.Subscribe:
		return pk, pk.SubscribeDecode(f.Body)
	case mochi.Puback:
		return pk, pk.PubackDecode(f.Body)
	case mochi.Pingreq:
		return pk, pk.PingreqDecode(f.Body)
	}
	return pk, fmt.Errorf("mochi: unexpected type %d", pk.FixedHeader.Type)
}

// mochiPacket converts one of our fixtures to Mochi's struct for encoding.
func mochiPacket(name string, version byte) mochi.Packet {
	pk := mochi.Packet{ProtocolVersion: version}
	switch name {
	case "PublishQoS0", "PublishQoS1Props":
		p := PublishQoS0(version)
		if name == "PublishQoS1Props" {
			p = PublishQoS1(version)
		}
		pk.FixedHeader = mochi.FixedHeader{Type: mochi.Publish, Qos: p.QoS}
		pk.TopicName, pk.PacketID, pk.Payload = string(p.Topic), p.PacketID, p.Payload
		pk.Mods.AllowResponseInfo = true // else Mochi omits Response Topic and Correlation Data
		if p.Properties.Present != 0 {
			pk.Properties.MessageExpiryInterval = p.Properties.MessageExpiry
			pk.Properties.ContentType = string(p.Properties.ContentType)
			pk.Properties.ResponseTopic = string(p.Properties.ResponseTopic)
			pk.Properties.CorrelationData = p.Properties.CorrelationData
			for _, u := range p.Properties.User {
				pk.Properties.User = append(pk.Properties.User, mochi.UserProperty{Key: string(u.Key), Val: string(u.Value)})
			}
		}
	case "Connect":
		c := Connect(version)
		pk.FixedHeader = mochi.FixedHeader{Type: mochi.Connect}
		pk.Connect = mochi.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: string(c.ClientID), Clean: true,
			Keepalive: c.KeepAlive, WillFlag: true, WillQos: c.WillQoS, WillTopic: string(c.WillTopic), WillPayload: c.WillPayload,
			UsernameFlag: true, Username: c.Username, PasswordFlag: true, Password: c.Password}
		pk.Connect.WillProperties.WillDelayInterval = c.WillProperties.WillDelay
		pk.Properties.SessionExpiryInterval = c.Properties.SessionExpiry
		pk.Properties.SessionExpiryIntervalFlag = true
		pk.Properties.ReceiveMaximum = c.Properties.ReceiveMaximum
		pk.Properties.MaximumPacketSize = c.Properties.MaximumPacketSize
	case "Subscribe3":
		s := Subscribe(version)
		pk.FixedHeader = mochi.FixedHeader{Type: mochi.Subscribe, Qos: 1}
		pk.PacketID = s.PacketID
		pk.Properties.SubscriptionIdentifier = []int{int(s.Properties.SubscriptionIDs[0])}
		for _, sub := range s.Subscriptions {
			pk.Filters = append(pk.Filters, mochi.Subscription{Filter: string(sub.Filter), Qos: sub.QoS})
		}
	case "PubackReason":
		a := Puback(version)
		pk.FixedHeader = mochi.FixedHeader{Type: mochi.Puback}
		pk.PacketID = a.PacketID
		if version == packets.V5 {
			pk.ReasonCode = byte(a.Reason)
		}
	case "Pingreq":
		pk.FixedHeader = mochi.FixedHeader{Type: mochi.Pingreq}
	}
	return pk
}

func mochiEncode(pk *mochi.Packet, buf *bytes.Buffer) error {
	switch pk.FixedHeader.Type {
	case mochi.Publish:
		return pk.PublishEncode(buf)
	case mochi.Connect:
		return pk.ConnectEncode(buf)
	case mochi.Subscribe:
		return pk.SubscribeEncode(buf)
	case mochi.Puback:
		return pk.PubackEncode(buf)
	case mochi.Pingreq:
		return pk.PingreqEncode(buf)
	}
	return fmt.Errorf("mochi: unexpected type %d", pk.FixedHeader.Type)
}

// --- paho (5.0 only) ---

// pahoDecode decodes f as paho.golang's ReadPacket does after framing: a
// new packet struct with its Properties, unpacked from a bytes.Buffer.
func pahoDecode(f *Fixture) (any, error) {
	r := bytes.NewBuffer(f.Body)
	switch f.Name {
	case "PublishQoS0", "PublishQoS1Props":
		p := &paho.Publish{Properties: &paho.Properties{}, QoS: f.Header >> 1 & 3, Duplicate: f.Header&8 != 0, Retain: f.Header&1 != 0}
		return p, p.Unpack(r)
	case "Connect":
		c := &paho.Connect{Properties: &paho.Properties{}, WillProperties: &paho.Properties{}}
		return c, c.Unpack(r)
	case "Subscribe3":
		s := &paho.Subscribe{Properties: &paho.Properties{}}
		return s, s.Unpack(r)
	case "PubackReason":
		a := &paho.Puback{Properties: &paho.Properties{}}
		return a, a.Unpack(r)
	case "Pingreq":
		p := &paho.Pingreq{}
		return p, p.Unpack(r)
	}
	return nil, fmt.Errorf("paho: unexpected %s", f.Name)
}

func pahoEncoder(name string) func(buf *bytes.Buffer) error {
	u32 := func(v uint32) *uint32 { return &v }
	u16 := func(v uint16) *uint16 { return &v }
	switch name {
	case "PublishQoS0", "PublishQoS1Props":
		p := PublishQoS0(packets.V5)
		if name == "PublishQoS1Props" {
			p = PublishQoS1(packets.V5)
		}
		pp := &paho.Publish{Topic: string(p.Topic), QoS: p.QoS, PacketID: p.PacketID, Payload: p.Payload, Properties: &paho.Properties{}}
		if p.Properties.Present != 0 {
			pp.Properties.MessageExpiry = u32(p.Properties.MessageExpiry)
			pp.Properties.ContentType = string(p.Properties.ContentType)
			pp.Properties.ResponseTopic = string(p.Properties.ResponseTopic)
			pp.Properties.CorrelationData = p.Properties.CorrelationData
			for _, u := range p.Properties.User {
				pp.Properties.User = append(pp.Properties.User, paho.User{Key: string(u.Key), Value: string(u.Value)})
			}
		}
		return func(buf *bytes.Buffer) error { _, err := pp.WriteTo(buf); return err }
	case "Connect":
		c := Connect(packets.V5)
		pc := &paho.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: string(c.ClientID), CleanStart: true,
			KeepAlive: c.KeepAlive, WillFlag: true, WillQOS: c.WillQoS, WillTopic: string(c.WillTopic), WillMessage: c.WillPayload,
			UsernameFlag: true, Username: string(c.Username), PasswordFlag: true, Password: c.Password,
			Properties: &paho.Properties{SessionExpiryInterval: u32(c.Properties.SessionExpiry),
				ReceiveMaximum: u16(c.Properties.ReceiveMaximum), MaximumPacketSize: u32(c.Properties.MaximumPacketSize)},
			WillProperties: &paho.Properties{WillDelayInterval: u32(c.WillProperties.WillDelay)}}
		return func(buf *bytes.Buffer) error { _, err := pc.WriteTo(buf); return err }
	case "Subscribe3":
		s := Subscribe(packets.V5)
		id := int(s.Properties.SubscriptionIDs[0])
		ps := &paho.Subscribe{PacketID: s.PacketID, Properties: &paho.Properties{SubscriptionIdentifier: &id}}
		for _, sub := range s.Subscriptions {
			ps.Subscriptions = append(ps.Subscriptions, paho.SubOptions{Topic: string(sub.Filter), QoS: sub.QoS})
		}
		return func(buf *bytes.Buffer) error { _, err := ps.WriteTo(buf); return err }
	case "PubackReason":
		a := Puback(packets.V5)
		pa := &paho.Puback{PacketID: a.PacketID, ReasonCode: byte(a.Reason), Properties: &paho.Properties{}}
		return func(buf *bytes.Buffer) error { _, err := pa.WriteTo(buf); return err }
	case "Pingreq":
		pp := &paho.Pingreq{}
		return func(buf *bytes.Buffer) error { _, err := pp.WriteTo(buf); return err }
	}
	return nil
}

// --- benchmarks: one run, three codecs side by side ---

func BenchmarkDecode(b *testing.B) {
	for _, v := range versions {
		for _, f := range Fixtures(v.version) {
			b.Run(fmt.Sprintf("%s/%s/promptmq", f.Name, v.name), func(b *testing.B) { benchOurs(b, &f) })
			b.Run(fmt.Sprintf("%s/%s/mochi", f.Name, v.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := mochiDecode(&f); err != nil {
						b.Fatal(err)
					}
				}
			})
			if v.version == packets.V5 {
				b.Run(fmt.Sprintf("%s/%s/paho", f.Name, v.name), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := pahoDecode(&f); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, v := range versions {
		ver := v.version
		ourEnc := map[string]func([]byte) []byte{
			"PublishQoS0":      PublishQoS0(ver).Append,
			"PublishQoS1Props": PublishQoS1(ver).Append,
			"Connect":          Connect(ver).Append,
			"Subscribe3":       Subscribe(ver).Append,
			"PubackReason":     Puback(ver).Append,
			"Pingreq":          packets.AppendPingreq,
		}
		for _, f := range Fixtures(ver) {
			enc := ourEnc[f.Name]
			b.Run(fmt.Sprintf("%s/%s/promptmq", f.Name, v.name), func(b *testing.B) {
				buf := make([]byte, 0, 1024)
				b.ReportAllocs()
				for b.Loop() {
					buf = enc(buf[:0])
				}
			})
			pk := mochiPacket(f.Name, ver)
			b.Run(fmt.Sprintf("%s/%s/mochi", f.Name, v.name), func(b *testing.B) {
				var buf bytes.Buffer
				b.ReportAllocs()
				for b.Loop() {
					buf.Reset()
					if err := mochiEncode(&pk, &buf); err != nil {
						b.Fatal(err)
					}
				}
			})
			if ver == packets.V5 {
				pe := pahoEncoder(f.Name)
				b.Run(fmt.Sprintf("%s/%s/paho", f.Name, v.name), func(b *testing.B) {
					var buf bytes.Buffer
					b.ReportAllocs()
					for b.Loop() {
						buf.Reset()
						if err := pe(&buf); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
