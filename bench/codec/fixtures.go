package codec

import (
	"bytes"

	"github.com/x0a1b/promptmq/packets"
)

// Fixture is one benchmark packet, built with our encoder; every codec
// decodes these exact bytes.
type Fixture struct {
	Name    string
	Version byte
	Wire    []byte // whole packet
	Header  byte   // first byte
	Body    []byte // after the fixed header
}

func user(k, v string) packets.UserProperty {
	return packets.UserProperty{Key: []byte(k), Value: []byte(v)}
}

// PublishQoS0 is topic sensors/room1/temp with a 64 B payload.
func PublishQoS0(version byte) *packets.Publish {
	return &packets.Publish{Version: version, Topic: []byte("sensors/room1/temp"), Payload: bytes.Repeat([]byte{'x'}, 64)}
}

// PublishQoS1 carries Message Expiry, Content Type, two User Properties,
// Response Topic and Correlation Data, and a 256 B payload.
func PublishQoS1(version byte) *packets.Publish {
	p := &packets.Publish{Version: version, QoS: 1, PacketID: 7, Topic: []byte("sensors/room1/temp"),
		Payload: bytes.Repeat([]byte{'y'}, 256)}
	p.Properties = packets.Properties{
		Present: 1<<packets.PropMessageExpiry | 1<<packets.PropContentType | 1<<packets.PropResponseTopic |
			1<<packets.PropCorrelationData,
		MessageExpiry: 3600, ContentType: []byte("application/json"), ResponseTopic: []byte("replies/room1"),
		CorrelationData: []byte("req-0001"),
		User:            []packets.UserProperty{user("origin", "gateway-7"), user("trace", "a1b2c3d4")},
	}
	return p
}

// Connect has properties, a will and credentials.
func Connect(version byte) *packets.Connect {
	c := &packets.Connect{Version: version, CleanStart: true, KeepAlive: 30, ClientID: []byte("sensor-client-0001"),
		WillFlag: true, WillQoS: 1, WillTopic: []byte("clients/sensor-client-0001/status"), WillPayload: []byte("offline"),
		UsernameFlag: true, Username: []byte("sensor"), PasswordFlag: true, Password: []byte("s3cr3t-passw0rd")}
	c.Properties = packets.Properties{
		Present:       1<<packets.PropSessionExpiry | 1<<packets.PropReceiveMaximum | 1<<packets.PropMaximumPacketSize,
		SessionExpiry: 3600, ReceiveMaximum: 100, MaximumPacketSize: 1 << 20}
	c.WillProperties = packets.Properties{Present: 1 << packets.PropWillDelay, WillDelay: 10}
	return c
}

// Subscribe has three filters and a Subscription Identifier.
func Subscribe(version byte) *packets.Subscribe {
	return &packets.Subscribe{Version: version, PacketID: 9,
		Properties: packets.Properties{Present: 1 << packets.PropSubscriptionID, SubscriptionIDs: []uint32{42}},
		Subscriptions: []packets.Subscription{
			{Filter: []byte("sensors/+/temp"), QoS: 1},
			{Filter: []byte("alerts/#"), QoS: 2},
			{Filter: []byte("cmd/room1/set"), QoS: 0},
		}}
}

// Puback carries a reason code (5.0; 3.1.1 has none).
func Puback(version byte) *packets.Ack {
	return &packets.Ack{Type: packets.TypePuback, Version: version, PacketID: 7, Reason: packets.NoMatchingSubscribers}
}

// Fixtures returns every benchmark packet for one version.
func Fixtures(version byte) []Fixture {
	list := []struct {
		name string
		wire []byte
	}{
		{"PublishQoS0", PublishQoS0(version).Append(nil)},
		{"PublishQoS1Props", PublishQoS1(version).Append(nil)},
		{"Connect", Connect(version).Append(nil)},
		{"Subscribe3", Subscribe(version).Append(nil)},
		{"PubackReason", Puback(version).Append(nil)},
		{"Pingreq", packets.AppendPingreq(nil)},
	}
	out := make([]Fixture, 0, len(list))
	for _, l := range list {
		r := packets.NewReader(bytes.NewReader(l.wire), 4096)
		_, body, err := r.ReadPacket()
		if err != nil {
			panic(err)
		}
		out = append(out, Fixture{Name: l.name, Version: version, Wire: l.wire, Header: l.wire[0], Body: body})
	}
	return out
}
