package packets

import (
	"bytes"
	"testing"
)

// goldenPackets is the one table that serves decode and encode tests: each
// file must decode to pkt, and pkt must encode back to the file's bytes
// (unless decodeOnly: a legal long form we never write).
var goldenPackets = []struct {
	file       string
	version    byte
	pkt        Packet
	decodeOnly bool
}{
	// MQTT 5.0
	{file: "v5/connect.hex", version: V5, pkt: Packet{Type: TypeConnect, Connect: Connect{
		ProtocolName: s("MQTT"), Version: V5, CleanStart: true, KeepAlive: 60,
		Properties: Properties{
			Present:       1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropTopicAliasMaximum | 1<<PropUserProperty | 1<<PropMaximumPacketSize,
			SessionExpiry: 120, ReceiveMaximum: 20, TopicAliasMaximum: 10, MaximumPacketSize: 4096,
			User: []UserProperty{{s("k"), s("v")}},
		},
		ClientID: s("client"), WillFlag: true, WillQoS: 1, WillRetain: true,
		WillProperties: Properties{Present: 1<<PropPayloadFormat | 1<<PropWillDelay, PayloadFormat: 1, WillDelay: 5},
		WillTopic:      s("will/status"), WillPayload: s("offline"),
		UsernameFlag: true, Username: s("user"), PasswordFlag: true, Password: s("secret"),
	}}},
	{file: "v5/connect_spec_example.hex", version: V5, pkt: Packet{Type: TypeConnect, Connect: Connect{
		ProtocolName: s("MQTT"), Version: V5, CleanStart: true, KeepAlive: 10,
		Properties: Properties{Present: 1 << PropSessionExpiry, SessionExpiry: 10},
		ClientID:   s(""), UsernameFlag: true, Username: s("u"), PasswordFlag: true, Password: s("p"),
	}}},
	{file: "v5/connack.hex", version: V5, pkt: Packet{Type: TypeConnack, Connack: Connack{Version: V5, Properties: Properties{
		Present: 1<<PropAssignedClientID | 1<<PropServerKeepAlive | 1<<PropReceiveMaximum | 1<<PropTopicAliasMaximum |
			1<<PropMaximumQoS | 1<<PropRetainAvailable | 1<<PropMaximumPacketSize | 1<<PropWildcardAvailable |
			1<<PropSubIDAvailable | 1<<PropSharedSubAvailable,
		AssignedClientID: s("auto"), ServerKeepAlive: 60, ReceiveMaximum: 10, TopicAliasMaximum: 5, MaximumQoS: 1,
		RetainAvailable: 1, MaximumPacketSize: 65536, WildcardAvailable: 1, SubIDAvailable: 1, SharedSubAvailable: 0,
	}}}},
	{file: "v5/connack_refused.hex", version: V5, pkt: Packet{Type: TypeConnack, Connack: Connack{Version: V5, Reason: NotAuthorized}}},
	{file: "v5/publish_qos0.hex", version: V5, pkt: Packet{Type: TypePublish, Publish: Publish{
		Version: V5, Topic: s("sensors/room1/temp"), Payload: s("21.5")}}},
	{file: "v5/publish_qos1_props.hex", version: V5, pkt: Packet{Type: TypePublish, Publish: Publish{
		Version: V5, QoS: 1, Topic: s("a/b"), PacketID: 10, Payload: s(`{"t":1}`),
		Properties: Properties{
			Present: 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType | 1<<PropResponseTopic |
				1<<PropCorrelationData | 1<<PropSubscriptionID | 1<<PropUserProperty,
			PayloadFormat: 1, MessageExpiry: 60, ContentType: s("application/json"), ResponseTopic: s("reply"),
			CorrelationData: []byte{0xAB, 0xCD}, SubscriptionIDs: []uint32{5},
			User: []UserProperty{{s("k"), s("v")}, {s("k"), s("w")}},
		}}}},
	{file: "v5/publish_qos2_alias.hex", version: V5, pkt: Packet{Type: TypePublish, Publish: Publish{
		Version: V5, Dup: true, QoS: 2, Retain: true, Topic: s(""), PacketID: 7, Payload: s("x"),
		Properties: Properties{Present: 1 << PropTopicAlias, TopicAlias: 1}}}},
	{file: "v5/puback.hex", version: V5, pkt: Packet{Type: TypePuback, Ack: Ack{Type: TypePuback, Version: V5, PacketID: 1}}},
	{file: "v5/puback_reason.hex", version: V5, pkt: Packet{Type: TypePuback, Ack: Ack{Type: TypePuback, Version: V5, PacketID: 1, Reason: NoMatchingSubscribers}}},
	{file: "v5/puback_props.hex", version: V5, pkt: Packet{Type: TypePuback, Ack: Ack{Type: TypePuback, Version: V5, PacketID: 1, Reason: QuotaExceeded,
		Properties: Properties{Present: 1<<PropReasonString | 1<<PropUserProperty, ReasonString: s("quota"), User: []UserProperty{{s("a"), s("b")}}}}}},
	{file: "v5/puback_long_success.hex", version: V5, decodeOnly: true, pkt: Packet{Type: TypePuback, Ack: Ack{Type: TypePuback, Version: V5, PacketID: 1}}},
	{file: "v5/pubrec.hex", version: V5, pkt: Packet{Type: TypePubrec, Ack: Ack{Type: TypePubrec, Version: V5, PacketID: 2, Reason: UnspecifiedError}}},
	{file: "v5/pubrel.hex", version: V5, pkt: Packet{Type: TypePubrel, Ack: Ack{Type: TypePubrel, Version: V5, PacketID: 2}}},
	{file: "v5/pubcomp.hex", version: V5, pkt: Packet{Type: TypePubcomp, Ack: Ack{Type: TypePubcomp, Version: V5, PacketID: 2, Reason: PacketIdentifierNotFound}}},
	{file: "v5/subscribe.hex", version: V5, pkt: Packet{Type: TypeSubscribe, Subscribe: Subscribe{Version: V5, PacketID: 10,
		Properties: Properties{Present: 1 << PropSubscriptionID, SubscriptionIDs: []uint32{7}},
		Subscriptions: []Subscription{
			{Filter: s("sensors/+/temp"), QoS: 1, NoLocal: true},
			{Filter: s("a/#"), QoS: 2, RetainAsPublished: true, RetainHandling: 2},
			{Filter: s("$share/g/x")},
		}}}},
	{file: "v5/suback.hex", version: V5, pkt: Packet{Type: TypeSuback, Suback: Suback{Version: V5, PacketID: 10,
		Reasons: []ReasonCode{GrantedQoS1, GrantedQoS2, TopicFilterInvalid}}}},
	{file: "v5/unsubscribe.hex", version: V5, pkt: Packet{Type: TypeUnsubscribe, Unsubscribe: Unsubscribe{Version: V5, PacketID: 11,
		Properties: Properties{Present: 1 << PropUserProperty, User: []UserProperty{{s("k"), s("v")}}},
		Filters:    [][]byte{s("a/b"), s("c/+")}}}},
	{file: "v5/unsuback.hex", version: V5, pkt: Packet{Type: TypeUnsuback, Unsuback: Unsuback{Version: V5, PacketID: 11,
		Properties: Properties{Present: 1 << PropReasonString, ReasonString: s("ok")},
		Reasons:    []ReasonCode{Success, NoSubscriptionExisted}}}},
	{file: "v5/pingreq.hex", version: V5, pkt: Packet{Type: TypePingreq}},
	{file: "v5/pingresp.hex", version: V5, pkt: Packet{Type: TypePingresp}},
	{file: "v5/disconnect.hex", version: V5, pkt: Packet{Type: TypeDisconnect, Disconnect: Disconnect{Version: V5}}},
	{file: "v5/disconnect_reason.hex", version: V5, pkt: Packet{Type: TypeDisconnect, Disconnect: Disconnect{Version: V5, Reason: SessionTakenOver}}},
	{file: "v5/disconnect_props.hex", version: V5, pkt: Packet{Type: TypeDisconnect, Disconnect: Disconnect{Version: V5, Reason: DisconnectWithWill,
		Properties: Properties{Present: 1<<PropSessionExpiry | 1<<PropReasonString, ReasonString: s("bye")}}}},
	{file: "v5/auth.hex", version: V5, pkt: Packet{Type: TypeAuth, Auth: Auth{Reason: ContinueAuthentication,
		Properties: Properties{Present: 1<<PropAuthMethod | 1<<PropAuthData, AuthMethod: s("SCRAM"), AuthData: []byte{1, 2, 3}}}}},
	{file: "v5/auth_empty.hex", version: V5, pkt: Packet{Type: TypeAuth}},

	// MQTT 3.1.1
	{file: "v311/connect_spec_example.hex", version: V311, pkt: Packet{Type: TypeConnect, Connect: Connect{
		ProtocolName: s("MQTT"), Version: V311, CleanStart: true, KeepAlive: 10, ClientID: s("abc"),
		WillFlag: true, WillQoS: 1, WillTopic: s("w/t"), WillPayload: s("bye"),
		UsernameFlag: true, Username: s("user"), PasswordFlag: true, Password: s("pass"),
	}}},
	{file: "v311/connack.hex", version: V311, pkt: Packet{Type: TypeConnack, Connack: Connack{Version: V311, SessionPresent: true}}},
	{file: "v311/connack_refused.hex", version: V311, pkt: Packet{Type: TypeConnack, Connack: Connack{Version: V311, Reason: NotAuthorized}}},
	{file: "v311/publish_qos0.hex", version: V311, pkt: Packet{Type: TypePublish, Publish: Publish{
		Version: V311, Topic: s("sensors/room1/temp"), Payload: s("21.5")}}},
	{file: "v311/publish_qos1_spec_example.hex", version: V311, pkt: Packet{Type: TypePublish, Publish: Publish{
		Version: V311, QoS: 1, Retain: true, Topic: s("a/b"), PacketID: 10, Payload: s("hi")}}},
	{file: "v311/puback.hex", version: V311, pkt: Packet{Type: TypePuback, Ack: Ack{Type: TypePuback, Version: V311, PacketID: 10}}},
	{file: "v311/pubrec.hex", version: V311, pkt: Packet{Type: TypePubrec, Ack: Ack{Type: TypePubrec, Version: V311, PacketID: 10}}},
	{file: "v311/pubrel.hex", version: V311, pkt: Packet{Type: TypePubrel, Ack: Ack{Type: TypePubrel, Version: V311, PacketID: 10}}},
	{file: "v311/pubcomp.hex", version: V311, pkt: Packet{Type: TypePubcomp, Ack: Ack{Type: TypePubcomp, Version: V311, PacketID: 10}}},
	{file: "v311/subscribe_spec_example.hex", version: V311, pkt: Packet{Type: TypeSubscribe, Subscribe: Subscribe{Version: V311, PacketID: 10,
		Subscriptions: []Subscription{{Filter: s("a/b"), QoS: 1}, {Filter: s("c/d"), QoS: 2}}}}},
	{file: "v311/suback_spec_example.hex", version: V311, pkt: Packet{Type: TypeSuback, Suback: Suback{Version: V311, PacketID: 10,
		Reasons: []ReasonCode{GrantedQoS0, GrantedQoS2, UnspecifiedError}}}},
	{file: "v311/unsubscribe_spec_example.hex", version: V311, pkt: Packet{Type: TypeUnsubscribe, Unsubscribe: Unsubscribe{Version: V311, PacketID: 11,
		Filters: [][]byte{s("a/b"), s("c/d")}}}},
	{file: "v311/unsuback.hex", version: V311, pkt: Packet{Type: TypeUnsuback, Unsuback: Unsuback{Version: V311, PacketID: 11}}},
	{file: "v311/pingreq.hex", version: V311, pkt: Packet{Type: TypePingreq}},
	{file: "v311/pingresp.hex", version: V311, pkt: Packet{Type: TypePingresp}},
	{file: "v311/disconnect.hex", version: V311, pkt: Packet{Type: TypeDisconnect, Disconnect: Disconnect{Version: V311}}},

	// MQTT 3.1
	{file: "v31/connect.hex", version: V31, pkt: Packet{Type: TypeConnect, Connect: Connect{
		ProtocolName: s("MQIsdp"), Version: V31, CleanStart: true, KeepAlive: 60, ClientID: s("mqtt3")}}},
	{file: "v31/connack.hex", version: V31, pkt: Packet{Type: TypeConnack, Connack: Connack{Version: V31, Reason: ClientIdentifierNotValid}}},
	{file: "v31/publish_qos1.hex", version: V31, pkt: Packet{Type: TypePublish, Publish: Publish{
		Version: V31, QoS: 1, Topic: s("a/b"), PacketID: 1, Payload: s("x")}}},
	{file: "v31/puback.hex", version: V31, pkt: Packet{Type: TypePuback, Ack: Ack{Type: TypePuback, Version: V31, PacketID: 1}}},
	{file: "v31/pubrel.hex", version: V31, pkt: Packet{Type: TypePubrel, Ack: Ack{Type: TypePubrel, Version: V31, PacketID: 1}}},
	{file: "v31/subscribe.hex", version: V31, pkt: Packet{Type: TypeSubscribe, Subscribe: Subscribe{Version: V31, PacketID: 2,
		Subscriptions: []Subscription{{Filter: s("a/+")}}}}},
	{file: "v31/suback.hex", version: V31, pkt: Packet{Type: TypeSuback, Suback: Suback{Version: V31, PacketID: 2, Reasons: []ReasonCode{GrantedQoS0}}}},
	{file: "v31/unsubscribe.hex", version: V31, pkt: Packet{Type: TypeUnsubscribe, Unsubscribe: Unsubscribe{Version: V31, PacketID: 3, Filters: [][]byte{s("a/+")}}}},
	{file: "v31/unsuback.hex", version: V31, pkt: Packet{Type: TypeUnsuback, Unsuback: Unsuback{Version: V31, PacketID: 3}}},
	{file: "v31/disconnect.hex", version: V31, pkt: Packet{Type: TypeDisconnect, Disconnect: Disconnect{Version: V31}}},
}

func TestGoldenDecode(t *testing.T) {
	for _, g := range goldenPackets {
		t.Run(g.file, func(t *testing.T) {
			wire := loadHex(t, g.file)
			fh, body := splitPacket(t, g.version, wire)
			var got Packet
			if err := got.Decode(g.version, fh, body); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equalLoose(got, g.pkt) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, g.pkt)
			}
			// Decoding again into the same struct (reuse) gives the same result.
			if err := got.Decode(g.version, fh, body); err != nil || !equalLoose(got, g.pkt) {
				t.Fatalf("second decode into a reused struct differs: %v", err)
			}
		})
	}
}

func TestGoldenEncode(t *testing.T) {
	for _, g := range goldenPackets {
		if g.decodeOnly {
			continue
		}
		t.Run(g.file, func(t *testing.T) {
			want := loadHex(t, g.file)
			prefix := []byte{0xEE}
			got := g.pkt.Append(prefix)
			if !bytes.Equal(got[1:], want) || got[0] != 0xEE {
				t.Fatalf("encoded\n% X\nwant\n% X", got[1:], want)
			}
		})
	}
}
