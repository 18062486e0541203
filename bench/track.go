package main

// stream tracks, for one subscriber, the sequence numbers received from one
// publisher, to count unique, duplicated and out-of-order deliveries.
//
// Invariants: every sequence below next was either received (once or more)
// or lies in one of the gaps; gaps are disjoint, ascending half-open ranges
// [lo, hi) all below next; unique counts distinct sequences received.
//
// Design: the expected next sequence plus the list of gaps, so the common
// in-order case is one comparison and an increment, and the state is
// allocation-free until something goes wrong (a gap). A late arrival inside
// a gap is out of order; below next and outside every gap it is a
// duplicate. Rejected: a bitmap of every sequence seen, which costs memory
// per message and a cache miss per delivery.
type stream struct {
	next       uint64
	unique     uint64
	duplicates uint64
	outOfOrder uint64
	gaps       []seqRange
}

type seqRange struct{ lo, hi uint64 }

// maxGaps bounds the gap list of a badly lossy stream; the oldest gaps are
// forgotten, so a very late arrival from one of them counts as a duplicate.
const maxGaps = 4096

// observe accounts for sequence seq.
func (s *stream) observe(seq uint64) {
	switch {
	case seq == s.next:
		s.next++
		s.unique++
	case seq > s.next:
		if len(s.gaps) == maxGaps {
			s.gaps = append(s.gaps[:0], s.gaps[1:]...)
		}
		s.gaps = append(s.gaps, seqRange{s.next, seq})
		s.next = seq + 1
		s.unique++
	default:
		if s.fillGap(seq) {
			s.outOfOrder++
			s.unique++
		} else {
			s.duplicates++
		}
	}
}

// fillGap removes seq from the gap holding it and reports whether one did.
func (s *stream) fillGap(seq uint64) bool {
	for i := len(s.gaps) - 1; i >= 0; i-- {
		g := s.gaps[i]
		if seq >= g.hi {
			return false
		}
		if seq < g.lo {
			continue
		}
		switch {
		case g.hi-g.lo == 1:
			s.gaps = append(s.gaps[:i], s.gaps[i+1:]...)
		case seq == g.lo:
			s.gaps[i].lo++
		case seq == g.hi-1:
			s.gaps[i].hi--
		default:
			s.gaps = append(s.gaps[:i+1], s.gaps[i:]...)
			s.gaps[i].hi = seq
			s.gaps[i+1].lo = seq + 1
		}
		return true
	}
	return false
}
