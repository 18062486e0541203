package codec

import (
	"bytes"
	"testing"

	paho "github.com/eclipse/paho.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2/packets"
	"github.com/x0a1b/promptmq/packets"
)

// TestSameFields decodes every benchmark packet with each codec and checks
// that they all see the same field values: the benchmarks compare equal work.
func TestSameFields(t *testing.T) {
	for _, v := range versions {
		for _, f := range Fixtures(v.version) {
			t.Run(f.Name+"/"+v.name, func(t *testing.T) {
				var o ours
				if err := o.decode(&f); err != nil {
					t.Fatalf("promptmq: %v", err)
				}
				mk, err := mochiDecode(&f)
				if err != nil {
					t.Fatalf("mochi: %v", err)
				}
				var pk any
				if v.version == packets.V5 {
					if pk, err = pahoDecode(&f); err != nil {
						t.Fatalf("paho: %v", err)
					}
				}
				check := func(what string, ok bool) {
					t.Helper()
					if !ok {
						t.Errorf("%s differs", what)
					}
				}
				switch f.Name {
				case "PublishQoS0", "PublishQoS1Props":
					p := &o.pub
					check("mochi topic", mk.TopicName == string(p.Topic))
					check("mochi qos", mk.FixedHeader.Qos == p.QoS)
					check("mochi packet id", mk.PacketID == p.PacketID)
					check("mochi payload", bytes.Equal(mk.Payload, p.Payload))
					if v.version == packets.V5 {
						check("mochi expiry", mk.Properties.MessageExpiryInterval == p.Properties.MessageExpiry)
						check("mochi content type", mk.Properties.ContentType == string(p.Properties.ContentType))
						check("mochi response topic", mk.Properties.ResponseTopic == string(p.Properties.ResponseTopic))
						check("mochi correlation", bytes.Equal(mk.Properties.CorrelationData, p.Properties.CorrelationData))
						check("mochi user count", len(mk.Properties.User) == len(p.Properties.User))
						for i, u := range p.Properties.User {
							check("mochi user", mk.Properties.User[i].Key == string(u.Key) && mk.Properties.User[i].Val == string(u.Value))
						}
						pp := pk.(*paho.Publish)
						check("paho topic", pp.Topic == string(p.Topic))
						check("paho qos", pp.QoS == p.QoS)
						check("paho packet id", pp.PacketID == p.PacketID)
						check("paho payload", bytes.Equal(pp.Payload, p.Payload))
						check("paho content type", pp.Properties.ContentType == string(p.Properties.ContentType))
						check("paho response topic", pp.Properties.ResponseTopic == string(p.Properties.ResponseTopic))
						check("paho correlation", bytes.Equal(pp.Properties.CorrelationData, p.Properties.CorrelationData))
						if p.Properties.Has(packets.PropMessageExpiry) {
							check("paho expiry", pp.Properties.MessageExpiry != nil && *pp.Properties.MessageExpiry == p.Properties.MessageExpiry)
						}
						check("paho user count", len(pp.Properties.User) == len(p.Properties.User))
						for i, u := range p.Properties.User {
							check("paho user", pp.Properties.User[i].Key == string(u.Key) && pp.Properties.User[i].Value == string(u.Value))
						}
					}
				case "Connect":
					c := &o.conn
					m := &mk.Connect
					check("mochi client id", m.ClientIdentifier == string(c.ClientID))
					check("mochi keep alive", m.Keepalive == c.KeepAlive)
					check("mochi clean", m.Clean == c.CleanStart)
					check("mochi will", m.WillFlag == c.WillFlag && m.WillQos == c.WillQoS && m.WillTopic == string(c.WillTopic) &&
						bytes.Equal(m.WillPayload, c.WillPayload))
					check("mochi credentials", bytes.Equal(m.Username, c.Username) && bytes.Equal(m.Password, c.Password))
					if v.version == packets.V5 {
						check("mochi session expiry", mk.Properties.SessionExpiryInterval == c.Properties.SessionExpiry)
						check("mochi receive maximum", mk.Properties.ReceiveMaximum == c.Properties.ReceiveMaximum)
						check("mochi max packet size", mk.Properties.MaximumPacketSize == c.Properties.MaximumPacketSize)
						check("mochi will delay", m.WillProperties.WillDelayInterval == c.WillProperties.WillDelay)
						pc := pk.(*paho.Connect)
						check("paho client id", pc.ClientID == string(c.ClientID))
						check("paho keep alive", pc.KeepAlive == c.KeepAlive)
						check("paho will", pc.WillFlag && pc.WillQOS == c.WillQoS && pc.WillTopic == string(c.WillTopic) &&
							bytes.Equal(pc.WillMessage, c.WillPayload))
						check("paho credentials", pc.Username == string(c.Username) && bytes.Equal(pc.Password, c.Password))
						check("paho session expiry", *pc.Properties.SessionExpiryInterval == c.Properties.SessionExpiry)
						check("paho receive maximum", *pc.Properties.ReceiveMaximum == c.Properties.ReceiveMaximum)
						check("paho max packet size", *pc.Properties.MaximumPacketSize == c.Properties.MaximumPacketSize)
						check("paho will delay", *pc.WillProperties.WillDelayInterval == c.WillProperties.WillDelay)
					}
				case "Subscribe3":
					s := &o.sub
					check("mochi packet id", mk.PacketID == s.PacketID)
					check("mochi filter count", len(mk.Filters) == len(s.Subscriptions))
					for i, sub := range s.Subscriptions {
						check("mochi filter", mk.Filters[i].Filter == string(sub.Filter) && mk.Filters[i].Qos == sub.QoS)
					}
					if v.version == packets.V5 {
						check("mochi sub id", len(mk.Properties.SubscriptionIdentifier) == 1 &&
							mk.Properties.SubscriptionIdentifier[0] == int(s.Properties.SubscriptionIDs[0]))
						ps := pk.(*paho.Subscribe)
						check("paho packet id", ps.PacketID == s.PacketID)
						check("paho filter count", len(ps.Subscriptions) == len(s.Subscriptions))
						for i, sub := range s.Subscriptions {
							check("paho filter", ps.Subscriptions[i].Topic == string(sub.Filter) && ps.Subscriptions[i].QoS == sub.QoS)
						}
						check("paho sub id", *ps.Properties.SubscriptionIdentifier == int(s.Properties.SubscriptionIDs[0]))
					}
				case "PubackReason":
					a := &o.ack
					check("mochi packet id", mk.PacketID == a.PacketID)
					check("mochi reason", mk.ReasonCode == byte(a.Reason))
					if v.version == packets.V5 {
						pa := pk.(*paho.Puback)
						check("paho packet id", pa.PacketID == a.PacketID)
						check("paho reason", pa.ReasonCode == byte(a.Reason))
					}
				case "Pingreq":
					check("mochi type", mk.FixedHeader.Type == mochi.Pingreq)
				}
			})
		}
	}
}

// TestEncodersAgree checks that the other codecs' encoders, fed the same
// fields, write packets that mean the same: decoded by us and re-encoded,
// they give our bytes. So the encode benchmarks compare equal work too.
func TestEncodersAgree(t *testing.T) {
	same := func(t *testing.T, who string, f *Fixture, wire []byte) {
		t.Helper()
		r := packets.NewReader(bytes.NewReader(wire), 4096)
		fh, body, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		var p packets.Packet
		if err := p.Decode(f.Version, fh, body); err != nil {
			t.Fatalf("%s wrote % X: %v", who, wire, err)
		}
		if got := p.Append(nil); !bytes.Equal(got, f.Wire) {
			t.Errorf("%s wrote a different packet:\n% X\nwant\n% X", who, wire, f.Wire)
		}
	}
	for _, v := range versions {
		for _, f := range Fixtures(v.version) {
			t.Run(f.Name+"/"+v.name, func(t *testing.T) {
				pk := mochiPacket(f.Name, v.version)
				var buf bytes.Buffer
				if err := mochiEncode(&pk, &buf); err != nil {
					t.Fatalf("mochi encode: %v", err)
				}
				if f.Name == "PubackReason" && v.version == packets.V5 {
					// Mochi writes a PUBACK reason code only when it is an error
					// (>= 0x80), so 0x10 No matching subscribers is lost: its
					// encoder does slightly less work here, not more.
					t.Logf("mochi drops reason 0x10: % X", buf.Bytes())
				} else {
					same(t, "mochi", &f, buf.Bytes())
				}
				if v.version == packets.V5 {
					var pb bytes.Buffer
					if err := pahoEncoder(f.Name)(&pb); err != nil {
						t.Fatalf("paho encode: %v", err)
					}
					same(t, "paho", &f, pb.Bytes())
				}
			})
		}
	}
}
