package cluster

import "encoding/binary"

// batchBytes is the size at which a batch is sent at once rather than when the forwarder
// next runs: large enough to carry hundreds of small messages in one NATS message, small
// enough that a batch never waits long behind a big one on the route.
const batchBytes = 48 << 10

// batchKeepBytes bounds a buffer kept for reuse; a batch grown by one large message is
// dropped after it is sent.
const batchKeepBytes = 256 << 10

// batch is the frames waiting to go out on one subject, as the NATS message they will be:
// header (kind, origin, sequence written when sent, at seqAt), then each frame.
type batch struct {
	subject string
	topic   string
	// waiters are the acknowledgement callbacks of the batch's QoS 1/2 frames (acks.go).
	waiters []func(error)
	buf     []byte
	seqAt   int
	frames  int
	ord     int // position in batches.open: batches go out in this order
}

// batches are the open batches of a node, one per subject with frames pending.
//
// Invariants (pubMu held): open lists the batches in the order their first pending frame
// arrived (batch.ord is the position) and bySubject indexes the same batches; a subject's
// frames are in its batch in the order Forward got them, and the open batches are sent
// together, oldest first, each under the next sequence number, so one topic's messages reach
// every node in the order they were accepted [MQTT-4.6.0-6]. One publisher's order across
// topics is kept too: lastBatch holds, per publisher with frames pending, the position of the
// batch with its latest frame, and a frame that would join an older batch (and so overtake
// that latest frame) first makes the node send everything open (conflicts).
//
// Design: batches per subject, because a NATS message has one subject, and the subject is
// what routes it to the nodes with interest. Publishers that each keep to their topics batch
// fully; one that alternates topics costs a send per switch, as without batching. Rejected:
// one batch per node for every topic, which needs each node to know every other node's
// filters (a replicated subscription table) instead of NATS interest; and closing a batch
// whenever the subject changes, which degrades to one message per batch as soon as several
// publishers' messages interleave.
type batches struct {
	open      []*batch
	bySubject map[string]*batch
	free      []*batch
	lastBatch map[uint64]int // publisher → ord of the batch with its latest pending frame
}

// conflicts reports whether publisher's next frame for subject would overtake one of its own
// frames: the subject's open batch goes out before the one holding its latest frame.
func (bs *batches) conflicts(subject string, publisher uint64) bool {
	b := bs.bySubject[subject]
	if b == nil {
		return false
	}
	last, ok := bs.lastBatch[publisher]
	return ok && last > b.ord
}

// add appends packet as a frame to subject's batch, opening one if needed (origin goes in the
// header). first reports that no batch had frames pending before: the forwarder needs a kick.
func (bs *batches) add(subject, origin string, publisher uint64, packet []byte) (b *batch, first bool) {
	first = len(bs.open) == 0
	b = bs.bySubject[subject]
	if b == nil {
		if n := len(bs.free); n > 0 {
			b = bs.free[n-1]
			bs.free = bs.free[:n-1]
		} else {
			b = &batch{}
		}
		b.subject = subject
		b.buf = appendHeader(b.buf[:0], kindBatch, origin, 0)
		b.seqAt = len(b.buf) - 8
		if bs.bySubject == nil {
			bs.bySubject = make(map[string]*batch)
			bs.lastBatch = make(map[uint64]int)
		}
		bs.bySubject[subject] = b
		b.ord = len(bs.open)
		bs.open = append(bs.open, b)
	}
	bs.lastBatch[publisher] = b.ord
	b.buf = binary.AppendUvarint(b.buf, uint64(len(packet)))
	b.buf = append(b.buf, packet...)
	b.frames++
	return b, first
}

// reset closes every batch once sent, keeping buffers for reuse.
func (bs *batches) reset() {
	for i, b := range bs.open {
		delete(bs.bySubject, b.subject)
		b.subject, b.frames = "", 0
		if cap(b.buf) <= batchKeepBytes {
			bs.free = append(bs.free, b)
		}
		bs.open[i] = nil
	}
	bs.open = bs.open[:0]
	clear(bs.lastBatch)
}
