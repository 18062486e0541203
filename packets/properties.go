package packets

import (
	"encoding/binary"
	"math/bits"
	"strconv"
)

// PropertyID identifies an MQTT 5.0 property [MQTT-2.2.2.2].
type PropertyID byte

// Every MQTT 5.0 property identifier.
const (
	PropPayloadFormat       PropertyID = 0x01
	PropMessageExpiry       PropertyID = 0x02
	PropContentType         PropertyID = 0x03
	PropResponseTopic       PropertyID = 0x08
	PropCorrelationData     PropertyID = 0x09
	PropSubscriptionID      PropertyID = 0x0B
	PropSessionExpiry       PropertyID = 0x11
	PropAssignedClientID    PropertyID = 0x12
	PropServerKeepAlive     PropertyID = 0x13
	PropAuthMethod          PropertyID = 0x15
	PropAuthData            PropertyID = 0x16
	PropRequestProblemInfo  PropertyID = 0x17
	PropWillDelay           PropertyID = 0x18
	PropRequestResponseInfo PropertyID = 0x19
	PropResponseInfo        PropertyID = 0x1A
	PropServerReference     PropertyID = 0x1C
	PropReasonString        PropertyID = 0x1F
	PropReceiveMaximum      PropertyID = 0x21
	PropTopicAliasMaximum   PropertyID = 0x22
	PropTopicAlias          PropertyID = 0x23
	PropMaximumQoS          PropertyID = 0x24
	PropRetainAvailable     PropertyID = 0x25
	PropUserProperty        PropertyID = 0x26
	PropMaximumPacketSize   PropertyID = 0x27
	PropWildcardAvailable   PropertyID = 0x28
	PropSubIDAvailable      PropertyID = 0x29
	PropSharedSubAvailable  PropertyID = 0x2A
)

func (id PropertyID) String() string {
	switch id {
	case PropPayloadFormat:
		return "Payload Format Indicator"
	case PropMessageExpiry:
		return "Message Expiry Interval"
	case PropContentType:
		return "Content Type"
	case PropResponseTopic:
		return "Response Topic"
	case PropCorrelationData:
		return "Correlation Data"
	case PropSubscriptionID:
		return "Subscription Identifier"
	case PropSessionExpiry:
		return "Session Expiry Interval"
	case PropAssignedClientID:
		return "Assigned Client Identifier"
	case PropServerKeepAlive:
		return "Server Keep Alive"
	case PropAuthMethod:
		return "Authentication Method"
	case PropAuthData:
		return "Authentication Data"
	case PropRequestProblemInfo:
		return "Request Problem Information"
	case PropWillDelay:
		return "Will Delay Interval"
	case PropRequestResponseInfo:
		return "Request Response Information"
	case PropResponseInfo:
		return "Response Information"
	case PropServerReference:
		return "Server Reference"
	case PropReasonString:
		return "Reason String"
	case PropReceiveMaximum:
		return "Receive Maximum"
	case PropTopicAliasMaximum:
		return "Topic Alias Maximum"
	case PropTopicAlias:
		return "Topic Alias"
	case PropMaximumQoS:
		return "Maximum QoS"
	case PropRetainAvailable:
		return "Retain Available"
	case PropUserProperty:
		return "User Property"
	case PropMaximumPacketSize:
		return "Maximum Packet Size"
	case PropWildcardAvailable:
		return "Wildcard Subscription Available"
	case PropSubIDAvailable:
		return "Subscription Identifier Available"
	case PropSharedSubAvailable:
		return "Shared Subscription Available"
	}
	return "PropertyID(0x" + strconv.FormatUint(uint64(id), 16) + ")"
}

// UserProperty is one User Property name/value pair [MQTT-3.3.2.3.7].
type UserProperty struct {
	Key, Value []byte
}

// Properties holds the properties of one 5.0 packet (or of a CONNECT's will).
//
// Invariants: a field is meaningful only when its bit (1<<id) is set in
// Present; decoding sets a field only together with its bit, and Reset
// zeroes the fields only when some bit was set, so a packet without
// properties (the common QoS 0 PUBLISH) costs no clearing at all.
// SubscriptionIDs and User are written when non-empty (decode also sets
// their bits). Byte fields alias the decoded input.
//
// Design: one flat struct with a presence bitmap, dispatched by a switch on
// the identifier. Rejected: a map or a slice of (id, value) pairs, which
// allocate, hide the types and make every lookup a search.
type Properties struct {
	Present uint64

	PayloadFormat   byte
	MessageExpiry   uint32
	ContentType     []byte
	ResponseTopic   []byte
	CorrelationData []byte
	SubscriptionIDs []uint32 // reused; PUBLISH may carry several, SUBSCRIBE one

	SessionExpiry    uint32
	AssignedClientID []byte
	ServerKeepAlive  uint16
	AuthMethod       []byte
	AuthData         []byte

	RequestProblemInfo  byte
	RequestResponseInfo byte
	WillDelay           uint32
	ResponseInfo        []byte
	ServerReference     []byte
	ReasonString        []byte

	ReceiveMaximum    uint16
	TopicAliasMaximum uint16
	TopicAlias        uint16
	MaximumQoS        byte
	RetainAvailable   byte
	MaximumPacketSize uint32

	WildcardAvailable  byte
	SubIDAvailable     byte
	SharedSubAvailable byte

	User []UserProperty // reused, in wire order
}

// Has reports whether property id is present.
func (p *Properties) Has(id PropertyID) bool { return p.Present&(1<<(id&63)) != 0 }

// Set marks property id present; the caller fills its field.
func (p *Properties) Set(id PropertyID) { p.Present |= 1 << (id & 63) }

// Reset clears every property, keeping the capacity of the reused slices.
func (p *Properties) Reset() {
	// Stores are skipped when nothing changes: a slice header store costs a
	// write barrier check, measurable on the QoS 0 PUBLISH path.
	if p.Present != 0 {
		if bits.OnesCount64(p.Present) <= fewProperties {
			p.clearPresent()
		} else {
			subs, user := p.SubscriptionIDs[:0], p.User[:0]
			*p = Properties{}
			p.SubscriptionIDs, p.User = subs, user
		}
		return
	}
	if len(p.SubscriptionIDs) != 0 {
		p.SubscriptionIDs = p.SubscriptionIDs[:0]
	}
	if len(p.User) != 0 {
		p.User = p.User[:0]
	}
}

// fewProperties is the count up to which Reset zeroes field by field
// rather than the whole struct (about 370 bytes): a SUBSCRIBE's lone
// Subscription Identifier should not pay for clearing thirty fields.
const fewProperties = 3

// clearPresent zeroes the fields whose bits are set, and the bits.
func (p *Properties) clearPresent() {
	for m := p.Present; m != 0; m &= m - 1 {
		switch PropertyID(bits.TrailingZeros64(m)) {
		case PropPayloadFormat:
			p.PayloadFormat = 0
		case PropMessageExpiry:
			p.MessageExpiry = 0
		case PropContentType:
			p.ContentType = nil
		case PropResponseTopic:
			p.ResponseTopic = nil
		case PropCorrelationData:
			p.CorrelationData = nil
		case PropSubscriptionID:
			p.SubscriptionIDs = p.SubscriptionIDs[:0]
		case PropSessionExpiry:
			p.SessionExpiry = 0
		case PropAssignedClientID:
			p.AssignedClientID = nil
		case PropServerKeepAlive:
			p.ServerKeepAlive = 0
		case PropAuthMethod:
			p.AuthMethod = nil
		case PropAuthData:
			p.AuthData = nil
		case PropRequestProblemInfo:
			p.RequestProblemInfo = 0
		case PropWillDelay:
			p.WillDelay = 0
		case PropRequestResponseInfo:
			p.RequestResponseInfo = 0
		case PropResponseInfo:
			p.ResponseInfo = nil
		case PropServerReference:
			p.ServerReference = nil
		case PropReasonString:
			p.ReasonString = nil
		case PropReceiveMaximum:
			p.ReceiveMaximum = 0
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum = 0
		case PropTopicAlias:
			p.TopicAlias = 0
		case PropMaximumQoS:
			p.MaximumQoS = 0
		case PropRetainAvailable:
			p.RetainAvailable = 0
		case PropUserProperty:
			p.User = p.User[:0]
		case PropMaximumPacketSize:
			p.MaximumPacketSize = 0
		case PropWildcardAvailable:
			p.WildcardAvailable = 0
		case PropSubIDAvailable:
			p.SubIDAvailable = 0
		case PropSharedSubAvailable:
			p.SharedSubAvailable = 0
		}
	}
	p.Present = 0
	// Set by a caller without its bit: still emptied, as Reset promises.
	p.SubscriptionIDs, p.User = p.SubscriptionIDs[:0], p.User[:0]
}

func bit(id PropertyID) uint64 { return 1 << id }

// Which properties each packet may carry [MQTT-2.2.2.2]. multiSubID is not a
// property: it marks the one packet (PUBLISH) where the Subscription
// Identifier may repeat.
const (
	multiSubID uint64 = 1 << 63

	connectProps uint64 = 1<<PropSessionExpiry | 1<<PropAuthMethod | 1<<PropAuthData |
		1<<PropRequestProblemInfo | 1<<PropRequestResponseInfo | 1<<PropReceiveMaximum |
		1<<PropTopicAliasMaximum | 1<<PropUserProperty | 1<<PropMaximumPacketSize
	willProps = 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType |
		1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropWillDelay | 1<<PropUserProperty
	connackProps = 1<<PropSessionExpiry | 1<<PropAssignedClientID | 1<<PropServerKeepAlive |
		1<<PropAuthMethod | 1<<PropAuthData | 1<<PropResponseInfo | 1<<PropServerReference |
		1<<PropReasonString | 1<<PropReceiveMaximum | 1<<PropTopicAliasMaximum |
		1<<PropMaximumQoS | 1<<PropRetainAvailable | 1<<PropUserProperty |
		1<<PropMaximumPacketSize | 1<<PropWildcardAvailable | 1<<PropSubIDAvailable |
		1<<PropSharedSubAvailable
	publishProps = 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType |
		1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropSubscriptionID |
		1<<PropTopicAlias | 1<<PropUserProperty | multiSubID
	ackProps         = 1<<PropReasonString | 1<<PropUserProperty // PUBACK..PUBCOMP, SUBACK, UNSUBACK
	subscribeProps   = 1<<PropSubscriptionID | 1<<PropUserProperty
	unsubscribeProps = 1 << PropUserProperty
	disconnectProps  = 1<<PropSessionExpiry | 1<<PropServerReference | 1<<PropReasonString |
		1<<PropUserProperty
	authProps = 1<<PropAuthMethod | 1<<PropAuthData | 1<<PropReasonString | 1<<PropUserProperty
)

// readProperties decodes the property length and block at b[i:] into p
// (after resetting it) and returns the index after the block. allowed is one
// of the *Props masks above; what names the packet for error messages.
func readProperties(p *Properties, b []byte, i int, allowed uint64, what string) (int, error) {
	var n int
	if i >= 0 && i < len(b) && b[i] < 0x80 {
		// A block under 128 bytes, nearly every one: its length is one
		// byte, read here without the call.
		n, i = int(b[i]), i+1
	} else {
		var err error
		if n, i, err = readVarint(b, i, true, "property length"); err != nil {
			return i, inPacket(err, what)
		}
	}
	if n > len(b)-i {
		return i, malformed("%s: property length %d exceeds the %d bytes left", what, n, len(b)-i)
	}
	p.Reset()
	if n == 0 {
		return i, nil
	}
	return i + n, p.decode(b[i:i+n], allowed, what)
}

// decode parses a property block (without its length prefix). One flat
// switch on the identifier, each case reading its own value: the property
// loop is the costliest part of a 5.0 decode, and a second-level dispatch
// by value type measured slower.
func (p *Properties) decode(b []byte, allowed uint64, what string) error {
	var ok bool
	var err error
	for i := 0; i < len(b); {
		// The identifier is a variable byte integer, but every 5.0 identifier
		// fits one byte, so a byte >= 0x80 is an unknown identifier.
		id := PropertyID(b[i])
		i++
		if id >= 63 || allowed&bit(id) == 0 {
			// [MQTT-2.2.2.2]: an identifier not valid for the packet type is malformed.
			return malformed("%s: property 0x%02X not allowed", what, byte(id))
		}
		if p.Present&bit(id) != 0 && id != PropUserProperty &&
			(id != PropSubscriptionID || allowed&multiSubID == 0) {
			return protocolErr("%s: %s included more than once", what, id)
		}
		p.Present |= bit(id)
		switch id {
		case PropPayloadFormat:
			p.PayloadFormat, i, err = readFlag(b, i, what, id)
		case PropRequestProblemInfo:
			p.RequestProblemInfo, i, err = readFlag(b, i, what, id)
		case PropRequestResponseInfo:
			p.RequestResponseInfo, i, err = readFlag(b, i, what, id)
		case PropMaximumQoS:
			p.MaximumQoS, i, err = readFlag(b, i, what, id)
		case PropRetainAvailable:
			p.RetainAvailable, i, err = readFlag(b, i, what, id)
		case PropWildcardAvailable:
			p.WildcardAvailable, i, err = readFlag(b, i, what, id)
		case PropSubIDAvailable:
			p.SubIDAvailable, i, err = readFlag(b, i, what, id)
		case PropSharedSubAvailable:
			p.SharedSubAvailable, i, err = readFlag(b, i, what, id)
		case PropMessageExpiry:
			p.MessageExpiry, i, ok = readUint32(b, i)
		case PropSessionExpiry:
			p.SessionExpiry, i, ok = readUint32(b, i)
		case PropWillDelay:
			p.WillDelay, i, ok = readUint32(b, i)
		case PropMaximumPacketSize:
			if p.MaximumPacketSize, i, ok = readUint32(b, i); ok && p.MaximumPacketSize == 0 {
				return protocolErr("%s: Maximum Packet Size of 0", what) // 3.1.2.11.4, 3.2.2.3.6
			}
		case PropServerKeepAlive:
			p.ServerKeepAlive, i, ok = readUint16(b, i)
		case PropReceiveMaximum:
			if p.ReceiveMaximum, i, ok = readUint16(b, i); ok && p.ReceiveMaximum == 0 {
				return protocolErr("%s: Receive Maximum of 0", what) // 3.1.2.11.3, 3.2.2.3.3
			}
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum, i, ok = readUint16(b, i)
		case PropTopicAlias:
			if p.TopicAlias, i, ok = readUint16(b, i); ok && p.TopicAlias == 0 {
				return Errorf(TopicAliasInvalid, "%s: Topic Alias of 0", what) // [MQTT-3.3.2-8]
			}
		case PropContentType:
			if p.ContentType, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "value"), what, id)
			}
		case PropResponseTopic:
			if p.ResponseTopic, i, ok = readBinary(b, i); ok {
				switch topicNameCheck(p.ResponseTopic) {
				case MalformedPacket:
					return badUTF8(what + " Response Topic")
				case TopicNameInvalid:
					// [MQTT-3.3.2-14]: a Topic Name, so no wildcards.
					return protocolErr("%s: Response Topic %q has a wildcard", what, p.ResponseTopic)
				}
				if len(p.ResponseTopic) == 0 {
					return protocolErr("%s: empty Response Topic", what)
				}
			}
		case PropAssignedClientID:
			if p.AssignedClientID, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "value"), what, id)
			}
		case PropAuthMethod:
			if p.AuthMethod, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "value"), what, id)
			}
		case PropResponseInfo:
			if p.ResponseInfo, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "value"), what, id)
			}
		case PropServerReference:
			if p.ServerReference, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "value"), what, id)
			}
		case PropReasonString:
			if p.ReasonString, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "value"), what, id)
			}
		case PropCorrelationData:
			p.CorrelationData, i, ok = readBinary(b, i)
		case PropAuthData:
			p.AuthData, i, ok = readBinary(b, i)
		case PropSubscriptionID:
			var v int
			if i < len(b) && b[i] < 0x80 {
				v, i = int(b[i]), i+1 // one byte: identifiers 1..127, the common case
			} else {
				v, i, err = readVarint(b, i, true, "value")
			}
			if err == nil {
				if v == 0 {
					return protocolErr("%s: Subscription Identifier of 0", what) // 3.3.2.3.8, 3.8.2.1.2
				}
				p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
			}
		case PropUserProperty:
			var k, v []byte
			if k, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "name"), what, id)
			}
			if v, i, ok = readString(b, i); !ok {
				return inProperty(stringErr(b, i, "value"), what, id)
			}
			p.User = append(p.User, UserProperty{Key: k, Value: v})
		default:
			return malformed("%s: property 0x%02X not allowed", what, byte(id)) // unreachable: masks
		}
		if err != nil {
			return inProperty(err, what, id)
		}
		if !ok {
			switch id {
			case PropMessageExpiry, PropSessionExpiry, PropWillDelay, PropMaximumPacketSize,
				PropServerKeepAlive, PropReceiveMaximum, PropTopicAliasMaximum, PropTopicAlias,
				PropResponseTopic, PropCorrelationData, PropAuthData:
				return malformed("%s: %s truncated", what, id)
			}
		}
		ok = false
	}
	if p.Present&bit(PropAuthData) != 0 && p.Present&bit(PropAuthMethod) == 0 {
		return protocolErr("%s: Authentication Data without Authentication Method", what) // 3.1.2.11.10
	}
	return nil
}

// readFlag reads a one-byte property whose only values are 0 and 1; any
// other value is a protocol error (3.1.2.11.6-7, 3.2.2.3.4-5, 3.2.2.3.11-13, 3.3.2.3.2).
func readFlag(b []byte, i int, what string, id PropertyID) (byte, int, error) {
	if i >= len(b) {
		return 0, i, malformed("%s: %s truncated", what, id)
	}
	if v := b[i]; v <= 1 {
		return v, i + 1, nil
	}
	return 0, i, protocolErr("%s: %s has value %d, want 0 or 1", what, id, b[i])
}

func readUint16(b []byte, i int) (uint16, int, bool) {
	if i < 0 || len(b)-i < 2 {
		return 0, i, false
	}
	return binary.BigEndian.Uint16(b[i:]), i + 2, true
}

func readUint32(b []byte, i int) (uint32, int, bool) {
	if i < 0 || len(b)-i < 4 {
		return 0, i, false
	}
	return binary.BigEndian.Uint32(b[i:]), i + 4, true
}

// inPacket and inProperty add context to an error of a low-level reader.
// Context is added only on the error path: building it eagerly (string
// concatenation per field) would allocate on every decode.
func inPacket(err error, what string) error {
	e := err.(*Error)
	return Errorf(e.Code, "%s %s", what, e.Msg)
}

func inProperty(err error, what string, id PropertyID) error {
	e := err.(*Error)
	return Errorf(e.Code, "%s %s %s", what, id, e.Msg)
}

// wireBits is the set of properties Append writes.
func (p *Properties) wireBits() uint64 {
	m := p.Present &^ (bit(PropSubscriptionID) | bit(PropUserProperty))
	if len(p.SubscriptionIDs) > 0 {
		m |= bit(PropSubscriptionID)
	}
	if len(p.User) > 0 {
		m |= bit(PropUserProperty)
	}
	return m
}

// Len returns the encoded length of the property block, without its own
// length prefix.
func (p *Properties) Len() int {
	m := p.wireBits()
	n := 0
	for m != 0 {
		id := PropertyID(bits.TrailingZeros64(m))
		m &= m - 1
		switch id {
		case PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo, PropMaximumQoS,
			PropRetainAvailable, PropWildcardAvailable, PropSubIDAvailable, PropSharedSubAvailable:
			n += 2
		case PropMessageExpiry, PropSessionExpiry, PropWillDelay, PropMaximumPacketSize:
			n += 5
		case PropServerKeepAlive, PropReceiveMaximum, PropTopicAliasMaximum, PropTopicAlias:
			n += 3
		case PropContentType:
			n += 3 + len(p.ContentType)
		case PropResponseTopic:
			n += 3 + len(p.ResponseTopic)
		case PropCorrelationData:
			n += 3 + len(p.CorrelationData)
		case PropAssignedClientID:
			n += 3 + len(p.AssignedClientID)
		case PropAuthMethod:
			n += 3 + len(p.AuthMethod)
		case PropAuthData:
			n += 3 + len(p.AuthData)
		case PropResponseInfo:
			n += 3 + len(p.ResponseInfo)
		case PropServerReference:
			n += 3 + len(p.ServerReference)
		case PropReasonString:
			n += 3 + len(p.ReasonString)
		case PropSubscriptionID:
			for _, v := range p.SubscriptionIDs {
				n += 1 + varintLen(int(v))
			}
		case PropUserProperty:
			for _, u := range p.User {
				n += 5 + len(u.Key) + len(u.Value)
			}
		}
	}
	return n
}

// appendProperties appends the length prefix and the property block, in
// ascending identifier order (User Properties and Subscription Identifiers
// in slice order). n must be p.Len().
func (p *Properties) appendProperties(dst []byte, n int) []byte {
	dst = AppendVarint(dst, n)
	if n == 0 {
		return dst
	}
	m := p.wireBits()
	for m != 0 {
		id := PropertyID(bits.TrailingZeros64(m))
		m &= m - 1
		switch id {
		case PropPayloadFormat:
			dst = append(dst, byte(id), p.PayloadFormat)
		case PropRequestProblemInfo:
			dst = append(dst, byte(id), p.RequestProblemInfo)
		case PropRequestResponseInfo:
			dst = append(dst, byte(id), p.RequestResponseInfo)
		case PropMaximumQoS:
			dst = append(dst, byte(id), p.MaximumQoS)
		case PropRetainAvailable:
			dst = append(dst, byte(id), p.RetainAvailable)
		case PropWildcardAvailable:
			dst = append(dst, byte(id), p.WildcardAvailable)
		case PropSubIDAvailable:
			dst = append(dst, byte(id), p.SubIDAvailable)
		case PropSharedSubAvailable:
			dst = append(dst, byte(id), p.SharedSubAvailable)
		case PropMessageExpiry:
			dst = appendUint32(append(dst, byte(id)), p.MessageExpiry)
		case PropSessionExpiry:
			dst = appendUint32(append(dst, byte(id)), p.SessionExpiry)
		case PropWillDelay:
			dst = appendUint32(append(dst, byte(id)), p.WillDelay)
		case PropMaximumPacketSize:
			dst = appendUint32(append(dst, byte(id)), p.MaximumPacketSize)
		case PropServerKeepAlive:
			dst = appendUint16(append(dst, byte(id)), p.ServerKeepAlive)
		case PropReceiveMaximum:
			dst = appendUint16(append(dst, byte(id)), p.ReceiveMaximum)
		case PropTopicAliasMaximum:
			dst = appendUint16(append(dst, byte(id)), p.TopicAliasMaximum)
		case PropTopicAlias:
			dst = appendUint16(append(dst, byte(id)), p.TopicAlias)
		case PropContentType:
			dst = appendBytes(append(dst, byte(id)), p.ContentType)
		case PropResponseTopic:
			dst = appendBytes(append(dst, byte(id)), p.ResponseTopic)
		case PropCorrelationData:
			dst = appendBytes(append(dst, byte(id)), p.CorrelationData)
		case PropAssignedClientID:
			dst = appendBytes(append(dst, byte(id)), p.AssignedClientID)
		case PropAuthMethod:
			dst = appendBytes(append(dst, byte(id)), p.AuthMethod)
		case PropAuthData:
			dst = appendBytes(append(dst, byte(id)), p.AuthData)
		case PropResponseInfo:
			dst = appendBytes(append(dst, byte(id)), p.ResponseInfo)
		case PropServerReference:
			dst = appendBytes(append(dst, byte(id)), p.ServerReference)
		case PropReasonString:
			dst = appendBytes(append(dst, byte(id)), p.ReasonString)
		case PropSubscriptionID:
			for _, v := range p.SubscriptionIDs {
				dst = AppendVarint(append(dst, byte(id)), int(v))
			}
		case PropUserProperty:
			for _, u := range p.User {
				dst = appendBytes(appendBytes(append(dst, byte(id)), u.Key), u.Value)
			}
		}
	}
	return dst
}

// publishWireProps are the properties a PUBLISH may carry; for them
// publishLen and appendPublish run straight-line code, with no per-property
// dispatch, because a PUBLISH is encoded once per delivery.
const publishWireProps = publishProps &^ multiSubID

// publishLen is Len for a PUBLISH (m from wireBits); it falls back to Len
// when m holds a property a PUBLISH may not carry.
func (p *Properties) publishLen(m uint64) int {
	if m&^publishWireProps != 0 {
		return p.Len()
	}
	n := 0
	if m&bit(PropPayloadFormat) != 0 {
		n += 2
	}
	if m&bit(PropMessageExpiry) != 0 {
		n += 5
	}
	if m&bit(PropContentType) != 0 {
		n += 3 + len(p.ContentType)
	}
	if m&bit(PropResponseTopic) != 0 {
		n += 3 + len(p.ResponseTopic)
	}
	if m&bit(PropCorrelationData) != 0 {
		n += 3 + len(p.CorrelationData)
	}
	if m&bit(PropSubscriptionID) != 0 {
		for _, v := range p.SubscriptionIDs {
			n += 1 + varintLen(int(v))
		}
	}
	if m&bit(PropTopicAlias) != 0 {
		n += 3
	}
	for i := range p.User {
		n += 5 + len(p.User[i].Key) + len(p.User[i].Value)
	}
	return n
}

// appendPublish appends the properties in m (from wireBits, a subset of
// publishWireProps) in ascending identifier order, as appendProperties does,
// without the length prefix.
func (p *Properties) appendPublish(dst []byte, m uint64) []byte {
	if m&bit(PropPayloadFormat) != 0 {
		dst = append(dst, byte(PropPayloadFormat), p.PayloadFormat)
	}
	if m&bit(PropMessageExpiry) != 0 {
		v := p.MessageExpiry
		dst = append(dst, byte(PropMessageExpiry), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	if m&bit(PropContentType) != 0 {
		dst = appendShort(appendPropHeader(dst, PropContentType, len(p.ContentType)), p.ContentType)
	}
	if m&bit(PropResponseTopic) != 0 {
		dst = appendShort(appendPropHeader(dst, PropResponseTopic, len(p.ResponseTopic)), p.ResponseTopic)
	}
	if m&bit(PropCorrelationData) != 0 {
		dst = appendShort(appendPropHeader(dst, PropCorrelationData, len(p.CorrelationData)), p.CorrelationData)
	}
	if m&bit(PropSubscriptionID) != 0 {
		for _, v := range p.SubscriptionIDs {
			dst = AppendVarint(append(dst, byte(PropSubscriptionID)), int(v))
		}
	}
	if m&bit(PropTopicAlias) != 0 {
		dst = append(dst, byte(PropTopicAlias), byte(p.TopicAlias>>8), byte(p.TopicAlias))
	}
	// By index, not by value: a range copy of each 48-byte pair went
	// through the stack and was read back at once.
	for i := range p.User {
		u := &p.User[i]
		dst = appendShort(appendPropHeader(dst, PropUserProperty, len(u.Key)), u.Key)
		dst = append(dst, byte(len(u.Value)>>8), byte(len(u.Value)))
		dst = appendShort(dst, u.Value)
	}
	return dst
}

// appendPropHeader appends the identifier and the two-byte length of a
// string or binary property; the value follows, by appendShort. One helper
// for both did not fit the compiler's inlining budget, and a call per
// property cost more than the copy saved.
func appendPropHeader(dst []byte, id PropertyID, n int) []byte {
	return append(dst, byte(id), byte(n>>8), byte(n))
}

// appendShort is append(dst, v...) that copies a field of 8 to 16 bytes
// with two overlapping word loads and stores instead of calling memmove:
// a call makes every live register spill and reload around it, which
// cost more than the copy of most property values and topic names.
// Measured and rejected: also covering 4 to 7 or 17 to 24 bytes (a third
// word) put it over the inlining budget or added bounds checks that cost
// more than the memmove calls they saved.
func appendShort(dst, v []byte) []byte {
	n, l := len(v), len(dst)
	if n < 8 || n > 16 || cap(dst)-l < n {
		return append(dst, v...)
	}
	dst = dst[:l+n]
	binary.LittleEndian.PutUint64(dst[l:], binary.LittleEndian.Uint64(v))
	binary.LittleEndian.PutUint64(dst[l+n-8:], binary.LittleEndian.Uint64(v[n-8:]))
	return dst
}
