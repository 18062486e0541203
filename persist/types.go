package persist

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/x0a1b/promptmq/packets"
)

// Message is one stored PUBLISH: a retained message, a will, or the body that queued deliveries
// reference. Times are unix nanoseconds.
type Message struct {
	// ID is the broker-assigned identifier (from Store.NextMessageID); unused for retained
	// messages and wills, which are keyed by topic and client.
	ID      uint64
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Properties are the forwardable properties in the blob AppendProperties makes.
	Properties []byte
	// Expires is when the message expires; 0 means never.
	Expires int64
	// Created is when the broker accepted the message; the cleanup loop ages messages by it.
	// A queued message written with 0 gets the time the writer's transaction storing it began.
	Created int64
}

// Will is a session's Will Message and its delay.
type Will struct {
	Message Message
	// Delay is the Will Delay Interval in seconds.
	Delay uint32
}

// NeverExpires is the Session Expiry Interval of a session that never ends [MQTT-3.1.2-11].
const NeverExpires = 0xFFFFFFFF

// Session is a session that outlives its connection (expiry interval > 0).
type Session struct {
	ClientID string
	// Expiry is the Session Expiry Interval in seconds; NeverExpires for never.
	Expiry uint32
	// ExpiresAt is the unix-nanosecond instant the session ends. 0 while its client is connected
	// (the clock does not run); recovery then treats the session as disconnected at start-up.
	ExpiresAt int64
	Will      *Will
}

// Subscription is one filter of a durable session, with its options [MQTT-3.8.3.1].
type Subscription struct {
	ClientID          string
	Filter            string // as sent, including any $share/ prefix
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32 // Subscription Identifier; 0 for none
}

// DeliveryState is where an outbound QoS 1/2 message stands in the protocol.
type DeliveryState byte

const (
	// Queued: not sent yet, no packet id.
	Queued DeliveryState = iota
	// Sent: PUBLISH sent with PacketID, PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
	Sent
	// Released: QoS 2 PUBREC received and PUBREL owed or sent, PUBCOMP awaited [MQTT-4.3.3].
	Released
)

// Delivery is one outbound message for one durable session: a row referencing a stored Message,
// so fan-out to N sessions stores the body once.
type Delivery struct {
	ClientID  string
	MessageID uint64
	QoS       byte // granted QoS of this delivery (the lower of the message's and the subscription's)
	PacketID  uint16
	State     DeliveryState
	// SubIDs are the Subscription Identifiers the PUBLISH carries to this client [MQTT-3.3.4-3].
	SubIDs []uint32
	// Retain is the retain flag as sent to this client (Retain As Published) [MQTT-3.3.1-12].
	Retain bool
}

// InboundQoS2 is the packet id of a QoS 2 PUBLISH received from a client and acknowledged with
// PUBREC, remembered until its PUBREL so a resent PUBLISH is not delivered twice [MQTT-4.3.3-9].
type InboundQoS2 struct {
	ClientID string
	PacketID uint16
}

// ErrCorruptProperties is returned by DecodeProperties for a blob it did not write.
var ErrCorruptProperties = errors.New("persist: corrupt properties blob")

// AppendProperties appends to dst the forwardable properties of p (Payload Format Indicator,
// Content Type, Response Topic, Correlation Data, User Properties [MQTT-3.3.2-17]) in the MQTT 5.0
// property wire encoding, without the leading length. Other properties are ignored: expiry is
// stored as Message.Expires, subscription identifiers per delivery, aliases never.
func AppendProperties(dst []byte, p *packets.Properties) []byte {
	if p.Has(packets.PropPayloadFormat) {
		dst = append(dst, byte(packets.PropPayloadFormat), p.PayloadFormat)
	}
	if p.Has(packets.PropContentType) {
		dst = appendField(append(dst, byte(packets.PropContentType)), p.ContentType)
	}
	if p.Has(packets.PropResponseTopic) {
		dst = appendField(append(dst, byte(packets.PropResponseTopic)), p.ResponseTopic)
	}
	if p.Has(packets.PropCorrelationData) {
		dst = appendField(append(dst, byte(packets.PropCorrelationData)), p.CorrelationData)
	}
	for _, u := range p.User {
		dst = appendField(appendField(append(dst, byte(packets.PropUserProperty)), u.Key), u.Value)
	}
	return dst
}

func appendField(dst, b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(dst, uint16(len(b))), b...)
}

// DecodeProperties fills p from a blob made by AppendProperties. Byte fields alias b; User
// Properties are appended to p.User.
func DecodeProperties(b []byte, p *packets.Properties) error {
	for i := 0; i < len(b); {
		id := packets.PropertyID(b[i])
		i++
		switch id {
		case packets.PropPayloadFormat:
			if i >= len(b) {
				return ErrCorruptProperties
			}
			p.Set(id)
			p.PayloadFormat = b[i]
			i++
		case packets.PropContentType, packets.PropResponseTopic, packets.PropCorrelationData:
			v, next, err := readField(b, i)
			if err != nil {
				return err
			}
			p.Set(id)
			switch id {
			case packets.PropContentType:
				p.ContentType = v
			case packets.PropResponseTopic:
				p.ResponseTopic = v
			default:
				p.CorrelationData = v
			}
			i = next
		case packets.PropUserProperty:
			k, next, err := readField(b, i)
			if err != nil {
				return err
			}
			v, next, err := readField(b, next)
			if err != nil {
				return err
			}
			p.Set(id)
			p.User = append(p.User, packets.UserProperty{Key: k, Value: v})
			i = next
		default:
			return fmt.Errorf("%w: property 0x%02x at byte %d", ErrCorruptProperties, byte(id), i-1)
		}
	}
	return nil
}

func readField(b []byte, i int) ([]byte, int, error) {
	if len(b)-i < 2 {
		return nil, 0, ErrCorruptProperties
	}
	n := int(binary.BigEndian.Uint16(b[i:]))
	i += 2
	if len(b)-i < n {
		return nil, 0, ErrCorruptProperties
	}
	return b[i : i+n : i+n], i + n, nil
}

// appendSubIDs encodes subscription identifiers as variable byte integers [MQTT-1.5.5].
func appendSubIDs(dst []byte, ids []uint32) []byte {
	for _, id := range ids {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	return dst
}

func decodeSubIDs(b []byte) ([]uint32, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var ids []uint32
	for len(b) > 0 {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 0xFFFFFFFF {
			return nil, errors.New("persist: corrupt subscription identifiers")
		}
		ids = append(ids, uint32(v))
		b = b[n:]
	}
	return ids, nil
}
