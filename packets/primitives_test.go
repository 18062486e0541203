package packets

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// The variable byte integer examples of the 5.0 specification, 1.5.5.
func TestVarintSpecExamples(t *testing.T) {
	cases := []struct {
		n    int
		wire string
	}{
		{0, "00"}, {127, "7F"},
		{128, "80 01"}, {16383, "FF 7F"},
		{16384, "80 80 01"}, {2097151, "FF FF 7F"},
		{2097152, "80 80 80 01"}, {268435455, "FF FF FF 7F"},
	}
	for _, c := range cases {
		want := h(t, c.wire)
		if got := AppendVarint(nil, c.n); !bytes.Equal(got, want) {
			t.Errorf("AppendVarint(%d) = % X, want % X", c.n, got, want)
		}
		if varintLen(c.n) != len(want) {
			t.Errorf("varintLen(%d) = %d", c.n, varintLen(c.n))
		}
		n, i, err := readVarint(want, 0, true, "test")
		if err != nil || n != c.n || i != len(want) {
			t.Errorf("readVarint(% X) = %d, %d, %v", want, n, i, err)
		}
	}
}

func TestValidUTF8String(t *testing.T) {
	cases := []struct {
		in string
		ok bool
	}{
		{"", true},
		{"a", true},
		{"abcd", true},
		{"abcdefg", true},
		{"sensors/room1/temperature", true},
		{"A\U0002A6D4", true}, // the spec example of 1.5.4
		{"caf\u00e9", true},
		{"long prefix then caf\u00e9", true},
		{"\x00", false},
		{"ab\x00d", false},
		{"abcdefgh\x00", false},
		{"abc\xff", false},
		{"abcdefghijk\xff", false},
		{"\xed\xa0\x80", false},     // surrogate U+D800
		{"abcd\xed\xbf\xbf", false}, // surrogate U+DFFF
		{"\xc0\x80", false},         // overlong NUL
		{"caf\u00e9\x00", false},    // NUL after non-ASCII
		{"\xf4\x90\x80\x80", false}, // beyond U+10FFFF
		{"\xef\xbf\xbf", true},      // U+FFFF: a non-character, allowed
		{"\x01\x1f\x7f", true},      // control characters: SHOULD NOT, allowed
	}
	for _, c := range cases {
		if got := ValidUTF8String([]byte(c.in)); got != c.ok {
			t.Errorf("ValidUTF8String(%q) = %v, want %v", c.in, got, c.ok)
		}
	}
}

func TestTopicRules(t *testing.T) {
	names := []struct {
		in string
		ok bool
	}{
		{"a", true}, {"/", true}, {"sensors/room1/temp", true}, {"$SYS/x", true}, {"caf\u00e9/x", true},
		{"", false}, {"+", false}, {"a/#", false}, {"sensors/room1/t+mp", false}, {"a\x00", false},
		{"caf\u00e9/#", false}, {"\xff", false},
	}
	for _, c := range names {
		if got := ValidTopicName([]byte(c.in)); got != c.ok {
			t.Errorf("ValidTopicName(%q) = %v, want %v", c.in, got, c.ok)
		}
	}
	filters := []struct {
		in string
		ok bool
	}{
		{"#", true}, {"+", true}, {"a/#", true}, {"+/+", true}, {"/+", true}, {"+/", true},
		{"sport/tennis/+/ranking/#", true}, {"caf\u00e9/+/#", true}, {"a//b", true},
		{"", false}, {"a#", false}, {"#/a", false}, {"a/#/", false}, {"a+", false}, {"+a", false},
		{"sport/tennis#", false}, {"sport+/x/y/z/w", false}, {"caf\u00e9+", false}, {"a\x00/#", false},
	}
	for _, c := range filters {
		if got := ValidTopicFilter([]byte(c.in)); got != c.ok {
			t.Errorf("ValidTopicFilter(%q) = %v, want %v", c.in, got, c.ok)
		}
	}
}

func TestStrings(t *testing.T) {
	for ty := Type(0); ty < 16; ty++ {
		if ty.String() == "" || strings.HasPrefix(ty.String(), "Type(") {
			t.Errorf("Type %d has no name", ty)
		}
	}
	if Type(16).String() != "Type(16)" {
		t.Error(Type(16).String())
	}
	named := 0
	for rc := 0; rc < 256; rc++ {
		s := ReasonCode(rc).String()
		if !strings.HasPrefix(s, "ReasonCode(") {
			named++
		}
	}
	if named != 43 { // the distinct values of the 5.0 reason code table
		t.Errorf("%d named reason codes, want 43", named)
	}
	ids := 0
	for id := 0; id < 256; id++ {
		if !strings.HasPrefix(PropertyID(id).String(), "PropertyID(") {
			ids++
		}
	}
	if ids != 27 {
		t.Errorf("%d named properties, want 27", ids)
	}
	if !MalformedPacket.IsError() || NoMatchingSubscribers.IsError() {
		t.Error("IsError")
	}
	err := error(Errorf(PacketTooLarge, "size %d", 9))
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != PacketTooLarge || !strings.Contains(err.Error(), "size 9") {
		t.Fatalf("Errorf: %v", err)
	}
}

func TestConnackCodes(t *testing.T) {
	cases := map[ReasonCode]byte{
		Success: 0, UnsupportedProtocolVersion: 1, ClientIdentifierNotValid: 2, ServerUnavailable: 3,
		ServerBusy: 3, BadUserNameOrPassword: 4, BadAuthenticationMethod: 4, NotAuthorized: 5, Banned: 5,
		UnspecifiedError: 3,
	}
	for rc, want := range cases {
		if got := ConnackCode311(rc); got != want {
			t.Errorf("ConnackCode311(%s) = %d, want %d", rc, got, want)
		}
		// 3.x codes map back to a 5.0 code that maps forward again.
		if back, ok := connackReason5(want); !ok || ConnackCode311(back) != want {
			t.Errorf("connackReason5(%d) = %s", want, back)
		}
	}
	// Encoding for 3.x never emits a 5.0 code.
	c := Connack{Version: V311, Reason: QuotaExceeded}
	if got := c.Append(nil); !bytes.Equal(got, []byte{0x20, 2, 0, 3}) {
		t.Errorf("3.1.1 CONNACK % X", got)
	}
}

func TestPropertiesHelpers(t *testing.T) {
	var p Properties
	p.Set(PropContentType)
	p.ContentType = []byte("text/plain")
	p.User = append(p.User, UserProperty{[]byte("k"), []byte("v")})
	if !p.Has(PropContentType) || p.Has(PropTopicAlias) {
		t.Fatal("Has/Set")
	}
	if p.Len() != 13+7 {
		t.Fatalf("Len %d", p.Len())
	}
	p.Reset()
	if p.Present != 0 || p.ContentType != nil || len(p.User) != 0 || cap(p.User) == 0 {
		t.Fatalf("Reset: %+v", p)
	}
	// Without any Present bit, Reset still empties the reused slices.
	p.User = append(p.User, UserProperty{})
	p.SubscriptionIDs = append(p.SubscriptionIDs, 3)
	p.Reset()
	if len(p.User) != 0 || len(p.SubscriptionIDs) != 0 {
		t.Fatal("Reset with no bits")
	}
}

// Every property with a value, through every packet that may carry it,
// encoded and decoded back.
func TestEveryPropertyRoundTrip(t *testing.T) {
	all := Properties{
		PayloadFormat: 1, MessageExpiry: 1, ContentType: s("ct"), ResponseTopic: s("rt"), CorrelationData: s("cd"),
		SubscriptionIDs: []uint32{1, 268435455}, SessionExpiry: 2, AssignedClientID: s("id"), ServerKeepAlive: 3,
		AuthMethod: s("am"), AuthData: s("ad"), RequestProblemInfo: 1, RequestResponseInfo: 1, WillDelay: 4,
		ResponseInfo: s("ri"), ServerReference: s("sr"), ReasonString: s("rs"), ReceiveMaximum: 5,
		TopicAliasMaximum: 6, TopicAlias: 7, MaximumQoS: 1, RetainAvailable: 1, MaximumPacketSize: 8,
		WildcardAvailable: 1, SubIDAvailable: 1, SharedSubAvailable: 1,
		User: []UserProperty{{s("k"), s("v")}},
	}
	pick := func(mask uint64) Properties {
		p := all
		p.Present = mask &^ multiSubID
		if mask&(1<<PropSubscriptionID) == 0 {
			p.SubscriptionIDs = nil
		} else if mask&multiSubID == 0 {
			p.SubscriptionIDs = p.SubscriptionIDs[:1]
		}
		return p
	}
	packets := []Packet{
		{Type: TypeConnect, Connect: Connect{Version: V5, ClientID: s("c"), Properties: pick(connectProps),
			WillFlag: true, WillTopic: s("w"), WillProperties: pick(willProps)}},
		{Type: TypeConnack, Connack: Connack{Version: V5, Properties: pick(connackProps)}},
		{Type: TypePublish, Publish: Publish{Version: V5, Topic: s("t"), Properties: pick(publishProps)}},
		{Type: TypePubrec, Ack: Ack{Type: TypePubrec, Version: V5, PacketID: 1, Properties: pick(ackProps)}},
		{Type: TypeSubscribe, Subscribe: Subscribe{Version: V5, PacketID: 1, Properties: pick(subscribeProps),
			Subscriptions: []Subscription{{Filter: s("f")}}}},
		{Type: TypeSuback, Suback: Suback{Version: V5, PacketID: 1, Properties: pick(ackProps), Reasons: []ReasonCode{0}}},
		{Type: TypeUnsubscribe, Unsubscribe: Unsubscribe{Version: V5, PacketID: 1, Properties: pick(unsubscribeProps), Filters: [][]byte{s("f")}}},
		{Type: TypeUnsuback, Unsuback: Unsuback{Version: V5, PacketID: 1, Properties: pick(ackProps), Reasons: []ReasonCode{0}}},
		{Type: TypeDisconnect, Disconnect: Disconnect{Version: V5, Properties: pick(disconnectProps)}},
		{Type: TypeAuth, Auth: Auth{Reason: ContinueAuthentication, Properties: pick(authProps)}},
	}
	for _, p := range packets {
		wire := p.Append(nil)
		q, err := decodeWire(V5, wire)
		if err != nil {
			t.Fatalf("%s: %v", p.Type, err)
		}
		// Fields without their Present bit are meaningless, so compare what
		// goes on the wire.
		if again := q.Append(nil); !bytes.Equal(again, wire) {
			t.Fatalf("%s round trip:\n% X\n% X", p.Type, wire, again)
		}
		// The same struct sent to a 3.1.1 client carries no properties.
		if p.Type == TypeAuth {
			continue
		}
		setVersion(&p, V311)
		old := p.Append(nil)
		if _, err := decodeWire(V311, old); err != nil {
			t.Fatalf("%s as 3.1.1: % X: %v", p.Type, old, err)
		}
		if len(old) >= len(wire) {
			t.Fatalf("%s as 3.1.1 is not shorter: %d >= %d", p.Type, len(old), len(wire))
		}
	}
}

func setVersion(p *Packet, v byte) {
	p.Connect.Version, p.Connack.Version, p.Publish.Version, p.Ack.Version = v, v, v, v
	p.Subscribe.Version, p.Suback.Version, p.Unsubscribe.Version, p.Unsuback.Version, p.Disconnect.Version = v, v, v, v, v
	if p.Type == TypeConnect {
		p.Connect.ProtocolName = nil
	}
}

func TestEncodeDefaults(t *testing.T) {
	// Append fills in the protocol name; 3.1 uses MQIsdp.
	c := Connect{Version: V31, ClientID: s("c")}
	p, err := decodeWire(V31, c.Append(nil))
	if err != nil || string(p.Connect.ProtocolName) != "MQIsdp" {
		t.Fatalf("%v %q", err, p.Connect.ProtocolName)
	}
	// 3.x SUBACK maps every failure to 0x80.
	sa := Suback{Version: V311, PacketID: 1, Reasons: []ReasonCode{GrantedQoS1, NotAuthorized}}
	if got := sa.Append(nil); !bytes.Equal(got, []byte{0x90, 4, 0, 1, 1, 0x80}) {
		t.Fatalf("3.1.1 SUBACK % X", got)
	}
	// 3.1 CONNACK has no session present flag.
	ca := Connack{Version: V31, SessionPresent: true}
	if got := ca.Append(nil); !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("3.1 CONNACK % X", got)
	}
	var pkt Packet
	if got := pkt.Append([]byte{1}); !bytes.Equal(got, []byte{1}) {
		t.Fatal("reserved type appended bytes")
	}
	var a Ack
	if err := a.Decode(V5, TypePublish, 0, []byte{0, 1}); codeOf(t, err) != MalformedPacket {
		t.Fatal("Ack.Decode of PUBLISH")
	}
	// A large packet needs a multi-byte remaining length.
	big := Publish{Version: V5, Topic: s("t"), Payload: make([]byte, 300000)}
	if q, err := decodeWire(V5, big.Append(nil)); err != nil || len(q.Publish.Payload) != 300000 {
		t.Fatal(err)
	}
}

func TestReaderStream(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := 0; i < 50; i++ {
		p := Publish{Version: V5, QoS: 1, PacketID: uint16(i + 1), Topic: s("a/b"), Payload: bytes.Repeat([]byte{byte(i)}, i*7)}
		w := p.Append(nil)
		stream = append(stream, w...)
		want = append(want, w)
	}
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"data+EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
	}
	for name, src := range readers {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src(), 64) // smaller than most packets: exercises growth
			for i, w := range want {
				fh, body, err := r.ReadPacket()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if fh.Type != TypePublish || fh.Remaining != len(body) || !bytes.Equal(body, w[len(w)-len(body):]) {
					t.Fatalf("packet %d differs", i)
				}
			}
			if _, _, err := r.ReadPacket(); err != io.EOF {
				t.Fatalf("end: %v", err)
			}
			if len(r.buf) != 64 {
				t.Fatalf("buffer not shrunk back: %d", len(r.buf))
			}
		})
	}
}

func TestReaderLimits(t *testing.T) {
	p := Publish{Version: V5, Topic: s("t"), Payload: make([]byte, 100)}
	wire := p.Append(nil)
	// The source holds only the header: refusing must not need the body.
	r := NewReader(bytes.NewReader(wire[:2]), 16)
	r.SetMaxPacketSize(50)
	_, _, err := r.ReadPacket()
	if codeOf(t, err) != PacketTooLarge {
		t.Fatal(err)
	}
	r.SetMaxPacketSize(0)
	if r.max != MaxPacketSize {
		t.Fatal("SetMaxPacketSize(0)")
	}
	// Many small packets from one read: Buffered reports the read-ahead.
	r = NewReader(bytes.NewReader(bytes.Repeat(AppendPingreq(nil), 10)), 4096)
	if _, _, err := r.ReadPacket(); err != nil || r.Buffered() != 18 {
		t.Fatalf("%v, buffered %d", err, r.Buffered())
	}
	// A source error is returned once the buffered packets are used up.
	boom := errors.New("boom")
	r = NewReader(io.MultiReader(bytes.NewReader(AppendPingreq(nil)), iotest.ErrReader(boom)), 16)
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadPacket(); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	// A source that never makes progress.
	r = NewReader(zeroReader{}, 16)
	if _, _, err := r.ReadPacket(); err != io.ErrNoProgress {
		t.Fatal(err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// Packets that end exactly at the buffer's end and headers split across a
// compaction.
func TestReaderCompaction(t *testing.T) {
	var stream []byte
	for i := 0; i < 40; i++ {
		p := Publish{Version: V311, Topic: s("t"), Payload: make([]byte, i%13)}
		stream = p.Append(stream)
	}
	r := NewReader(iotest.HalfReader(bytes.NewReader(stream)), 16)
	n := 0
	for {
		_, _, err := r.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 40 {
		t.Fatalf("%d packets", n)
	}
}

// Reset clears every field, whether it zeroes field by field (few
// properties) or the whole struct.
func TestResetEveryProperty(t *testing.T) {
	for id := PropertyID(1); id < 64; id++ {
		if strings.HasPrefix(id.String(), "PropertyID(") {
			continue
		}
		var p Properties
		wire := []byte{byte(id)}
		switch id {
		case PropContentType, PropResponseTopic, PropCorrelationData, PropAssignedClientID, PropAuthMethod,
			PropAuthData, PropResponseInfo, PropServerReference, PropReasonString:
			wire = append(wire, 0, 1, 'x')
		case PropUserProperty:
			wire = append(wire, 0, 1, 'k', 0, 1, 'v')
		case PropMessageExpiry, PropSessionExpiry, PropWillDelay, PropMaximumPacketSize:
			wire = append(wire, 0, 0, 0, 1)
		case PropServerKeepAlive, PropReceiveMaximum, PropTopicAliasMaximum, PropTopicAlias:
			wire = append(wire, 0, 1)
		default:
			wire = append(wire, 1)
		}
		if id == PropAuthData {
			wire = append(wire, byte(PropAuthMethod), 0, 1, 'm') // data needs a method
		}
		if err := p.decode(wire, ^uint64(0), "test"); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		p.Reset()
		if !equalLoose(p, Properties{}) {
			t.Fatalf("%s: Reset left %+v", id, p)
		}
	}
}

// referenceFilterCheck is topicFilterCheck written the plain way, one rule
// after another over every byte; the word-at-a-time version must agree with
// it on every input, reason code included.
func referenceFilterCheck(b []byte) ReasonCode {
	if len(b) == 0 {
		return TopicFilterInvalid
	}
	if !ValidUTF8String(b) {
		return MalformedPacket
	}
	for i, c := range b {
		switch c {
		case '#':
			if i != len(b)-1 || (i > 0 && b[i-1] != '/') {
				return TopicFilterInvalid
			}
		case '+':
			if (i > 0 && b[i-1] != '/') || (i < len(b)-1 && b[i+1] != '/') {
				return TopicFilterInvalid
			}
		}
	}
	return 0
}

// TestTopicFilterCheckMatchesReference compares every string of up to 6
// bytes over an alphabet with each byte class the scan treats apart (NUL,
// '+', '#', '/', '*' which differs from '+' in bit 3 only, ASCII, a lead
// and a continuation byte of UTF-8), then longer random strings where the
// special bytes fall on every word position, including the overlap of the
// last word.
func TestTopicFilterCheckMatchesReference(t *testing.T) {
	alphabet := []byte{0, '+', '#', '/', '*', 'a', 0xC3, 0xA9}
	buf := make([]byte, 0, 6)
	var walk func()
	walk = func() {
		if got, want := topicFilterCheck(buf), referenceFilterCheck(buf); got != want {
			t.Fatalf("topicFilterCheck(%q) = %v, want %v", buf, got, want)
		}
		if len(buf) == cap(buf) {
			return
		}
		for _, c := range alphabet {
			buf = append(buf, c)
			walk()
			buf = buf[:len(buf)-1]
		}
	}
	walk()
	rng := rand.New(rand.NewPCG(1, 2))
	long := make([]byte, 40)
	for range 200000 {
		b := long[:8+rng.IntN(33)]
		for i := range b {
			b[i] = "abc/"[rng.IntN(4)]
		}
		for range 1 + rng.IntN(3) {
			b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
		}
		if got, want := topicFilterCheck(b), referenceFilterCheck(b); got != want {
			t.Fatalf("topicFilterCheck(%q) = %v, want %v", b, got, want)
		}
	}
}

// TestAppendShort checks appendShort against append for every length up to
// 40 (word copies for 8 to 16 bytes, append otherwise), with dst's capacity
// exactly enough, one byte short and ample.
func TestAppendShort(t *testing.T) {
	src := make([]byte, 40)
	for i := range src {
		src[i] = byte(i + 1)
	}
	for n := 0; n <= len(src); n++ {
		v := src[:n:n]
		for _, room := range []int{n, n - 1, n + 16} {
			dst := append(make([]byte, 0, 3+max(room, 0)), "pre"...)
			want := append(s("pre"), v...)
			if got := appendShort(dst, v); !bytes.Equal(got, want) {
				t.Fatalf("n %d room %d: % x, want % x", n, room, got, want)
			}
		}
	}
}
