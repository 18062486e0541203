package engine

import (
	"sync/atomic"

	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/session"
)

// spillState is how QoS 1/2 messages of a persistent session wait in the store, not in memory,
// once its queue is full (DESIGN.md, "Slow consumers": never dropped silently).
//
// Invariants (every field but active is guarded by entry.mu):
//   - While active, every delivery of the session that has a row in the store (QoS 1/2 to a
//     durable session) goes to the store only; none enters the memory queue. Deliveries
//     with id >= from that the session still owes are all in the store, in id order, and none
//     is in memory; the memory queue holds only what comes before them, so order is kept.
//   - At most one read is in flight (reading). A read returns rows in id order; they are
//     queued while the queue has room and from moves past the last one queued.
//   - The state ends (active false) only after a read found fewer rows than it asked for, all
//     of them queued, with no spill since the read was submitted (generation unchanged): so no
//     row can be left behind in the store.
//
// Design chosen: the store keeps the rows it has anyway (the durable effect of the PUBLISH);
// memory stops taking more, and the connection's writer pages the next rows in as the queue
// drains below half. Rejected: dropping the oldest queued message from memory while its row
// stays (the first integration), which lost messages until the next restart and broke order.
//
// Known limit: two publishers racing at the moment a spill starts can leave a message with a
// higher id in memory than the first spilled one; the page-in then delivers it a second time
// (a duplicate, which QoS 1 allows; for QoS 2 the second copy has a new packet id).
type spillState struct {
	active     atomic.Bool
	from       uint64
	generation uint64
	reading    bool
}

// pageInMinimum is the smallest read; a queue limit below it is still honoured by queueFull.
const pageInMinimum = 64

// queueFull reports whether queueing size more bytes would exceed the session's queue limits,
// the same rule as the session's own (an empty queue always takes one message).
func (b *Broker) queueFull(s *session.Session, size int) bool {
	if s.Queued() == 0 {
		return false
	}
	if m := b.limits.MaxQueuedMessages; m > 0 && s.Queued() >= m {
		return true
	}
	return b.limits.MaxQueuedBytes > 0 && s.QueuedBytes()+int64(size) > b.limits.MaxQueuedBytes
}

// spillLocked decides whether o, a delivery to e, waits in the store instead of the memory
// queue; it reports true when it does (o is then not queued). e.mu is held.
func (b *Broker) spillLocked(e *entry, o *session.Outgoing) bool {
	id := o.Message.StoreID
	if o.QoS == 0 || id == 0 || !e.durable.Load() {
		return false // no row in the store: memory is its only place
	}
	if !e.spill.active.Load() {
		if !b.queueFull(e.s, o.Message.Size()) {
			return false
		}
		e.spill.active.Store(true)
		e.spill.from = id
	}
	e.spill.from = min(e.spill.from, id)
	e.spill.generation++
	return true
}

// pageInLimit is how many rows one read asks for: enough to fill the queue to its limit.
func (b *Broker) pageInLimit(s *session.Session) int {
	if m := b.limits.MaxQueuedMessages; m > 0 {
		return max(m-s.Queued(), pageInMinimum)
	}
	return 1024
}

// pageIn reads the next stored deliveries of c's session when it spilled and its queue has
// drained below half. The connection's writer calls it with no lock held.
func (c *client) pageIn() {
	e := c.e
	if !e.spill.active.Load() {
		return
	}
	b := c.b
	e.mu.Lock()
	half := b.limits.MaxQueuedMessages / 2
	if e.spill.reading || e.ended || (half > 0 && e.s.Queued() > half) {
		e.mu.Unlock()
		return
	}
	e.spill.reading = true
	from, generation, limit, clientID := e.spill.from, e.spill.generation, b.pageInLimit(e.s), e.s.ClientID
	e.mu.Unlock()
	b.store.ReadDeliveries(clientID, from, limit, func(rows []persist.StoredDelivery, err error) {
		b.pagedIn(e, rows, err, generation, limit)
	})
}

// pagedIn queues what a read returned. It runs as a store callback: it takes e.mu but
// submits nothing (the next read is started by the connection's writer, woken here).
func (b *Broker) pagedIn(e *entry, rows []persist.StoredDelivery, err error, generation uint64, limit int) {
	e.mu.Lock()
	e.spill.reading = false
	if e.ended {
		e.mu.Unlock()
		return
	}
	if err != nil {
		e.mu.Unlock()
		b.stats.StoreFailures.Add(1)
		b.log.Error("persist: reading queued messages failed", "client", e.s.ClientID, "err", err)
		return
	}
	c := e.client
	queued, full := 0, false
	for _, r := range rows {
		if r.Delivery.MessageID < e.spill.from {
			continue
		}
		msg := restoredMessage(r.Message)
		if b.queueFull(e.s, msg.Size()) {
			full = true
			break
		}
		o := session.Outgoing{Message: msg, QoS: r.Delivery.QoS, Retain: r.Delivery.Retain, SubscriptionIDs: r.Delivery.SubIDs}
		e.s.Enqueue(o, true) // it is stored: kept whatever the session's state
		e.spill.from = r.Delivery.MessageID + 1
		queued++
	}
	if !full && len(rows) < limit && generation == e.spill.generation {
		e.spill.active.Store(false)
	}
	more := e.spill.active.Load()
	e.mu.Unlock()
	if c != nil && (queued > 0 || more) {
		c.wakeWriter()
	}
}
