package packets

import (
	"encoding/binary"
	"unicode/utf8"
)

// MaxRemaining is the largest remaining length a variable byte integer of
// four bytes can carry [MQTT-1.5.5].
const MaxRemaining = 268435455

// MaxPacketSize is the largest whole packet: one type byte, four length
// bytes and MaxRemaining bytes of body.
const MaxPacketSize = MaxRemaining + 5

func malformed(format string, args ...any) error { return Errorf(MalformedPacket, format, args...) }

func protocolErr(format string, args ...any) error { return Errorf(ProtocolError, format, args...) }

// AppendVarint appends n as a variable byte integer [MQTT-1.5.5], using the
// minimum number of bytes [MQTT-1.5.5-1]. n must be in 0..MaxRemaining.
func AppendVarint(dst []byte, n int) []byte {
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// varintLen is the encoded size of n as a variable byte integer.
func varintLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	}
	return 4
}

// readVarint decodes the variable byte integer at b[i:] and returns it with
// the index after it. More than four bytes is malformed [MQTT-1.5.5]; so is a
// non-minimal encoding when minimal is set (every 5.0 varint [MQTT-1.5.5-1]).
func readVarint(b []byte, i int, minimal bool, what string) (int, int, error) {
	value, shift := 0, 0
	for n := 0; n < 4; n++ {
		if i >= len(b) {
			return 0, i, malformed("%s: truncated variable byte integer", what)
		}
		c := b[i]
		i++
		value |= int(c&0x7F) << shift
		if c < 0x80 {
			if minimal && c == 0 && n > 0 {
				return 0, i, malformed("%s: variable byte integer not in its minimal form", what)
			}
			return value, i, nil
		}
		shift += 7
	}
	return 0, i, malformed("%s: variable byte integer longer than 4 bytes", what)
}

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendBytes appends a two-byte length prefix and b (UTF-8 string or
// binary data [MQTT-1.5.4], [MQTT-1.5.6]). b must be at most 65535 bytes.
func appendBytes(dst []byte, b []byte) []byte {
	dst = append(dst, byte(len(b)>>8), byte(len(b)))
	return append(dst, b...)
}

// readBinary returns the length-prefixed binary data at b[i:], aliasing b.
// The returned slice's capacity ends at its length so that an append by the
// caller cannot overwrite the bytes that follow it.
func readBinary(b []byte, i int, what string) ([]byte, int, error) {
	if len(b)-i < 2 {
		return nil, i, malformed("%s: truncated length", what)
	}
	n := int(binary.BigEndian.Uint16(b[i:]))
	i += 2
	if n > len(b)-i {
		return nil, i, malformed("%s: length %d exceeds the %d bytes left", what, n, len(b)-i)
	}
	return b[i : i+n : i+n], i + n, nil
}

// readString is readBinary plus the UTF-8 rules of [MQTT-1.5.4-1] and
// [MQTT-1.5.4-2]: ill-formed UTF-8 or U+0000 is a malformed packet.
func readString(b []byte, i int, what string) ([]byte, int, error) {
	s, i, err := readBinary(b, i, what)
	if err != nil {
		return nil, i, err
	}
	if !ValidUTF8String(s) {
		return nil, i, malformed("%s: not valid UTF-8 or contains U+0000", what)
	}
	return s, i, nil
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasZeroByte reports whether any byte of v is zero (exact, from
// "Bit Twiddling Hacks").
func hasZeroByte(v uint64) bool { return (v-ones)&^v&highs != 0 }

// ValidUTF8String reports whether b is well-formed UTF-8 without U+0000,
// as MQTT requires of every UTF-8 Encoded String [MQTT-1.5.4-1],
// [MQTT-1.5.4-2]. Surrogates (U+D800..U+DFFF) and overlong forms are
// ill-formed UTF-8 and rejected. ASCII is checked eight bytes at a time,
// the common case for topics and identifiers.
func ValidUTF8String(b []byte) bool {
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		if v&highs != 0 || hasZeroByte(v) {
			break
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c == 0 {
			return false
		}
		if c >= utf8.RuneSelf {
			return validUTF8Tail(b[i:])
		}
	}
	return true
}

// validUTF8Tail is the slow path: b starts at a non-ASCII byte.
func validUTF8Tail(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	// A zero byte never occurs inside a multi-byte sequence, so a plain
	// byte scan finds every U+0000.
	for _, c := range b {
		if c == 0 {
			return false
		}
	}
	return true
}

// topicNameCheck classifies a topic name: 0 if valid (ignoring emptiness),
// MalformedPacket for bad UTF-8 or U+0000, TopicNameInvalid for a wildcard
// character [MQTT-3.3.2-2], [MQTT-4.7.1-1]. One pass over the bytes serves
// all three checks.
func topicNameCheck(b []byte) ReasonCode {
	const plus, hash = '+' * ones, '#' * ones
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		if v&highs != 0 || hasZeroByte(v) || hasZeroByte(v^plus) || hasZeroByte(v^hash) {
			break
		}
	}
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == 0:
			return MalformedPacket
		case c == '+' || c == '#':
			if !ValidUTF8String(b[i:]) {
				return MalformedPacket
			}
			return TopicNameInvalid
		case c >= utf8.RuneSelf:
			if !validUTF8Tail(b[i:]) {
				return MalformedPacket
			}
			for _, c := range b[i:] {
				if c == '+' || c == '#' {
					return TopicNameInvalid
				}
			}
			return 0
		}
	}
	return 0
}

// ValidTopicName reports whether b may be the topic of a PUBLISH: non-empty
// [MQTT-4.7.3-1], no wildcard [MQTT-3.3.2-2], valid UTF-8 without U+0000.
func ValidTopicName(b []byte) bool { return len(b) > 0 && topicNameCheck(b) == 0 }

// ValidTopicFilter reports whether b is a valid topic filter: non-empty
// [MQTT-4.7.3-1], valid UTF-8 without U+0000, '#' only alone or after '/'
// and last [MQTT-4.7.1-2], '+' filling a whole level [MQTT-4.7.1-3].
func ValidTopicFilter(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	switch topicNameCheck(b) {
	case 0:
		return true // no wildcard at all
	case MalformedPacket:
		return false
	}
	for i, c := range b {
		switch c {
		case '#':
			if i != len(b)-1 || (i > 0 && b[i-1] != '/') {
				return false
			}
		case '+':
			if (i > 0 && b[i-1] != '/') || (i < len(b)-1 && b[i+1] != '/') {
				return false
			}
		}
	}
	return true
}

// sharePrefix starts a shared subscription filter [MQTT-4.8.2].
const sharePrefix = "$share/"

// validSharedFilter checks the 5.0 shared subscription form
// $share/{ShareName}/{filter}, given that b already passed
// ValidTopicFilter: the share name is at least one character without
// wildcards [MQTT-4.8.2-1], [MQTT-4.8.2-2], and a filter follows it.
func isShared(b []byte) bool {
	return len(b) >= len(sharePrefix) && string(b[:len(sharePrefix)]) == sharePrefix
}

func validSharedFilter(b []byte) bool {
	rest := b[len(sharePrefix):]
	for i, c := range rest {
		switch c {
		case '+', '#':
			return false
		case '/':
			return i > 0 && i < len(rest)-1
		}
	}
	return false
}

// filterCheck validates a topic filter read from SUBSCRIBE or UNSUBSCRIBE:
// bad UTF-8 is malformed, a bad wildcard or share name is TopicFilterInvalid.
func filterCheck(b []byte, version byte, what string) error {
	if ValidTopicFilter(b) {
		if version == V5 && isShared(b) && !validSharedFilter(b) {
			return Errorf(TopicFilterInvalid, "%s: bad shared subscription %q", what, b)
		}
		return nil
	}
	if len(b) > 0 && !ValidUTF8String(b) {
		return malformed("%s: not valid UTF-8 or contains U+0000", what)
	}
	return Errorf(TopicFilterInvalid, "%s: invalid topic filter %q", what, b)
}
