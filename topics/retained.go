package topics

import (
	"slices"
	"strings"
	"sync"
)

// Retained is the retained-message index: at most one message per topic name, found
// by topic filters with wildcards. It is generic over the engine's message type and
// safe for concurrent use.
//
// Design: a trie of topic levels whose children are slices sorted by level (binary
// search for an exact level, a plain scan for '+'), under one RWMutex. Visit costs the
// nodes its filter reaches, so an exact or mostly exact filter costs its matches, not
// the size of the index. Retained lookups happen on SUBSCRIBE and retained PUBLISH,
// far less often than Match, so a reader lock is cheap enough here; the lock-free
// copy-on-write of Router was rejected as needless write cost and memory.
//
// Invariants: a node exists only while it or a descendant holds a message (Delete
// prunes); count and bytes equal the number and total size of the messages held.
type Retained[M any] struct {
	mu    sync.RWMutex
	root  rnode[M]
	count int
	bytes int64
}

type rnode[M any] struct {
	level    string
	children []*rnode[M] // sorted by level
	topic    string      // the full topic name, when has
	msg      M
	size     int
	has      bool
}

// NewRetained returns an empty index.
func NewRetained[M any]() *Retained[M] { return &Retained[M]{} }

func (n *rnode[M]) find(level string) (int, bool) {
	return slices.BinarySearchFunc(n.children, level, func(c *rnode[M], l string) int {
		return strings.Compare(c.level, l)
	})
}

// Set stores msg as the retained message of topic, replacing any other; size is what
// Bytes accounts for it. An empty payload means delete: the engine calls Delete.
func (r *Retained[M]) Set(topic string, msg M, size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setLocked(topic, msg, size, nil)
}

// SetAll stores n messages as Set would, item(i) giving the i-th, under one lock. It is the
// load path of recovery: for items in topic order every level continues or extends the last
// branch, so each is an append, and the nodes come from slabs, not one allocation each.
// Any order is correct; topic order is what makes it fast.
func (r *Retained[M]) SetAll(n int, item func(i int) (topic string, msg M, size int)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var slab nodeSlab[M]
	for i := range n {
		topic, msg, size := item(i)
		r.setLocked(topic, msg, size, &slab)
	}
}

// nodeSlab hands out trie nodes from chunks: a bulk load allocates a chunk per
// nodeSlabSize nodes. A chunk lives while any of its nodes does; retained messages are
// long-lived, and deleted ones leave at most a chunk's worth behind.
type nodeSlab[M any] struct{ free []rnode[M] }

const nodeSlabSize = 256

func (s *nodeSlab[M]) node(level string) *rnode[M] {
	if s == nil {
		return &rnode[M]{level: level}
	}
	if len(s.free) == 0 {
		s.free = make([]rnode[M], nodeSlabSize)
	}
	n := &s.free[0]
	s.free = s.free[1:]
	n.level = level
	return n
}

func (r *Retained[M]) setLocked(topic string, msg M, size int, slab *nodeSlab[M]) {
	n := &r.root
	for rest, more := topic, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		n = n.child(level, slab)
	}
	if n.has {
		r.bytes -= int64(n.size)
	} else {
		r.count++
	}
	n.topic, n.msg, n.size, n.has = topic, msg, size, true
	r.bytes += int64(size)
}

// child returns n's child for level, adding it when absent. The last child is tried before
// the binary search: input in topic order continues or extends the last branch at every
// level, so a sorted load appends (recovery's index insert was 0.58 us per message with a
// search per level). Topic byte order is not always level order ("a-b/x" sorts before
// "a/x", the level "a" before "a-b"); such a level takes the search.
func (n *rnode[M]) child(level string, slab *nodeSlab[M]) *rnode[M] {
	if k := len(n.children); k > 0 {
		last := n.children[k-1]
		switch cmp := strings.Compare(last.level, level); {
		case cmp == 0:
			return last
		case cmp < 0:
			c := slab.node(level)
			n.children = append(n.children, c)
			return c
		}
	}
	i, found := n.find(level)
	if !found {
		n.children = slices.Insert(n.children, i, slab.node(level))
	}
	return n.children[i]
}

// Get returns the retained message of topic.
func (r *Retained[M]) Get(topic string) (M, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := &r.root
	for rest, more := topic, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		i, found := n.find(level)
		if !found {
			var zero M
			return zero, false
		}
		n = n.children[i]
	}
	return n.msg, n.has
}

// Delete removes the retained message of topic, as a retained PUBLISH with an empty
// payload does [MQTT-3.3.1-6], and reports whether there was one.
func (r *Retained[M]) Delete(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var buf [16]*rnode[M]
	path := append(buf[:0], &r.root)
	n := &r.root
	for rest, more := topic, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		i, found := n.find(level)
		if !found {
			return false
		}
		n = n.children[i]
		path = append(path, n)
	}
	if !n.has {
		return false
	}
	r.count--
	r.bytes -= int64(n.size)
	var zero M
	n.topic, n.msg, n.size, n.has = "", zero, 0, false
	// Prune nodes left with neither message nor children.
	for k := len(path) - 1; k > 0; k-- {
		c := path[k]
		if c.has || len(c.children) > 0 {
			break
		}
		p := path[k-1]
		if i, found := p.find(c.level); found {
			p.children = slices.Delete(p.children, i, i+1)
			if len(p.children) == 0 {
				p.children = nil
			}
		}
	}
	return true
}

// Len is the number of retained messages.
func (r *Retained[M]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}

// Bytes is the sum of the sizes given to Set for the messages held.
func (r *Retained[M]) Bytes() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.bytes
}

// Visit calls fn for every retained message whose topic matches filter (a plain
// filter, not a $share form), in no promised order, until fn returns false. Topics
// starting with '$' are not matched by a filter starting with a wildcard
// [MQTT-4.7.2-1]. fn runs under the index's read lock: it must not call Set or Delete.
func (r *Retained[M]) Visit(filter string, fn func(topic string, msg M) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	visitFilter(&r.root, filter, true, true, fn)
}

// visitFilter matches the remaining filter below n; root is true at the top level,
// where wildcards skip $ topics. It returns false when fn asked to stop.
func visitFilter[M any](n *rnode[M], filter string, more, root bool, fn func(string, M) bool) bool {
	if !more {
		if n.has {
			return fn(n.topic, n.msg)
		}
		return true
	}
	level, rest, next := cutLevel(filter)
	switch level {
	case "#":
		// "a/#" matches "a" itself [MQTT-4.7.1-1].
		if !root && n.has && !fn(n.topic, n.msg) {
			return false
		}
		for _, c := range n.children {
			if root && strings.HasPrefix(c.level, "$") {
				continue // [MQTT-4.7.2-1]
			}
			if !visitAll(c, fn) {
				return false
			}
		}
		return true
	case "+":
		for _, c := range n.children {
			if root && strings.HasPrefix(c.level, "$") {
				continue // [MQTT-4.7.2-1]
			}
			if !visitFilter(c, rest, next, false, fn) {
				return false
			}
		}
		return true
	default:
		i, found := n.find(level)
		if !found {
			return true
		}
		return visitFilter(n.children[i], rest, next, false, fn)
	}
}

func visitAll[M any](n *rnode[M], fn func(string, M) bool) bool {
	if n.has && !fn(n.topic, n.msg) {
		return false
	}
	for _, c := range n.children {
		if !visitAll(c, fn) {
			return false
		}
	}
	return true
}
