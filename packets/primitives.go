package packets

import (
	"encoding/binary"
	"math/bits"
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

// appendHeader appends a fixed header: the first byte and the remaining
// length. Remaining lengths under 16384 (every packet but large payloads)
// are written with one capacity check instead of one per byte.
func appendHeader(dst []byte, first byte, remaining int) []byte {
	if remaining < 1<<7 {
		return append(dst, first, byte(remaining))
	}
	if remaining < 1<<14 {
		return append(dst, first, byte(remaining)|0x80, byte(remaining>>7))
	}
	return AppendVarint(append(dst, first), remaining)
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

// readBinary returns the length-prefixed binary data at b[i:], aliasing b,
// and the index after it; ok is false if b is too short. The returned
// slice's capacity ends at its length so that an append by the caller
// cannot overwrite the bytes that follow. It reports failure with a bool,
// not an error, so that it stays small enough to be inlined.
func readBinary(b []byte, i int) (field []byte, next int, ok bool) {
	if i < 0 || len(b)-i < 2 {
		return nil, i, false
	}
	j := i + 2 + (int(b[i])<<8 | int(b[i+1]))
	if j > len(b) {
		return nil, i, false
	}
	return b[i+2 : j : j], j, true
}

func truncated(what string) error { return malformed("%s: length exceeds the packet", what) }

func badUTF8(what string) error {
	return malformed("%s: not valid UTF-8 or contains U+0000", what)
}

// readString is readBinary plus the UTF-8 rules of [MQTT-1.5.4-1] and
// [MQTT-1.5.4-2]: ill-formed UTF-8 or U+0000 is a malformed packet. Like
// readBinary it reports failure with a bool so that it inlines; stringErr
// then says which rule failed.
func readString(b []byte, i int) ([]byte, int, bool) {
	s, j, ok := readBinary(b, i)
	if ok && ValidUTF8String(s) {
		return s, j, true
	}
	return nil, i, false
}

// stringErr explains why readString(b, i) failed.
func stringErr(b []byte, i int, what string) error {
	if _, _, ok := readBinary(b, i); !ok {
		return truncated(what)
	}
	return badUTF8(what)
}

// Word-at-a-time byte tests ("Bit Twiddling Hacks"): for a word v,
// (v-ones)&^v&highs is non-zero exactly when some byte of v is zero, and
// v&highs when some byte is non-ASCII.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// ValidUTF8String reports whether b is well-formed UTF-8 without U+0000,
// as MQTT requires of every UTF-8 Encoded String [MQTT-1.5.4-1],
// [MQTT-1.5.4-2]. Surrogates (U+D800..U+DFFF) and overlong forms are
// ill-formed UTF-8 and rejected. ASCII is checked eight bytes at a time,
// the common case for topics and identifiers.
func ValidUTF8String(b []byte) bool {
	const ones32, highs32 = 0x01010101, 0x80808080
	switch {
	case len(b) >= 8:
		var acc uint64
		for i := 0; i <= len(b)-8; i += 8 {
			v := binary.LittleEndian.Uint64(b[i:])
			acc |= (v-ones)&^v | v
		}
		v := binary.LittleEndian.Uint64(b[len(b)-8:])
		if (acc|(v-ones)&^v|v)&highs == 0 {
			return true
		}
	case len(b) >= 4:
		// Two overlapping 4-byte words cover 4..7 bytes.
		v := binary.LittleEndian.Uint32(b)
		w := binary.LittleEndian.Uint32(b[len(b)-4:])
		if ((v-ones32)&^v|v|(w-ones32)&^w|w)&highs32 == 0 {
			return true
		}
	default:
		ok := true
		for _, c := range b {
			if c == 0 || c >= utf8.RuneSelf {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return validUTF8Tail(b)
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

// scanTopic reports whether b holds any byte a topic check must look at
// (NUL, '+', '#' or non-ASCII) and whether any is non-ASCII (so UTF-8
// validation is needed at all). It reads eight bytes at a time, the last
// word overlapping the previous one rather than falling back to a byte loop
// for the tail. Plain ASCII topics, the common case, need nothing more.
//
// '#' (0x23) and '+' (0x2B) differ only in bit 3, so setting that bit in
// every byte and comparing with '+' finds both with one zero-byte test; the
// tests are OR-ed without branches.
func scanTopic(b []byte) (special, nonASCII bool) {
	if len(b) < 8 {
		for _, c := range b {
			if c == 0 || c == '+' || c == '#' {
				special = true
			} else if c >= utf8.RuneSelf {
				special, nonASCII = true, true
			}
		}
		return special, nonASCII
	}
	var acc, high uint64
	for i := 0; i <= len(b)-8; i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		acc |= specialBits(v)
		high |= v
	}
	v := binary.LittleEndian.Uint64(b[len(b)-8:])
	return acc|specialBits(v) != 0, (high|v)&highs != 0
}

// specialBits is non-zero if any byte of v is non-ASCII, NUL, '+' or '#'.
func specialBits(v uint64) uint64 {
	const bit3, plus = 0x08 * ones, '+' * ones
	w := (v | bit3) ^ plus
	return ((v-ones)&^v | (w-ones)&^w | v) & highs
}

// topicNameCheck classifies a topic name: 0 if valid (ignoring emptiness),
// MalformedPacket for bad UTF-8 or U+0000, TopicNameInvalid for a wildcard
// character [MQTT-3.3.2-2], [MQTT-4.7.1-1].
func topicNameCheck(b []byte) ReasonCode {
	special, nonASCII := scanTopic(b)
	if !special {
		return 0
	}
	wildcard := false
	for _, c := range b {
		if c == 0 {
			return MalformedPacket
		}
		if c == '+' || c == '#' {
			wildcard = true
		}
	}
	if nonASCII && !utf8.Valid(b) {
		return MalformedPacket
	}
	if wildcard {
		return TopicNameInvalid
	}
	return 0
}

// ValidTopicName reports whether b may be the topic of a PUBLISH: non-empty
// [MQTT-4.7.3-1], no wildcard [MQTT-3.3.2-2], valid UTF-8 without U+0000.
func ValidTopicName(b []byte) bool { return len(b) > 0 && topicNameCheck(b) == 0 }

// topicFilterCheck classifies a topic filter like topicNameCheck, with
// TopicFilterInvalid for an empty filter [MQTT-4.7.3-1], a '#' that is not
// alone or after '/' and last [MQTT-4.7.1-2], or a '+' that does not fill a
// whole level [MQTT-4.7.1-3]. MalformedPacket (U+0000, ill-formed UTF-8)
// wins over TopicFilterInvalid wherever the two occur in b.
//
// One pass over b, eight bytes at a time: specialBits flags every byte that
// is NUL, '+', '#' or non-ASCII (and, after a genuine NUL or wildcard, maybe
// a neighbour too; each flagged byte is looked at, so a false flag costs a
// comparison and changes nothing). Only flagged bytes are examined, so a
// filter such as sensors/+/temp costs two word tests and one placement
// check instead of a byte loop. The last word overlaps the previous one;
// examining a byte twice gives the same answer. A non-ASCII byte hands the
// whole filter to topicFilterCheckBytes, which validates UTF-8 as well.
func topicFilterCheck(b []byte) ReasonCode {
	n := len(b)
	if n < 8 {
		return topicFilterCheckBytes(b)
	}
	misplaced := false
	for i := 0; ; {
		if m := specialBits(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			for ; m != 0; m &= m - 1 {
				j := i + bits.TrailingZeros64(m)>>3
				switch c := b[j]; {
				case c == '+':
					misplaced = misplaced || !plusPlaced(b, j)
				case c == '#':
					misplaced = misplaced || !hashPlaced(b, j)
				case c == 0:
					return MalformedPacket
				case c >= utf8.RuneSelf:
					return topicFilterCheckBytes(b)
				}
			}
		}
		if i == n-8 {
			break
		}
		i = min(i+8, n-8)
	}
	if misplaced {
		return TopicFilterInvalid
	}
	return 0
}

// plusPlaced reports whether the '+' at b[j] fills a whole level
// [MQTT-4.7.1-3].
func plusPlaced(b []byte, j int) bool {
	return (j == 0 || b[j-1] == '/') && (j == len(b)-1 || b[j+1] == '/')
}

// hashPlaced reports whether the '#' at b[j] is last and alone or after a
// '/' [MQTT-4.7.1-2].
func hashPlaced(b []byte, j int) bool {
	return j == len(b)-1 && (j == 0 || b[j-1] == '/')
}

// topicFilterCheckBytes is topicFilterCheck a byte at a time: for filters
// shorter than a word, and for any filter with a non-ASCII byte, which
// needs UTF-8 validation anyway.
func topicFilterCheckBytes(b []byte) ReasonCode {
	if len(b) == 0 {
		return TopicFilterInvalid
	}
	misplaced, nonASCII := false, false
	for j, c := range b {
		switch {
		case c == '+':
			misplaced = misplaced || !plusPlaced(b, j)
		case c == '#':
			misplaced = misplaced || !hashPlaced(b, j)
		case c == 0:
			return MalformedPacket
		case c >= utf8.RuneSelf:
			nonASCII = true
		}
	}
	if nonASCII && !utf8.Valid(b) {
		return MalformedPacket
	}
	if misplaced {
		return TopicFilterInvalid
	}
	return 0
}

// ValidTopicFilter reports whether b is a valid topic filter: non-empty,
// valid UTF-8 without U+0000, wildcards placed as [MQTT-4.7.1-2] and
// [MQTT-4.7.1-3] require.
func ValidTopicFilter(b []byte) bool { return topicFilterCheck(b) == 0 }

// sharePrefix starts a shared subscription filter [MQTT-4.8.2].
const sharePrefix = "$share/"

// isShared reports whether b names a shared subscription.
func isShared(b []byte) bool {
	return len(b) >= len(sharePrefix) && string(b[:len(sharePrefix)]) == sharePrefix
}

// validSharedFilter checks the 5.0 shared subscription form
// $share/{ShareName}/{filter}, given that b already passed the filter
// checks: the share name is at least one character without wildcards
// [MQTT-4.8.2-1], [MQTT-4.8.2-2], and a filter follows it.
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
	if rc := topicFilterCheck(b); rc != 0 {
		return Errorf(rc, "%s: invalid topic filter %q", what, b)
	}
	if version == V5 && len(b) > len(sharePrefix) && b[0] == '$' && isShared(b) && !validSharedFilter(b) {
		return Errorf(TopicFilterInvalid, "%s: bad shared subscription %q", what, b)
	}
	return nil
}
