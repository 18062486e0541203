package topics

import "sync/atomic"

// exactTable indexes the filters of one shard that hold no wildcard, by the whole
// filter. A topic matches such a filter only when the two are equal, so Match finds
// all of them with one hash lookup instead of a node per level.
//
// Why: in the bar's workload 70% of the filters are exact, and each one of 5 or 6
// levels added trie nodes that no 4-level topic ever reaches. Taking them out of the
// trie leaves it holding only the wildcard filters (at a million subscriptions, 414k
// nodes instead of about 1.2M), and subscribing or unsubscribing an exact filter
// links or unlinks one entry. Measured at 1,000,000 subscriptions: 187 -> 122 bytes
// per subscription with the per-node child tables of the time. A match pays one
// lookup more (bucket, entry, filter bytes); in interleaved runs on the loaded
// machine it cost about what the smaller trie saved.
//
// Invariants:
//   - Readers follow only atomic pointers: sh.exact, each bucket head, each entry's
//     next and set. An entry's hash and filter never change after it is linked.
//   - Only the shard's writer (holding shard.mu) links, unlinks or resizes. Unlinking
//     stores the successor into the predecessor's pointer; a reader standing on the
//     unlinked entry still reaches the rest of the chain through its next.
//   - A resize builds a new table of new entries and publishes it: entries are never
//     moved between chains, because a reader walking an old chain would then be led
//     into another bucket's chain and miss its filter. A reader still on the old table
//     sees the subscriptions as they were when it started (the garbage collector keeps
//     them alive).
//   - An entry whose set is nil is being added or has just been emptied: readers skip
//     it; the writer unlinks it before releasing the lock.
//   - The buckets are at most one entry per bucket on average (grow at count > size)
//     and shrink below a quarter, so a chain is short and a subscribe/unsubscribe
//     pair at the boundary does not resize every time.
//
// Chosen: separate chaining with atomic links, one entry per distinct filter holding
// the same copy-on-write leafSet as a trie node. Rejected: open addressing over atomic
// slots (deletion needs tombstones or a backward shift that readers could observe
// half-done); a sync.Map (a string key boxed in an interface costs an allocation per
// lookup, and it hashes again what Match has already hashed per level).
type exactTable struct {
	mask    uint64
	buckets []atomic.Pointer[exactEntry]
}

// exactEntry is one distinct exact filter of a shard. Its first subscriber's leafSet
// is stored inside it (first), so the common single-subscriber lookup reads one
// allocation; set points there until the set changes (copy-on-write, elsewhere).
type exactEntry struct {
	hash   uint64
	filter string
	set    atomic.Pointer[leafSet]
	next   atomic.Pointer[exactEntry]
	first  leafSetOne
}

// newExactEntry makes the entry of filter holding the one subscription e, or no
// subscription when shared (a share group is added by addMember).
func newExactEntry(h uint64, filter string, e entry, shared bool) *exactEntry {
	x := &exactEntry{hash: h, filter: filter}
	if !shared {
		x.first.one[0] = e
		x.first.set.entries = x.first.one[:]
		x.set.Store(&x.first.set)
	}
	return x
}

const exactMinBuckets = 16

// exactHashStep folds the hash of one more level into the hash of a whole topic or
// filter. Match computes level hashes anyway, so the whole-topic hash costs a
// multiply per level. The multiply spreads every bit of the level's hash over the
// high bits and, the constant being odd, the fold is a bijection of the running hash:
// the position of a level changes the result ("a/b" and "b/a" differ).
func exactHashStep(h, levelHash uint64) uint64 {
	return (h ^ levelHash) * 0x9e3779b97f4a7c15
}

// exactHash is the whole-filter hash of a filter, as Match computes it for a topic.
func (r *Router) exactHash(filter string) uint64 {
	var h uint64
	for rest, more := filter, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		h = exactHashStep(h, r.hash(level))
	}
	return h
}

// lookup returns the entry of filter, or nil. Readers and writers call it.
func (t *exactTable) lookup(h uint64, filter string) *exactEntry {
	for e := t.buckets[h&t.mask].Load(); e != nil; e = e.next.Load() {
		if e.hash == h && e.filter == filter {
			return e
		}
	}
	return nil
}

// findExact returns the entry of filter, or nil. The caller holds sh.mu.
func (sh *shard) findExact(h uint64, filter string) *exactEntry {
	if t := sh.exact.Load(); t != nil {
		return t.lookup(h, filter)
	}
	return nil
}

// linkExact publishes e, a filter not in the index yet. The caller holds sh.mu.
func (sh *shard) linkExact(e *exactEntry) {
	t := sh.exact.Load()
	sh.exactCount++
	if t == nil || uint64(sh.exactCount) > t.mask+1 {
		size := uint64(exactMinBuckets)
		if t != nil {
			size = 2 * (t.mask + 1)
		}
		t = sh.rebuildExact(t, size)
	}
	head := &t.buckets[e.hash&t.mask]
	e.next.Store(head.Load())
	head.Store(e)
}

// unlinkExact removes e, whose set has become nil, from the index. The caller holds sh.mu.
func (sh *shard) unlinkExact(e *exactEntry) {
	t := sh.exact.Load()
	link := &t.buckets[e.hash&t.mask]
	for cur := link.Load(); cur != e; cur = link.Load() {
		link = &cur.next
	}
	link.Store(e.next.Load())
	sh.exactCount--
	switch {
	case sh.exactCount == 0:
		sh.exact.Store(nil)
	case t.mask+1 > exactMinBuckets && uint64(sh.exactCount) < (t.mask+1)/4:
		sh.rebuildExact(t, (t.mask+1)/2)
	}
}

// rebuildExact publishes a table of size buckets holding copies of old's entries.
func (sh *shard) rebuildExact(old *exactTable, size uint64) *exactTable {
	t := &exactTable{mask: size - 1, buckets: make([]atomic.Pointer[exactEntry], size)}
	if old != nil {
		for i := range old.buckets {
			for e := old.buckets[i].Load(); e != nil; e = e.next.Load() {
				c := &exactEntry{hash: e.hash, filter: e.filter}
				if set := e.set.Load(); set == &e.first.set {
					// Copy the inline set too: pointing into e would keep e alive.
					c.first.one = e.first.one
					c.first.set.entries = c.first.one[:]
					c.set.Store(&c.first.set)
				} else {
					c.set.Store(set)
				}
				head := &t.buckets[c.hash&t.mask]
				c.next.Store(head.Load())
				head.Store(c)
			}
		}
	}
	sh.exact.Store(t)
	return t
}
