package topics

// Router design (read this before changing the trie).
//
// Each shard holds three structures, all readable without a lock:
//   - exact (exact.go): the filters without wildcards, by whole filter. A topic
//     matches those only when equal, so one hash lookup finds them all.
//   - nodes (nodes.go): the trie of the filters holding '+' or '#', every node kept
//     in one open-addressed table addressed by (parent, level), so a child lookup is
//     one probe and no node owns a child table.
//   - root: the trie's root; a '+' child hangs off its parent (node.wild).
//
// Chosen: copy-on-write values published with atomic pointers. Every field a reader
// follows (a table slot's node, a node's '+' child and subscription sets, an exact
// slot's entry and an entry's set, a share group's member list) is an atomic pointer
// to a value that is not modified once published, except through other atomic
// fields. A writer (Subscribe, Unsubscribe) holds the mutex of the one shard it
// changes, builds the replacement value and stores it; a reader (Match) only loads,
// so it takes no lock at all, never writes shared memory (except the round-robin
// cursor of a $share group it delivers to), and scales with cores. The garbage
// collector reclaims what readers may still hold, which is what makes this RCU-like
// scheme safe in Go without epochs.
//
// Rejected: an RWMutex per shard. RLock and RUnlock each write the lock's reader
// count, so two cores matching at once bounce that cache line between them on every
// match; every match also visits the wildcard shard, so all matchers would share at
// least one lock. That was judged, not measured: the lock-free reader writes nothing
// shared, so it cannot do worse. Rejected too: a child table per node (the first
// design): three dependent cache misses per level instead of two, and a table copy
// per new child. A result cache (as in nats sublist) is not built: it must be
// invalidated by every subscribe to a wildcard filter, allocates per distinct topic,
// and does not help the million-topic case.
//
// Invariants:
//   - Filters are sharded by a hash of their first level; filters whose first level is
//     '+' or '#' live in the wildcard shard, which Match skips for topics starting with
//     '$' [MQTT-4.7.2-1].
//   - A filter without '+' or '#' is in its shard's exact index and never in the trie.
//   - A node exists only while it or a descendant holds a subscription: Unsubscribe
//     prunes empty nodes bottom-up, so the trie's size follows the subscriptions.
//   - A '#' filter is not a node: its subscriptions hang off the parent (node.multi),
//     because '#' is always the last level.
//   - Within one leafSet a client appears at most once (Client+Filter identifies a
//     subscription [MQTT-3.8.4-3]); within one share group a client appears once.
//   - Filters share their common levels: one node per distinct prefix. A level of up to
//     20 bytes is copied into its node; a longer one is a sub-string of the first
//     filter that created the node (which the router therefore keeps alive), as is an
//     exact entry's filter.
//   - Lock order: a writer holds exactly one shard mutex and never another lock.

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

const (
	shardBits = 5
	numShards = 1 << shardBits
)

// Errors returned by Subscribe beyond those of ValidateFilter.
var (
	ErrNoLocalShared = errors.New("shared subscription with the No Local option")
	ErrBadOptions    = errors.New("invalid subscription options")
)

// SubOptions are the options a client sends with each topic filter of a SUBSCRIBE.
type SubOptions struct {
	QoS               byte // maximum QoS the client accepts on this subscription
	NoLocal           bool // do not deliver the client's own publications
	RetainAsPublished bool // keep the RETAIN flag as published when forwarding
	RetainHandling    byte // 0 send retained, 1 only if new subscription, 2 never
}

// Subscription is one topic filter of one session.
type Subscription struct {
	Client  uint64 // the engine's session key; overlapping matches merge by Client
	Filter  string // as the client sent it, including any $share/group/ prefix
	Options SubOptions
	ID      uint32 // subscription identifier, 0 = none
}

// Delivery is one copy of a message for one client.
type Delivery struct {
	Client            uint64
	QoS               byte // highest QoS among the client's matching subscriptions [MQTT-3.3.4-2]
	RetainAsPublished bool // any matching subscription asked for it
	// IDs holds every matching subscription identifier of this client [MQTT-3.3.4-4].
	// It points into storage owned by the Matches and is valid until its Reset.
	IDs []uint32
	// Shared marks the chosen member of a $share group. Shared deliveries are not merged
	// with the client's non-shared ones, nor with those of another group.
	Shared bool
}

// Matches receives the result of Router.Match and holds the scratch space Match needs.
// Reuse one per goroutine: after the first few calls Match allocates nothing.
type Matches struct {
	Deliveries []Delivery

	ids    []uint32     // backing store of Delivery.IDs
	hits   []hit        // non-shared matches of the current call, merged by client
	levels []topicLevel // the topic being matched, split once
	nodes  [2][]nodeRef // the trie nodes reached at the current and the next level

	publisher uint64
	plusHash  uint64 // Router.plusHash, for the keys of '+' nodes
	// sources counts the subscriber sets that contributed hits: one set holds a client at
	// most once, so hits from a single set need no merging (and no sort).
	sources int
	online  func(client uint64) bool

	// Pad to a cache line of its own: each matching goroutine writes its Matches on
	// every call, and two of them sharing a line would slow both (false sharing).
	_ [64]byte
}

// Reset empties m for reuse; the IDs of earlier deliveries become invalid.
func (m *Matches) Reset() {
	m.Deliveries = m.Deliveries[:0]
	m.ids = m.ids[:0]
}

type hit struct {
	client uint64
	id     uint32
	qos    byte
	rap    bool
}

// nodeRef is a node reached by Match and the table of its shard, where its children are.
type nodeRef struct {
	n   *node
	t   *nodeTable
	key uint64 // n's key, known without reading n
}

type topicLevel struct {
	text string
	hash uint64
}

// Router is the subscription index: it answers "who receives a PUBLISH on this
// topic". It is safe for concurrent use; see the design note at the top of this file.
type Router struct {
	lim    Limits
	seed   maphash.Seed
	count  atomic.Int64
	shards [numShards]*shard
	wild   *shard // filters starting with '+' or '#'

	plusHash uint64 // the level hash of '+' nodes, for their key
}

// shard owns the writer lock of one sub-trie. Readers only follow root, nodes and exact.
type shard struct {
	mu    sync.Mutex
	root  *node                      // the filters holding '+' or '#'
	nodes atomic.Pointer[nodeTable]  // every node under root but '+' ones, see nodes.go
	exact atomic.Pointer[exactTable] // the filters without wildcards, see exact.go

	// Guarded by mu.
	deleted    *node // marks a deleted slot of nodes: its nil parent matches no lookup
	nodesLive  int   // nodes in the table
	nodesUsed  int   // slots of the table holding a live or deleted node
	exactCount int   // distinct filters in exact
	exactUsed  int   // slots of exact holding a live or deleted filter
}

func newShard() *shard {
	return &shard{root: newNode(nil, ""), deleted: &node{}}
}

// node is one level of a filter. Its children are in its shard's nodeTable (see
// nodes.go), found by key, parent and level; its key is not stored (Match and the
// writers compute it along the path). Its other pointer fields are published
// copy-on-write. A node is 64 bytes, the size of a cache line and of the allocator's
// size class, so it is one aligned line: a lookup's check of parent and level, and
// the reads of wild, multi and subs that follow, cost one miss. A level of up to 12
// bytes is kept inside it, so that check costs no further miss (see newNode).
type node struct {
	parent *node
	wild   atomic.Pointer[node]    // the '+' child
	multi  atomic.Pointer[leafSet] // subscriptions of filter "<this node>/#"
	subs   atomic.Pointer[leafSet] // subscriptions whose filter ends at this node
	level  string

	children int32 // children in the nodeTable; written by the shard's writer only
	inline   [12]byte
}

// spareSet is room for a one-entry leafSet inside the structure that points to it
// (an exactEntry's first set), so reading the set costs no separate cache miss.
type spareSet struct {
	set leafSet
	one [1]entry
}

// init makes s the set of e alone and returns it. s must not have been published.
func (s *spareSet) init(e entry) *leafSet {
	s.one[0] = e
	s.set = setOf(s.one[:], nil)
	return &s.set
}

// newNode makes the node of level under parent. A short level is copied into the
// node and level is made a view of that copy with unsafe.String: the bytes are never
// written again, which is what unsafe.String requires, and it saves the cache miss of
// reading the level from the filter's memory on every lookup (measured: about a tenth
// of a match at a million subscriptions). A longer level stays a sub-string of the
// filter.
func newNode(parent *node, level string) *node {
	n := &node{parent: parent, level: level}
	if level != "" && len(level) <= len(n.inline) {
		copy(n.inline[:], level)
		n.level = unsafe.String(&n.inline[0], len(level))
	}
	return n
}

// empty reports whether n holds nothing. Writer only (children is not atomic).
func (n *node) empty() bool {
	return n.children == 0 && n.wild.Load() == nil && n.multi.Load() == nil && n.subs.Load() == nil
}

// entry is one non-shared subscription, or one member of a share group.
type entry struct {
	client uint64
	id     uint32
	opts   SubOptions
}

// leafSet holds the subscriptions of one filter. It is immutable once published
// (except each group's member list and cursor, which are atomic).
//
// Its entries are a pointer and a count rather than a slice: 24 bytes instead of 32,
// which is what lets an exactEntry with its first set and entry inside fit one
// 64-byte line (see there). The slice's capacity was never used: a set is
// replaced, not appended to.
type leafSet struct {
	first  *entry // the first of n consecutive entries (see list)
	n      int
	groups *shareGroups // nil for most filters
}

// setOf returns a leafSet of entries (kept, not copied) and groups.
func setOf(entries []entry, groups *shareGroups) leafSet {
	if len(entries) == 0 {
		return leafSet{groups: groups}
	}
	return leafSet{first: &entries[0], n: len(entries), groups: groups}
}

// list returns the entries of s. unsafe.Slice rebuilds the slice that setOf took
// apart: first points to the first element of a slice of at least n entries, which
// first keeps alive.
func (s *leafSet) list() []entry {
	if s.n == 0 {
		return nil
	}
	return unsafe.Slice(s.first, s.n)
}

type shareGroups struct{ list []*shareGroup }

func (s *leafSet) groupList() []*shareGroup {
	if s.groups == nil {
		return nil
	}
	return s.groups.list
}

// leafSetOne is a leafSet with room for its only entry in the same allocation: most
// filters have one subscriber, and this halves their allocations and bytes. It is
// padded from 40 to 64 bytes, the allocator's size class that is one aligned cache
// line: at 48 bytes (its size with a slice) half of them straddled two lines, and Match read the entry from
// the second line only after the header from the first, one more dependent miss per
// set (cachegrind, 100k subscriptions: two first-level misses per set collected in
// 65% of the sets). The padding costs 16 bytes per wildcard filter.
type leafSetOne struct {
	set leafSet
	one [1]entry
	_   [24]byte
}

// shareGroup is one $share/{name}/{filter} subscription: its members take turns.
type shareGroup struct {
	name    string
	members atomic.Pointer[[]entry] // immutable slice, replaced on change
	next    atomic.Uint32           // round-robin cursor, advanced by Match
}

// NewRouter returns an empty Router that enforces lim on every filter subscribed.
func NewRouter(lim Limits) *Router {
	r := &Router{lim: lim, seed: maphash.MakeSeed(), wild: newShard()}
	for i := range r.shards {
		r.shards[i] = newShard()
	}
	r.plusHash = r.hash("+")
	return r
}

// Count is the number of subscriptions held, shared ones included.
func (r *Router) Count() int { return int(r.count.Load()) }

func (r *Router) hash(level string) uint64 { return maphash.String(r.seed, level) }

// shardOf picks the shard of a filter (not a $share form) from its first level. The
// top bits pick the shard because the low bits of the keys derived from it pick the
// slots inside the shard.
func (r *Router) shardOf(filter string) *shard {
	first, _, _ := cutLevel(filter)
	if first == "+" || first == "#" {
		return r.wild
	}
	return r.shards[r.hash(first)>>(64-shardBits)]
}

// Subscribe adds s, or replaces the options and identifier of the subscription with
// the same Client and Filter [MQTT-3.8.4-3], reporting which.
func (r *Router) Subscribe(s Subscription) (replaced bool, err error) {
	if err := ValidateFilter(s.Filter, r.lim); err != nil {
		return false, fmt.Errorf("subscribe %q: %w", s.Filter, err)
	}
	if s.Options.QoS > 2 || s.Options.RetainHandling > 2 {
		return false, fmt.Errorf("subscribe %q: %w: QoS %d, Retain Handling %d",
			s.Filter, ErrBadOptions, s.Options.QoS, s.Options.RetainHandling)
	}
	filter := s.Filter
	group, inner, shared := ParseShare(filter)
	if shared {
		if s.Options.NoLocal {
			return false, fmt.Errorf("subscribe %q: %w", s.Filter, ErrNoLocalShared) // [MQTT-3.8.3-4]
		}
		filter = inner
	}
	sh := r.shardOf(filter)
	var exactHash uint64
	exact := !strings.ContainsAny(filter, "+#")
	if exact {
		exactHash = r.exactHash(filter) // outside the lock: it only reads the seed
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()

	e := entry{client: s.Client, id: s.ID, opts: s.Options}
	n, key := sh.root, uint64(0)
	var target *atomic.Pointer[leafSet]
	if exact {
		x := sh.findExact(exactHash, filter)
		if x == nil {
			x = newExactEntry(filter, e, shared)
			sh.linkExact(exactHash, x)
			if !shared {
				r.count.Add(1)
				return false, nil
			}
		}
		target = &x.set
	}
	for target == nil {
		level, rest, more := cutLevel(filter)
		if level == "#" {
			target = &n.multi
			break
		}
		if level == "+" {
			key = exactHashStep(key, r.plusHash)
			w := n.wild.Load()
			if w == nil {
				w = newNode(n, "+")
				n.wild.Store(w)
			}
			n = w
		} else {
			key = exactHashStep(key, r.hash(level))
			c := sh.nodes.Load().child(n, key, level)
			if c == nil {
				c = newNode(n, level)
				sh.insertNode(c, key)
				n.children++
			}
			n = c
		}
		if !more {
			target = &n.subs
			break
		}
		filter = rest
	}
	if shared {
		replaced = addMember(target, group, e)
	} else {
		replaced = addEntry(target, e)
	}
	if !replaced {
		r.count.Add(1)
	}
	return replaced, nil
}

// addEntry publishes a leafSet with e added, or replacing client's entry.
func addEntry(target *atomic.Pointer[leafSet], e entry) (replaced bool) {
	old := target.Load()
	if old == nil {
		one := &leafSetOne{one: [1]entry{e}}
		one.set = setOf(one.one[:], nil)
		target.Store(&one.set)
		return false
	}
	entries := make([]entry, old.n, old.n+1)
	copy(entries, old.list())
	if i := indexClient(entries, e.client); i >= 0 {
		entries[i] = e
		replaced = true
	} else {
		entries = append(entries, e)
	}
	set := setOf(entries, old.groups)
	target.Store(&set)
	return replaced
}

// addMember adds e to share group name at target, creating the group if needed.
func addMember(target *atomic.Pointer[leafSet], name string, e entry) (replaced bool) {
	old := target.Load()
	if old != nil {
		for _, g := range old.groupList() {
			if g.name != name {
				continue
			}
			members := slices.Clone(*g.members.Load())
			if i := indexClient(members, e.client); i >= 0 {
				members[i] = e
				replaced = true
			} else {
				members = append(members, e)
			}
			g.members.Store(&members)
			return replaced
		}
	}
	g := &shareGroup{name: name}
	g.members.Store(&[]entry{e})
	set := &leafSet{}
	if old != nil {
		set.first, set.n = old.first, old.n
		set.groups = &shareGroups{list: append(slices.Clip(old.groupList()), g)}
	} else {
		set.groups = &shareGroups{list: []*shareGroup{g}}
	}
	target.Store(set)
	return false
}

func indexClient(entries []entry, client uint64) int {
	for i := range entries {
		if entries[i].client == client {
			return i
		}
	}
	return -1
}

// pathStep records how Unsubscribe reached a node, so it can prune on the way back.
type pathStep struct {
	parent, child *node
	key           uint64 // the child's
	wild          bool
}

// Unsubscribe removes client's subscription to filter (as sent, with any $share
// prefix) and reports whether there was one.
func (r *Router) Unsubscribe(client uint64, filter string) bool {
	group, inner, shared := ParseShare(filter)
	if shared {
		filter = inner
	}
	if filter == "" {
		return false
	}
	sh := r.shardOf(filter)
	if !strings.ContainsAny(filter, "+#") {
		return r.unsubscribeExact(sh, client, filter, group, shared)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()

	var buf [8]pathStep
	path := buf[:0]
	n, key := sh.root, uint64(0)
	var target *atomic.Pointer[leafSet]
	for {
		level, rest, more := cutLevel(filter)
		if level == "#" {
			target = &n.multi
			break
		}
		step := pathStep{parent: n}
		if level == "+" {
			key = exactHashStep(key, r.plusHash)
			step.wild = true
			n = n.wild.Load()
		} else {
			key = exactHashStep(key, r.hash(level))
			n = sh.nodes.Load().child(n, key, level)
		}
		if n == nil {
			return false
		}
		step.child, step.key = n, key
		path = append(path, step)
		if !more {
			target = &n.subs
			break
		}
		filter = rest
	}
	var removed bool
	if shared {
		removed = removeMember(target, group, client)
	} else {
		removed = removeEntry(target, client)
	}
	if !removed {
		return false
	}
	r.count.Add(-1)
	for i := len(path) - 1; i >= 0; i-- {
		st := path[i]
		if !st.child.empty() {
			break
		}
		if st.wild {
			st.parent.wild.Store(nil)
		} else {
			sh.deleteNode(st.child, st.key)
			st.parent.children--
		}
	}
	return true
}

// unsubscribeExact is Unsubscribe for a filter without wildcards.
func (r *Router) unsubscribeExact(sh *shard, client uint64, filter, group string, shared bool) bool {
	h := r.exactHash(filter)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t := sh.exact.Load()
	if t == nil {
		return false
	}
	e := t.lookup(h, filter)
	if e == nil {
		return false
	}
	var removed bool
	if shared {
		removed = removeMember(&e.set, group, client)
	} else {
		removed = removeEntry(&e.set, client)
	}
	if !removed {
		return false
	}
	r.count.Add(-1)
	if e.set.Load() == nil {
		sh.unlinkExact(h, e)
	}
	return true
}

func removeEntry(target *atomic.Pointer[leafSet], client uint64) bool {
	old := target.Load()
	if old == nil {
		return false
	}
	i := indexClient(old.list(), client)
	if i < 0 {
		return false
	}
	if old.n == 1 && old.groups == nil {
		target.Store(nil)
		return true
	}
	set := setOf(slices.Delete(slices.Clone(old.list()), i, i+1), old.groups)
	target.Store(&set)
	return true
}

func removeMember(target *atomic.Pointer[leafSet], name string, client uint64) bool {
	old := target.Load()
	if old == nil {
		return false
	}
	for gi, g := range old.groupList() {
		if g.name != name {
			continue
		}
		members := *g.members.Load()
		i := indexClient(members, client)
		if i < 0 {
			return false
		}
		if len(members) > 1 {
			next := slices.Delete(slices.Clone(members), i, i+1)
			g.members.Store(&next)
			return true
		}
		// The last member leaves: the group goes with it.
		groups := slices.Delete(slices.Clone(old.groupList()), gi, gi+1)
		switch {
		case len(groups) == 0 && old.n == 0:
			target.Store(nil)
		case len(groups) == 0:
			target.Store(&leafSet{first: old.first, n: old.n})
		default:
			target.Store(&leafSet{first: old.first, n: old.n, groups: &shareGroups{list: groups}})
		}
		return true
	}
	return false
}

// UnsubscribeAll removes client's subscriptions to each of filters, as at session end.
func (r *Router) UnsubscribeAll(client uint64, filters []string) {
	for _, f := range filters {
		r.Unsubscribe(client, f)
	}
}

// Match appends to m every delivery for a PUBLISH on topic by publisher. Subscriptions
// of publisher with No Local are skipped [MQTT-3.8.3-3]. Filters starting with '+' or
// '#' do not match topics starting with '$' [MQTT-4.7.2-1]. Overlapping subscriptions
// of one client yield one delivery at their highest QoS with all their identifiers
// [MQTT-3.3.4-2] [MQTT-3.3.4-4]. For each matching $share group exactly one member is
// chosen, round robin among those for which online reports true; when none is online
// one is chosen anyway, round robin, for the engine to queue. online may be nil (all
// online). topic must be a valid topic name. Match takes no lock and allocates nothing
// once m has grown to the size of the results.
func (r *Router) Match(topic string, publisher uint64, online func(client uint64) bool, m *Matches) {
	if topic == "" {
		return
	}
	m.hits = m.hits[:0]
	m.levels = m.levels[:0]
	m.sources = 0
	var exactHash uint64
	for rest, more := topic, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		h := r.hash(level)
		exactHash = exactHashStep(exactHash, h)
		m.levels = append(m.levels, topicLevel{text: level, hash: h})
	}
	m.publisher, m.online, m.plusHash = publisher, online, r.plusHash
	sh := r.shards[m.levels[0].hash>>(64-shardBits)]
	// The exact index's home slot is loaded first and looked at after the walk (no
	// branch waits for it before), so its cache miss overlaps with the walk's. An
	// empty home slot means no exact filter (one being added meanwhile may be missed,
	// as by a match that started earlier).
	exact := sh.exact.Load()
	var exactHome uint64
	if exact != nil {
		exactHome = exact.home(exactHash).hash.Load()
	}
	var wildShard *shard
	if topic[0] != '$' { // [MQTT-4.7.2-1]
		wildShard = r.wild
	}
	m.walkLevels(sh, wildShard)
	if exactHome != 0 {
		if e := exact.lookup(exactHash, topic); e != nil {
			if s := e.set.Load(); s != nil {
				m.collect(s)
			}
		}
	}
	m.online = nil
	m.mergeHits()
}

// MatchBytes is Match for a topic still in the decoder's buffer. The bytes are viewed
// as a string without copying (unsafe.String): Match only reads them while it runs and
// keeps no reference in the trie, so the buffer may be reused once it returns. This
// saves the one allocation per PUBLISH that string(topic) would cost.
func (r *Router) MatchBytes(topic []byte, publisher uint64, online func(client uint64) bool, m *Matches) {
	if len(topic) == 0 {
		return
	}
	r.Match(unsafe.String(&topic[0], len(topic)), publisher, online, m)
	clear(m.levels) // drop the views of the caller's buffer
}

// walkLevels visits the trie breadth first, one topic level at a time. Breadth first
// because at a million subscriptions a match is a chain of cache misses: the lookups
// of the nodes reached at one level do not depend on each other, so the processor
// overlaps their misses, where a depth-first walk waits for each in turn (measured:
// 4.5 µs depth first, 3.3 µs breadth first, best of five on a busy machine). A '#'
// subscription at a node matches the levels below it and, "sport/#" matching "sport",
// the node's own level [MQTT-4.7.1-1].
func (m *Matches) walkLevels(sh *shard, wild *shard) {
	cur := append(m.nodes[0][:0], nodeRef{sh.root, sh.nodes.Load(), 0})
	if wild != nil {
		cur = append(cur, nodeRef{wild.root, wild.nodes.Load(), 0})
	}
	next := m.nodes[1][:0]
	for i := 0; ; i++ {
		if i == len(m.levels) {
			for _, ref := range cur {
				if s := ref.n.multi.Load(); s != nil {
					m.collect(s)
				}
				if s := ref.n.subs.Load(); s != nil {
					m.collect(s)
				}
			}
			break
		}
		lv := &m.levels[i]
		next = next[:0]
		for _, ref := range cur {
			// The child's key comes from the key of ref, not from the node: the probe
			// of its slot need not wait for the node to be read.
			key := exactHashStep(ref.key, lv.hash)
			if c := ref.t.child(ref.n, key, lv.text); c != nil {
				next = append(next, nodeRef{c, ref.t, key})
			}
			if w := ref.n.wild.Load(); w != nil {
				next = append(next, nodeRef{w, ref.t, exactHashStep(ref.key, m.plusHash)})
			}
		}
		// '#' matches the levels below its parent; collected after the lookups were
		// issued so that their misses overlap.
		for _, ref := range cur {
			if s := ref.n.multi.Load(); s != nil {
				m.collect(s)
			}
		}
		cur, next = next, cur
		if len(cur) == 0 {
			break
		}
	}
	m.nodes[0], m.nodes[1] = cur[:0], next[:0]
}

func (m *Matches) collect(s *leafSet) {
	entries := s.list()
	if len(entries) > 0 {
		m.sources++
	}
	for i := range entries {
		e := &entries[i]
		if e.opts.NoLocal && e.client == m.publisher {
			continue // [MQTT-3.8.3-3]
		}
		m.hits = append(m.hits, hit{client: e.client, id: e.id, qos: e.opts.QoS, rap: e.opts.RetainAsPublished})
	}
	if s.groups != nil {
		for _, g := range s.groups.list {
			m.pickShared(g)
		}
	}
}

// pickShared delivers to one member of g: the first online one from the cursor on.
// The cursor moves past the chosen member, so online members take strict turns while
// one goroutine matches; concurrent matches may both start from the same cursor,
// which still gives each message exactly one member.
func (m *Matches) pickShared(g *shareGroup) {
	members := *g.members.Load()
	n := uint32(len(members))
	if n == 0 {
		return
	}
	start := g.next.Load()
	pick := start % n
	for k := uint32(0); k < n; k++ {
		i := (start + k) % n
		if m.online == nil || m.online(members[i].client) {
			pick = i
			break
		}
	}
	g.next.CompareAndSwap(start, pick+1)
	e := &members[pick]
	d := Delivery{Client: e.client, QoS: e.opts.QoS, RetainAsPublished: e.opts.RetainAsPublished, Shared: true}
	if e.id != 0 {
		m.ids = append(m.ids, e.id)
		d.IDs = m.ids[len(m.ids)-1 : len(m.ids) : len(m.ids)]
	}
	m.Deliveries = append(m.Deliveries, d)
}

func compareHitClient(a, b hit) int { return cmp.Compare(a.client, b.client) }

// mergeHits turns the non-shared hits into one delivery per client.
func (m *Matches) mergeHits() {
	hits := m.hits
	// A fan-out to a thousand subscribers of one topic spent ~10% of its CPU sorting hits
	// that one set cannot hold twice for a client (bench/ fan-out profile).
	if len(hits) > 1 && m.sources > 1 {
		slices.SortFunc(hits, compareHitClient)
	}
	for i := 0; i < len(hits); {
		d := Delivery{Client: hits[i].client}
		idStart := len(m.ids)
		for ; i < len(hits) && hits[i].client == d.Client; i++ {
			h := &hits[i]
			d.QoS = max(d.QoS, h.qos)
			d.RetainAsPublished = d.RetainAsPublished || h.rap
			if h.id != 0 {
				m.ids = append(m.ids, h.id)
			}
		}
		if len(m.ids) > idStart {
			d.IDs = m.ids[idStart:len(m.ids):len(m.ids)]
		}
		m.Deliveries = append(m.Deliveries, d)
	}
}
