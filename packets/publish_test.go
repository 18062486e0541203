package packets

import (
	"bytes"
	"testing"
)

// referencePublish encodes p with the general property path (Len and
// appendProperties), which the golden vectors pin; Publish.Append's
// straight-line path must write the same bytes.
func referencePublish(p *Publish) []byte {
	flags := p.QoS&3<<publishQoSShift | boolBit(p.Dup, publishDup) | boolBit(p.Retain, publishRetain)
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	propLen := 0
	if p.Version == V5 {
		propLen = p.Properties.Len()
		n += varintLen(propLen) + propLen
	}
	dst := AppendVarint([]byte{byte(TypePublish)<<4 | flags}, n)
	dst = appendBytes(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if p.Version == V5 {
		dst = p.Properties.appendProperties(dst, propLen)
	}
	return append(dst, p.Payload...)
}

func boolBit(b bool, v byte) byte {
	if b {
		return v
	}
	return 0
}

// TestPublishAppendMatchesGeneralPath writes every subset of the PUBLISH
// properties, and sets with a property no PUBLISH carries (the fallback),
// through both paths: with long values (blocks of 128 bytes and more, which
// Append must size first) and short ones, and with payloads that put the
// remaining length on both sides of 128 and 16384, where its varint grows.
func TestPublishAppendMatchesGeneralPath(t *testing.T) {
	long := Properties{
		PayloadFormat: 1, MessageExpiry: 0x01020304, ContentType: s("application/json"),
		ResponseTopic: s("replies/room1"), CorrelationData: bytes.Repeat([]byte{0xAB}, 300),
		SubscriptionIDs: []uint32{1, 200, 70000, MaxRemaining}, TopicAlias: 0x0102,
		User: []UserProperty{{s("origin"), s("gateway-7")}, {s(""), s("")}, {s("k"), bytes.Repeat([]byte{'v'}, 200)}},
	}
	short := Properties{
		PayloadFormat: 1, MessageExpiry: 0x01020304, ContentType: s("text/plain"),
		ResponseTopic: s("r/1"), CorrelationData: s("req-0001"),
		SubscriptionIDs: []uint32{1, 200}, TopicAlias: 0x0102,
		User: []UserProperty{{s("origin"), s("gateway-7")}, {s("trace"), s("a1b2c3d4e5f6a7b8c9")}},
	}
	for _, full := range []Properties{long, short} {
		for _, size := range []int{7, 60, 80, 100, 110, 120, 16290, 16330, 16370} {
			checkPublishPaths(t, full, bytes.Repeat([]byte{'p'}, size))
		}
	}
}

func checkPublishPaths(t *testing.T, full Properties, payload []byte) {
	t.Helper()
	ids := []PropertyID{PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
		PropCorrelationData, PropSubscriptionID, PropTopicAlias, PropUserProperty}
	for subset := range 1 << len(ids) {
		for _, extra := range []uint64{0, bit(PropReasonString), bit(PropSessionExpiry) | bit(PropAuthMethod)} {
			props := full
			props.Present = extra
			props.ReasonString, props.SessionExpiry, props.AuthMethod = s("why"), 60, s("m")
			if subset&(1<<5) == 0 {
				props.SubscriptionIDs = nil
			}
			if subset&(1<<7) == 0 {
				props.User = nil
			}
			for k, id := range ids {
				if subset&(1<<k) != 0 {
					props.Set(id)
				}
			}
			for _, qos := range []byte{0, 1, 2} {
				for _, version := range []byte{V311, V5} {
					p := &Publish{Version: version, QoS: qos, PacketID: 0x1234, Dup: qos > 0, Retain: true,
						Topic: s("a/b"), Properties: props, Payload: payload}
					want := referencePublish(p)
					prefix := s("kept")
					got := p.Append(prefix)
					if !bytes.Equal(got[:4], s("kept")) || !bytes.Equal(got[4:], want) {
						t.Fatalf("subset %08b extra %x QoS %d version %d payload %d:\n got % x\nwant % x",
							subset, extra, qos, version, len(payload), got[4:], want)
					}
				}
			}
		}
	}
}
