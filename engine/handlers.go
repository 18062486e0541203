package engine

import (
	"slices"
	"unicode/utf8"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/topics"
)

// handle acts on the packet just decoded into c.packet. An error ends the connection; a
// *packets.Error carries the reason code the client is given.
func (c *client) handle(t packets.Type) error {
	switch t {
	case packets.TypePublish:
		return c.onPublish(&c.packet.Publish)
	case packets.TypePuback, packets.TypePubrec, packets.TypePubrel, packets.TypePubcomp:
		return c.onAck(&c.packet.Ack)
	case packets.TypeSubscribe:
		return c.onSubscribe(&c.packet.Subscribe)
	case packets.TypeUnsubscribe:
		return c.onUnsubscribe(&c.packet.Unsubscribe)
	case packets.TypePingreq:
		c.e.mu.Lock()
		c.ctrl = packets.AppendPingresp(c.ctrl) // [MQTT-3.12.4-1]
		c.e.mu.Unlock()
		c.wakeWriter()
		return nil
	case packets.TypeDisconnect:
		return c.onDisconnect(&c.packet.Disconnect)
	case packets.TypeAuth:
		// No authentication method was agreed at CONNECT, so AUTH is a protocol error
		// [MQTT-4.12.0-7]? The method must match the CONNECT's; there was none.
		return packets.Errorf(packets.ProtocolError, "AUTH without an authentication method")
	case packets.TypeConnect:
		return packets.Errorf(packets.ProtocolError, "second CONNECT") // [MQTT-3.1.0-2]
	default:
		return packets.Errorf(packets.ProtocolError, "%v is not sent by clients", t)
	}
}

func (c *client) onPublish(p *packets.Publish) error {
	cfg := &c.b.cfg.MQTT
	if int(p.QoS) > cfg.MaxQoS {
		return packets.Errorf(packets.QoSNotSupported, "QoS %d above maximum %d", p.QoS, cfg.MaxQoS) // [MQTT-3.2.2-11]
	}
	if p.Retain && !cfg.RetainAvailable {
		return packets.Errorf(packets.RetainNotSupported, "retain is not available") // [MQTT-3.2.2-14]
	}
	if p.Properties.Has(packets.PropSubscriptionID) {
		return packets.Errorf(packets.ProtocolError, "Subscription Identifier in a client's PUBLISH") // [MQTT-3.3.4-6]
	}
	topic := p.Topic
	if c.version == packets.V5 {
		var err error
		if topic, err = c.aliases.Resolve(p); err != nil {
			return err
		}
	}
	// The topic needs no second check: Publish.Decode enforced every rule of a topic name
	// [MQTT-4.7.3-1] [MQTT-3.3.2-1] [MQTT-3.3.2-2], and an alias only ever names a topic that was
	// decoded so (4% of CPU in the fan-in profile went to checking it again).
	if p.Properties.Has(packets.PropPayloadFormat) && p.Properties.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
		return packets.Errorf(packets.PayloadFormatInvalid, "payload is not UTF-8 as its format indicator says") // [MQTT-3.3.2-4]
	}
	if !c.mayPublish(topic) {
		return c.refusePublish(p)
	}

	e := c.e
	if p.QoS == 2 {
		e.mu.Lock()
		first := e.s.InboundQoS2(p.PacketID)
		pending := e.s.InboundPending()
		e.mu.Unlock()
		if first && pending > c.receiveMaximum() {
			return packets.Errorf(packets.ReceiveMaximumExceeded, "more than %d QoS 2 publishes unacknowledged", c.receiveMaximum()) // [MQTT-3.3.4-9]
		}
		if !first {
			// A retransmission of an id still held: acknowledge, do not deliver again
			// [MQTT-4.3.3-10].
			c.ackPublish(packets.TypePubrec, p.PacketID, nil)
			return nil
		}
	}
	if max := c.b.cfg.MQTT.MaxMemory; max > 0 && c.b.memory.Load() >= max {
		c.b.stats.dropped(session.DropMemory, 1)
		switch {
		case p.QoS == 0:
			return nil
		case c.version == packets.V5:
			if p.QoS == 2 {
				e.mu.Lock()
				e.s.Release(p.PacketID)
				e.mu.Unlock()
				c.ack(packets.TypePubrec, p.PacketID, packets.QuotaExceeded)
			} else {
				c.ack(packets.TypePuback, p.PacketID, packets.QuotaExceeded)
			}
			return nil
		default:
			// 3.x has no way to refuse a PUBLISH; acknowledging it would be a lie, so
			// the client is disconnected and will send it again elsewhere or later.
			return packets.Errorf(packets.QuotaExceeded, "max-memory reached")
		}
	}

	if p.QoS == 2 && e.durable.Load() {
		// Remembered before the PUBREC that the store's order makes wait for it.
		c.b.store.AddInbound(e.s.ClientID, p.PacketID, c.b.logStoreError("add inbound"))
	}
	start := now()
	msg := c.b.messages.Get(p, topic, e.s.Key, start, c.maxMessageExpiry())
	// Messages of this client still waiting for the store are forwarded first [MQTT-4.6.0-6].
	work := c.b.routeBehind(msg, &c.matches, c.pendingAcks.Load() > 0)
	c.b.routed(start, &c.matches)
	msg.Release() // the creator's reference; queues hold their own
	switch p.QoS {
	case 0:
		if work != nil {
			// Counted like an ack, so that the next message of this client waits behind it.
			c.pendingAcks.Add(1)
			work.finish = func(bool) { c.pendingAcks.Add(-1) }
			work.done(nil)
		}
	case 1:
		c.ackPublish(packets.TypePuback, p.PacketID, work) // [MQTT-4.3.2-2]
	case 2:
		c.ackPublish(packets.TypePubrec, p.PacketID, work) // [MQTT-4.3.3-9]
	}
	return nil
}

func storeIDIf(ok bool, id uint64) uint64 {
	if ok {
		return id
	}
	return 0
}

// ackPublish acknowledges a QoS 1/2 PUBLISH: at once when nothing of it had to reach the
// disk, else when work is done. While any ack of this client waits for the store, later
// ones wait behind it (a Barrier), so acks keep the order of the PUBLISH packets.
func (c *client) ackPublish(t packets.Type, id uint16, work *durableWork) {
	switch {
	case work != nil:
		c.pendingAcks.Add(1)
		work.ackTo, work.ackType, work.ackID = c, t, id
		work.done(nil)
	case c.pendingAcks.Load() > 0:
		c.pendingAcks.Add(1)
		c.b.store.Barrier(func(error) { c.durableAck(t, id, false) })
	default:
		c.ack(t, id, packets.Success)
	}
}

// durableAck runs on the store's writer once a PUBLISH's durable effects committed or
// failed. A failed write is never acknowledged as success: a 5.0 client gets 0x80 and may
// publish again; a 3.x client, which cannot be refused, is disconnected.
func (c *client) durableAck(t packets.Type, id uint16, failed bool) {
	// The count drops after the ack is queued, so an immediate ack cannot overtake it.
	defer c.pendingAcks.Add(-1)
	if !failed {
		c.ack(t, id, packets.Success)
		return
	}
	if c.version != packets.V5 {
		c.kick(packets.UnspecifiedError)
		return
	}
	if t == packets.TypePubrec {
		c.e.mu.Lock()
		c.e.s.Release(id) // not stored: the client may send it again as new
		c.e.mu.Unlock()
	}
	c.ack(t, id, packets.UnspecifiedError)
}

// receiveMaximum is the broker's Receive Maximum: inbound QoS 2 publishes allowed in flight.
func (c *client) receiveMaximum() int {
	if m := c.b.cfg.MQTT.MaxInflight; m > 0 {
		return m
	}
	return 65535
}

func (c *client) ack(t packets.Type, id uint16, reason packets.ReasonCode) {
	c.e.mu.Lock()
	c.queueAck(&packets.Ack{Type: t, Version: c.version, PacketID: id, Reason: reason})
	c.e.mu.Unlock()
	c.wakeWriter()
}

func (c *client) onAck(a *packets.Ack) error {
	e := c.e
	e.mu.Lock()
	wake := false
	// Store rows change after the lock is released (see store.go).
	var storeID uint64
	if e.durable.Load() {
		storeID = e.s.InflightStoreID(a.PacketID)
	}
	update := storeUpdate{packetID: a.PacketID, remove: true}
	inboundDone := false
	switch a.Type {
	case packets.TypePuback:
		wake = e.s.Acked(a.PacketID)
		update.messageID = storeIDIf(wake, storeID)
	case packets.TypePubrec:
		failed := a.Reason >= 0x80
		if e.s.Received(a.PacketID, failed) {
			update.messageID = storeID
			if failed {
				wake = true // the window slot is free
			} else {
				update.remove, update.state = false, persist.Released
				c.queueAck(&packets.Ack{Type: packets.TypePubrel, Version: c.version, PacketID: a.PacketID}) // [MQTT-4.3.3-4]
				wake = true
			}
		} else if !failed {
			c.queueAck(&packets.Ack{Type: packets.TypePubrel, Version: c.version, PacketID: a.PacketID, Reason: packets.PacketIdentifierNotFound})
			wake = true
		}
	case packets.TypePubrel:
		reason := packets.Success
		if !e.s.Release(a.PacketID) {
			reason = packets.PacketIdentifierNotFound
		} else {
			inboundDone = e.durable.Load()
		}
		c.queueAck(&packets.Ack{Type: packets.TypePubcomp, Version: c.version, PacketID: a.PacketID, Reason: reason}) // [MQTT-4.3.3-11]
		wake = true
	case packets.TypePubcomp:
		wake = e.s.Completed(a.PacketID)
		update.messageID = storeIDIf(wake, storeID)
	}
	e.mu.Unlock()
	if update.messageID != 0 {
		c.b.applyUpdates(e.s.ClientID, []storeUpdate{update})
	}
	if inboundDone {
		c.b.store.DeleteInbound(e.s.ClientID, a.PacketID, c.b.logStoreError("delete inbound"))
	}
	if wake {
		c.wakeWriter()
	}
	return nil
}

// retainedWanted is a subscription that asked for the retained messages of its filter.
type retainedWanted struct {
	filter string
	qos    byte
	id     uint32
}

func (c *client) onSubscribe(p *packets.Subscribe) error {
	var subID uint32
	if len(p.Properties.SubscriptionIDs) > 0 {
		if !c.b.cfg.MQTT.SubscriptionIDAvailable {
			return packets.Errorf(packets.SubscriptionIdentifiersNotSupported, "subscription identifiers are not available") // [MQTT-3.8.2-?]
		}
		subID = p.Properties.SubscriptionIDs[0]
	}
	suback := packets.Suback{Version: c.version, PacketID: p.PacketID, Reasons: make([]packets.ReasonCode, 0, len(p.Subscriptions))}
	var wanted []retainedWanted
	var stored storedFilters
	for i := range p.Subscriptions {
		before := len(stored.subs)
		code, err := c.subscribeOne(&p.Subscriptions[i], subID, &wanted, &stored)
		if err != nil {
			return err
		}
		if len(stored.subs) > before {
			stored.index = append(stored.index, i)
		}
		suback.Reasons = append(suback.Reasons, code)
	}
	if len(stored.subs) > 0 {
		wanted = c.awaitSubscriptions(&stored, suback.Reasons, wanted)
	}
	c.e.mu.Lock()
	c.ctrl = suback.Append(c.ctrl) // SUBACK precedes the retained messages [MQTT-3.8.4-1]
	c.e.mu.Unlock()
	for _, w := range wanted {
		c.sendRetained(w)
	}
	c.wakeWriter()
	return nil
}

// storedFilters are the subscriptions of one SUBSCRIBE to write to the store, with their index
// in the packet and whether the write failed (set by the store's writer before awaitStore
// returns).
type storedFilters struct {
	subs   []session.Subscription
	index  []int
	failed []bool
}

// awaitSubscriptions waits until the rows of stored committed, so a SUBACK never grants a
// subscription a restart forgets. A filter whose row failed is removed again and answered
// 0x80 (Unspecified error; a 3.x SUBACK's Failure), and gets no retained messages. It returns
// wanted without those filters.
func (c *client) awaitSubscriptions(stored *storedFilters, reasons []packets.ReasonCode, wanted []retainedWanted) []retainedWanted {
	stored.failed = make([]bool, len(stored.subs))
	e := c.e
	for k, sub := range stored.subs {
		c.b.saveSubscriptionThen(e.s.ClientID, sub, func(err error) {
			if err != nil {
				c.b.logStoreError("save subscription")(err)
				stored.failed[k] = true
			}
		})
	}
	c.awaitStore()
	for k, sub := range stored.subs {
		if !stored.failed[k] {
			continue
		}
		filter := sub.Filter
		e.mu.Lock()
		delete(e.s.Subscriptions, filter)
		c.b.router.Unsubscribe(e.s.Key, filter)
		e.mu.Unlock()
		if c.b.cluster != nil {
			c.b.clusterUnsubscribed(e.s.Key, filter)
		}
		reasons[stored.index[k]] = packets.UnspecifiedError
		wanted = slices.DeleteFunc(wanted, func(w retainedWanted) bool { return w.filter == filter })
	}
	return wanted
}

// subscribeOne handles one filter of a SUBSCRIBE and returns its reason code (a 3.x SUBACK
// knows only the granted QoS and 0x80). A filter of a durable session is added to stored;
// its row is written by the caller.
func (c *client) subscribeOne(s *packets.Subscription, subID uint32, wanted *[]retainedWanted, stored *storedFilters) (packets.ReasonCode, error) {
	cfg := &c.b.cfg.MQTT
	filter := string(s.Filter)
	fail := func(code packets.ReasonCode) (packets.ReasonCode, error) {
		if c.version != packets.V5 {
			return packets.UnspecifiedError, nil
		}
		return code, nil
	}
	if err := topics.ValidateFilter(filter, topics.Limits{}); err != nil {
		return fail(packets.TopicFilterInvalid)
	}
	group, inner, shared := topics.ParseShare(filter)
	_ = group
	if shared {
		if !cfg.SharedSubAvailable {
			return fail(packets.SharedSubscriptionsNotSupported) // [MQTT-3.8.3-?]
		}
		if s.NoLocal {
			return 0, packets.Errorf(packets.ProtocolError, "No Local on a shared subscription") // [MQTT-3.8.3-4]
		}
	} else {
		inner = filter
	}
	if !cfg.WildcardAvailable && hasWildcard(inner) {
		return fail(packets.WildcardSubscriptionsNotSupported)
	}
	if !c.maySubscribe(inner) {
		return fail(c.b.guard.subscribeRefusal())
	}
	qos := min(s.QoS, byte(cfg.MaxQoS)) // [MQTT-3.2.2-9]
	opts := topics.SubOptions{QoS: qos, NoLocal: s.NoLocal, RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling}
	if c.version != packets.V5 {
		opts.NoLocal, opts.RetainAsPublished, opts.RetainHandling = false, false, 0
	}
	e := c.e
	e.mu.Lock()
	replaced, err := c.b.router.Subscribe(topics.Subscription{Client: e.s.Key, Filter: filter, Options: opts, ID: subID})
	if err == nil {
		e.s.Subscriptions[filter] = session.Subscription{Filter: filter, Options: opts, ID: subID}
	}
	e.mu.Unlock()
	if err != nil {
		return fail(packets.TopicFilterInvalid)
	}
	if c.b.cluster != nil {
		c.b.clusterSubscribed(e.s.Key, filter, opts, subID, replaced)
	}
	if e.durable.Load() {
		stored.subs = append(stored.subs, session.Subscription{Filter: filter, Options: opts, ID: subID})
	}
	// Retain Handling: 0 sends retained messages, 1 only for a new subscription, 2 never; a
	// shared subscription never gets them [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
	if !shared && (opts.RetainHandling == 0 || (opts.RetainHandling == 1 && !replaced)) {
		*wanted = append(*wanted, retainedWanted{filter: filter, qos: qos, id: subID})
	}
	return packets.ReasonCode(qos), nil // [MQTT-3.9.3-?]: the granted QoS
}

func hasWildcard(filter string) bool {
	for i := 0; i < len(filter); i++ {
		if filter[i] == '+' || filter[i] == '#' {
			return true
		}
	}
	return false
}

// sendRetained queues every retained message matching a new subscription, with RETAIN set
// [MQTT-3.3.1-9].
func (c *client) sendRetained(w retainedWanted) {
	t := now()
	var ids []uint32
	if w.id != 0 {
		ids = []uint32{w.id}
	}
	e := c.e
	e.mu.Lock()
	c.b.retained.Visit(w.filter, func(_ string, msg *session.Message) bool {
		if msg.Expired(t) || !c.mayRead(msg.Topic) {
			return true
		}
		e.s.Enqueue(session.Outgoing{Message: msg, QoS: min(w.qos, msg.QoS), Retain: true, SubscriptionIDs: ids}, true)
		return true
	})
	e.mu.Unlock()
}

func (c *client) onUnsubscribe(p *packets.Unsubscribe) error {
	unsuback := packets.Unsuback{Version: c.version, PacketID: p.PacketID, Reasons: make([]packets.ReasonCode, 0, len(p.Filters))}
	e := c.e
	var removed []string
	var removedAt []int // index of each removed filter in the packet
	e.mu.Lock()
	for i, f := range p.Filters {
		filter := string(f)
		code := packets.NoSubscriptionExisted // [MQTT-3.11.3-?]
		if _, ok := e.s.Subscriptions[filter]; ok {
			delete(e.s.Subscriptions, filter)
			c.b.router.Unsubscribe(e.s.Key, filter)
			code = packets.Success
			removed = append(removed, filter)
			removedAt = append(removedAt, i)
		}
		unsuback.Reasons = append(unsuback.Reasons, code)
	}
	e.mu.Unlock()
	if e.durable.Load() && len(removed) > 0 {
		c.awaitUnsubscriptions(removed, removedAt, unsuback.Reasons)
	}
	e.mu.Lock()
	c.ctrl = unsuback.Append(c.ctrl) // [MQTT-3.10.4-4]
	e.mu.Unlock()
	if c.b.cluster != nil {
		for _, filter := range removed {
			c.b.clusterUnsubscribed(e.s.Key, filter)
		}
	}
	c.wakeWriter()
	return nil
}

// awaitUnsubscriptions removes the rows of the removed filters of a durable session and waits
// until that committed, as SUBACK waits for its rows: an UNSUBACK must not announce a removal
// that a restart undoes. A removal that failed is answered 0x80 (Unspecified error) in 5.0;
// the filter is gone from memory but its row stays, so it is back after a restart. A 3.x
// UNSUBACK has no reason codes: the failure is only logged.
func (c *client) awaitUnsubscriptions(removed []string, removedAt []int, reasons []packets.ReasonCode) {
	failed := make([]bool, len(removed))
	for k, filter := range removed {
		c.b.store.DeleteSubscription(c.e.s.ClientID, filter, func(err error) {
			if err != nil {
				c.b.logStoreError("delete subscription")(err)
				failed[k] = true
			}
		})
	}
	c.awaitStore()
	if c.version != packets.V5 {
		return
	}
	for k := range removed {
		if failed[k] {
			reasons[removedAt[k]] = packets.UnspecifiedError
		}
	}
}

func (c *client) onDisconnect(p *packets.Disconnect) error {
	c.disconnectCode = p.Reason
	if c.version == packets.V5 && p.Properties.Has(packets.PropSessionExpiry) {
		e := c.e
		e.mu.Lock()
		was := e.s.ExpiryInterval
		if was == 0 && p.Properties.SessionExpiry != 0 {
			e.mu.Unlock()
			return packets.Errorf(packets.ProtocolError, "session expiry set at DISCONNECT after 0 at CONNECT") // [MQTT-3.14.2-2]
		}
		e.s.ExpiryInterval = p.Properties.SessionExpiry
		if max := uint32(c.b.cfg.MQTT.MaxSessionExpiry.Seconds()); max > 0 && e.s.ExpiryInterval > max {
			e.s.ExpiryInterval = max
		}
		e.mu.Unlock()
	}
	return errClientDisconnect
}
