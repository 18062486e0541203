package engine

import (
	"time"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/topics"
)

// neverExpires is the Session Expiry Interval that means the session does not expire.
const neverExpires = 0xFFFFFFFF

// endTakenOver ends the live connection old of a session another connection takes
// (DISCONNECT 0x8E [MQTT-3.1.4-3]) and waits until it has ended, at most bound; b.mu must not
// be held. It reports whether the connection ended in time; what names the caller in the log.
func (b *Broker) endTakenOver(old *client, bound time.Duration, what, id string) bool {
	old.kick(packets.SessionTakenOver)
	select {
	case <-old.done:
		return true
	case <-time.After(bound):
		b.log.Warn(what+": previous connection did not end in time", "client", id)
		return false
	}
}

// attach binds connection c to the session of id: it takes over a live connection of the
// same id (which gets DISCONNECT 0x8E and is waited for [MQTT-3.1.4-3]), cancels a pending
// will and expiry, and ends the old session on Clean Start [MQTT-3.1.2-4]. It reports
// whether a session was present.
func (b *Broker) attach(c *client, id string, cleanStart bool, expiry uint32, will *session.Will) (*entry, bool, bool) {
	for {
		b.mu.Lock()
		if b.closing {
			b.mu.Unlock()
			return nil, false, false
		}
		e := b.sessions[id]
		if e != nil {
			e.mu.Lock()
			old := e.client
			e.mu.Unlock()
			if old != nil {
				b.mu.Unlock()
				if !b.endTakenOver(old, 2*c.writeTimeout(), "takeover", id) {
					return nil, false, false
				}
				continue
			}
		}
		var pendingWill *session.Will
		if e != nil {
			e.mu.Lock()
			if e.willTimer != nil {
				e.willTimer.Stop()
				e.willTimer = nil
			}
			if e.expiryTimer != nil {
				e.expiryTimer.Stop()
				e.expiryTimer = nil
			}
			// A new connection before the Will Delay Interval cancels the will
			// [MQTT-3.1.3-9], unless the session ends now, which publishes it.
			pendingWill, e.pendingWill = e.pendingWill, nil
			e.mu.Unlock()
			if cleanStart {
				b.endSessionLocked(e)
				e = nil
			} else {
				pendingWill = nil
			}
		}
		present := e != nil
		if e == nil {
			e = &entry{}
			e.s = session.New(id, 0, b.limits)
			e.s.Key = b.registry.add(e)
			b.sessions[id] = e
		}
		e.mu.Lock()
		e.client = c
		e.online.Store(true)
		e.s.Version = c.version
		e.s.ExpiryInterval = expiry
		e.s.Will = will
		e.expiresAt = 0
		wasDurable, durable := e.durable.Load(), b.durable && expiry > 0
		e.durable.Store(durable)
		var subs []session.Subscription
		if durable && !wasDurable {
			for _, s := range e.s.Subscriptions {
				subs = append(subs, s)
			}
		}
		e.mu.Unlock()
		switch {
		case durable:
			// c's CONNACK waits for these (connect, awaitStore).
			b.saveSessionThen(id, expiry, 0, will, c.watchStore("save session"))
			for _, s := range subs {
				b.saveSubscriptionThen(id, s, c.watchStore("save subscription"))
			}
		case wasDurable:
			b.deleteSession(id)
		}
		c.e = e
		b.clients[c] = struct{}{}
		b.mu.Unlock()
		if pendingWill != nil {
			b.publishWill(pendingWill)
		}
		if b.cluster != nil {
			b.clusterAttached(id, will, expiry)
		}
		return e, present, true
	}
}

// detach runs when connection c has ended. graceful is a DISCONNECT with reason 0x00, which
// discards the will [MQTT-3.1.2-10]; otherwise the will is published now, or after its
// delay, and in any case no later than the session's end [MQTT-3.1.3-9].
func (b *Broker) detach(c *client, graceful bool) {
	b.connections.Add(-1)
	e := c.e
	if b.cluster != nil {
		b.cluster.ClearWill(e.s.ClientID) // this node publishes it, or it was discarded
	}
	b.mu.Lock()
	delete(b.clients, c)
	e.mu.Lock()
	if e.client != c {
		e.mu.Unlock()
		b.mu.Unlock()
		return
	}
	e.client = nil
	e.online.Store(false)
	will := e.s.Will
	e.s.Will = nil
	if graceful {
		will = nil
	}
	expiry := e.s.ExpiryInterval
	var publishNow *session.Will
	if will != nil {
		if will.Delay == 0 || expiry == 0 {
			publishNow = will
		} else {
			e.pendingWill = will
			delay := time.Duration(will.Delay) * time.Second
			if expiry != neverExpires {
				delay = min(delay, time.Duration(expiry)*time.Second)
			}
			e.willTimer = time.AfterFunc(delay, func() { b.willDue(e) })
		}
	}
	if expiry != 0 && expiry != neverExpires {
		e.expiryTimer = time.AfterFunc(time.Duration(expiry)*time.Second, func() { b.expire(e) })
		e.expiresAt = now() + int64(expiry)*int64(time.Second)
	}
	durable, expiresAt, pendingWill := e.durable.Load(), e.expiresAt, e.pendingWill
	e.mu.Unlock()
	if expiry == 0 {
		b.endSessionLocked(e)
	} else if durable {
		b.saveSession(e.s.ClientID, expiry, expiresAt, pendingWill)
	}
	b.mu.Unlock()
	if publishNow != nil {
		b.publishWill(publishNow)
	}
}

// willDue publishes a delayed will whose delay has passed with no new connection.
func (b *Broker) willDue(e *entry) {
	e.mu.Lock()
	will := e.pendingWill
	e.pendingWill = nil
	e.willTimer = nil
	save := will != nil && e.durable.Load() && e.client == nil && !e.ended
	expiry, expiresAt := e.s.ExpiryInterval, e.expiresAt
	e.mu.Unlock()
	if will != nil {
		b.publishWill(will)
	}
	if save {
		b.saveSession(e.s.ClientID, expiry, expiresAt, nil) // published: not again after a restart
	}
}

// expire ends a session whose expiry interval passed while it had no connection.
func (b *Broker) expire(e *entry) {
	b.mu.Lock()
	e.mu.Lock()
	live := e.client != nil || e.ended
	e.expiryTimer = nil
	e.mu.Unlock()
	var will *session.Will
	if !live {
		will = b.endSessionLocked(e)
	}
	b.mu.Unlock()
	if will != nil {
		b.publishWill(will)
	}
}

// endSessionLocked removes a session: its subscriptions, queue and registry slot. It returns
// a will still pending, which the caller publishes once no lock is held. b.mu is held.
func (b *Broker) endSessionLocked(e *entry) *session.Will {
	e.mu.Lock()
	if e.ended {
		e.mu.Unlock()
		return nil
	}
	e.ended = true
	if e.willTimer != nil {
		e.willTimer.Stop()
		e.willTimer = nil
	}
	if e.expiryTimer != nil {
		e.expiryTimer.Stop()
		e.expiryTimer = nil
	}
	will := e.pendingWill
	e.pendingWill = nil
	for filter := range e.s.Subscriptions {
		b.router.Unsubscribe(e.s.Key, filter)
		if b.cluster != nil {
			b.clusterUnsubscribed(e.s.Key, filter)
		}
	}
	clear(e.s.Subscriptions)
	e.s.Clear()
	id := e.s.ClientID
	durable := e.durable.Swap(false)
	e.mu.Unlock()
	if durable {
		b.deleteSession(id)
	}
	if b.sessions[id] == e {
		delete(b.sessions, id)
		if b.cluster != nil {
			b.cluster.Release(id)
		}
	}
	b.registry.remove(e.key)
	return will
}

func (b *Broker) publishWill(w *session.Will) {
	if w.Message.Expires != 0 {
		w.Message.Expires += now() // see connect: the interval starts now [MQTT-3.3.2-5]
	}
	var m topics.Matches
	if work := b.route(w.Message, &m); work != nil {
		work.done(nil) // nobody waits for a will's durable effects
	}
}

// route delivers msg to every matching subscription and updates the retained index. When the
// message has durable effects it submits them first and returns their work, on which the
// caller sets finish (the publisher's ack) and then calls done(nil); otherwise it returns nil.
func (b *Broker) route(msg *session.Message, m *topics.Matches) *durableWork {
	return b.routeBehind(msg, m, false)
}

// routeBehind is route for a publisher that may still have messages waiting for the store:
// with behind set, msg waits for them (a store Barrier) even when it has no durable effect
// of its own, so it reaches no subscriber before them. A message that waits for the store
// reaches the subscribers, the retained index and the other nodes of a cluster only once its
// rows committed, and never when they failed: its publisher is then refused, and a refused
// PUBLISH must not have been forwarded (DESIGN.md, step 8; store.go).
func (b *Broker) routeBehind(msg *session.Message, m *topics.Matches, behind bool) *durableWork {
	return b.deliverMatching(msg, m, behind, true)
}

// deliverMatching matches msg against this node's subscriptions and delivers it. here says
// msg was accepted on this node: it updates the retained state and, clustered, is forwarded.
// A message another node forwarded comes in with here unset (cluster.go): it only reaches
// this node's subscribers, since its retained update comes through the cluster's
// last-writer-wins rule (ApplyRetained), never with the message.
func (b *Broker) deliverMatching(msg *session.Message, m *topics.Matches, behind, here bool) *durableWork {
	m.Reset()
	b.router.Match(msg.Topic, msg.Publisher, b.online, m)
	if b.cluster != nil {
		dropShared(m)
	}
	b.keepReaders(m, msg.Topic) // a subscription wider than the ACL gets only what it allows
	return b.deliverTo(msg, m, behind, here)
}

// deliverTo delivers msg to m's deliveries, its durable effects first.
func (b *Broker) deliverTo(msg *session.Message, m *topics.Matches, behind, here bool) *durableWork {
	var work *durableWork
	retained := msg.Retain && here
	if b.durable && (msg.QoS > 0 || retained) {
		// Rows go to the store before the message reaches any queue, so that no PUBACK's
		// delete can overtake them. persistRoute copies them into the work, so the few
		// recipients of most messages are gathered on the stack.
		var few [4]persist.Delivery
		rows := few[:0]
		if msg.QoS > 0 {
			for i := range m.Deliveries {
				d := &m.Deliveries[i]
				qos := min(d.QoS, msg.QoS)
				e := b.registry.get(d.Client)
				if qos == 0 || e == nil || !e.durable.Load() {
					continue
				}
				rows = append(rows, persist.Delivery{ClientID: e.s.ClientID, QoS: qos, Retain: msg.Retain && d.RetainAsPublished, SubIDs: cloneIDs(d.IDs)})
			}
		}
		if msg.Retain && !retained {
			// persistRoute stores a retained row for a message with the flag; a forwarded
			// message must not (see deliverMatching). msg is not shared yet, and the rows
			// carry each delivery's own flag.
			msg.Retain = false
			work = b.persistRoute(msg, rows)
			msg.Retain = true
		} else {
			work = b.persistRoute(msg, rows)
		}
	}
	switch {
	case work == nil && behind:
		work = b.waitBehind(msg)
	case work == nil && here && msg.QoS > 0 && b.cluster != nil:
		// Its acknowledgement waits for the other nodes' (forward): a work carries it.
		work = b.newWork(msg, 0)
	}
	b.routeNow(msg, m, work, here)
	return work
}

// routeNow queues msg for m's deliveries and, for a message accepted here, runs retainNow
// (retained index, forwarding), or, with work set, leaves all of it to work's completion
// (store.go, durableWork).
func (b *Broker) routeNow(msg *session.Message, m *topics.Matches, work *durableWork, here bool) {
	// Clustered, every message accepted here is forwarded when it reaches the local
	// subscribers: after its commit, never when refused, and in its publisher's order, since
	// a message behind one waiting for the store waits too (routeBehind).
	atRouting := here && (msg.Retain || b.cluster != nil)
	if work != nil {
		work.retain = atRouting // done calls retainNow before the deliveries and the publisher's ack
	} else if atRouting {
		b.retainNow(msg, nil)
	}
	for i := range m.Deliveries {
		d := &m.Deliveries[i]
		e := b.registry.get(d.Client)
		if e == nil {
			continue
		}
		qos := min(d.QoS, msg.QoS) // [MQTT-3.8.4-8]
		// Retain As Published keeps the flag; otherwise a forwarded message has it clear
		// [MQTT-3.3.1-12] [MQTT-3.3.1-13].
		retain := msg.Retain && d.RetainAsPublished
		o := session.Outgoing{Message: msg, QoS: qos, Retain: retain, SubscriptionIDs: cloneIDs(d.IDs)}
		if work != nil {
			work.later = append(work.later, heldDelivery{e: e, o: o})
			continue
		}
		b.deliver(e, o)
	}
}

// retainNow runs when a message accepted on this node reaches its local subscribers: at once,
// or when its durable work committed (durableWork.done calls it when work.retain is set, which
// routeNow also sets for a clustered broker's forwarding). It forwards the message to the
// cluster, and makes it the retained message of its topic when it has the retain flag.
// With w set, a QoS 1/2 message's work also waits for the other nodes (forward).
func (b *Broker) retainNow(msg *session.Message, w *durableWork) {
	if b.cluster != nil {
		b.forward(msg, w) // the retained update too, under the cluster's rule
		return
	}
	if msg.Retain {
		b.setRetained(msg)
	}
}

// setRetained makes msg the retained message of its topic, or removes it for an empty payload.
func (b *Broker) setRetained(msg *session.Message) {
	if len(msg.Payload) == 0 {
		b.retained.Delete(msg.Topic) // [MQTT-3.3.1-6]
		return
	}
	// The index keeps a copy outside the pool: it has no moment to release it.
	pinned := msg.Pinned()
	b.retained.Set(pinned.Topic, pinned, pinned.Size()) // [MQTT-3.3.1-5]
}

// cloneIDs copies subscription identifiers out of the router's scratch; most deliveries have
// none and cost nothing.
func cloneIDs(ids []uint32) []uint32 {
	if len(ids) == 0 {
		return nil
	}
	return append([]uint32(nil), ids...)
}

// deliver queues o for the session of e and wakes its writer.
func (b *Broker) deliver(e *entry, o session.Outgoing) {
	e.mu.Lock()
	if e.ended {
		e.mu.Unlock()
		return
	}
	if b.spillLocked(e, &o) {
		e.mu.Unlock()
		return // its row waits in the store; the writer pages it in (spill.go)
	}
	c := e.client
	queued := e.s.Enqueue(o, c != nil)
	e.mu.Unlock()
	if queued && c != nil {
		c.wakeWriter()
	}
}
