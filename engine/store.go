package engine

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/topics"
)

// The engine's side of durability (DESIGN.md, "Durable state" and step 8 of a PUBLISH).
//
// Invariants:
//   - A QoS 1/2 PUBLISH is acknowledged only after every durable effect of it (delivery rows
//     for persistent sessions, retained state) has committed; with none, at once. Acks of one
//     client stay in the order of its PUBLISH packets: while one waits for the disk, later ones
//     go through a store Barrier.
//   - Store operations are submitted with no entry lock held: the store's callbacks take entry
//     locks, and a submit can block while the writer's queue is full.
//   - A message's delivery rows are submitted before the message is queued to any session, so
//     an acknowledgement's DeleteDelivery can never overtake its AddDeliveries.
//
// A session is durable when the store is and its expiry interval is above zero. Deliveries to
// online persistent subscribers are not delayed by the disk; only the publisher's ack is.

// openStore opens the data directory and rebuilds the broker's state from it, before any
// listener opens.
func (b *Broker) openStore() error {
	store, err := persist.Open(b.cfg.Storage, b.log)
	if err != nil {
		return err
	}
	b.store = store
	if !store.Durable() {
		return nil
	}
	b.durable = true
	t := now()
	bodies := make(map[*persist.Message]*session.Message)
	entryOf := func(clientID string) *entry { return b.sessions[clientID] }
	built, indexed := make(chan []*session.Message, 2), make(chan struct{})
	go b.indexRetained(built, indexed)
	_, err = store.Load(persist.Recovery{
		Session: func(ps persist.Session) error {
			e := &entry{}
			e.s = session.New(ps.ClientID, 0, b.limits)
			e.s.Key = b.registry.add(e)
			e.s.ExpiryInterval = ps.Expiry
			e.durable.Store(ps.Expiry > 0)
			b.sessions[ps.ClientID] = e
			if ps.ExpiresAt > 0 {
				left := time.Duration(ps.ExpiresAt - t)
				e.expiryTimer = time.AfterFunc(max(left, 0), func() { b.expire(e) })
			}
			if ps.Will != nil {
				will := &session.Will{Message: restoredMessage(&ps.Will.Message), Delay: ps.Will.Delay}
				e.pendingWill = will
				delay := time.Duration(will.Delay) * time.Second
				e.willTimer = time.AfterFunc(delay, func() { b.willDue(e) })
			}
			return nil
		},
		Subscription: func(ps persist.Subscription) error {
			e := entryOf(ps.ClientID)
			if e == nil {
				return nil
			}
			opts := subOptions(ps)
			if _, err := b.router.Subscribe(subscription(e.s.Key, ps.Filter, opts, ps.ID)); err != nil {
				return fmt.Errorf("subscription %q of %q: %w", ps.Filter, ps.ClientID, err)
			}
			e.s.Subscriptions[ps.Filter] = session.Subscription{Filter: ps.Filter, Options: opts, ID: ps.ID}
			return nil
		},
		Delivery: func(d persist.Delivery, pm *persist.Message) error {
			e := entryOf(d.ClientID)
			if e == nil {
				return nil
			}
			msg := bodies[pm]
			if msg == nil {
				msg = restoredMessage(pm)
				bodies[pm] = msg
			}
			o := session.Outgoing{Message: msg, QoS: d.QoS, Retain: d.Retain, SubscriptionIDs: d.SubIDs, PacketID: d.PacketID, Released: d.State == persist.Released}
			if (d.State == persist.Queued || !e.s.Restore(o)) && !b.spillLocked(e, &o) {
				e.s.Enqueue(o, true) // recovered rows are kept whatever their QoS
			}
			return nil
		},
		Inbound: func(in persist.InboundQoS2) error {
			if e := entryOf(in.ClientID); e != nil {
				e.s.InboundQoS2(in.PacketID)
			}
			return nil
		},
		// Three stages on two cores (issue 7: 1M retained in < 3 s): the store reads rows, this
		// callback builds the messages (copying topic and payload once, into the message), and
		// indexed inserts them, in topic order, while the next batch is built.
		RetainedBatch: func(topics [][]byte, pms []persist.Message) error {
			msgs := make([]*session.Message, len(pms))
			for i := range pms {
				msgs[i] = restoredMessageTopic(&pms[i], topics[i])
			}
			built <- msgs
			return nil
		},
	})
	close(built)
	<-indexed
	return err
}

// indexRetained inserts the recovered retained messages of each batch into the index, then
// closes done.
func (b *Broker) indexRetained(built <-chan []*session.Message, done chan<- struct{}) {
	defer close(done)
	for msgs := range built {
		// Rows come in topic order: SetAll appends where Set would search.
		b.retained.SetAll(len(msgs), func(i int) (string, *session.Message, int) {
			return msgs[i].Topic, msgs[i], msgs[i].Size()
		})
	}
}

// restoredMessage rebuilds a message from its stored form, outside the pool.
func restoredMessage(pm *persist.Message) *session.Message {
	return restoredMessageTopic(pm, []byte(pm.Topic))
}

// restoredMessageTopic is restoredMessage with the topic given apart (pm.Topic unused); the
// message copies topic, payload and properties into its own buffer.
func restoredMessageTopic(pm *persist.Message, topic []byte) *session.Message {
	p := packets.Publish{Version: packets.V5, QoS: pm.QoS, Retain: pm.Retain, Payload: pm.Payload}
	if len(pm.Properties) > 0 {
		if err := persist.DecodeProperties(pm.Properties, &p.Properties); err != nil {
			p.Properties.Reset() // the store verified the blob when writing it; keep the message
		}
	}
	msg := session.NewMessage(&p, topic, 0, 0, 0)
	msg.Expires = pm.Expires
	msg.StoreID = pm.ID
	return msg
}

// storedMessage is the stored form of msg. Its byte slices alias msg, which the caller keeps
// held until the store's callback.
func storedMessage(msg *session.Message, created int64) *persist.Message {
	pm := &persist.Message{}
	fillStored(pm, msg, created)
	return pm
}

// fillStored sets pm to the stored form of msg, reusing pm's properties buffer.
func fillStored(pm *persist.Message, msg *session.Message, created int64) {
	*pm = persist.Message{
		ID:         msg.StoreID,
		Topic:      msg.Topic,
		Payload:    msg.Payload,
		QoS:        msg.QoS,
		Retain:     msg.Retain,
		Properties: persist.AppendProperties(pm.Properties[:0], &msg.Properties),
		Expires:    msg.Expires,
		Created:    created,
	}
}

// durableWork is a PUBLISH waiting for the store: it counts the operations still to complete,
// then, once, forwards the message (retained index, deliveries) unless a write failed, and runs
// the publisher's completion (its ack or refusal).
//
// Design: the message reaches nobody before its durable effects committed, so a refused
// PUBLISH was never forwarded; the cost is one group commit of latency for online subscribers
// of messages that have a durable effect. Rejected: forwarding at once and acknowledging after
// the commit (the first integration), where a failed write left online subscribers holding a
// message its publisher was told was refused and would send again.
//
// Works are pooled (Broker.works) with the stored form of the message and their callback
// bound once: a durable publish allocated five objects for them (issue 7). A work goes back
// to the pool after its last callback; the store reads an op's fields only before its
// callback runs, so nothing uses a pooled work's stored message afterwards.
type durableWork struct {
	left   atomic.Int32
	failed atomic.Bool
	b      *Broker
	msg    *session.Message
	// The completion: the publisher's ack when ackTo is set, else finish when set.
	ackTo   *client
	ackType packets.Type
	ackID   uint16
	finish  func(failed bool)
	// retain says the retained index takes msg at completion (route).
	retain bool
	// routed: the deliveries went out; what is left is the other nodes' acknowledgement.
	routed bool
	// later are the deliveries queued at completion; first is their storage for the common
	// single subscriber, so that case allocates no slice.
	later []heldDelivery
	first [1]heldDelivery
	// stored is msg's stored form, shared by the work's store operations; rows are its
	// delivery rows, the store's until the callback (kept with their capacity in the pool, so a
	// durable publish allocates no slice for them).
	stored persist.Message
	rows   []persist.Delivery
	// callback is done, bound once.
	callback func(error)
}

// heldDelivery is one delivery of a message waiting for the store.
type heldDelivery struct {
	e *entry
	o session.Outgoing
}

func (w *durableWork) done(err error) {
	if err != nil {
		w.failed.Store(true)
	}
	if w.left.Add(-1) != 0 {
		return
	}
	failed := w.failed.Load()
	if !failed && !w.routed {
		w.routed = true
		w.left.Store(1) // this call's, while forward may add the cluster's (cluster.go)
		if w.retain {
			w.b.retainNow(w.msg, w)
		}
		for i := range w.later {
			w.b.deliver(w.later[i].e, w.later[i].o)
		}
		w.done(nil)
		return
	}
	w.msg.Release()
	switch {
	case w.ackTo != nil:
		w.ackTo.durableAck(w.ackType, w.ackID, failed)
	case w.finish != nil:
		w.finish(failed)
	}
	w.b.putWork(w)
}

// newWork returns the work of msg waiting for ops store operations, holding msg until it is
// done. One more count is the caller's: it sets the completion, then calls done(nil), so the
// completion can never run before it is set.
func (b *Broker) newWork(msg *session.Message, ops int32) *durableWork {
	w, _ := b.works.Get().(*durableWork)
	if w == nil {
		w = &durableWork{b: b}
		w.callback = w.done
	}
	w.msg = msg
	w.later = w.first[:0]
	msg.Hold() // the stored form aliases the message, and the deliveries wait with it
	w.left.Store(ops + 1)
	return w
}

// maxPooledRows is the most delivery rows a pooled work keeps room for.
const maxPooledRows = 64

// putWork returns a finished work to the pool, keeping its buffers.
func (b *Broker) putWork(w *durableWork) {
	clear(w.later) // the message and entries may go before the work is reused
	w.msg, w.ackTo, w.finish, w.retain, w.routed = nil, nil, nil, false, false
	w.later = w.first[:0]
	w.failed.Store(false)
	w.stored = persist.Message{Properties: w.stored.Properties[:0]}
	clear(w.rows) // client ids and subscription ids may go before the work is reused
	if cap(w.rows) > maxPooledRows {
		w.rows = nil // a rare wide fan-out does not stay in the pool
	}
	w.rows = w.rows[:0]
	b.works.Put(w)
}

// waitBehind returns the work of a message with no durable effect of its own that must still
// wait for every store operation submitted before it (a Barrier): its publisher has earlier
// messages waiting for the disk, and messages of one client are forwarded in the order they
// were received [MQTT-4.6.0-6].
func (b *Broker) waitBehind(msg *session.Message) *durableWork {
	w := b.newWork(msg, 1)
	b.store.Barrier(w.callback)
	return w
}

// persistRoute submits the durable effects of msg: its retained state and a delivery row for
// each persistent recipient among m's deliveries (copied: the caller may reuse deliveries). It
// returns nil when there is nothing to write. The caller sets w.finish (or not) and then calls
// w.done(nil).
func (b *Broker) persistRoute(msg *session.Message, deliveries []persist.Delivery) *durableWork {
	retained := msg.Retain
	if len(deliveries) == 0 && !retained {
		return nil
	}
	if len(deliveries) > 0 {
		msg.StoreID = b.store.NextMessageID()
	}
	ops := int32(0)
	if len(deliveries) > 0 {
		ops++
	}
	if retained {
		ops++
	}
	w := b.newWork(msg, ops)
	// Deliveries alone: Created 0, the store stamps the time its transaction began, one clock
	// read per batch instead of one per message. A retained row keeps its own.
	created := int64(0)
	if retained {
		created = now()
	}
	fillStored(&w.stored, msg, created)
	if len(deliveries) > 0 {
		w.rows = append(w.rows[:0], deliveries...)
		b.store.AddDeliveries(&w.stored, w.rows, w.callback)
	}
	if retained {
		if len(msg.Payload) == 0 {
			b.store.DeleteRetained(msg.Topic, w.callback)
		} else {
			b.store.SaveRetained(&w.stored, w.callback)
		}
	}
	return w
}

// logStoreError is the callback of store operations nobody waits for.
func (b *Broker) logStoreError(what string) func(error) {
	return func(err error) {
		if err != nil {
			b.stats.StoreFailures.Add(1)
			b.log.Error("persist: write failed", "op", what, "err", err)
		}
	}
}

// saveSession writes the session row of a durable session: its expiry, the deadline (0 while
// connected) and the will still pending.
func (b *Broker) saveSession(clientID string, expiry uint32, expiresAt int64, will *session.Will) {
	b.saveSessionThen(clientID, expiry, expiresAt, will, b.logStoreError("save session"))
}

// saveSessionThen is saveSession calling done with the outcome.
func (b *Broker) saveSessionThen(clientID string, expiry uint32, expiresAt int64, will *session.Will, done func(error)) {
	if !b.durable {
		done(nil)
		return
	}
	ps := &persist.Session{ClientID: clientID, Expiry: expiry, ExpiresAt: expiresAt}
	if will != nil {
		ps.Will = &persist.Will{Message: *storedMessage(will.Message, now()), Delay: will.Delay}
	}
	b.store.SaveSession(ps, done)
}

// watchStore returns the callback of a store operation whose outcome c's reader waits for
// before it answers (see awaitStore): a failure is logged and remembered.
func (c *client) watchStore(what string) func(error) {
	logged := c.b.logStoreError(what)
	return func(err error) {
		if err != nil {
			logged(err)
			c.storeFailed.Store(true)
		}
	}
}

// awaitStore blocks c's reader until every store operation submitted so far has completed,
// and reports whether those given watchStore callbacks all committed (it then forgets their
// failures). CONNACK, SUBACK and UNSUBACK of a durable session wait so: they promise a
// session and subscriptions (or their removal) a restart must not undo. The reader holds no lock while it waits (the
// store's callbacks take entry locks), and it reads no packet meanwhile, so nothing it
// sends later can overtake the answer; acks of earlier publishes, queued by callbacks
// before the Barrier's, stay ahead of it.
func (c *client) awaitStore() bool {
	committed := make(chan struct{})
	c.b.store.Barrier(func(error) { close(committed) })
	<-committed
	return !c.storeFailed.Swap(false)
}

func (b *Broker) deleteSession(clientID string) {
	if b.durable {
		b.store.DeleteSession(clientID, b.logStoreError("delete session"))
	}
}

// storeUpdate is a change to one delivery row, gathered under an entry lock and submitted
// after it is released.
type storeUpdate struct {
	messageID uint64
	packetID  uint16
	state     persist.DeliveryState
	remove    bool
}

func (b *Broker) applyUpdates(clientID string, updates []storeUpdate) {
	for _, u := range updates {
		if u.remove {
			b.store.DeleteDelivery(clientID, u.messageID, b.logStoreError("delete delivery"))
		} else {
			b.store.UpdateDelivery(clientID, u.messageID, u.packetID, u.state, b.logStoreError("update delivery"))
		}
	}
}

func subOptions(ps persist.Subscription) topics.SubOptions {
	return topics.SubOptions{QoS: ps.QoS, NoLocal: ps.NoLocal, RetainAsPublished: ps.RetainAsPublished, RetainHandling: ps.RetainHandling}
}

func subscription(key uint64, filter string, opts topics.SubOptions, id uint32) topics.Subscription {
	return topics.Subscription{Client: key, Filter: filter, Options: opts, ID: id}
}

// saveSubscription stores one filter of a durable session.
func (b *Broker) saveSubscription(clientID string, s session.Subscription) {
	b.saveSubscriptionThen(clientID, s, b.logStoreError("save subscription"))
}

// saveSubscriptionThen is saveSubscription calling done with the outcome.
func (b *Broker) saveSubscriptionThen(clientID string, s session.Subscription, done func(error)) {
	b.store.SaveSubscription(persist.Subscription{ClientID: clientID, Filter: s.Filter, QoS: s.Options.QoS, NoLocal: s.Options.NoLocal,
		RetainAsPublished: s.Options.RetainAsPublished, RetainHandling: s.Options.RetainHandling, ID: s.ID}, done)
}
