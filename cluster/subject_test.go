package cluster

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode"
)

func TestSubjectMapping(t *testing.T) {
	cases := []struct {
		topic, subject string
	}{
		{"a/b", "pmq.m.a.b"},
		{"a.b/c", "pmq.m.a=2Eb.c"},
		{"*/>", "pmq.m.=2A.=3E"},
		{"a b/\tc", "pmq.m.a=20b.=09c"},
		{"/a//", "pmq.m.=.a.=.="},
		{"$SYS/x", "pmq.m.=24SYS.x"},
		{"x=y", "pmq.m.x=3Dy"},
		{"=", "pmq.m.=3D"},
		{"é", "pmq.m.=C3=A9"},
		{"Az09_-", "pmq.m.Az09_-"},
	}
	for _, tc := range cases {
		got := string(AppendSubject(nil, tc.topic))
		if got != tc.subject {
			t.Errorf("AppendSubject(%q) = %q, want %q", tc.topic, got, tc.subject)
		}
		back, err := DecodeTopic(got)
		if err != nil || back != tc.topic {
			t.Errorf("DecodeTopic(%q) = %q, %v; want %q", got, back, err, tc.topic)
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	cases := []struct {
		filter string
		want   []string
	}{
		{"a/b", []string{"pmq.m.a.b"}},
		{"a/+", []string{"pmq.m.a.*"}},
		{"+/+/c", []string{"pmq.m.*.*.c"}},
		{"a/#", []string{"pmq.m.a.>", "pmq.m.a"}},
		{"a/+/#", []string{"pmq.m.a.*.>", "pmq.m.a.*"}},
		{"#", []string{"pmq.m.>"}},
		{"+", []string{"pmq.m.*"}},
		{"a.b/#", []string{"pmq.m.a=2Eb.>", "pmq.m.a=2Eb"}},
		{"/#", []string{"pmq.m.=.>", "pmq.m.="}},
	}
	for _, tc := range cases {
		got := FilterSubjects(tc.filter)
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("FilterSubjects(%q) = %q, want %q", tc.filter, got, tc.want)
		}
	}
}

func TestDecodeTopicRejectsForeignSubjects(t *testing.T) {
	for _, s := range []string{"other.a", "pmq.m.a..b", "pmq.m.a=4", "pmq.m.a=ZZ", "pmq.m.a*"} {
		if _, err := DecodeTopic(s); err == nil {
			t.Errorf("DecodeTopic(%q) accepted", s)
		}
	}
}

// FuzzSubjectRoundTrip: every topic maps to a valid subject (one token per level, no empty
// token, no '.', '*', '>' or white space inside a token) and back to itself.
func FuzzSubjectRoundTrip(f *testing.F) {
	for _, seed := range []string{"a/b", "", "/", "a.b/*/>", " ", "$SYS/#/+", "=", "=3D", "é/\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		subject := string(AppendSubject(nil, topic))
		tokens := strings.Split(subject, ".")
		if len(tokens) != 3+strings.Count(topic, "/") {
			t.Fatalf("%q: %d tokens for %d levels", subject, len(tokens)-2, strings.Count(topic, "/")+1)
		}
		for _, tok := range tokens {
			if tok == "" || strings.ContainsAny(tok, "*>") || strings.IndexFunc(tok, unicode.IsSpace) >= 0 {
				t.Fatalf("%q: bad token %q", subject, tok)
			}
		}
		back, err := DecodeTopic(subject)
		if err != nil || back != topic {
			t.Fatalf("round trip of %q: %q, %v", topic, back, err)
		}
	})
}

func TestDedupe(t *testing.T) {
	var d dedupe
	steps := []struct {
		origin string
		seq    uint64
		first  bool
	}{
		{"a", 10, true}, {"a", 10, false}, {"b", 10, true}, {"a", 11, true}, {"a", 11, false},
		{"b", 10, false}, {"a", 9, false}, {"b", 12, true},
	}
	for i, s := range steps {
		if got := d.first([]byte(s.origin), s.seq); got != s.first {
			t.Errorf("step %d (%s, %d): first = %v, want %v", i, s.origin, s.seq, got, s.first)
		}
	}
}

func TestFrames(t *testing.T) {
	b := appendHeader(nil, kindBatch, "node-1", 42)
	b = append(b, "payload"...)
	f, err := parseFrame(b)
	if err != nil || f.kind != kindBatch || string(f.origin) != "node-1" || f.n != 42 || string(f.rest) != "payload" {
		t.Fatalf("parseFrame = %+v, %v", f, err)
	}
	for n := 0; n < len(b)-len("payload"); n++ {
		if _, err := parseFrame(b[:n]); err == nil {
			t.Errorf("truncated frame of %d bytes accepted", n)
		}
	}
	v := version{at: 7, origin: "n", deleted: true}
	r := appendRetained(nil, "n", "a/b", v, []byte{0x31})
	f, err = parseFrame(r)
	if err != nil || f.kind != kindRetained || f.rest[0] != 1 {
		t.Fatalf("retained frame = %+v, %v", f, err)
	}
	topic, packet, err := cutString16(f.rest[1:])
	if err != nil || topic != "a/b" || len(packet) != 1 {
		t.Fatalf("retained frame body = %q %v %v", topic, packet, err)
	}
}

func TestVersionOrder(t *testing.T) {
	older, newer := version{at: 1, origin: "z"}, version{at: 2, origin: "a"}
	if !newer.newer(older) || older.newer(newer) {
		t.Error("a later time must win")
	}
	tieA, tieB := version{at: 5, origin: "a"}, version{at: 5, origin: "b"}
	if !tieB.newer(tieA) || tieA.newer(tieB) || tieA.newer(tieA) {
		t.Error("equal times must be ordered by origin, and a version is not newer than itself")
	}
}

func BenchmarkAppendSubject(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 128)
	for b.Loop() {
		buf = AppendSubject(buf[:0], "sensors/building-7/floor.3/temp")
	}
}

func BenchmarkDedupe(b *testing.B) {
	b.ReportAllocs()
	var d dedupe
	origin := []byte("node-1")
	seq := uint64(0)
	for b.Loop() {
		seq++
		d.first(origin, seq)
	}
}

// A subject's frames stay in order in its batch; batches are listed by their first frame;
// cutFrame gives back each packet and refuses a truncated one.
func TestBatches(t *testing.T) {
	var bs batches
	if _, first := bs.add("s.a", "n1", 1, []byte("a1")); !first {
		t.Fatal("the first frame did not ask for a kick")
	}
	bs.add("s.b", "n1", 1, []byte("b1"))
	b, first := bs.add("s.a", "n1", 1, bytes.Repeat([]byte("x"), 300)) // a two-byte length
	if first || b.frames != 2 || len(bs.open) != 2 || bs.open[0] != b {
		t.Fatalf("batches %+v, first %v", bs.open, first)
	}
	binary.BigEndian.PutUint64(b.buf[b.seqAt:], 7)
	f, err := parseFrame(b.buf)
	if err != nil || f.kind != kindBatch || string(f.origin) != "n1" || f.n != 7 {
		t.Fatalf("batch header %+v, %v", f, err)
	}
	var got []string
	for rest := f.rest; len(rest) > 0; {
		packet, more, ok := cutFrame(rest)
		if !ok {
			t.Fatal("cutFrame refused a whole frame")
		}
		got = append(got, string(packet[:min(2, len(packet))]))
		rest = more
	}
	if strings.Join(got, " ") != "a1 xx" {
		t.Fatalf("frames %q", got)
	}
	if _, _, ok := cutFrame(f.rest[:len(f.rest)-1][len("a1")+1:]); ok {
		t.Fatal("a truncated frame was accepted")
	}
	bs.reset()
	if len(bs.open) != 0 || len(bs.bySubject) != 0 || len(bs.free) != 2 {
		t.Fatalf("after reset: %d open, %d indexed, %d free", len(bs.open), len(bs.bySubject), len(bs.free))
	}
	if _, first := bs.add("s.c", "n1", 1, nil); !first {
		t.Fatal("after reset, a frame did not ask for a kick")
	}
}
