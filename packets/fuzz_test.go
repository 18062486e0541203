package packets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"
)

// fuzzSeeds are every golden vector and every malformation, so the fuzzer
// starts from each packet type and each error class.
func fuzzSeeds(t testing.TB) [][2]any {
	var seeds [][2]any
	for _, g := range goldenPackets {
		seeds = append(seeds, [2]any{loadHex(t, g.file), g.version})
	}
	for _, m := range malformations {
		seeds = append(seeds, [2]any{withLen(m.first, h(t, m.body)), m.version})
	}
	for _, w := range wellFormed {
		seeds = append(seeds, [2]any{withLen(w.first, h(t, w.body)), w.version})
	}
	return seeds
}

// checkErr fails unless err is nil, a *Error, or an end-of-stream error of
// the Reader.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
		return
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *packets.Error", err, err)
	}
	if pe.Code < 0x80 {
		t.Fatalf("error with success code %s", pe.Code)
	}
}

// FuzzDecode: any bytes, any version. Decoding never panics, returns only
// *Error values, and keeps memory proportional to the input.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s[0].([]byte), s[1].(byte))
	}
	f.Fuzz(func(t *testing.T, data []byte, version byte) {
		// The data as a topic filter: the word-at-a-time check agrees with
		// the plain one.
		if got, want := topicFilterCheck(data), referenceFilterCheck(data); got != want {
			t.Fatalf("topicFilterCheck(%q) = %v, want %v", data, got, want)
		}
		// As a stream: every packet in data, through the Reader.
		r := NewReader(bytes.NewReader(data), 32)
		r.SetVersion(version)
		var p Packet
		for {
			fh, body, err := r.ReadPacket()
			if err != nil {
				checkErr(t, err)
				// The Reader never holds more than twice what it was given.
				if cap(r.buf) > 2*len(data)+64 {
					t.Fatalf("buffer of %d for %d input bytes", cap(r.buf), len(data))
				}
				break
			}
			checkErr(t, p.Decode(version, fh, body))
		}
		// A pooled Reader fed in pieces frames the same packets and errors.
		owned := NewReader(bytes.NewReader(data), 32)
		pooled := NewPooledReader(iotest.HalfReader(bytes.NewReader(data)), NewBufferPool(32))
		owned.SetVersion(version)
		pooled.SetVersion(version)
		if want, got := readAll(owned), readAll(pooled); !slices.Equal(want, got) {
			t.Fatalf("pooled Reader differs:\n%q\n%q", got, want)
		}
		// As a bare body of every packet type and flag combination seen in
		// the first byte.
		var flags byte
		if len(data) > 0 {
			flags = data[0] & 0x0F
		}
		for ty := Type(0); ty < 16; ty++ {
			checkErr(t, p.Decode(version, FixedHeader{Type: ty, Flags: flags, Remaining: len(data)}, data))
		}
	})
}

// FuzzRoundTrip: whatever decodes, encodes to bytes that decode to the same
// packet, and encoding that again gives the same bytes.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s[0].([]byte), s[1].(byte))
	}
	f.Fuzz(func(t *testing.T, data []byte, version byte) {
		r := NewReader(bytes.NewReader(data), 32)
		fh, body, err := r.ReadPacket()
		if err != nil {
			return
		}
		var p Packet
		if p.Decode(version, fh, body) != nil {
			return
		}
		wire := p.Append(nil)
		r2 := NewReader(bytes.NewReader(wire), 32)
		fh2, body2, err := r2.ReadPacket()
		if err != nil || r2.Buffered() != 0 {
			t.Fatalf("re-read of % X: %v (%d left)", wire, err, r2.Buffered())
		}
		var q Packet
		if err := q.Decode(version, fh2, body2); err != nil {
			t.Fatalf("re-decode of % X (from % X): %v", wire, data, err)
		}
		if !equalLoose(&p, &q) {
			t.Fatalf("round trip differs for % X:\n%s\n%s", data, describe(&p), describe(&q))
		}
		if again := q.Append(nil); !bytes.Equal(again, wire) {
			t.Fatalf("encoding not stable:\n% X\n% X", wire, again)
		}
	})
}

func describe(p *Packet) string {
	switch p.Type {
	case TypeConnect:
		return fmt.Sprintf("%+v", p.Connect)
	case TypeConnack:
		return fmt.Sprintf("%+v", p.Connack)
	case TypePublish:
		return fmt.Sprintf("%+v", p.Publish)
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		return fmt.Sprintf("%+v", p.Ack)
	case TypeSubscribe:
		return fmt.Sprintf("%+v", p.Subscribe)
	case TypeSuback:
		return fmt.Sprintf("%+v", p.Suback)
	case TypeUnsubscribe:
		return fmt.Sprintf("%+v", p.Unsubscribe)
	case TypeUnsuback:
		return fmt.Sprintf("%+v", p.Unsuback)
	case TypeDisconnect:
		return fmt.Sprintf("%+v", p.Disconnect)
	case TypeAuth:
		return fmt.Sprintf("%+v", p.Auth)
	}
	return p.Type.String()
}

// TestWriteFuzzCorpus regenerates the committed seed corpora in
// testdata/fuzz from the golden and malformation tables. It runs only when
// PACKETS_WRITE_CORPUS=1, so the committed files are reviewed changes.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PACKETS_WRITE_CORPUS") != "1" {
		t.Skip("set PACKETS_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	for _, target := range []string{"FuzzDecode", "FuzzRoundTrip"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range fuzzSeeds(t) {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", s[0].([]byte), rune(s[1].(byte)))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
