package cluster

import (
	"time"

	"github.com/nats-io/nats.go"
)

// delayedWill is the will of a dead node's client that this node (the live node with the
// lowest id) publishes once its Will Delay Interval has passed, counted from the moment this
// node found the other dead: never earlier than the client's own node would have, since that
// node died at or before it fell silent.
//
// Invariants: a delayedWill is in Node.delayed (under willMu) until exactly one of its ends
// takes it out (take): the timer publishes it; a new connection of the client with Clean
// Start 0 cancels it [MQTT-3.1.3-9]; one with Clean Start 1 ends the session, which publishes
// it at once, as a local reconnection does. A connection on this node finds it through Claim
// (reconnected); one on another node finds it through the takeover subject, which this node
// subscribes to while the will waits: that node's Claim sees the interest and asks, as it
// would ask a node holding the session, and this node answers with no session (the dead
// node's is unavailable). Rejected: announcing every CONNECT to every node, one NATS message
// per connection for what only matters while a dead node's will waits.
//
// Known limits: if this node dies too before the delay ends, the will is lost (the others
// forgot it when the first node died); a restarted node's recovered session still holds the
// will it had stored.
type delayedWill struct {
	clientID string
	packet   []byte
	timer    *time.Timer
	sub      *nats.Subscription
}

// delayWill schedules w, the will of clientID on a node just found dead, unless the client
// already connected again (between its node's death and this verdict, which comes up to the
// failure timeout later): a node holds its session now, so the will is cancelled
// [MQTT-3.1.3-9].
func (n *Node) delayWill(clientID string, w willCopy) {
	if n.heldNow(clientID) {
		n.log.Info("cluster: delayed will cancelled: its client connected again", "client", clientID)
		return
	}
	d := &delayedWill{clientID: clientID, packet: w.packet}
	n.willMu.Lock()
	if old := n.delayed[clientID]; old != nil {
		n.willMu.Unlock()
		n.local.PublishWill(w.packet) // two dead nodes had it: the session ended twice
		return
	}
	n.delayed[clientID] = d
	d.timer = time.AfterFunc(time.Duration(w.delay)*time.Second, func() {
		if n.take(d) {
			n.log.Info("cluster: delayed will published", "client", clientID)
			n.local.PublishWill(d.packet)
		}
	})
	n.willMu.Unlock()
	sub, err := n.pub.Subscribe(sessionSubject(clientID), func(m *nats.Msg) {
		cleanStart := len(m.Data) > 0 && m.Data[0] == 0
		n.reconnected(clientID, cleanStart)
		if err := m.Respond(nil); err != nil { // no session here: the requester starts one
			n.stats.RouteErrors.Add(1)
		}
	})
	if err != nil {
		n.stats.RouteErrors.Add(1)
	}
	n.willMu.Lock()
	if n.delayed[clientID] == d {
		d.sub = sub
		sub = nil
	}
	n.willMu.Unlock()
	if sub != nil { // already taken: the subscription is not needed
		_ = sub.Unsubscribe()
	}
	n.log.Info("cluster: will delayed", "client", clientID, "delay_s", w.delay)
}

// take removes d from the waiting wills and reports whether this call did (each will ends
// once).
func (n *Node) take(d *delayedWill) bool {
	n.willMu.Lock()
	if n.delayed[d.clientID] != d {
		n.willMu.Unlock()
		return false
	}
	delete(n.delayed, d.clientID)
	sub := d.sub
	n.willMu.Unlock()
	d.timer.Stop()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	return true
}

// reconnected ends the delayed will of clientID, if one waits, for a new connection of that
// client: cancelled (Clean Start 0) [MQTT-3.1.3-9], or published now because Clean Start 1
// ends the session it belonged to.
func (n *Node) reconnected(clientID string, cleanStart bool) {
	n.willMu.Lock()
	d := n.delayed[clientID]
	n.willMu.Unlock()
	if d == nil || !n.take(d) {
		return
	}
	if cleanStart {
		n.log.Info("cluster: delayed will published: its session ended (clean start)", "client", clientID)
		n.local.PublishWill(d.packet)
		return
	}
	n.log.Info("cluster: delayed will cancelled: its client connected again", "client", clientID)
}

// heldNow reports whether a live node holds clientID's session: this one, or, as far as the
// embedded server knows, another (with an external NATS server only this node can tell).
func (n *Node) heldNow(clientID string) bool {
	n.intMu.Lock()
	held := n.holds[clientID] != nil
	n.intMu.Unlock()
	return held || n.srv != nil && n.heldElsewhere(clientID)
}
