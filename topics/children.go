package topics

import (
	"slices"
	"sync/atomic"
)

// childTable maps a level to a child node. It has two shapes:
//   - small (buckets == nil): one immutable slice, scanned linearly. Adding a child
//     publishes a new table.
//   - large: a power-of-two array of buckets, each an atomic pointer to an immutable
//     slice. Adding a child copies one bucket (a few slots), so a node with 100,000
//     children (device ids, say) does not copy them all per subscribe; the array is
//     rebuilt, and the table republished, when it doubles.
//
// Slots carry the level's hash so a lookup compares integers and dereferences a node
// only on a hash hit: at a million subscriptions each dereference is a likely cache
// miss. Rejected: a Go map per node (not safe to read while written, and 48+ bytes of
// header per node), and a sorted slice with binary search (insert copies all siblings).
type childTable struct {
	small   []slot
	buckets []atomic.Pointer[bucket]
	count   int // number of children; read and written only by the shard's writer
}

type slot struct {
	hash uint64
	node *node
}

type bucket struct{ slots []slot }

// child returns n's child for level (whose hash is h), or nil. Readers call it.
func (n *node) child(h uint64, level string) *node {
	t := n.children.Load()
	if t == nil {
		return nil
	}
	slots := t.small
	if t.buckets != nil {
		b := t.buckets[h&uint64(len(t.buckets)-1)].Load()
		if b == nil {
			return nil
		}
		slots = b.slots
	}
	for i := range slots {
		if slots[i].hash == h && slots[i].node.level == level {
			return slots[i].node
		}
	}
	return nil
}

// addChild publishes c as a child of n. The caller holds the shard lock and has
// checked that no child has c's level.
func (n *node) addChild(h uint64, c *node) {
	t := n.children.Load()
	s := slot{hash: h, node: c}
	switch {
	case t == nil:
		n.children.Store(&childTable{small: []slot{s}, count: 1})
	case t.buckets == nil && len(t.small) < smallChildren:
		small := make([]slot, len(t.small)+1)
		copy(small, t.small)
		small[len(t.small)] = s
		n.children.Store(&childTable{small: small, count: len(small)})
	case t.buckets == nil:
		all := append(append(make([]slot, 0, len(t.small)+1), t.small...), s)
		n.children.Store(newLargeTable(all))
	default:
		b := &t.buckets[h&uint64(len(t.buckets)-1)]
		var old []slot
		if ob := b.Load(); ob != nil {
			old = ob.slots
		}
		slots := make([]slot, len(old)+1)
		copy(slots, old)
		slots[len(old)] = s
		b.Store(&bucket{slots: slots})
		t.count++
		if t.count > 2*len(t.buckets) {
			n.children.Store(newLargeTable(t.all()))
		}
	}
}

// removeChild unpublishes child c of n. The caller holds the shard lock.
func (n *node) removeChild(h uint64, c *node) {
	t := n.children.Load()
	if t == nil {
		return
	}
	if t.buckets == nil {
		if len(t.small) == 1 {
			if t.small[0].node == c {
				n.children.Store(nil)
			}
			return
		}
		small := make([]slot, 0, len(t.small)-1)
		for _, s := range t.small {
			if s.node != c {
				small = append(small, s)
			}
		}
		n.children.Store(&childTable{small: small, count: len(small)})
		return
	}
	b := &t.buckets[h&uint64(len(t.buckets)-1)]
	ob := b.Load()
	if ob == nil {
		return
	}
	slots := make([]slot, 0, len(ob.slots))
	for _, s := range ob.slots {
		if s.node != c {
			slots = append(slots, s)
		}
	}
	if len(slots) == len(ob.slots) {
		return
	}
	if len(slots) == 0 {
		b.Store(nil)
	} else {
		b.Store(&bucket{slots: slots})
	}
	t.count--
	if t.count <= smallChildren/2 {
		// Back to one flat slice: a shrunken table should not keep its bucket array.
		n.children.Store(&childTable{small: t.all(), count: t.count})
	}
}

// all gathers every slot of a large table. Writer only.
func (t *childTable) all() []slot {
	out := make([]slot, 0, t.count)
	for i := range t.buckets {
		if b := t.buckets[i].Load(); b != nil {
			out = append(out, b.slots...)
		}
	}
	return out
}

// newLargeTable builds a bucketed table for slots, about one slot per bucket.
func newLargeTable(slots []slot) *childTable {
	size := 1
	for size < len(slots) {
		size <<= 1
	}
	t := &childTable{buckets: make([]atomic.Pointer[bucket], size), count: len(slots)}
	mask := uint64(size - 1)
	// Count per bucket, then carve every bucket's slice out of one array.
	counts := make([]int, size)
	for _, s := range slots {
		counts[s.hash&mask]++
	}
	backing := make([]slot, len(slots))
	offsets := make([]int, size)
	off := 0
	for i, c := range counts {
		offsets[i] = off
		off += c
	}
	fill := slices.Clone(offsets)
	for _, s := range slots {
		i := s.hash & mask
		backing[fill[i]] = s
		fill[i]++
	}
	for i, c := range counts {
		if c > 0 {
			t.buckets[i].Store(&bucket{slots: backing[offsets[i] : offsets[i]+c : offsets[i]+c]})
		}
	}
	return t
}
