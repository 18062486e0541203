package packets

import (
	"fmt"
	"strconv"
)

// Protocol levels as carried in the CONNECT variable header.
const (
	V31  byte = 3 // MQTT 3.1 (protocol name "MQIsdp")
	V311 byte = 4 // MQTT 3.1.1
	V5   byte = 5 // MQTT 5.0
)

// Type is the MQTT control packet type, the high nibble of the first byte.
type Type byte

// Control packet types [MQTT-2.1.2]. They carry a Type prefix because the
// packet structs own the bare names (Connect, Publish, ...).
const (
	TypeReserved    Type = 0
	TypeConnect     Type = 1
	TypeConnack     Type = 2
	TypePublish     Type = 3
	TypePuback      Type = 4
	TypePubrec      Type = 5
	TypePubrel      Type = 6
	TypePubcomp     Type = 7
	TypeSubscribe   Type = 8
	TypeSuback      Type = 9
	TypeUnsubscribe Type = 10
	TypeUnsuback    Type = 11
	TypePingreq     Type = 12
	TypePingresp    Type = 13
	TypeDisconnect  Type = 14
	TypeAuth        Type = 15
)

func (t Type) String() string {
	switch t {
	case TypeReserved:
		return "RESERVED"
	case TypeConnect:
		return "CONNECT"
	case TypeConnack:
		return "CONNACK"
	case TypePublish:
		return "PUBLISH"
	case TypePuback:
		return "PUBACK"
	case TypePubrec:
		return "PUBREC"
	case TypePubrel:
		return "PUBREL"
	case TypePubcomp:
		return "PUBCOMP"
	case TypeSubscribe:
		return "SUBSCRIBE"
	case TypeSuback:
		return "SUBACK"
	case TypeUnsubscribe:
		return "UNSUBSCRIBE"
	case TypeUnsuback:
		return "UNSUBACK"
	case TypePingreq:
		return "PINGREQ"
	case TypePingresp:
		return "PINGRESP"
	case TypeDisconnect:
		return "DISCONNECT"
	case TypeAuth:
		return "AUTH"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// ReasonCode is an MQTT 5.0 reason code. MQTT 3.x return codes are mapped
// onto it at decode (see ConnackCode311 for the other direction).
type ReasonCode byte

// Every MQTT 5.0 reason code [MQTT-2.4]. Several names share a value; the
// packet type tells which meaning applies.
const (
	Success                             ReasonCode = 0x00
	NormalDisconnection                 ReasonCode = 0x00
	GrantedQoS0                         ReasonCode = 0x00
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWill                  ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

// String names the code by its first meaning in the specification's table
// (0x00 is "Success", 0x01 "Granted QoS 1").
func (rc ReasonCode) String() string {
	switch rc {
	case Success:
		return "Success"
	case GrantedQoS1:
		return "Granted QoS 1"
	case GrantedQoS2:
		return "Granted QoS 2"
	case DisconnectWithWill:
		return "Disconnect with Will Message"
	case NoMatchingSubscribers:
		return "No matching subscribers"
	case NoSubscriptionExisted:
		return "No subscription existed"
	case ContinueAuthentication:
		return "Continue authentication"
	case ReAuthenticate:
		return "Re-authenticate"
	case UnspecifiedError:
		return "Unspecified error"
	case MalformedPacket:
		return "Malformed Packet"
	case ProtocolError:
		return "Protocol Error"
	case ImplementationSpecificError:
		return "Implementation specific error"
	case UnsupportedProtocolVersion:
		return "Unsupported Protocol Version"
	case ClientIdentifierNotValid:
		return "Client Identifier not valid"
	case BadUserNameOrPassword:
		return "Bad User Name or Password"
	case NotAuthorized:
		return "Not authorized"
	case ServerUnavailable:
		return "Server unavailable"
	case ServerBusy:
		return "Server busy"
	case Banned:
		return "Banned"
	case ServerShuttingDown:
		return "Server shutting down"
	case BadAuthenticationMethod:
		return "Bad authentication method"
	case KeepAliveTimeout:
		return "Keep Alive timeout"
	case SessionTakenOver:
		return "Session taken over"
	case TopicFilterInvalid:
		return "Topic Filter invalid"
	case TopicNameInvalid:
		return "Topic Name invalid"
	case PacketIdentifierInUse:
		return "Packet Identifier in use"
	case PacketIdentifierNotFound:
		return "Packet Identifier not found"
	case ReceiveMaximumExceeded:
		return "Receive Maximum exceeded"
	case TopicAliasInvalid:
		return "Topic Alias invalid"
	case PacketTooLarge:
		return "Packet too large"
	case MessageRateTooHigh:
		return "Message rate too high"
	case QuotaExceeded:
		return "Quota exceeded"
	case AdministrativeAction:
		return "Administrative action"
	case PayloadFormatInvalid:
		return "Payload format invalid"
	case RetainNotSupported:
		return "Retain not supported"
	case QoSNotSupported:
		return "QoS not supported"
	case UseAnotherServer:
		return "Use another server"
	case ServerMoved:
		return "Server moved"
	case SharedSubscriptionsNotSupported:
		return "Shared Subscriptions not supported"
	case ConnectionRateExceeded:
		return "Connection rate exceeded"
	case MaximumConnectTime:
		return "Maximum connect time"
	case SubscriptionIdentifiersNotSupported:
		return "Subscription Identifiers not supported"
	case WildcardSubscriptionsNotSupported:
		return "Wildcard Subscriptions not supported"
	}
	return "ReasonCode(0x" + strconv.FormatUint(uint64(rc), 16) + ")"
}

// IsError reports whether the code signals failure (0x80 and above) [MQTT-2.4].
func (rc ReasonCode) IsError() bool { return rc >= 0x80 }

// MQTT 3.1/3.1.1 CONNACK return codes [MQTT-3.2.2.3 of 3.1.1].
const (
	connack3Accepted            byte = 0x00
	connack3BadProtocolVersion  byte = 0x01
	connack3IdentifierRejected  byte = 0x02
	connack3ServerUnavailable   byte = 0x03
	connack3BadUsernamePassword byte = 0x04
	connack3NotAuthorized       byte = 0x05
)

// ConnackCode311 maps a 5.0 CONNACK reason code to the nearest MQTT 3.1/3.1.1
// return code (0x00..0x05). Codes with no 3.x counterpart become "server
// unavailable" (0x03) or, for refusals about who the client is, "not authorized".
func ConnackCode311(rc ReasonCode) byte {
	switch rc {
	case Success:
		return connack3Accepted
	case UnsupportedProtocolVersion:
		return connack3BadProtocolVersion
	case ClientIdentifierNotValid:
		return connack3IdentifierRejected
	case BadUserNameOrPassword, BadAuthenticationMethod:
		return connack3BadUsernamePassword
	case NotAuthorized, Banned:
		return connack3NotAuthorized
	}
	return connack3ServerUnavailable
}

// connackReason5 maps a 3.x CONNACK return code to its 5.0 reason code.
func connackReason5(code byte) (ReasonCode, bool) {
	switch code {
	case connack3Accepted:
		return Success, true
	case connack3BadProtocolVersion:
		return UnsupportedProtocolVersion, true
	case connack3IdentifierRejected:
		return ClientIdentifierNotValid, true
	case connack3ServerUnavailable:
		return ServerUnavailable, true
	case connack3BadUsernamePassword:
		return BadUserNameOrPassword, true
	case connack3NotAuthorized:
		return NotAuthorized, true
	}
	return 0, false
}

// Error is a decode (or framing) failure with the reason code the peer
// should be told: MalformedPacket for bytes that break the grammar,
// ProtocolError for well-formed bytes that break a rule, and the specific
// codes (TopicNameInvalid, PacketTooLarge, ...) where the specification has one.
type Error struct {
	Code ReasonCode
	Msg  string
}

func (e *Error) Error() string {
	return "packets: " + e.Code.String() + ": " + e.Msg
}

// Errorf builds an *Error with a formatted message.
func Errorf(code ReasonCode, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Reason code sets are bitmaps, so that membership is a shift and a mask with
// no table in memory: the low word covers codes 0x00..0x3F, the high word
// 0x80..0xBF. A switch per packet type was the rejected alternative: as fast,
// but five copies of the same long case lists.
func codeIn(low, high uint64, rc ReasonCode) bool {
	if rc < 0x40 {
		return low&(1<<rc) != 0
	}
	if rc >= 0x80 && rc < 0xC0 {
		return high&(1<<(rc-0x80)) != 0
	}
	return false
}

// hBase is the first code of the high word.
const hBase = 0x80

// The reason codes each packet may carry, per the table in [MQTT-2.4].
const (
	connackLow  uint64 = 1 << Success
	connackHigh uint64 = 1<<(UnspecifiedError-hBase) | 1<<(MalformedPacket-hBase) | 1<<(ProtocolError-hBase) |
		1<<(ImplementationSpecificError-hBase) | 1<<(UnsupportedProtocolVersion-hBase) |
		1<<(ClientIdentifierNotValid-hBase) | 1<<(BadUserNameOrPassword-hBase) | 1<<(NotAuthorized-hBase) |
		1<<(ServerUnavailable-hBase) | 1<<(ServerBusy-hBase) | 1<<(Banned-hBase) |
		1<<(BadAuthenticationMethod-hBase) | 1<<(TopicNameInvalid-hBase) | 1<<(PacketTooLarge-hBase) |
		1<<(QuotaExceeded-hBase) | 1<<(PayloadFormatInvalid-hBase) | 1<<(RetainNotSupported-hBase) |
		1<<(QoSNotSupported-hBase) | 1<<(UseAnotherServer-hBase) | 1<<(ServerMoved-hBase) |
		1<<(ConnectionRateExceeded-hBase)

	pubackLow  uint64 = 1<<Success | 1<<NoMatchingSubscribers
	pubackHigh uint64 = 1<<(UnspecifiedError-hBase) | 1<<(ImplementationSpecificError-hBase) |
		1<<(NotAuthorized-hBase) | 1<<(TopicNameInvalid-hBase) | 1<<(PacketIdentifierInUse-hBase) |
		1<<(QuotaExceeded-hBase) | 1<<(PayloadFormatInvalid-hBase)

	pubrelLow  uint64 = 1 << Success
	pubrelHigh uint64 = 1 << (PacketIdentifierNotFound - hBase)

	subackLow  uint64 = 1<<GrantedQoS0 | 1<<GrantedQoS1 | 1<<GrantedQoS2
	subackHigh uint64 = 1<<(UnspecifiedError-hBase) | 1<<(ImplementationSpecificError-hBase) |
		1<<(NotAuthorized-hBase) | 1<<(TopicFilterInvalid-hBase) | 1<<(PacketIdentifierInUse-hBase) |
		1<<(QuotaExceeded-hBase) | 1<<(SharedSubscriptionsNotSupported-hBase) |
		1<<(SubscriptionIdentifiersNotSupported-hBase) | 1<<(WildcardSubscriptionsNotSupported-hBase)
	// [MQTT-3.9.3-2] of 3.1.1: 0x00, 0x01, 0x02 and 0x80 only.
	suback3High uint64 = 1 << (UnspecifiedError - hBase)

	unsubackLow  uint64 = 1<<Success | 1<<NoSubscriptionExisted
	unsubackHigh uint64 = 1<<(UnspecifiedError-hBase) | 1<<(ImplementationSpecificError-hBase) |
		1<<(NotAuthorized-hBase) | 1<<(TopicFilterInvalid-hBase) | 1<<(PacketIdentifierInUse-hBase)

	disconnectLow  uint64 = 1<<NormalDisconnection | 1<<DisconnectWithWill
	disconnectHigh uint64 = 1<<(UnspecifiedError-hBase) | 1<<(MalformedPacket-hBase) | 1<<(ProtocolError-hBase) |
		1<<(ImplementationSpecificError-hBase) | 1<<(NotAuthorized-hBase) | 1<<(ServerBusy-hBase) |
		1<<(ServerShuttingDown-hBase) | 1<<(KeepAliveTimeout-hBase) | 1<<(SessionTakenOver-hBase) |
		1<<(TopicFilterInvalid-hBase) | 1<<(TopicNameInvalid-hBase) | 1<<(ReceiveMaximumExceeded-hBase) |
		1<<(TopicAliasInvalid-hBase) | 1<<(PacketTooLarge-hBase) | 1<<(MessageRateTooHigh-hBase) |
		1<<(QuotaExceeded-hBase) | 1<<(AdministrativeAction-hBase) | 1<<(PayloadFormatInvalid-hBase) |
		1<<(RetainNotSupported-hBase) | 1<<(QoSNotSupported-hBase) | 1<<(UseAnotherServer-hBase) |
		1<<(ServerMoved-hBase) | 1<<(SharedSubscriptionsNotSupported-hBase) |
		1<<(ConnectionRateExceeded-hBase) | 1<<(MaximumConnectTime-hBase) |
		1<<(SubscriptionIdentifiersNotSupported-hBase) | 1<<(WildcardSubscriptionsNotSupported-hBase)

	authLow uint64 = 1<<Success | 1<<ContinueAuthentication | 1<<ReAuthenticate
)
