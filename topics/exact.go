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
// touches one slot.
//
// The table is open-addressed with the whole-filter hash beside the entry pointer,
// four slots to a cache line, so a topic that matches no exact filter (most of them)
// costs the one line of its home slot: Match loads that line before it walks the
// trie and reads an entry only when the hashes agree. With chained buckets (the
// previous design) every non-empty bucket cost a second, dependent miss to the entry
// just to compare its hash, after the walk.
//
// Invariants:
//   - A slot is empty (hash 0), live (hash and entry set) or deleted (hash set, entry
//     nil). Stored hashes have their top bit set (slotHash), so none is 0 and the
//     home slot is the same for a hash as stored or not. At most half the slots are
//     used (live or deleted), so every probe chain ends at an empty slot; a used
//     slot never becomes empty again in the same table. Half, not three quarters:
//     at a million subscriptions the shards' tables came out 74% full, and a lookup
//     scanned 6.8 slots (two lines and more) instead of about 1.5 (one line); the
//     price is 32 MB instead of 16 MB there, about 20 bytes per subscription.
//   - Readers trust no hash: an entry is a match only if its filter equals the topic.
//     So a writer may store any entry into a deleted slot (hash first, then entry),
//     and a reader that loaded a slot's hash before the change and its entry after
//     still answers right.
//   - An entry's filter never changes. Its set is nil while it is being added or once
//     it has been emptied: readers skip it; the writer deletes its slot before
//     releasing the lock. An emptied entry is never reused: a new subscription to
//     the same filter makes a new entry.
//   - Only the shard's writer (holding shard.mu) stores. A resize builds a new slot
//     array holding the same entries and publishes it; the old one is never written
//     again. Entries are shared by both, so a subscriber set changed after the
//     resize is seen through either.
//
// Rejected: separate chaining with atomic links (above: one more dependent miss per
// lookup, and a resize had to copy the entries, since a reader walking an old chain
// must not be led into another bucket's); a sync.Map (a string key boxed in an
// interface costs an allocation per lookup, and it hashes again what Match has
// already hashed per level).
type exactTable struct {
	mask  uint64
	slots []exactSlot
}

type exactSlot struct {
	hash  atomic.Uint64
	entry atomic.Pointer[exactEntry]
}

// exactEntry is one distinct exact filter of a shard. Its first subscriber's leafSet
// is stored inside it (first), so the common single-subscriber lookup
// reads one allocation; set points there until the set changes (copy-on-write,
// elsewhere). It is 64 bytes, so one aligned cache line (objects of the allocator's
// 64-byte size class are aligned to 64): at 72 bytes (with a 32-byte leafSet) it
// took the 80-byte class, every entry straddled two lines and a lookup that found one
// read both. Not a leafSetOne: its padding would make the entry 88 bytes.
type exactEntry struct {
	filter string
	set    atomic.Pointer[leafSet]
	first  spareSet
}

// newExactEntry makes the entry of filter holding the one subscription e, or no
// subscription when shared (a share group is added by addMember).
func newExactEntry(filter string, e entry, shared bool) *exactEntry {
	x := &exactEntry{filter: filter}
	if !shared {
		x.set.Store(x.first.init(e))
	}
	return x
}

const exactMinSlots = 16

// slotHash is h as stored in a slot: never 0, which marks an empty slot. The top bit
// is above any mask, so the home slot does not change.
func slotHash(h uint64) uint64 { return h | 1<<63 }

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

// home is the slot where the probe for hash h starts.
func (t *exactTable) home(h uint64) *exactSlot { return &t.slots[h&t.mask] }

// lookup returns the entry of filter (whose hash is h), or nil. Readers and writers
// call it.
func (t *exactTable) lookup(h uint64, filter string) *exactEntry {
	want := slotHash(h)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		sh := s.hash.Load()
		if sh == 0 {
			return nil
		}
		if sh == want {
			if e := s.entry.Load(); e != nil && e.filter == filter {
				return e
			}
		}
	}
}

// findExact returns the entry of filter, or nil. The caller holds sh.mu.
func (sh *shard) findExact(h uint64, filter string) *exactEntry {
	if t := sh.exact.Load(); t != nil {
		return t.lookup(h, filter)
	}
	return nil
}

// linkExact publishes e, whose filter (hash h) is not in the index yet. The caller
// holds sh.mu.
func (sh *shard) linkExact(h uint64, e *exactEntry) {
	t := sh.exact.Load()
	if t == nil || 2*(sh.exactUsed+1) > len(t.slots) {
		t = sh.rebuildExact(sh.exactCount + 1)
	}
	i := h & t.mask
	for {
		s := &t.slots[i]
		if s.hash.Load() == 0 {
			sh.exactUsed++
			break
		}
		if s.entry.Load() == nil { // deleted: any entry may take it, see exactTable
			break
		}
		i = (i + 1) & t.mask
	}
	t.slots[i].hash.Store(slotHash(h))
	t.slots[i].entry.Store(e)
	sh.exactCount++
}

// unlinkExact removes e (hash h), whose set has become nil, from the index. The
// caller holds sh.mu.
func (sh *shard) unlinkExact(h uint64, e *exactEntry) {
	t := sh.exact.Load()
	i := h & t.mask
	for t.slots[i].entry.Load() != e {
		i = (i + 1) & t.mask
	}
	t.slots[i].entry.Store(nil)
	sh.exactCount--
	switch {
	case sh.exactCount == 0:
		sh.exact.Store(nil)
		sh.exactUsed = 0
	case len(t.slots) > exactMinSlots && 16*sh.exactCount < len(t.slots):
		sh.rebuildExact(sh.exactCount)
	}
}

// rebuildExact publishes a slot array with room for need filters (at most a third
// full) holding the live entries of the current one.
func (sh *shard) rebuildExact(need int) *exactTable {
	size := exactMinSlots
	for size < 3*need {
		size *= 2
	}
	t := &exactTable{mask: uint64(size - 1), slots: make([]exactSlot, size)}
	if old := sh.exact.Load(); old != nil {
		for i := range old.slots {
			e := old.slots[i].entry.Load()
			if e == nil {
				continue
			}
			h := old.slots[i].hash.Load()
			j := h & t.mask
			for t.slots[j].hash.Load() != 0 {
				j = (j + 1) & t.mask
			}
			t.slots[j].hash.Store(h)
			t.slots[j].entry.Store(e)
		}
	}
	sh.exactUsed = sh.exactCount
	sh.exact.Store(t)
	return t
}
