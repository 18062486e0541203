package packets

// Connack is a CONNACK packet [MQTT-3.2]. For 3.x, Reason holds the 5.0
// equivalent of the return code (see ConnackCode311).
type Connack struct {
	Version        byte
	SessionPresent bool // 3.1.1 and 5.0 only
	Reason         ReasonCode
	Properties     Properties
}

// Decode parses a CONNACK body.
func (c *Connack) Decode(version, flags byte, body []byte) error {
	const what = "CONNACK"
	if err := checkFlags(flags, 0, what); err != nil {
		return err
	}
	c.Version = version
	b := body
	if version != V5 {
		c.Properties.Reset()
		if len(b) != 2 {
			return malformed("CONNACK: remaining length %d, want 2", len(b))
		}
		c.SessionPresent = false
		if version == V311 {
			if b[0]&^1 != 0 {
				return malformed("CONNACK: reserved acknowledge flags 0x%02X", b[0]) // [MQTT-3.2.2-1]
			}
			c.SessionPresent = b[0] == 1
		} // 3.1: the first byte is unused
		rc, ok := connackReason5(b[1])
		if !ok {
			return malformed("CONNACK: return code 0x%02X", b[1])
		}
		c.Reason = rc
		return nil
	}
	if len(b) < 3 {
		return malformed("CONNACK: remaining length %d, want at least 3", len(b))
	}
	if b[0]&^1 != 0 {
		return malformed("CONNACK: reserved acknowledge flags 0x%02X", b[0]) // [MQTT-3.2.2-1]
	}
	c.SessionPresent = b[0] == 1
	c.Reason = ReasonCode(b[1])
	if !codeIn(connackLow, connackHigh, c.Reason) {
		return malformed("CONNACK: reason code 0x%02X not allowed", b[1])
	}
	if c.SessionPresent && c.Reason != Success {
		return protocolErr("CONNACK: session present with reason %s", c.Reason) // [MQTT-3.2.2-6]
	}
	i, err := readProperties(&c.Properties, b, 2, connackProps, what)
	if err != nil {
		return err
	}
	if i != len(b) {
		return malformed("CONNACK: %d bytes after the properties", len(b)-i)
	}
	return nil
}

// Append appends the CONNACK packet. For 3.x the reason is mapped with
// ConnackCode311 and the session present flag is written for 3.1.1 only.
func (c *Connack) Append(dst []byte) []byte {
	var ackFlags byte
	if c.SessionPresent && c.Version != V31 {
		ackFlags = 1
	}
	if c.Version != V5 {
		return append(dst, byte(TypeConnack)<<4, 2, ackFlags, ConnackCode311(c.Reason))
	}
	propLen := c.Properties.Len()
	dst = AppendVarint(append(dst, byte(TypeConnack)<<4), 2+varintLen(propLen)+propLen)
	dst = append(dst, ackFlags, byte(c.Reason))
	return c.Properties.appendProperties(dst, propLen)
}

// Disconnect is a DISCONNECT packet [MQTT-3.14]; 3.x carries no fields.
type Disconnect struct {
	Version    byte
	Reason     ReasonCode
	Properties Properties
}

// Decode parses a DISCONNECT body.
func (d *Disconnect) Decode(version, flags byte, body []byte) error {
	const what = "DISCONNECT"
	if err := checkFlags(flags, 0, what); err != nil {
		return err
	}
	d.Version = version
	d.Reason = NormalDisconnection
	if version != V5 {
		d.Properties.Reset()
		if len(body) != 0 {
			return malformed("DISCONNECT: remaining length %d, want 0", len(body))
		}
		return nil
	}
	reason, err := reasonAndProperties(&d.Properties, body, disconnectProps, what)
	if err != nil {
		return err
	}
	d.Reason = reason
	if !codeIn(disconnectLow, disconnectHigh, reason) {
		return malformed("DISCONNECT: reason code 0x%02X not allowed", byte(reason))
	}
	return nil
}

// reasonAndProperties decodes the 5.0 body of DISCONNECT and AUTH: empty
// means Success without properties, a lone reason code means no properties
// [MQTT-3.14.2.1], [MQTT-3.15.2.1].
func reasonAndProperties(p *Properties, b []byte, allowed uint64, what string) (ReasonCode, error) {
	if len(b) == 0 {
		p.Reset()
		return Success, nil
	}
	reason := ReasonCode(b[0])
	if len(b) == 1 {
		p.Reset()
		return reason, nil
	}
	i, err := readProperties(p, b, 1, allowed, what)
	if err != nil {
		return reason, err
	}
	if i != len(b) {
		return reason, malformed("%s: %d bytes after the properties", what, len(b)-i)
	}
	return reason, nil
}

// appendReasonAndProperties writes the shortest 5.0 form of a DISCONNECT or
// AUTH: no body for Success without properties.
func appendReasonAndProperties(dst []byte, t Type, reason ReasonCode, p *Properties) []byte {
	propLen := p.Len()
	if propLen == 0 && reason == Success {
		return append(dst, byte(t)<<4, 0)
	}
	if propLen == 0 {
		return append(dst, byte(t)<<4, 1, byte(reason))
	}
	dst = AppendVarint(append(dst, byte(t)<<4), 1+varintLen(propLen)+propLen)
	dst = append(dst, byte(reason))
	return p.appendProperties(dst, propLen)
}

// Append appends the DISCONNECT packet.
func (d *Disconnect) Append(dst []byte) []byte {
	if d.Version != V5 {
		return append(dst, byte(TypeDisconnect)<<4, 0)
	}
	return appendReasonAndProperties(dst, TypeDisconnect, d.Reason, &d.Properties)
}

// Auth is an AUTH packet [MQTT-3.15], which exists in 5.0 only.
type Auth struct {
	Reason     ReasonCode
	Properties Properties
}

// Decode parses an AUTH body. Any version other than V5 is malformed: the
// packet type is reserved in 3.x [MQTT-2.1.2-1 of 3.1.1].
func (a *Auth) Decode(version, flags byte, body []byte) error {
	const what = "AUTH"
	if version != V5 {
		return malformed("AUTH in protocol level %d", version)
	}
	if err := checkFlags(flags, 0, what); err != nil {
		return err
	}
	reason, err := reasonAndProperties(&a.Properties, body, authProps, what)
	if err != nil {
		return err
	}
	a.Reason = reason
	if !codeIn(authLow, 0, reason) {
		return malformed("AUTH: reason code 0x%02X not allowed", byte(reason))
	}
	return nil
}

// Append appends the AUTH packet.
func (a *Auth) Append(dst []byte) []byte {
	return appendReasonAndProperties(dst, TypeAuth, a.Reason, &a.Properties)
}

// AppendPingreq appends a PINGREQ packet.
func AppendPingreq(dst []byte) []byte { return append(dst, byte(TypePingreq)<<4, 0) }

// AppendPingresp appends a PINGRESP packet.
func AppendPingresp(dst []byte) []byte { return append(dst, byte(TypePingresp)<<4, 0) }

// FixedHeader is the first part of every packet [MQTT-2.1.1].
type FixedHeader struct {
	Type      Type
	Flags     byte // low nibble of the first byte
	Remaining int  // length of the body that follows
}

// Packet holds one reusable struct per packet type so that a read loop can
// decode any packet without allocating; Type says which field is current.
type Packet struct {
	Type        Type
	Connect     Connect
	Connack     Connack
	Publish     Publish
	Ack         Ack
	Subscribe   Subscribe
	Suback      Suback
	Unsubscribe Unsubscribe
	Unsuback    Unsuback
	Disconnect  Disconnect
	Auth        Auth
}

// Decode decodes body as a packet of type fh.Type into the matching field.
// PINGREQ and PINGRESP have no fields; their body must be empty.
func (p *Packet) Decode(version byte, fh FixedHeader, body []byte) error {
	p.Type = fh.Type
	switch fh.Type {
	case TypeConnect:
		if err := checkFlags(fh.Flags, 0, "CONNECT"); err != nil {
			return err
		}
		return p.Connect.Decode(body)
	case TypeConnack:
		return p.Connack.Decode(version, fh.Flags, body)
	case TypePublish:
		return p.Publish.Decode(version, fh.Flags, body)
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		return p.Ack.Decode(version, fh.Type, fh.Flags, body)
	case TypeSubscribe:
		return p.Subscribe.Decode(version, fh.Flags, body)
	case TypeSuback:
		return p.Suback.Decode(version, fh.Flags, body)
	case TypeUnsubscribe:
		return p.Unsubscribe.Decode(version, fh.Flags, body)
	case TypeUnsuback:
		return p.Unsuback.Decode(version, fh.Flags, body)
	case TypePingreq, TypePingresp:
		if err := checkFlags(fh.Flags, 0, fh.Type.String()); err != nil {
			return err
		}
		if len(body) != 0 {
			return malformed("%s: remaining length %d, want 0", fh.Type, len(body))
		}
		return nil
	case TypeDisconnect:
		return p.Disconnect.Decode(version, fh.Flags, body)
	case TypeAuth:
		return p.Auth.Decode(version, fh.Flags, body)
	}
	return malformed("reserved packet type %d", byte(fh.Type)) // [MQTT-2.1.2]
}

// Append appends the packet named by p.Type. A reserved type appends nothing.
func (p *Packet) Append(dst []byte) []byte {
	switch p.Type {
	case TypeConnect:
		return p.Connect.Append(dst)
	case TypeConnack:
		return p.Connack.Append(dst)
	case TypePublish:
		return p.Publish.Append(dst)
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		p.Ack.Type = p.Type
		return p.Ack.Append(dst)
	case TypeSubscribe:
		return p.Subscribe.Append(dst)
	case TypeSuback:
		return p.Suback.Append(dst)
	case TypeUnsubscribe:
		return p.Unsubscribe.Append(dst)
	case TypeUnsuback:
		return p.Unsuback.Append(dst)
	case TypePingreq:
		return AppendPingreq(dst)
	case TypePingresp:
		return AppendPingresp(dst)
	case TypeDisconnect:
		return p.Disconnect.Append(dst)
	case TypeAuth:
		return p.Auth.Append(dst)
	}
	return dst
}
