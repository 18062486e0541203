package cluster

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0a1b/promptmq/topics"
)

// Acknowledgement across the hop (issue 12): a QoS 1/2 message accepted here and forwarded is
// acknowledged to its publisher only once every node it reached has committed its durable
// effects there (delivery rows for persistent sessions).
//
// How a node knows whom to wait for: each node announces the filters its clients hold
// (pmq.i, on the connection that holds its NATS subscriptions, so an announcement follows its
// subscription), and every node keeps the others' in an interestView. A forwarded batch with
// QoS 1/2 frames goes as kindBatchAck; the nodes whose filters match its topic, and one member
// of each matching $share group, answer on pmq.ack.<origin> once their store committed what
// the batch made them write. Rejected: JetStream, whose streams need a quorum (a two-node
// cluster would stop accepting QoS 1/2 with one node down) and which stores every message a
// second time; and counting the NATS subscriptions the embedded server knows, which counts
// filters, not nodes, and says nothing with an external NATS server.

var (
	errAckTimeout  = errors.New("cluster: a node with interest did not acknowledge in time")
	errNodeDied    = errors.New("cluster: a node with interest died before acknowledging")
	errRemoteStore = errors.New("cluster: a node with interest failed to store the message")
	errStopped     = errors.New("cluster: node stopped before the acknowledgement")
)

// interestView is what this node knows of the filters held on the other nodes (and of its own
// $share groups, whose member NATS may pick here too).
//
// Invariants (mu held): router holds, for every node, each plain filter it announced under the
// node's key, and for every "$share/g/f" announced by any node, f under the group's key, once
// (count is the number of nodes holding it). nodes[id].incarnation is the announcing run:
// announcements of an older run are ignored, a newer run replaces the filters of the old.
type interestView struct {
	mu      sync.Mutex
	router  *topics.Router
	nodes   map[string]*viewNode
	shares  map[string]*viewShare
	keys    map[uint64]string // router client key → the ack key: a node id or a $share filter
	nextKey uint64
	matches topics.Matches
}

type viewNode struct {
	key         uint64
	incarnation uint64
	filters     map[string]struct{}
}

type viewShare struct {
	key   uint64
	count int
}

func newInterestView() *interestView {
	return &interestView{router: topics.NewRouter(topics.Limits{}), nodes: make(map[string]*viewNode),
		shares: make(map[string]*viewShare), keys: make(map[uint64]string)}
}

// node returns the entry of origin's run incarnation, or nil for an older run's announcement.
func (v *interestView) node(origin string, incarnation uint64) *viewNode {
	nd := v.nodes[origin]
	if nd != nil && nd.incarnation > incarnation {
		return nil
	}
	if nd != nil && nd.incarnation < incarnation {
		v.dropLocked(origin)
		nd = nil
	}
	if nd == nil {
		v.nextKey++
		nd = &viewNode{key: v.nextKey, incarnation: incarnation, filters: make(map[string]struct{})}
		v.nodes[origin] = nd
		v.keys[nd.key] = origin
	}
	return nd
}

// set records that origin's run holds (add) or no longer holds filter.
func (v *interestView) set(origin string, incarnation uint64, filter string, add bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	nd := v.node(origin, incarnation)
	if nd == nil {
		return
	}
	_, had := nd.filters[filter]
	if add == had {
		return
	}
	if add {
		nd.filters[filter] = struct{}{}
		v.subscribe(nd, filter)
	} else {
		delete(nd.filters, filter)
		v.unsubscribe(nd, filter)
	}
}

func (v *interestView) subscribe(nd *viewNode, filter string) {
	inner, shared := shareInner(filter)
	if !shared {
		_, _ = v.router.Subscribe(topics.Subscription{Client: nd.key, Filter: filter})
		return
	}
	s := v.shares[filter]
	if s == nil {
		v.nextKey++
		s = &viewShare{key: v.nextKey}
		v.shares[filter] = s
		v.keys[s.key] = filter
		_, _ = v.router.Subscribe(topics.Subscription{Client: s.key, Filter: inner})
	}
	s.count++
}

func (v *interestView) unsubscribe(nd *viewNode, filter string) {
	inner, shared := shareInner(filter)
	if !shared {
		v.router.Unsubscribe(nd.key, filter)
		return
	}
	s := v.shares[filter]
	if s == nil {
		return
	}
	if s.count--; s.count == 0 {
		v.router.Unsubscribe(s.key, inner)
		delete(v.shares, filter)
		delete(v.keys, s.key)
	}
}

// drop forgets the filters of origin's run incarnation (0: whatever run).
func (v *interestView) drop(origin string, incarnation uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if nd := v.nodes[origin]; nd != nil && (incarnation == 0 || nd.incarnation == incarnation) {
		v.dropLocked(origin)
	}
}

func (v *interestView) dropLocked(origin string) {
	nd := v.nodes[origin]
	for filter := range nd.filters {
		v.unsubscribe(nd, filter)
	}
	delete(v.nodes, origin)
	delete(v.keys, nd.key)
}

// expected returns the ack keys a message on topic needs: the ids of the other nodes with a
// matching filter, and each matching $share group's filter.
func (v *interestView) expected(topic, self string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.matches.Reset()
	v.router.Match(topic, 0, nil, &v.matches)
	var keys []string
	for _, d := range v.matches.Deliveries {
		if k := v.keys[d.Client]; k != "" && k != self {
			keys = append(keys, k)
		}
	}
	return keys
}

// any reports whether a message on topic needs any acknowledgement, without allocating.
func (v *interestView) any(topic, self string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.matches.Reset()
	v.router.Match(topic, 0, nil, &v.matches)
	for _, d := range v.matches.Deliveries {
		if k := v.keys[d.Client]; k != "" && k != self {
			return true
		}
	}
	return false
}

// ackWaits are the forwarded batches waiting for other nodes' acknowledgements.
//
// Invariants: queue holds the waits in the order their batches were sent, which for one
// publisher is the order of its messages (Forward is called in that order and batches keep
// it); their waiters are called in queue order only, by one goroutine (ackLoop), so a
// publisher's PUBACKs keep the order of its PUBLISH packets [MQTT-4.6.0-2] even when a later
// batch is acknowledged first. outstanding counts the waiters handed to Forward and not yet
// called; Forward's fast path (nothing to wait for) is taken only when it is zero, so it never
// overtakes an earlier waiter. Every wait ends: acknowledged by all, refused by one, its
// node declared dead, or its deadline (the failure timeout) passed.
type ackWaits struct {
	mu          sync.Mutex
	queue       []*ackWait
	bySeq       map[uint64]*ackWait
	outstanding atomic.Int64
	kick        chan struct{}
	done        chan struct{}
}

type ackWait struct {
	seq      uint64
	expect   []string
	err      error
	deadline time.Time
	waiters  []func(error)
	finished bool
}

func newAckWaits() *ackWaits {
	return &ackWaits{bySeq: make(map[uint64]*ackWait), kick: make(chan struct{}, 1), done: make(chan struct{})}
}

func (a *ackWaits) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// add queues the wait of a batch sent under seq; with nothing to expect it is finished at once.
func (a *ackWaits) add(seq uint64, expect []string, waiters []func(error), deadline time.Time) {
	w := &ackWait{seq: seq, expect: expect, deadline: deadline, waiters: waiters, finished: len(expect) == 0}
	a.mu.Lock()
	a.queue = append(a.queue, w)
	if !w.finished {
		a.bySeq[seq] = w
	}
	a.mu.Unlock()
	if w.finished {
		a.wake()
	}
}

// acked records key's answer for the batch seq.
func (a *ackWaits) acked(seq uint64, key string, ok bool) {
	a.mu.Lock()
	w := a.bySeq[seq]
	if w == nil {
		a.mu.Unlock()
		return // not waited for: an interest announced after the batch was sent, or too late
	}
	for i, k := range w.expect {
		if k == key {
			w.expect = append(w.expect[:i], w.expect[i+1:]...)
			break
		}
	}
	if !ok {
		w.err = errRemoteStore
	}
	finished := len(w.expect) == 0 || !ok
	if finished {
		a.finishLocked(w)
	}
	a.mu.Unlock()
	if finished {
		a.wake()
	}
}

func (a *ackWaits) finishLocked(w *ackWait) {
	w.finished = true
	delete(a.bySeq, w.seq)
}

// fail ends every wait that expects key (a node declared dead), or that is past its deadline
// at t (when t is not zero).
func (a *ackWaits) fail(key string, t time.Time) {
	n := 0
	a.mu.Lock()
	for _, w := range a.bySeq {
		switch {
		case !t.IsZero() && t.After(w.deadline):
			w.err = errAckTimeout
		case key != "" && containsKey(w.expect, key):
			w.err = errNodeDied
		default:
			continue
		}
		a.finishLocked(w)
		n++
	}
	a.mu.Unlock()
	if n > 0 {
		a.wake()
	}
}

func containsKey(keys []string, key string) bool {
	for _, k := range keys {
		if k == key {
			return true
		}
	}
	return false
}

// loop calls the waiters of finished waits in queue order until stop; then it fails every
// wait left (the node is leaving) and returns.
func (a *ackWaits) loop(stop <-chan struct{}) {
	defer close(a.done)
	for {
		select {
		case <-stop:
			return
		case <-a.kick:
		}
		a.run(false)
	}
}

// run calls the waiters of the finished waits at the head of the queue (all of them, failed,
// when all is set).
func (a *ackWaits) run(all bool) {
	for {
		a.mu.Lock()
		if len(a.queue) == 0 || !all && !a.queue[0].finished {
			a.mu.Unlock()
			return
		}
		w := a.queue[0]
		a.queue[0] = nil
		a.queue = a.queue[1:]
		if !w.finished {
			w.err = errStopped
			a.finishLocked(w)
		}
		a.mu.Unlock()
		for _, fn := range w.waiters {
			fn(w.err)
		}
		a.outstanding.Add(-int64(len(w.waiters)))
	}
}
