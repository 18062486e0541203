package packets

import "encoding/binary"

// Connect is a CONNECT packet [MQTT-3.1]. Byte fields alias the decoded body.
type Connect struct {
	ProtocolName   []byte // "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1); Append fills it in when empty
	Version        byte   // protocol level: V31, V311 or V5
	CleanStart     bool   // Clean Session in 3.x
	KeepAlive      uint16 // seconds
	Properties     Properties
	ClientID       []byte
	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	WillProperties Properties
	WillTopic      []byte
	WillPayload    []byte
	UsernameFlag   bool
	Username       []byte
	PasswordFlag   bool
	Password       []byte
}

// Connect flag bits [MQTT-3.1.2.3].
const (
	connectReserved     = 0x01
	connectCleanStart   = 0x02
	connectWill         = 0x04
	connectWillQoSShift = 3
	connectWillRetain   = 0x20
	connectPassword     = 0x40
	connectUsername     = 0x80
)

// maxClientID31 is the MQTT 3.1 limit on the client identifier (3.1 §3.1).
const maxClientID31 = 23

// Decode parses a CONNECT body; the version comes from the packet itself.
// An unknown protocol name or level returns UnsupportedProtocolVersion with
// c.Version set to the level read, so the engine can answer in kind.
// The fixed-header flags must be checked by the caller (Packet.Decode does).
func (c *Connect) Decode(body []byte) error {
	b := body
	name, i, ok := readString(b, 0)
	if !ok {
		return stringErr(b, 0, "CONNECT protocol name")
	}
	if i >= len(b) {
		return malformed("CONNECT: truncated before protocol level")
	}
	c.ProtocolName = name
	c.Version = b[i]
	i++
	switch {
	case string(name) == "MQTT" && (c.Version == V311 || c.Version == V5):
	case string(name) == "MQIsdp" && c.Version == V31:
	default:
		// [MQTT-3.1.2-1], [MQTT-3.1.2-2]
		return Errorf(UnsupportedProtocolVersion, "CONNECT: protocol %q level %d", name, c.Version)
	}
	if len(b)-i < 3 {
		return malformed("CONNECT: truncated before keep alive")
	}
	flags := b[i]
	c.KeepAlive = binary.BigEndian.Uint16(b[i+1:])
	i += 3
	if flags&connectReserved != 0 {
		return malformed("CONNECT: reserved flag set") // [MQTT-3.1.2-3]
	}
	c.CleanStart = flags&connectCleanStart != 0
	c.WillFlag = flags&connectWill != 0
	c.WillQoS = flags >> connectWillQoSShift & 3
	c.WillRetain = flags&connectWillRetain != 0
	c.PasswordFlag = flags&connectPassword != 0
	c.UsernameFlag = flags&connectUsername != 0
	if c.WillQoS == 3 {
		return malformed("CONNECT: will QoS 3") // [MQTT-3.1.2-12] (5.0: malformed)
	}
	if !c.WillFlag && (c.WillQoS != 0 || c.WillRetain) {
		return malformed("CONNECT: will QoS or retain without will flag") // [MQTT-3.1.2-11], [MQTT-3.1.2-13]
	}
	if c.Version != V5 && c.PasswordFlag && !c.UsernameFlag {
		return malformed("CONNECT: password without user name") // [MQTT-3.1.2-22] of 3.1.1
	}

	var err error
	if c.Version == V5 {
		if i, err = readProperties(&c.Properties, b, i, connectProps, "CONNECT"); err != nil {
			return err
		}
	} else {
		c.Properties.Reset()
	}

	if c.ClientID, i, ok = readString(b, i); !ok {
		return stringErr(b, i, "CONNECT client identifier") // [MQTT-3.1.3-4]
	}
	switch c.Version {
	case V31:
		if len(c.ClientID) == 0 || len(c.ClientID) > maxClientID31 {
			return Errorf(ClientIdentifierNotValid, "CONNECT: 3.1 client identifier of %d bytes, want 1..23", len(c.ClientID))
		}
	case V311:
		if len(c.ClientID) == 0 && !c.CleanStart {
			return Errorf(ClientIdentifierNotValid, "CONNECT: empty client identifier without clean session") // [MQTT-3.1.3-8]
		}
	}

	c.WillProperties.Reset()
	c.WillTopic, c.WillPayload = nil, nil
	if c.WillFlag {
		if c.Version == V5 {
			if i, err = readProperties(&c.WillProperties, b, i, willProps, "CONNECT will"); err != nil {
				return err
			}
		}
		if c.WillTopic, i, ok = readBinary(b, i); !ok {
			return truncated("CONNECT will topic")
		}
		switch topicNameCheck(c.WillTopic) {
		case MalformedPacket:
			return badUTF8("CONNECT will topic") // [MQTT-3.1.3-11]
		case TopicNameInvalid:
			return Errorf(TopicNameInvalid, "CONNECT: will topic %q has a wildcard", c.WillTopic)
		}
		if len(c.WillTopic) == 0 {
			return Errorf(TopicNameInvalid, "CONNECT: empty will topic") // [MQTT-4.7.3-1]
		}
		if c.WillPayload, i, ok = readBinary(b, i); !ok {
			return truncated("CONNECT will payload")
		}
	}
	c.Username, c.Password = nil, nil
	if c.UsernameFlag {
		if c.Username, i, ok = readString(b, i); !ok {
			return stringErr(b, i, "CONNECT user name") // [MQTT-3.1.3-12]
		}
	}
	if c.PasswordFlag {
		if c.Password, i, ok = readBinary(b, i); !ok {
			return truncated("CONNECT password")
		}
	}
	if i != len(b) {
		return malformed("CONNECT: %d bytes after the payload", len(b)-i)
	}
	return nil
}

// Append appends the CONNECT packet. Properties are written only for V5.
func (c *Connect) Append(dst []byte) []byte {
	name := c.ProtocolName
	if len(name) == 0 {
		name = protocolName(c.Version)
	}
	propLen, willPropLen := 0, 0
	n := 2 + len(name) + 1 + 1 + 2 + 2 + len(c.ClientID)
	if c.Version == V5 {
		propLen = c.Properties.Len()
		n += varintLen(propLen) + propLen
	}
	var flags byte
	if c.CleanStart {
		flags |= connectCleanStart
	}
	if c.WillFlag {
		flags |= connectWill | c.WillQoS&3<<connectWillQoSShift
		if c.WillRetain {
			flags |= connectWillRetain
		}
		if c.Version == V5 {
			willPropLen = c.WillProperties.Len()
			n += varintLen(willPropLen) + willPropLen
		}
		n += 4 + len(c.WillTopic) + len(c.WillPayload)
	}
	if c.UsernameFlag {
		flags |= connectUsername
		n += 2 + len(c.Username)
	}
	if c.PasswordFlag {
		flags |= connectPassword
		n += 2 + len(c.Password)
	}
	dst = AppendVarint(append(dst, byte(TypeConnect)<<4), n)
	dst = appendBytes(dst, name)
	dst = append(dst, c.Version, flags, byte(c.KeepAlive>>8), byte(c.KeepAlive))
	if c.Version == V5 {
		dst = c.Properties.appendProperties(dst, propLen)
	}
	dst = appendBytes(dst, c.ClientID)
	if c.WillFlag {
		if c.Version == V5 {
			dst = c.WillProperties.appendProperties(dst, willPropLen)
		}
		dst = appendBytes(dst, c.WillTopic)
		dst = appendBytes(dst, c.WillPayload)
	}
	if c.UsernameFlag {
		dst = appendBytes(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendBytes(dst, c.Password)
	}
	return dst
}

func protocolName(version byte) []byte {
	if version == V31 {
		return []byte("MQIsdp")
	}
	return []byte("MQTT")
}
