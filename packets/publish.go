package packets

// Publish is a PUBLISH packet [MQTT-3.3]. Topic, Payload and the byte
// fields of Properties alias the decoded body.
type Publish struct {
	Version    byte
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      []byte // empty in 5.0 when a Topic Alias stands for it
	PacketID   uint16 // 0 for QoS 0
	Properties Properties
	Payload    []byte
}

// PUBLISH fixed-header flag bits [MQTT-3.3.1].
const (
	publishRetain   = 0x01
	publishQoSShift = 1
	publishDup      = 0x08
)

// Decode parses a PUBLISH body with the fixed-header flags.
func (p *Publish) Decode(version, flags byte, body []byte) error {
	qos := flags >> publishQoSShift & 3
	if qos == 3 {
		return malformed("PUBLISH: QoS 3") // [MQTT-3.3.1-4]
	}
	p.Version = version
	p.QoS = qos
	p.Dup = flags&publishDup != 0
	p.Retain = flags&publishRetain != 0
	if p.Dup && qos == 0 {
		return protocolErr("PUBLISH: DUP set on QoS 0") // [MQTT-3.3.1-2]
	}
	b := body
	if len(b) < 2 {
		return malformed("PUBLISH: truncated topic length")
	}
	n := int(b[0])<<8 | int(b[1])
	i := 2 + n
	if i > len(b) {
		return malformed("PUBLISH: topic length %d exceeds the %d bytes left", n, len(b)-2)
	}
	p.Topic = b[2:i:i]
	p.PacketID = 0
	if qos > 0 {
		if len(b)-i < 2 {
			return malformed("PUBLISH: truncated packet identifier")
		}
		p.PacketID = uint16(b[i])<<8 | uint16(b[i+1])
		i += 2
		if p.PacketID == 0 {
			return protocolErr("PUBLISH: packet identifier 0 with QoS %d", qos) // [MQTT-2.2.1-3]
		}
	}
	if version == V5 {
		// The common case, no properties, skips the call entirely.
		if i < len(b) && b[i] == 0 {
			p.Properties.Reset()
			i++
		} else {
			var err error
			if i, err = readProperties(&p.Properties, b, i, publishProps, "PUBLISH"); err != nil {
				return err
			}
		}
	} else {
		p.Properties.Reset()
	}
	if n == 0 {
		// 5.0: an empty topic stands for the Topic Alias [MQTT-3.3.2-12];
		// otherwise a topic name has at least one character [MQTT-4.7.3-1].
		if version != V5 || !p.Properties.Has(PropTopicAlias) {
			return protocolErr("PUBLISH: empty topic without a Topic Alias")
		}
	} else if rc := topicNameCheck(p.Topic); rc != 0 {
		// [MQTT-3.3.2-1] UTF-8, [MQTT-3.3.2-2] no wildcards.
		return Errorf(rc, "PUBLISH: topic %q", p.Topic)
	}
	p.Payload = b[i:len(b):len(b)]
	return nil
}

// Append appends the PUBLISH packet. The packet identifier is written only
// for QoS 1 and 2, properties only for V5.
//
// PUBLISH is encoded once per delivery, so its properties take a
// straight-line path (appendPublish) instead of the per-identifier dispatch
// of Len and appendProperties, and are written in one pass: Append assumes
// the property block is under 128 bytes (a one-byte length) and that it
// does not move the remaining length across a varint size, writes the
// block, then fills in both lengths. When the assumption fails it starts
// over with the block's size computed first (appendSized).
// Rejected after measuring: growing dst once and writing every field by index
// into it. Each indexed write carries its own bounds check, which cost more
// instructions than the capacity check of an append.
func (p *Publish) Append(dst []byte) []byte {
	flags := p.QoS & 3 << publishQoSShift
	if p.Dup {
		flags |= publishDup
	}
	if p.Retain {
		flags |= publishRetain
	}
	first := byte(TypePublish)<<4 | flags
	hasID := flags&(3<<publishQoSShift) != 0
	base := 2 + len(p.Topic) + len(p.Payload) // remaining length without properties
	if hasID {
		base += 2
	}
	var wire uint64
	if p.Version == V5 {
		if wire = p.Properties.wireBits(); wire&^publishWireProps != 0 {
			return p.appendSized(dst, first, base, wire)
		}
		base++ // the property length, one byte so far
	}
	start := len(dst)
	dst = appendHeader(dst, first, base)
	headerLen := len(dst) - start
	dst = append(append(dst, byte(len(p.Topic)>>8), byte(len(p.Topic))), p.Topic...)
	if hasID {
		dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	}
	if p.Version == V5 {
		dst = append(dst, 0) // property length 0: the common case
		if wire != 0 {
			blockStart := len(dst)
			dst = p.Properties.appendPublish(dst, wire)
			propLen := len(dst) - blockStart
			remaining := base + propLen
			if propLen >= 1<<7 || varintLen(remaining) != headerLen-1 {
				return p.appendSized(dst[:start], first, base-1, wire)
			}
			dst[blockStart-1] = byte(propLen)
			putVarint(dst[start+1:start+headerLen], remaining)
		}
	}
	return append(dst, p.Payload...)
}

// appendSized is Append with the property block sized before it is
// written: for a block of 128 bytes or more, one that moves the remaining
// length to a longer varint, or properties a PUBLISH does not carry (which
// are written anyway, by the general path). base is the remaining length
// without properties.
func (p *Publish) appendSized(dst []byte, first byte, base int, wire uint64) []byte {
	propLen := p.Properties.publishLen(wire)
	dst = appendHeader(dst, first, base+varintLen(propLen)+propLen)
	dst = appendBytes(dst, p.Topic)
	if first&(3<<publishQoSShift) != 0 {
		dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	}
	if wire&^publishWireProps == 0 {
		dst = p.Properties.appendPublish(AppendVarint(dst, propLen), wire)
	} else {
		dst = p.Properties.appendProperties(dst, propLen)
	}
	return append(dst, p.Payload...)
}

// putVarint writes n as a variable byte integer filling all of b, which
// has exactly varintLen(n) bytes.
func putVarint(b []byte, n int) {
	for i := range b {
		b[i] = byte(n) | 0x80
		n >>= 7
	}
	b[len(b)-1] &^= 0x80
}
