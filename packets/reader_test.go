package packets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

// readerStream is packets of every size class a pooled Reader handles
// differently: within the inline buffer, within the pool's buffer (64
// bytes in these tests), and larger than it.
func readerStream(t testing.TB) (stream []byte, want [][]byte) {
	t.Helper()
	add := func(wire []byte) {
		stream = append(stream, wire...)
		want = append(want, wire)
	}
	for i := range 30 {
		add(AppendPingreq(nil))
		add((&Ack{Type: TypePuback, Version: V5, PacketID: uint16(i + 1), Reason: NoMatchingSubscribers}).Append(nil))
		add((&Publish{Version: V311, Topic: s("t"), Payload: bytes.Repeat([]byte{byte(i)}, i%12)}).Append(nil))
		add((&Publish{Version: V5, QoS: 1, PacketID: uint16(i + 1), Topic: s("a/b"), Payload: bytes.Repeat([]byte{byte(i)}, i*9)}).Append(nil))
	}
	add((&Publish{Version: V5, Topic: s("big"), Payload: bytes.Repeat([]byte{7}, 5000)}).Append(nil))
	add(AppendPingreq(nil))
	return stream, want
}

// chunkReader returns one chunk per Read (one TCP segment each), calling
// before first: a Reader blocks in Read here, as a socket would.
type chunkReader struct {
	chunks [][]byte
	before func(p []byte)
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	if c.before != nil {
		c.before(p)
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func cloneChunks(chunks [][]byte) [][]byte {
	out := make([][]byte, len(chunks))
	for i, c := range chunks {
		out[i] = bytes.Clone(c)
	}
	return out
}

func TestPooledReaderStream(t *testing.T) {
	stream, want := readerStream(t)
	sources := map[string]func() io.Reader{
		"whole":      func() io.Reader { return bytes.NewReader(stream) },
		"one byte":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":       func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"data+EOF":   func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
		"per packet": func() io.Reader { return &chunkReader{chunks: cloneChunks(want)} },
	}
	pool := NewBufferPool(64)
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			for _, r := range []*Reader{NewPooledReader(src(), pool), NewReader(src(), 64)} {
				for i, w := range want {
					fh, body, err := r.ReadPacket()
					if err != nil {
						t.Fatalf("packet %d: %v", i, err)
					}
					if fh.Remaining != len(body) || !bytes.Equal(body, w[len(w)-len(body):]) || Type(w[0]>>4) != fh.Type {
						t.Fatalf("packet %d differs", i)
					}
				}
				if _, _, err := r.ReadPacket(); err != io.EOF {
					t.Fatalf("end: %v", err)
				}
				if r.pool != nil && (r.kind != inlineBuffer || r.base != nil) {
					t.Fatalf("pooled Reader holds a buffer at the end (kind %d)", r.kind)
				}
				if r.pool == nil && (r.kind != baseBuffer || len(r.buf) != 64) {
					t.Fatalf("owned Reader did not return to its buffer (kind %d, %d bytes)", r.kind, len(r.buf))
				}
			}
		})
	}
}

// A Reader with nothing buffered waits in Read on its inline bytes only,
// all 16 of them: an idle connection holds no buffer.
func TestPooledReaderIdleHoldsNoBuffer(t *testing.T) {
	_, want := readerStream(t)
	src := &chunkReader{chunks: cloneChunks(want)}
	r := NewPooledReader(src, NewBufferPool(64))
	waits := 0
	src.before = func(p []byte) {
		if r.Buffered() != 0 {
			return // inside a packet: bytes in flight
		}
		waits++
		if r.kind != inlineBuffer || r.base != nil || len(p) != inlineSize {
			t.Fatalf("waiting for packet %d with a buffer (kind %d, reading %d bytes)", waits, r.kind, len(p))
		}
	}
	for i := range want {
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if waits != len(want) {
		t.Fatalf("%d waits for %d packets", waits, len(want))
	}
}

// A body stays valid until its Reader's next call, while other Readers
// borrow and return buffers from the same pool.
func TestPooledReaderBodyOutlivesOtherReaders(t *testing.T) {
	pool := NewBufferPool(64)
	wire := (&Publish{Version: V5, Topic: s("a/b"), Payload: bytes.Repeat([]byte{'A'}, 40)}).Append(nil)
	a := NewPooledReader(bytes.NewReader(wire), pool)
	_, body, err := a.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	kept := bytes.Clone(body)
	_, want := readerStream(t)
	for range 3 {
		b := NewPooledReader(&chunkReader{chunks: cloneChunks(want)}, pool)
		for range want {
			if _, _, err := b.ReadPacket(); err != nil {
				t.Fatal(err)
			}
		}
		b.Release()
	}
	if !bytes.Equal(body, kept) {
		t.Fatal("body overwritten by another Reader before its own next call")
	}
	if _, _, err := a.ReadPacket(); err != io.EOF || a.base != nil {
		t.Fatalf("%v, base held: %v", err, a.base != nil)
	}
}

func TestPooledReaderErrorsAndRelease(t *testing.T) {
	pool := NewBufferPool(16)
	if pool.Size() != minReaderBuffer {
		t.Fatalf("size %d", pool.Size())
	}
	wire := (&Publish{Version: V5, Topic: s("t"), Payload: make([]byte, 100)}).Append(nil)

	// Refused from the header alone, while still inline.
	r := NewPooledReader(bytes.NewReader(wire[:3]), pool)
	r.SetMaxPacketSize(50)
	if _, _, err := r.ReadPacket(); codeOf(t, err) != PacketTooLarge {
		t.Fatal(err)
	}
	// Cut inside the body: the buffer is borrowed, Release gives it back.
	r = NewPooledReader(bytes.NewReader(wire[:60]), pool)
	if _, _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF || r.Buffered() != 60 {
		t.Fatalf("%v, %d buffered", err, r.Buffered())
	}
	r.Release()
	if r.Buffered() != 0 || r.kind != inlineBuffer || r.base != nil {
		t.Fatal("Release kept a buffer")
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("after Release: %v", err)
	}
	// Cut inside a packet larger than the pool's buffers.
	big := (&Publish{Version: V5, Topic: s("t"), Payload: make([]byte, 1000)}).Append(nil)
	r = NewPooledReader(bytes.NewReader(big[:500]), pool)
	if _, _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF || r.kind != largeBuffer || r.base != nil {
		t.Fatalf("%v, kind %d", err, r.kind)
	}
	r.Release()
	if r.kind != inlineBuffer || len(r.buf) != inlineSize {
		t.Fatal("Release kept the large buffer")
	}
	// Malformed header, from the inline buffer; a source making no progress.
	r = NewPooledReader(bytes.NewReader([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), pool)
	if _, _, err := r.ReadPacket(); codeOf(t, err) != MalformedPacket {
		t.Fatal(err)
	}
	r = NewPooledReader(zeroReader{}, pool)
	if _, _, err := r.ReadPacket(); err != io.ErrNoProgress {
		t.Fatal(err)
	}
	// An owned Reader: Release only drops the buffered bytes.
	r = NewReader(bytes.NewReader(bytes.Repeat(AppendPingreq(nil), 3)), 16)
	if _, _, err := r.ReadPacket(); err != nil || r.Buffered() != 4 {
		t.Fatal(err)
	}
	r.Release()
	if _, _, err := r.ReadPacket(); err != io.EOF || len(r.buf) != 16 {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	r = NewPooledReader(io.MultiReader(bytes.NewReader(wire), iotest.ErrReader(boom)), pool)
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadPacket(); !errors.Is(err, boom) {
		t.Fatal(err)
	}
}

// readAll frames data with r and records every packet and the final error.
func readAll(r *Reader) []string {
	var out []string
	for {
		fh, body, err := r.ReadPacket()
		if err != nil {
			return append(out, err.Error())
		}
		out = append(out, fmt.Sprintf("%v % x", fh, body))
	}
}

// BenchmarkReaderStream: a stream of small packets under load, where
// every Read fills the buffer and packets straddle its end; the pooled
// Reader must cost what the owned one does.
func BenchmarkReaderStream(b *testing.B) {
	wire := benchPublishQoS0(V5).Append(nil)
	for _, c := range []struct {
		name string
		make func(io.Reader) *Reader
	}{
		{"owned", func(src io.Reader) *Reader { return NewReader(src, 4096) }},
		{"pooled", func(src io.Reader) *Reader { return NewPooledReader(src, NewBufferPool(4096)) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := c.make(&endlessStream{packet: wire})
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				if _, _, err := r.ReadPacket(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// endlessStream repeats packet forever, filling every Read.
type endlessStream struct {
	packet []byte
	off    int
}

func (e *endlessStream) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k := copy(b[n:], e.packet[e.off:])
		n += k
		e.off = (e.off + k) % len(e.packet)
	}
	return n, nil
}

// BenchmarkReaderPacketPerRead: every packet arrives on its own, so every
// packet starts on a drained Reader: the case where a pooled Reader pays a
// second Read (and a pool round trip) for a packet over 16 bytes.
func BenchmarkReaderPacketPerRead(b *testing.B) {
	wire := benchPublishQoS0(V5).Append(nil)
	for _, c := range []struct {
		name string
		make func(io.Reader) *Reader
	}{
		{"owned", func(src io.Reader) *Reader { return NewReader(src, 4096) }},
		{"pooled", func(src io.Reader) *Reader { return NewPooledReader(src, NewBufferPool(4096)) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			src := &packetSource{packet: wire}
			r := c.make(src)
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				if _, _, err := r.ReadPacket(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// packetSource returns one whole packet per Read, forever.
type packetSource struct {
	packet []byte
	off    int
}

func (p *packetSource) Read(b []byte) (int, error) {
	n := copy(b, p.packet[p.off:])
	p.off = (p.off + n) % len(p.packet)
	return n, nil
}
