package packets

import (
	"errors"
	"io"
)

// Reader frames MQTT packets from a byte stream.
//
// Invariants: buf[start:end] holds bytes read from the source but not yet
// returned; the body handed out by ReadPacket is buf[...] and stays valid
// until the next call, which may compact or replace buf. buf is the
// read-ahead buffer of the size given to NewReader (base), except while a
// packet larger than it is being read (oversized): then buf grows by
// doubling as the packet's bytes arrive, up to the packet's size, and reads
// stop at the packet's end so nothing is read ahead into it; the next call
// returns to base. Growing as bytes arrive, rather than allocating the
// announced size at once, keeps memory proportional to what a peer has
// actually sent, whatever length it claims.
//
// Design: read ahead as much as the source gives into one buffer and slice
// packets out of it, so one syscall yields many packets under load.
// Rejected: bufio.Reader plus io.ReadFull per body, which copies every body
// a second time and cannot refuse an oversized packet without reading it.
type Reader struct {
	src        io.Reader
	buf        []byte
	base       []byte
	start, end int
	max        int
	oversized  bool  // buf is not base but a buffer for one large packet
	strict     bool  // reject non-minimal remaining lengths (5.0)
	err        error // from src, returned once the buffered bytes run out
}

// maxEmptyReads bounds how often a misbehaving source may return 0, nil.
const maxEmptyReads = 100

// minReaderBuffer leaves room for the largest fixed header (5 bytes).
const minReaderBuffer = 16

// NewReader returns a Reader on r with a read-ahead buffer of bufSize bytes
// (4096 is typical).
func NewReader(r io.Reader, bufSize int) *Reader {
	if bufSize < minReaderBuffer {
		bufSize = minReaderBuffer
	}
	b := make([]byte, bufSize)
	return &Reader{src: r, buf: b, base: b, max: MaxPacketSize}
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

// ReadPacket returns the next packet's fixed header and body. The body is
// valid until the next call. A packet over the limit is refused with a
// PacketTooLarge *Error before its body is read; a bad remaining length is
// a MalformedPacket *Error. At the end of the stream it returns io.EOF
// between packets and io.ErrUnexpectedEOF inside one.
func (r *Reader) ReadPacket() (FixedHeader, []byte, error) {
	if r.oversized && r.start == r.end {
		r.buf, r.start, r.end, r.oversized = r.base, 0, 0, false // shrink back
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
			switch {
			case !r.oversized && total <= len(r.base):
				r.compact()
			case !r.oversized || r.end == len(r.buf):
				r.grow(total) // only when full: growth follows the bytes received
			}
		}
		limit := len(r.buf)
		if r.oversized {
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

// grow moves the unread bytes to a larger buffer for a packet of total
// bytes: twice what is needed now, at most total.
func (r *Reader) grow(total int) {
	have := r.end - r.start
	size := min(total, max(2*len(r.buf), 2*have))
	big := make([]byte, size)
	r.end = copy(big, r.buf[r.start:r.end])
	r.buf, r.start, r.oversized = big, 0, true
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
