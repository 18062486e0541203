package packets

import "encoding/binary"

// Ack is a PUBACK, PUBREC, PUBREL or PUBCOMP packet [MQTT-3.4..3.7]; Type
// tells which.
type Ack struct {
	Type       Type
	Version    byte
	PacketID   uint16
	Reason     ReasonCode // 5.0 only; 3.x acks carry none
	Properties Properties
}

// Decode parses the body of the acknowledgement of type t.
func (a *Ack) Decode(version byte, t Type, flags byte, body []byte) error {
	a.Type, a.Version = t, version
	var low, high uint64
	switch t {
	case TypePuback, TypePubrec:
		low, high = pubackLow, pubackHigh
	case TypePubrel, TypePubcomp:
		low, high = pubrelLow, pubrelHigh
	default:
		return malformed("%s is not an acknowledgement", t)
	}
	if want := ackFlags(t); flags != want {
		return malformed("%s: fixed header flags 0x%X, want 0x%X", t, flags, want) // [MQTT-3.6.1-1], [MQTT-2.1.3-1]
	}
	b := body
	if len(b) < 2 {
		return malformed("%s: truncated packet identifier", t)
	}
	a.PacketID = uint16(b[0])<<8 | uint16(b[1])
	if a.PacketID == 0 {
		return protocolErr("%s: packet identifier 0", t) // [MQTT-2.2.1-3]
	}
	a.Reason = Success
	if version != V5 {
		a.Properties.Reset()
		if len(b) != 2 {
			return malformed("%s: remaining length %d, want 2", t, len(b))
		}
		return nil
	}
	// 5.0 short forms: no reason code means Success, no property length
	// means no properties [MQTT-3.4.2.1], [MQTT-3.4.2.2.1].
	if len(b) == 2 {
		a.Properties.Reset()
		return nil
	}
	a.Reason = ReasonCode(b[2])
	if !codeIn(low, high, a.Reason) {
		return malformed("%s: reason code 0x%02X not allowed", t, byte(a.Reason))
	}
	if len(b) == 3 {
		a.Properties.Reset()
		return nil
	}
	i, err := readProperties(&a.Properties, b, 3, ackProps, t.String())
	if err != nil {
		return err
	}
	if i != len(b) {
		return malformed("%s: %d bytes after the properties", t, len(b)-i)
	}
	return nil
}

// ackFlags returns the fixed-header flags of acknowledgement t: PUBREL
// carries 0b0010, the others 0 [MQTT-3.6.1-1].
func ackFlags(t Type) byte {
	if t == TypePubrel {
		return 0x02
	}
	return 0
}

// Append appends the acknowledgement. 5.0 uses the shortest form: 2 bytes
// for Success without properties, 3 bytes for a reason without properties.
//
// An acknowledgement goes out for nearly every QoS 1 and 2 message, nearly
// always without properties, so that case asks only whether any property
// would be written (wireBits, inlined) rather than sizing the block (Len, a
// call and a loop), and stores the header, length and packet identifier as
// one big-endian word. The rare case with properties is a separate function
// so that this one keeps a small frame.
func (a *Ack) Append(dst []byte) []byte {
	if a.Version == V5 && a.Properties.wireBits() != 0 {
		return a.appendWithProperties(dst)
	}
	word := uint32(byte(a.Type)<<4|ackFlags(a.Type))<<24 | uint32(a.PacketID)
	if a.Version != V5 || a.Reason == Success {
		return binary.BigEndian.AppendUint32(dst, word|2<<16)
	}
	return append(binary.BigEndian.AppendUint32(dst, word|3<<16), byte(a.Reason))
}

// appendWithProperties is Append for a 5.0 acknowledgement with properties.
func (a *Ack) appendWithProperties(dst []byte) []byte {
	propLen := a.Properties.Len()
	n := 3 + varintLen(propLen) + propLen
	dst = AppendVarint(append(dst, byte(a.Type)<<4|ackFlags(a.Type)), n)
	dst = append(dst, byte(a.PacketID>>8), byte(a.PacketID), byte(a.Reason))
	return a.Properties.appendProperties(dst, propLen)
}
