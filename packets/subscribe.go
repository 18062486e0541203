package packets

// Subscription is one topic filter of a SUBSCRIBE and its options
// [MQTT-3.8.3.1]. NoLocal, RetainAsPublished and RetainHandling are 5.0 only.
type Subscription struct {
	Filter            []byte
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// Subscribe is a SUBSCRIBE packet [MQTT-3.8]; Subscriptions is reused.
type Subscribe struct {
	Version       byte
	PacketID      uint16
	Properties    Properties
	Subscriptions []Subscription
}

// Subscription option bits [MQTT-3.8.3.1].
const (
	optQoS               = 0x03
	optNoLocal           = 0x04
	optRetainAsPublished = 0x08
	optRetainHandling    = 0x30
	optRetainShift       = 4
	optReserved5         = 0xC0
	optReserved3         = 0xFC
)

// subscribeFlags are the fixed-header flags of SUBSCRIBE, UNSUBSCRIBE and
// PUBREL [MQTT-3.8.1-1], [MQTT-3.10.1-1].
const subscribeFlags = 0x02

// readPacketID reads the leading packet identifier that must not be 0
// [MQTT-2.2.1-3].
func readPacketID(b []byte, what string) (uint16, error) {
	if len(b) < 2 {
		return 0, malformed("%s: truncated packet identifier", what)
	}
	id := uint16(b[0])<<8 | uint16(b[1])
	if id == 0 {
		return 0, protocolErr("%s: packet identifier 0", what)
	}
	return id, nil
}

func checkFlags(got, want byte, what string) error {
	if got != want {
		return malformed("%s: fixed header flags 0x%X, want 0x%X", what, got, want) // [MQTT-2.1.3-1]
	}
	return nil
}

// Decode parses a SUBSCRIBE body.
func (s *Subscribe) Decode(version, flags byte, body []byte) error {
	const what = "SUBSCRIBE"
	if err := checkFlags(flags, subscribeFlags, what); err != nil {
		return err
	}
	s.Version = version
	s.Subscriptions = s.Subscriptions[:0]
	var err error
	if s.PacketID, err = readPacketID(body, what); err != nil {
		return err
	}
	b, i := body, 2
	switch {
	case version != V5:
		s.Properties.Reset()
	case len(b) > 4 && b[2] == 2 && b[3] == byte(PropSubscriptionID) && b[4]-1 < 0x7F:
		// The common 5.0 block: one Subscription Identifier of 1..127 in a
		// single byte, so allowed, not repeated, not 0 and minimal; read
		// without the general property loop.
		s.Properties.Reset()
		s.Properties.Present = bit(PropSubscriptionID)
		s.Properties.SubscriptionIDs = append(s.Properties.SubscriptionIDs, uint32(b[4]))
		i = 5
	default:
		if i, err = readProperties(&s.Properties, b, i, subscribeProps, what); err != nil {
			return err
		}
	}
	for i < len(b) {
		filter, next, ok := readBinary(b, i)
		if !ok {
			return truncated("SUBSCRIBE topic filter")
		}
		if rc := topicFilterCheck(filter); rc != 0 || version == V5 && filter[0] == '$' {
			// [MQTT-3.8.3-1]; filterCheck repeats the check to say what is wrong,
			// or finds a shared subscription to check, outside the common path.
			if err = filterCheck(filter, version, "SUBSCRIBE topic filter"); err != nil {
				return err
			}
		}
		i = next
		if i >= len(b) {
			return malformed("SUBSCRIBE: missing subscription options")
		}
		opts := b[i]
		i++
		qos := opts & optQoS
		if version != V5 {
			if opts&optReserved3 != 0 || qos == 3 {
				// [MQTT-3.8.3-4] of 3.1.1: reserved bits or QoS 3 are malformed.
				return malformed("SUBSCRIBE: options 0x%02X", opts)
			}
			opts = qos // no 5.0 options
		} else {
			if opts&optReserved5 != 0 {
				return malformed("SUBSCRIBE: reserved option bits 0x%02X", opts) // [MQTT-3.8.3-5]
			}
			if qos == 3 {
				return protocolErr("SUBSCRIBE: Maximum QoS 3") // 3.8.3.1: a Protocol Error in 5.0
			}
			if opts&optRetainHandling == optRetainHandling {
				return protocolErr("SUBSCRIBE: Retain Handling 3") // 3.8.3.1
			}
			if opts&optNoLocal != 0 && isShared(filter) {
				return protocolErr("SUBSCRIBE: No Local on a shared subscription") // [MQTT-3.8.3-4]
			}
		}
		// Filled in place, every field written: building a Subscription on
		// the stack and appending it made the CPU reload the just-written
		// bytes as wider words, a store-forwarding stall that cost a quarter
		// of this decode.
		n := len(s.Subscriptions)
		if n < cap(s.Subscriptions) {
			s.Subscriptions = s.Subscriptions[:n+1]
		} else {
			s.Subscriptions = append(s.Subscriptions, Subscription{})
		}
		sub := &s.Subscriptions[n]
		sub.Filter = filter
		sub.QoS = qos
		sub.NoLocal = opts&optNoLocal != 0
		sub.RetainAsPublished = opts&optRetainAsPublished != 0
		sub.RetainHandling = opts & optRetainHandling >> optRetainShift
	}
	if len(s.Subscriptions) == 0 {
		return protocolErr("SUBSCRIBE: no topic filter") // [MQTT-3.8.3-2] (5.0), [MQTT-3.8.3-3] (3.1.1)
	}
	return nil
}

// Append appends the SUBSCRIBE packet; 5.0 options only for V5.
func (s *Subscribe) Append(dst []byte) []byte {
	n := 2
	propLen := 0
	if s.Version == V5 {
		propLen = s.Properties.Len()
		n += varintLen(propLen) + propLen
	}
	for i := range s.Subscriptions {
		n += 3 + len(s.Subscriptions[i].Filter)
	}
	dst = AppendVarint(append(dst, byte(TypeSubscribe)<<4|subscribeFlags), n)
	dst = append(dst, byte(s.PacketID>>8), byte(s.PacketID))
	if s.Version == V5 {
		dst = s.Properties.appendProperties(dst, propLen)
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		opts := sub.QoS & optQoS
		if s.Version == V5 {
			if sub.NoLocal {
				opts |= optNoLocal
			}
			if sub.RetainAsPublished {
				opts |= optRetainAsPublished
			}
			opts |= sub.RetainHandling << optRetainShift & optRetainHandling
		}
		dst = append(appendBytes(dst, sub.Filter), opts)
	}
	return dst
}

// Suback is a SUBACK packet [MQTT-3.9]; Reasons is reused, one per filter.
type Suback struct {
	Version    byte
	PacketID   uint16
	Properties Properties
	Reasons    []ReasonCode
}

// Decode parses a SUBACK body.
func (s *Suback) Decode(version, flags byte, body []byte) error {
	const what = "SUBACK"
	if err := checkFlags(flags, 0, what); err != nil {
		return err
	}
	s.Version = version
	s.Reasons = s.Reasons[:0]
	var err error
	if s.PacketID, err = readPacketID(body, what); err != nil {
		return err
	}
	b, i := body, 2
	if version == V5 {
		if i, err = readProperties(&s.Properties, b, i, ackProps, what); err != nil {
			return err
		}
	} else {
		s.Properties.Reset()
	}
	high := uint64(subackHigh)
	if version != V5 {
		high = suback3High // [MQTT-3.9.3-2] of 3.1.1
	}
	for ; i < len(b); i++ {
		rc := ReasonCode(b[i])
		if !codeIn(subackLow, high, rc) {
			return malformed("SUBACK: reason code 0x%02X not allowed", b[i])
		}
		s.Reasons = append(s.Reasons, rc)
	}
	if len(s.Reasons) == 0 {
		return protocolErr("SUBACK: no reason code") // one per filter [MQTT-3.9.3-1]
	}
	return nil
}

// Append appends the SUBACK packet. For 3.x every failure code becomes 0x80.
func (s *Suback) Append(dst []byte) []byte {
	n := 2 + len(s.Reasons)
	propLen := 0
	if s.Version == V5 {
		propLen = s.Properties.Len()
		n += varintLen(propLen) + propLen
	}
	dst = AppendVarint(append(dst, byte(TypeSuback)<<4), n)
	dst = append(dst, byte(s.PacketID>>8), byte(s.PacketID))
	if s.Version == V5 {
		dst = s.Properties.appendProperties(dst, propLen)
		for _, rc := range s.Reasons {
			dst = append(dst, byte(rc))
		}
		return dst
	}
	for _, rc := range s.Reasons {
		if rc.IsError() || rc > GrantedQoS2 {
			rc = UnspecifiedError
		}
		dst = append(dst, byte(rc))
	}
	return dst
}

// Unsubscribe is an UNSUBSCRIBE packet [MQTT-3.10]; Filters is reused.
type Unsubscribe struct {
	Version    byte
	PacketID   uint16
	Properties Properties
	Filters    [][]byte
}

// Decode parses an UNSUBSCRIBE body.
func (u *Unsubscribe) Decode(version, flags byte, body []byte) error {
	const what = "UNSUBSCRIBE"
	if err := checkFlags(flags, subscribeFlags, what); err != nil {
		return err
	}
	u.Version = version
	u.Filters = u.Filters[:0]
	var err error
	if u.PacketID, err = readPacketID(body, what); err != nil {
		return err
	}
	b, i := body, 2
	if version == V5 {
		if i, err = readProperties(&u.Properties, b, i, unsubscribeProps, what); err != nil {
			return err
		}
	} else {
		u.Properties.Reset()
	}
	for i < len(b) {
		f, next, ok := readBinary(b, i)
		if !ok {
			return truncated("UNSUBSCRIBE topic filter")
		}
		i = next
		if rc := topicFilterCheck(f); rc != 0 || version == V5 && f[0] == '$' {
			if err = filterCheck(f, version, "UNSUBSCRIBE topic filter"); err != nil {
				return err // [MQTT-3.10.3-1]
			}
		}
		u.Filters = append(u.Filters, f)
	}
	if len(u.Filters) == 0 {
		return protocolErr("UNSUBSCRIBE: no topic filter") // [MQTT-3.10.3-2]
	}
	return nil
}

// Append appends the UNSUBSCRIBE packet.
func (u *Unsubscribe) Append(dst []byte) []byte {
	n := 2
	propLen := 0
	if u.Version == V5 {
		propLen = u.Properties.Len()
		n += varintLen(propLen) + propLen
	}
	for _, f := range u.Filters {
		n += 2 + len(f)
	}
	dst = AppendVarint(append(dst, byte(TypeUnsubscribe)<<4|subscribeFlags), n)
	dst = append(dst, byte(u.PacketID>>8), byte(u.PacketID))
	if u.Version == V5 {
		dst = u.Properties.appendProperties(dst, propLen)
	}
	for _, f := range u.Filters {
		dst = appendBytes(dst, f)
	}
	return dst
}

// Unsuback is an UNSUBACK packet [MQTT-3.11]. 3.x carries only the packet
// identifier; 5.0 adds properties and one reason code per filter.
type Unsuback struct {
	Version    byte
	PacketID   uint16
	Properties Properties
	Reasons    []ReasonCode
}

// Decode parses an UNSUBACK body.
func (u *Unsuback) Decode(version, flags byte, body []byte) error {
	const what = "UNSUBACK"
	if err := checkFlags(flags, 0, what); err != nil {
		return err
	}
	u.Version = version
	u.Reasons = u.Reasons[:0]
	var err error
	if u.PacketID, err = readPacketID(body, what); err != nil {
		return err
	}
	if version != V5 {
		u.Properties.Reset()
		if len(body) != 2 {
			return malformed("UNSUBACK: remaining length %d, want 2", len(body))
		}
		return nil
	}
	b := body
	i, err := readProperties(&u.Properties, b, 2, ackProps, what)
	if err != nil {
		return err
	}
	for ; i < len(b); i++ {
		rc := ReasonCode(b[i])
		if !codeIn(unsubackLow, unsubackHigh, rc) {
			return malformed("UNSUBACK: reason code 0x%02X not allowed", b[i])
		}
		u.Reasons = append(u.Reasons, rc)
	}
	if len(u.Reasons) == 0 {
		return protocolErr("UNSUBACK: no reason code") // one per filter [MQTT-3.11.3-1]
	}
	return nil
}

// Append appends the UNSUBACK packet.
func (u *Unsuback) Append(dst []byte) []byte {
	if u.Version != V5 {
		return append(dst, byte(TypeUnsuback)<<4, 2, byte(u.PacketID>>8), byte(u.PacketID))
	}
	propLen := u.Properties.Len()
	n := 2 + varintLen(propLen) + propLen + len(u.Reasons)
	dst = AppendVarint(append(dst, byte(TypeUnsuback)<<4), n)
	dst = append(dst, byte(u.PacketID>>8), byte(u.PacketID))
	dst = u.Properties.appendProperties(dst, propLen)
	for _, rc := range u.Reasons {
		dst = append(dst, byte(rc))
	}
	return dst
}
