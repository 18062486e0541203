package cluster

import (
	"encoding/binary"
	"errors"
)

// Frames between nodes. Every NATS message this package sends starts with a kind byte and the
// origin node's id; what follows depends on the kind. Routed messages carry the engine's
// PUBLISH encoding unchanged after the header, so a node never re-encodes what it forwards.
const (
	kindBatch     byte = 1 // origin, sequence u64, then frames: uvarint length + PUBLISH packet
	kindRetained  byte = 2 // origin, version i64, deleted u8, topic (u16 length), PUBLISH packet
	kindWill      byte = 3 // origin, incarnation u64, set u8, client id (u16 length), PUBLISH packet
	kindHeartbeat byte = 4 // origin, incarnation u64
	kindSnapEnd   byte = 5 // origin: the last frame of a retained snapshot
	kindSnapAsk   byte = 6 // origin, incarnation u64: a request for a retained snapshot
	kindInterest  byte = 7 // origin, incarnation u64, then entries: add u8, filter (u16 length)
	kindBatchAck  byte = 8 // as kindBatch, and every node it reaches acknowledges it (kindAck)
	kindAck       byte = 9 // origin (the acknowledging node), batch sequence u64, ok u8, $share filter (u16 length)
)

var errBadFrame = errors.New("cluster: malformed frame")

// appendHeader writes the kind, the origin and one 64-bit number.
func appendHeader(dst []byte, kind byte, origin string, n uint64) []byte {
	dst = append(dst, kind, byte(len(origin)))
	dst = append(dst, origin...)
	return binary.BigEndian.AppendUint64(dst, n)
}

// frame is a parsed header; its slices alias the received data.
type frame struct {
	kind   byte
	origin []byte
	n      uint64
	rest   []byte
}

func parseFrame(data []byte) (frame, error) {
	if len(data) < 2 {
		return frame{}, errBadFrame
	}
	f := frame{kind: data[0]}
	l := int(data[1])
	if f.kind == kindSnapEnd {
		if len(data) < 2+l {
			return frame{}, errBadFrame
		}
		f.origin = data[2 : 2+l]
		return f, nil
	}
	if len(data) < 2+l+8 {
		return frame{}, errBadFrame
	}
	f.origin = data[2 : 2+l]
	f.n = binary.BigEndian.Uint64(data[2+l:])
	f.rest = data[2+l+8:]
	return f, nil
}

// cutFrame splits the first frame of a batch from the rest.
func cutFrame(b []byte) (packet, rest []byte, ok bool) {
	l, w := binary.Uvarint(b)
	if w <= 0 || l > uint64(len(b)-w) {
		return nil, nil, false
	}
	end := w + int(l)
	return b[w:end], b[end:], true
}

// appendString16 writes a string with a two-byte length.
func appendString16(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func cutString16(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errBadFrame
	}
	l := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+l {
		return "", nil, errBadFrame
	}
	return string(b[2 : 2+l]), b[2+l:], nil
}

// dedupe drops the extra copies NATS delivers when several subscriptions of one connection
// match a message (local filters "a/+" and "a/#" both match "a/b").
//
// Invariant: high holds, per origin node, the highest sequence delivered. It is used by one
// goroutine only (the data loop), which receives every copy in the order its connection got
// them: the copies of one message are adjacent, and one origin's messages arrive in the order
// it published them (one publishing connection, one route), so "seen iff seq <= high" holds.
// Sequences start at the origin's start time in nanoseconds, so a restarted node continues
// above its previous run without any state kept. Rejected: a set of recent (origin, seq)
// pairs, which costs memory and a bound on how late a copy may come for no gain here.
type dedupe struct {
	high map[string]*uint64 // pointers, so updating a known origin allocates nothing
}

// first reports whether (origin, seq) is the first copy, and records it.
func (d *dedupe) first(origin []byte, seq uint64) bool {
	if h := d.high[string(origin)]; h != nil {
		if seq <= *h {
			return false
		}
		*h = seq
		return true
	}
	if d.high == nil {
		d.high = make(map[string]*uint64)
	}
	h := new(uint64) // not &seq: that would move seq to the heap on every call
	*h = seq
	d.high[string(origin)] = h
	return true
}
