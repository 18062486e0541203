package packets

import (
	"errors"
	"io"
	"sync"
)

// BufferPool lends read buffers of one size to the Readers of many
// connections, so that only connections with bytes in flight hold one.
// A broker makes one and passes it to NewPooledReader for every
// connection; it is safe for concurrent use.
//
// It wraps a sync.Pool rather than taking one from the caller so that the
// element type (*[]byte: a pointer, so Put does not allocate) and the size
// cannot disagree with what the Reader expects.
type BufferPool struct {
	size    int
	buffers sync.Pool // of *[]byte, each of len size
}

// NewBufferPool returns a pool of size-byte buffers (4096 is typical).
func NewBufferPool(size int) *BufferPool {
	size = max(size, minReaderBuffer)
	p := &BufferPool{size: size}
	p.buffers.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return p
}

// Size returns the size of the pool's buffers.
func (p *BufferPool) Size() int { return p.size }

func (p *BufferPool) get() *[]byte  { return p.buffers.Get().(*[]byte) }
func (p *BufferPool) put(b *[]byte) { p.buffers.Put(b) }

// bufferKind says which buffer a Reader's buf is.
type bufferKind uint8

const (
	inlineBuffer bufferKind = iota // r.inline: the Reader holds no buffer
	baseBuffer                     // *r.base: the read-ahead buffer, owned or lent by the pool
	largeBuffer                    // allocated for one packet larger than base
)

// inlineSize is the Reader's own buffer for reads while it holds no
// buffered bytes: enough for every fixed header and for the small packets
// (acknowledgements, pings, most DISCONNECTs) an idle client sends.
const inlineSize = 16

// Reader frames MQTT packets from a byte stream.
//
// Invariants: buf[start:end] holds bytes read from the source but not yet
// returned; the body handed out by ReadPacket is inside buf and stays valid
// until the next call, which may compact, replace or give back buf. buf is
// one of three (kind):
//   - inline, the Reader's own 16 bytes, only with a pool: where a Reader
//     with nothing buffered reads, so that a connection waiting for its
//     client holds no buffer. When a packet needs more room the unread
//     bytes move to a buffer from the pool.
//   - base, the read-ahead buffer: owned for the Reader's life (NewReader),
//     or lent by the pool and given back at the start of the first
//     ReadPacket that finds nothing buffered (the previous body is dead by
//     then).
//   - large, while a packet larger than base is read: it grows by doubling
//     as the packet's bytes arrive, up to the packet's size, and reads stop
//     at the packet's end so nothing is read ahead into it; the next call
//     drops it. Growing as bytes arrive, rather than allocating the
//     announced size at once, keeps memory proportional to what a peer has
//     actually sent, whatever length it claims.
//
// Design: read ahead as much as the source gives into one buffer and slice
// packets out of it, so one syscall yields many packets under load.
// Rejected: bufio.Reader plus io.ReadFull per body, which copies every body
// a second time and cannot refuse an oversized packet without reading it;
// and, for idle connections, keeping the base buffer and only shrinking it
// after a timeout, which needs a timer per connection and still holds the
// buffer for the timeout. The price of the inline read: a packet larger
// than 16 bytes arriving on a drained Reader costs a second Read.
type Reader struct {
	src        io.Reader
	buf        []byte
	kind       bufferKind
	base       []byte      // the base buffer while held; nil while given back
	lent       *[]byte     // base as the pool lent it, to give back without allocating
	pool       *BufferPool // nil: base is owned and kept
	inline     [inlineSize]byte
	start, end int
	max        int
	strict     bool  // reject non-minimal remaining lengths (5.0)
	err        error // from src, returned once the buffered bytes run out
}

// maxEmptyReads bounds how often a misbehaving source may return 0, nil.
const maxEmptyReads = 100

// minReaderBuffer leaves room for the largest fixed header (5 bytes).
const minReaderBuffer = inlineSize

// NewReader returns a Reader on r with its own read-ahead buffer of bufSize
// bytes (4096 is typical), held for the Reader's life.
func NewReader(r io.Reader, bufSize int) *Reader {
	b := make([]byte, max(bufSize, minReaderBuffer))
	return &Reader{src: r, buf: b, kind: baseBuffer, base: b, max: MaxPacketSize}
}

// NewPooledReader returns a Reader on r that borrows its read-ahead buffer
// from pool only while bytes are in flight: once every byte read has been
// returned as a packet, it gives the buffer back and waits for the next
// packet in 16 bytes of its own. Call Release when done with it.
func NewPooledReader(r io.Reader, pool *BufferPool) *Reader {
	rd := &Reader{src: r, kind: inlineBuffer, pool: pool, max: MaxPacketSize}
	rd.buf = rd.inline[:]
	return rd
}

// SetMaxPacketSize sets the largest whole packet (fixed header included)
// ReadPacket accepts; 0 means the protocol maximum.
func (r *Reader) SetMaxPacketSize(n int) {
	if n <= 0 || n > MaxPacketSize {
		n = MaxPacketSize
	}
	r.max = n
}

// SetVersion tells the Reader the protocol level once CONNECT has been
// read. From V5 on, a remaining length not in its minimal form is malformed
// [MQTT-1.5.5-1]; 3.x states no such rule, so it is accepted there.
func (r *Reader) SetVersion(version byte) { r.strict = version >= V5 }

// Buffered returns the number of bytes read ahead and not yet returned.
func (r *Reader) Buffered() int { return r.end - r.start }

// Release gives a borrowed buffer back to the pool and drops any buffered
// bytes; the last body returned becomes invalid. The Reader stays usable.
// For a Reader from NewReader it only drops the buffered bytes.
func (r *Reader) Release() {
	r.start, r.end = 0, 0
	r.settle()
}

// settle returns to the buffer of a Reader with nothing buffered: inline
// with a pool, base without. The caller has checked start == end.
func (r *Reader) settle() {
	switch {
	case r.pool != nil && r.kind != inlineBuffer:
		r.giveBack()
		r.buf, r.kind = r.inline[:], inlineBuffer
	case r.kind == largeBuffer:
		r.buf, r.kind = r.base, baseBuffer
	}
	r.start, r.end = 0, 0
}

// ReadPacket returns the next packet's fixed header and body. The body is
// valid until the next call. A packet over the limit is refused with a
// PacketTooLarge *Error before its body is read; a bad remaining length is
// a MalformedPacket *Error. At the end of the stream it returns io.EOF
// between packets and io.ErrUnexpectedEOF inside one.
func (r *Reader) ReadPacket() (FixedHeader, []byte, error) {
	if r.start == r.end {
		// Nothing buffered: the next bytes go to the start of the idle buffer.
		if r.kind != r.idleKind() {
			r.settle()
		} else {
			r.start, r.end = 0, 0
		}
	}
	var fh FixedHeader
	headerLen := 0
	for {
		avail := r.buf[r.start:r.end]
		if len(avail) >= 2 {
			remaining, n, err := r.remainingLength(avail)
			if err != nil {
				return fh, nil, err
			}
			if n > 0 {
				fh = FixedHeader{Type: Type(avail[0] >> 4), Flags: avail[0] & 0x0F, Remaining: remaining}
				headerLen = n
				break
			}
		}
		if err := r.fillAfterCompact(); err != nil {
			return fh, nil, err
		}
	}
	total := headerLen + fh.Remaining
	if total > r.max {
		return fh, nil, Errorf(PacketTooLarge, "%s of %d bytes exceeds the maximum of %d", fh.Type, total, r.max)
	}
	for r.end-r.start < total {
		if total > len(r.buf)-r.start {
			if r.kind == inlineBuffer && total > len(r.buf) {
				r.borrow()
			}
			switch {
			case r.kind != largeBuffer && total <= len(r.buf):
				r.compact()
			case r.kind != largeBuffer || r.end == len(r.buf):
				r.grow(total) // only when full: growth follows the bytes received
			}
		}
		limit := len(r.buf)
		if r.kind == largeBuffer {
			limit = min(limit, r.start+total)
		}
		if err := r.fill(limit); err != nil {
			return fh, nil, err
		}
	}
	body := r.buf[r.start+headerLen : r.start+total : r.start+total]
	r.start += total
	return fh, body, nil
}

// idleKind is the buffer a Reader with nothing buffered settles on.
func (r *Reader) idleKind() bufferKind {
	if r.pool != nil {
		return inlineBuffer
	}
	return baseBuffer
}

// remainingLength decodes the remaining length after the first byte of b.
// n is the fixed header's size, or 0 when more bytes are needed.
func (r *Reader) remainingLength(b []byte) (remaining, n int, err error) {
	for k := 1; k < len(b) && k <= 4; k++ {
		c := b[k]
		remaining |= int(c&0x7F) << (7 * (k - 1))
		if c < 0x80 {
			if r.strict && c == 0 && k > 1 {
				return 0, 0, malformed("remaining length not in its minimal form") // [MQTT-1.5.5-1]
			}
			return remaining, k + 1, nil
		}
	}
	if len(b) >= 5 {
		return 0, 0, malformed("remaining length longer than 4 bytes") // [MQTT-1.5.5]
	}
	return 0, 0, nil
}

func (r *Reader) compact() {
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
}

// borrow moves the unread bytes from inline to a buffer from the pool.
func (r *Reader) borrow() {
	r.lent = r.pool.get()
	r.base = *r.lent
	r.end = copy(r.base, r.buf[r.start:r.end])
	r.buf, r.start, r.kind = r.base, 0, baseBuffer
}

// giveBack returns a borrowed base buffer to the pool.
func (r *Reader) giveBack() {
	if r.lent != nil {
		r.pool.put(r.lent)
		r.base, r.lent = nil, nil
	}
}

// grow moves the unread bytes to a larger buffer for a packet of total
// bytes: twice what is needed now, at most total. A borrowed base buffer
// goes back to the pool at once: its bytes have moved.
func (r *Reader) grow(total int) {
	have := r.end - r.start
	size := min(total, max(2*len(r.buf), 2*have))
	big := make([]byte, size)
	r.end = copy(big, r.buf[r.start:r.end])
	r.giveBack()
	r.buf, r.start, r.kind = big, 0, largeBuffer
}

func (r *Reader) fillAfterCompact() error {
	if r.end == len(r.buf) {
		r.compact()
	}
	return r.fill(len(r.buf))
}

// fill reads at least one byte into buf[end:limit], which must have room.
func (r *Reader) fill(limit int) error {
	if r.err == nil {
		for range maxEmptyReads {
			n, err := r.src.Read(r.buf[r.end:limit])
			r.end += n
			if err != nil {
				r.err = err
			}
			if n > 0 {
				return nil
			}
			if err != nil {
				break
			}
		}
		if r.err == nil {
			return io.ErrNoProgress
		}
	}
	if errors.Is(r.err, io.EOF) {
		if r.start == r.end {
			return io.EOF
		}
		return io.ErrUnexpectedEOF
	}
	return r.err
}
