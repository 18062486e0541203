package packets

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// h decodes spaced hex; a quoted run "text" inside stands for its bytes.
func h(t testing.TB, spec string) []byte {
	t.Helper()
	var out []byte
	for len(spec) > 0 {
		spec = strings.TrimLeft(spec, " ")
		if spec == "" {
			break
		}
		if spec[0] == '"' {
			end := strings.IndexByte(spec[1:], '"')
			out = append(out, spec[1:1+end]...)
			spec = spec[2+end:]
			continue
		}
		end := strings.IndexAny(spec, " \"")
		if end < 0 {
			end = len(spec)
		}
		b, err := hex.DecodeString(spec[:end])
		if err != nil {
			t.Fatalf("bad hex %q: %v", spec[:end], err)
		}
		out = append(out, b...)
		spec = spec[end:]
	}
	return out
}

// decodeWire frames and decodes one whole packet.
func decodeWire(version byte, wire []byte) (*Packet, error) {
	r := NewReader(bytes.NewReader(wire), 64)
	r.SetVersion(version)
	fh, body, err := r.ReadPacket()
	if err != nil {
		return nil, err
	}
	var p Packet
	return &p, p.Decode(version, fh, body)
}

// withLen builds a packet from its first byte and body.
func withLen(first byte, body []byte) []byte {
	return append(AppendVarint([]byte{first}, len(body)), body...)
}

// malformations has one row per class of malformed or rule-breaking packet
// and the reason code the decoder must return. body is the packet body; the
// fixed header is first plus the computed remaining length.
var malformations = []struct {
	name    string
	version byte
	first   byte
	body    string
	code    ReasonCode
}{
	// Reserved fixed-header flags [MQTT-2.1.3-1].
	{"CONNECT flags", V5, 0x11, `00 04 "MQTT" 05 02 00 3C 00 00 01 "c"`, MalformedPacket},
	{"PUBREL flags 0", V5, 0x60, `00 01`, MalformedPacket},
	{"PUBACK flags", V311, 0x42, `00 01`, MalformedPacket},
	{"SUBSCRIBE flags 0", V311, 0x80, `00 01 00 01 "a" 00`, MalformedPacket},
	{"UNSUBSCRIBE flags 0", V311, 0xA0, `00 01 00 01 "a"`, MalformedPacket},
	{"CONNACK flags", V5, 0x21, `00 00 00`, MalformedPacket},
	{"SUBACK flags", V5, 0x91, `00 01 00 00`, MalformedPacket},
	{"UNSUBACK flags", V5, 0xB1, `00 01 00 00`, MalformedPacket},
	{"PINGREQ flags", V5, 0xC1, ``, MalformedPacket},
	{"DISCONNECT flags", V5, 0xE1, ``, MalformedPacket},
	{"AUTH flags", V5, 0xF1, ``, MalformedPacket},
	{"reserved type 0", V5, 0x00, ``, MalformedPacket},
	// QoS 3 [MQTT-3.3.1-4], DUP on QoS 0 [MQTT-3.3.1-2].
	{"PUBLISH QoS 3", V5, 0x36, `00 01 "a" 00 01 00`, MalformedPacket},
	{"PUBLISH DUP QoS 0", V5, 0x38, `00 01 "a" 00`, ProtocolError},
	{"will QoS 3", V311, 0x10, `00 04 "MQTT" 04 1E 00 3C 00 01 "c" 00 01 "t" 00 00`, MalformedPacket},
	{"subscription QoS 3 in 3.1.1", V311, 0x82, `00 01 00 01 "a" 03`, MalformedPacket},
	{"subscription QoS 3 in 5.0", V5, 0x82, `00 01 00 00 01 "a" 03`, ProtocolError},
	// Remaining length that disagrees with the content.
	{"PUBACK 3.1.1 too long", V311, 0x40, `00 01 00`, MalformedPacket},
	{"PUBACK too short", V5, 0x40, `00`, MalformedPacket},
	{"PUBACK 5.0 bytes after properties", V5, 0x40, `00 01 00 00 FF`, MalformedPacket},
	{"CONNECT trailing bytes", V311, 0x10, `00 04 "MQTT" 04 02 00 3C 00 01 "c" FF`, MalformedPacket},
	{"CONNECT truncated", V311, 0x10, `00 04 "MQTT" 04 02 00`, MalformedPacket},
	{"CONNECT truncated level", V311, 0x10, `00 04 "MQTT"`, MalformedPacket},
	{"CONNECT truncated client id", V311, 0x10, `00 04 "MQTT" 04 02 00 3C 00 05 "c"`, MalformedPacket},
	{"CONNECT truncated will payload", V311, 0x10, `00 04 "MQTT" 04 06 00 3C 00 01 "c" 00 01 "t" 00 05`, MalformedPacket},
	{"CONNECT truncated password", V311, 0x10, `00 04 "MQTT" 04 C2 00 3C 00 01 "c" 00 01 "u" 00 05`, MalformedPacket},
	{"CONNECT truncated will topic", V311, 0x10, `00 04 "MQTT" 04 06 00 3C 00 01 "c" 00 05`, MalformedPacket},
	{"PUBLISH topic longer than packet", V311, 0x30, `00 09 "a"`, MalformedPacket},
	{"PUBLISH no topic length", V311, 0x30, `00`, MalformedPacket},
	{"PUBLISH truncated packet id", V311, 0x32, `00 01 "a" 00`, MalformedPacket},
	{"property length beyond packet", V5, 0x30, `00 01 "a" 09 01`, MalformedPacket},
	{"property value truncated", V5, 0x30, `00 01 "a" 03 02 00 00`, MalformedPacket},
	{"string property truncated", V5, 0x30, `00 01 "a" 03 03 00 05`, MalformedPacket},
	{"flag property truncated", V5, 0x30, `00 01 "a" 01 01`, MalformedPacket},
	{"user property value truncated", V5, 0x30, `00 01 "a" 06 26 00 01 "k" 00 05`, MalformedPacket},
	{"user property name bad UTF-8", V5, 0x30, `00 01 "a" 07 26 00 01 FF 00 01 "v"`, MalformedPacket},
	{"CONNACK 3.1.1 too long", V311, 0x20, `00 00 00`, MalformedPacket},
	{"CONNACK 5.0 too short", V5, 0x20, `00 00`, MalformedPacket},
	{"CONNACK 5.0 trailing", V5, 0x20, `00 00 00 FF`, MalformedPacket},
	{"UNSUBACK 3.1.1 too long", V311, 0xB0, `00 01 00`, MalformedPacket},
	{"DISCONNECT 3.1.1 with body", V311, 0xE0, `00`, MalformedPacket},
	{"DISCONNECT trailing", V5, 0xE0, `00 00 FF`, MalformedPacket},
	{"PINGREQ with body", V5, 0xC0, `00`, MalformedPacket},
	{"SUBSCRIBE missing options", V5, 0x82, `00 01 00 00 01 "a"`, MalformedPacket},
	{"SUBSCRIBE filter truncated", V5, 0x82, `00 01 00 00 05 "a"`, MalformedPacket},
	{"UNSUBSCRIBE filter truncated", V5, 0xA2, `00 01 00 00 05 "a"`, MalformedPacket},
	{"SUBSCRIBE no packet id", V5, 0x82, `00`, MalformedPacket},
	// Variable byte integers: non-minimal where 5.0 forbids it [MQTT-1.5.5-1].
	{"property length not minimal", V5, 0x30, `00 01 "a" 80 00`, MalformedPacket},
	{"subscription id not minimal", V5, 0x30, `00 01 "a" 03 0B 81 00`, MalformedPacket},
	{"subscription id over 4 bytes", V5, 0x30, `00 01 "a" 06 0B FF FF FF FF 01`, MalformedPacket},
	{"subscription id truncated", V5, 0x30, `00 01 "a" 02 0B 81`, MalformedPacket},
	// UTF-8 strings [MQTT-1.5.4-1], [MQTT-1.5.4-2].
	{"topic invalid UTF-8", V311, 0x30, `00 03 61 FF 62`, MalformedPacket},
	{"topic U+0000", V311, 0x30, `00 03 61 00 62`, MalformedPacket},
	{"topic long U+0000", V311, 0x30, `00 0A "abcdefgh" 00 62`, MalformedPacket},
	{"client id surrogate", V311, 0x10, `00 04 "MQTT" 04 02 00 3C 00 03 ED A0 80`, MalformedPacket},
	{"client id overlong NUL", V311, 0x10, `00 04 "MQTT" 04 02 00 3C 00 02 C0 80`, MalformedPacket},
	{"protocol name bad UTF-8", V311, 0x10, `00 04 FF "QTT" 04 02 00 3C 00 01 "c"`, MalformedPacket},
	{"protocol name truncated", V311, 0x10, `00 09 "MQTT"`, MalformedPacket},
	{"user name bad UTF-8", V311, 0x10, `00 04 "MQTT" 04 82 00 3C 00 01 "c" 00 01 FF`, MalformedPacket},
	{"will topic bad UTF-8", V311, 0x10, `00 04 "MQTT" 04 06 00 3C 00 01 "c" 00 01 FF 00 00`, MalformedPacket},
	{"content type bad UTF-8", V5, 0x30, `00 01 "a" 04 03 00 01 FF`, MalformedPacket},
	{"response topic bad UTF-8", V5, 0x30, `00 01 "a" 04 08 00 01 FF`, MalformedPacket},
	{"response topic truncated", V5, 0x30, `00 01 "a" 03 08 00 05`, MalformedPacket},
	{"filter bad UTF-8", V311, 0x82, `00 01 00 02 "+" FF 00`, MalformedPacket},
	{"filter U+0000", V311, 0xA2, `00 01 00 01 00`, MalformedPacket},
	// A property that may appear once, twice.
	{"message expiry twice", V5, 0x30, `00 01 "a" 0A 02 00 00 00 01 02 00 00 00 01`, ProtocolError},
	{"subscription id twice in SUBSCRIBE", V5, 0x82, `00 01 04 0B 01 0B 02 00 01 "a" 00`, ProtocolError},
	{"reason string twice", V5, 0x40, `00 01 80 08 1F 00 01 "a" 1F 00 01 "b"`, ProtocolError},
	// A property not allowed in the packet [MQTT-2.2.2.2].
	{"session expiry in PUBLISH", V5, 0x30, `00 01 "a" 05 11 00 00 00 01`, MalformedPacket},
	{"unknown property id", V5, 0x30, `00 01 "a" 02 05 00`, MalformedPacket},
	{"property id over 0x7F", V5, 0x30, `00 01 "a" 02 A6 00`, MalformedPacket},
	{"will delay in CONNECT properties", V5, 0x10, `00 04 "MQTT" 05 02 00 3C 05 18 00 00 00 01 00 01 "c"`, MalformedPacket},
	{"topic alias in will", V5, 0x10, `00 04 "MQTT" 05 06 00 3C 00 00 01 "c" 03 23 00 01 00 01 "t" 00 00`, MalformedPacket},
	{"topic alias in SUBSCRIBE", V5, 0x82, `00 01 03 23 00 01 00 01 "a" 00`, MalformedPacket},
	{"user property in nothing but user", V5, 0xA2, `00 01 02 0B 01 00 01 "a"`, MalformedPacket},
	// Property values outside their range.
	{"payload format 2", V5, 0x30, `00 01 "a" 02 01 02`, ProtocolError},
	{"request problem info 2", V5, 0x10, `00 04 "MQTT" 05 02 00 3C 02 17 02 00 01 "c"`, ProtocolError},
	{"receive maximum 0", V5, 0x10, `00 04 "MQTT" 05 02 00 3C 03 21 00 00 00 01 "c"`, ProtocolError},
	{"maximum packet size 0", V5, 0x10, `00 04 "MQTT" 05 02 00 3C 05 27 00 00 00 00 00 01 "c"`, ProtocolError},
	{"topic alias 0", V5, 0x30, `00 01 "a" 03 23 00 00`, TopicAliasInvalid},
	{"subscription id 0", V5, 0x82, `00 01 02 0B 00 00 01 "a" 00`, ProtocolError},
	{"maximum QoS 2", V5, 0x20, `00 00 02 24 02`, ProtocolError},
	{"auth data without method", V5, 0xF0, `18 04 16 00 01 01`, ProtocolError},
	{"response topic wildcard", V5, 0x30, `00 01 "a" 04 08 00 01 "#"`, ProtocolError},
	{"response topic empty", V5, 0x30, `00 01 "a" 03 08 00 00`, ProtocolError},
	// Packet identifier 0 where forbidden [MQTT-2.2.1-3].
	{"PUBLISH QoS 1 id 0", V311, 0x32, `00 01 "a" 00 00`, ProtocolError},
	{"PUBACK id 0", V5, 0x40, `00 00`, ProtocolError},
	{"SUBSCRIBE id 0", V311, 0x82, `00 00 00 01 "a" 00`, ProtocolError},
	{"UNSUBSCRIBE id 0", V311, 0xA2, `00 00 00 01 "a"`, ProtocolError},
	{"SUBACK id 0", V311, 0x90, `00 00 00`, ProtocolError},
	{"UNSUBACK id 0", V311, 0xB0, `00 00`, ProtocolError},
	// Topic names and filters [MQTT-3.3.2-2], [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-1].
	{"topic name with +", V311, 0x30, `00 03 "a/+"`, TopicNameInvalid},
	{"topic name with #", V5, 0x30, `00 01 "#" 00`, TopicNameInvalid},
	{"long topic name with #", V5, 0x30, `00 0B "sensors/a/#" 00`, TopicNameInvalid},
	{"non-ASCII topic with +", V311, 0x30, `00 04 C3 A9 2F 2B`, TopicNameInvalid},
	{"will topic with +", V311, 0x10, `00 04 "MQTT" 04 06 00 3C 00 01 "c" 00 01 "+" 00 00`, TopicNameInvalid},
	{"will topic empty", V311, 0x10, `00 04 "MQTT" 04 06 00 3C 00 01 "c" 00 00 00 00`, TopicNameInvalid},
	{"empty topic 3.1.1", V311, 0x30, `00 00`, ProtocolError},
	{"empty topic without alias", V5, 0x30, `00 00 00`, ProtocolError},
	{"empty filter", V311, 0x82, `00 01 00 00 00`, TopicFilterInvalid},
	{"# not last", V311, 0x82, `00 01 00 05 "a/#/b" 00`, TopicFilterInvalid},
	{"# inside a level", V311, 0x82, `00 01 00 02 "a#" 00`, TopicFilterInvalid},
	{"+ inside a level", V5, 0xA2, `00 01 00 00 02 "a+"`, TopicFilterInvalid},
	{"+ before text", V5, 0xA2, `00 01 00 00 03 "+a/"`, TopicFilterInvalid},
	{"long filter with bad +", V5, 0x82, `00 01 00 00 0C "sensors/+x/t" 00`, TopicFilterInvalid},
	{"shared without name", V5, 0x82, `00 01 00 00 09 "$share//x" 00`, TopicFilterInvalid},
	{"shared without filter", V5, 0x82, `00 01 00 00 08 "$share/g" 00`, TopicFilterInvalid},
	{"shared name with +", V5, 0x82, `00 01 00 00 0A "$share/+/x" 00`, TopicFilterInvalid},
	{"shared with empty filter", V5, 0x82, `00 01 00 00 09 "$share/g/" 00`, TopicFilterInvalid},
	// SUBSCRIBE or UNSUBSCRIBE with no filter [MQTT-3.8.3-3], [MQTT-3.10.3-2].
	{"SUBSCRIBE no filter", V311, 0x82, `00 01`, ProtocolError},
	{"SUBSCRIBE 5.0 no filter", V5, 0x82, `00 01 00`, ProtocolError},
	{"UNSUBSCRIBE no filter", V5, 0xA2, `00 01 00`, ProtocolError},
	{"SUBACK no reason", V5, 0x90, `00 01 00`, ProtocolError},
	{"UNSUBACK no reason", V5, 0xB0, `00 01 00`, ProtocolError},
	// Unknown reason codes.
	{"PUBACK reason 0x05", V5, 0x40, `00 01 05`, MalformedPacket},
	{"PUBCOMP reason 0x10", V5, 0x70, `00 01 10`, MalformedPacket},
	{"CONNACK reason 0x01", V5, 0x20, `00 01 00`, MalformedPacket},
	{"CONNACK 3.1.1 return code 6", V311, 0x20, `00 06`, MalformedPacket},
	{"SUBACK reason 0x03", V5, 0x90, `00 01 00 03`, MalformedPacket},
	{"SUBACK 3.1.1 reason 0x87", V311, 0x90, `00 01 87`, MalformedPacket},
	{"UNSUBACK reason 0x02", V5, 0xB0, `00 01 00 02`, MalformedPacket},
	{"DISCONNECT reason 0x03", V5, 0xE0, `03`, MalformedPacket},
	{"DISCONNECT reason 0xFF with props", V5, 0xE0, `FF 00`, MalformedPacket},
	{"AUTH reason 0x01", V5, 0xF0, `01`, MalformedPacket},
	// Subscription options' reserved bits [MQTT-3.8.3-5] and values.
	{"5.0 options reserved bits", V5, 0x82, `00 01 00 00 01 "a" 40`, MalformedPacket},
	{"3.1.1 options reserved bits", V311, 0x82, `00 01 00 01 "a" 04`, MalformedPacket},
	{"retain handling 3", V5, 0x82, `00 01 00 00 01 "a" 30`, ProtocolError},
	{"no local on shared", V5, 0x82, `00 01 00 00 0A "$share/g/x" 04`, ProtocolError},
	// CONNECT rules.
	{"CONNECT reserved flag", V311, 0x10, `00 04 "MQTT" 04 03 00 3C 00 01 "c"`, MalformedPacket},
	{"will QoS without will", V311, 0x10, `00 04 "MQTT" 04 0A 00 3C 00 01 "c"`, MalformedPacket},
	{"will retain without will", V311, 0x10, `00 04 "MQTT" 04 22 00 3C 00 01 "c"`, MalformedPacket},
	{"password without user name 3.1.1", V311, 0x10, `00 04 "MQTT" 04 42 00 3C 00 01 "c" 00 01 "p"`, MalformedPacket},
	{"protocol level 6", V5, 0x10, `00 04 "MQTT" 06 02 00 3C 00 01 "c"`, UnsupportedProtocolVersion},
	{"MQIsdp level 4", V5, 0x10, `00 06 "MQIsdp" 04 02 00 3C 00 01 "c"`, UnsupportedProtocolVersion},
	{"protocol name MQTX", V5, 0x10, `00 04 "MQTX" 04 02 00 3C 00 01 "c"`, UnsupportedProtocolVersion},
	// 3.1/3.1.1 specifics.
	{"3.1 client id of 24", V31, 0x10, `00 06 "MQIsdp" 03 02 00 3C 00 18 "abcdefghijklmnopqrstuvwx"`, ClientIdentifierNotValid},
	{"3.1 empty client id", V31, 0x10, `00 06 "MQIsdp" 03 02 00 3C 00 00`, ClientIdentifierNotValid},
	{"3.1.1 empty client id without clean", V311, 0x10, `00 04 "MQTT" 04 00 00 3C 00 00`, ClientIdentifierNotValid},
	{"3.1.1 CONNACK reserved flags", V311, 0x20, `02 00`, MalformedPacket},
	{"AUTH in 3.1.1", V311, 0xF0, ``, MalformedPacket},
	// CONNACK rules.
	{"CONNACK reserved flags", V5, 0x20, `02 00 00`, MalformedPacket},
	{"CONNACK session present on error", V5, 0x20, `01 87 00`, ProtocolError},
}

func TestMalformed(t *testing.T) {
	for _, m := range malformations {
		t.Run(m.name, func(t *testing.T) {
			_, err := decodeWire(m.version, withLen(m.first, h(t, m.body)))
			if err == nil {
				t.Fatalf("decoded without error, want %s", m.code)
			}
			if got := codeOf(t, err); got != m.code {
				t.Fatalf("code %s (%v), want %s", got, err, m.code)
			}
			if err.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
}

// wellFormed are edge cases that must decode: the other side of the rules.
var wellFormed = []struct {
	name    string
	version byte
	first   byte
	body    string
}{
	{"password is binary: any bytes", V311, 0x10, `00 04 "MQTT" 04 C2 00 3C 00 01 "c" 00 01 "u" 00 02 FF 00`},
	{"correlation data is binary", V5, 0x30, `00 01 "a" 05 09 00 02 00 FF`},
	{"auth data is binary", V5, 0xF0, `18 08 15 00 01 "m" 16 00 01 00`},
	{"will payload is binary", V311, 0x10, `00 04 "MQTT" 04 06 00 3C 00 01 "c" 00 01 "t" 00 01 FF`},
	{"5.0 password without user name", V5, 0x10, `00 04 "MQTT" 05 40 00 3C 00 00 01 "c" 00 01 "p"`},
	{"5.0 empty client id without clean start", V5, 0x10, `00 04 "MQTT" 05 00 00 3C 00 00 00`},
	{"subscription id twice in PUBLISH", V5, 0x30, `00 01 "a" 04 0B 01 0B 02`},
	{"user property repeated", V5, 0x30, `00 01 "a" 0E 26 00 01 "k" 00 01 "v" 26 00 01 "k" 00 01 "v"`},
	{"multi-byte UTF-8 topic", V311, 0x30, `00 05 41 F0 AA 9B 94`}, // the spec example U+0041 U+2A6D4 [MQTT-1.5.4]
	{"long non-ASCII topic", V311, 0x30, `00 0A "caf" C3 A9 "/temp"`},
	{"filters with wildcards", V311, 0x82, `00 01 00 01 "#" 00 00 01 "+" 01 00 05 "+/+/#" 02 00 03 "/+/" 00`},
	{"non-ASCII filter", V311, 0xA2, `00 01 00 07 "caf" C3 A9 "/+"`},
	{"$share in 3.1.1 is a plain filter", V311, 0x82, `00 01 00 08 "$share/g" 00`},
	{"$share prefix only at start", V5, 0x82, `00 01 00 00 0A "a/$share/x" 04`},
	{"3.1 client id of 23", V31, 0x10, `00 06 "MQIsdp" 03 02 00 3C 00 17 "abcdefghijklmnopqrstuvw"`},
	{"3.1 connack ignores first byte", V31, 0x20, `FF 00`},
	{"DISCONNECT reason only", V5, 0xE0, `04`},
	{"AUTH reason only", V5, 0xF0, `19`},
	{"PUBLISH no payload", V5, 0x30, `00 01 "a" 00`},
	{"PUBLISH 5.0 QoS 1 no properties", V5, 0x32, `00 01 "a" 00 01 00`},
}

func TestWellFormedEdges(t *testing.T) {
	for _, w := range wellFormed {
		t.Run(w.name, func(t *testing.T) {
			p, err := decodeWire(w.version, withLen(w.first, h(t, w.body)))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			// And the packet survives a round trip.
			wire := p.Append(nil)
			q, err := decodeWire(w.version, wire)
			if err != nil {
				t.Fatalf("re-decode of % X: %v", wire, err)
			}
			if !equalLoose(p, q) {
				t.Fatalf("round trip differs:\n%+v\n%+v", p, q)
			}
		})
	}
}

func TestUnsupportedVersionKeepsLevel(t *testing.T) {
	var c Connect
	err := c.Decode(h(t, `00 04 "MQTT" 07 02 00 3C 00 01 "c"`))
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != UnsupportedProtocolVersion || c.Version != 7 {
		t.Fatalf("err %v, version %d", err, c.Version)
	}
}

func TestReaderErrors(t *testing.T) {
	cases := []struct {
		name    string
		version byte
		wire    string
		code    ReasonCode // 0: want err below
		err     error
	}{
		{"remaining length over 4 bytes", V311, `30 FF FF FF FF 01`, MalformedPacket, nil},
		{"remaining length not minimal in 5.0", V5, `C0 80 00`, MalformedPacket, nil},
		{"clean EOF", V5, ``, 0, io.EOF},
		{"EOF in header", V5, `30`, 0, io.ErrUnexpectedEOF},
		{"EOF in length", V5, `30 80`, 0, io.ErrUnexpectedEOF},
		{"EOF in body", V5, `30 05 00 01`, 0, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(h(t, c.wire)), 16)
			r.SetVersion(c.version)
			_, _, err := r.ReadPacket()
			if c.err != nil {
				if err != c.err {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if got := codeOf(t, err); got != c.code {
				t.Fatalf("code %s, want %s", got, c.code)
			}
		})
	}
	// 3.1.1 states no minimality rule: a padded remaining length is read.
	r := NewReader(bytes.NewReader(h(t, `C0 80 00`)), 16)
	r.SetVersion(V311)
	if fh, body, err := r.ReadPacket(); err != nil || fh.Type != TypePingreq || len(body) != 0 {
		t.Fatalf("3.1.1 padded length: %v %v %d", fh, err, len(body))
	}
}
