package engine

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/telemetry"
	"github.com/x0a1b/promptmq/topics"
)

// Cluster is what the engine needs of the nodes it shares clients with. Package cluster's
// *Node implements it; the engine does not import that package (DESIGN.md), cmd/promptmqd
// joins the two. Packets are MQTT 5.0 PUBLISH packets as encoded here; session state is bytes
// only this file writes and reads.
type Cluster interface {
	// Forward sends a message this node accepted to the other nodes with interest, once it
	// reached this node's subscribers (after its durable commit; never a refused one).
	// publisher is the sender's session key (0 for the broker): its order is kept across
	// topics, as on one node. acked, given for a QoS 1/2 message, asks for the receiving
	// nodes' acknowledgement that the message's durable effects there committed: Forward
	// reports true when it will call acked (later, never from within Forward, in the order
	// of the calls) with nil, or with an error when a node refused, died or did not answer
	// in time; false when no node needs to be waited for.
	Forward(topic string, publisher uint64, packet []byte, acked func(error)) bool
	// Retain decides a retained update made on this node (cleared: the empty payload that
	// clears a topic) by the cluster's last-writer-wins rule, runs apply, which updates this
	// node's retained index, while holding that decision, and sends the update to every node.
	// Updates from other nodes (Local.ApplyRetained) are decided under the same rule and lock,
	// so each node's index ends with the same winner.
	Retain(topic string, packet []byte, cleared bool, apply func())
	// Subscribe and Unsubscribe count the local holders of a filter ("$share/g/f" included).
	Subscribe(filter string)
	Unsubscribe(filter string)
	// Claim takes clientID's session from the node holding it, which disconnects its client
	// with 0x8E; it returns the exported state when cleanStart is false and there was one.
	Claim(clientID string, cleanStart bool) []byte
	// Hold and Release say this node holds (or no longer holds) clientID's session.
	Hold(clientID string)
	Release(clientID string)
	// SetWill and ClearWill keep the peers' copy of this node's clients' wills, which a peer
	// publishes if this node dies, delay seconds after it found this node dead unless the
	// client connects again first.
	SetWill(clientID string, packet []byte, delay uint32)
	ClearWill(clientID string)
	// Leave stops the node: the broker is shutting down and has disconnected its clients.
	Leave()

	// What the cluster counts, for the broker's metrics.
	LiveNodes() int
	ForwardedMessages() uint64
	ForwardedBytes() uint64
	ReceivedMessages() uint64
	ReceivedBytes() uint64
	RouteErrors() uint64
}

// instrumentCluster registers the cluster's metrics when the broker is clustered.
func (b *Broker) instrumentCluster(r *telemetry.Registry) {
	c := b.cluster
	if c == nil {
		return
	}
	r.Gauge("promptmq_cluster_nodes", "Cluster nodes heard from within the failure timeout, this one included.", "",
		func() float64 { return float64(c.LiveNodes()) })
	r.Counter("promptmq_cluster_forwarded_messages_total", "Messages this node sent to other nodes (forwarded publishes, retained and will updates).", "", c.ForwardedMessages)
	r.Counter("promptmq_cluster_forwarded_bytes_total", "Bytes of the messages sent to other nodes.", "", c.ForwardedBytes)
	r.Counter("promptmq_cluster_received_messages_total", "Forwarded messages received from other nodes.", "", c.ReceivedMessages)
	r.Counter("promptmq_cluster_received_bytes_total", "Bytes of the forwarded messages received from other nodes.", "", c.ReceivedBytes)
	r.Counter("promptmq_cluster_route_errors_total", "Failures to send to, receive from or decode for other nodes.", "", c.RouteErrors)
}

// clusterState is the engine's side of clustering; it exists only when a Cluster is attached,
// so a single node pays one nil check per PUBLISH for all of this.
//
// Invariants: shares holds, for each "$share/g/f" filter, the local members subscribed to it;
// a queue message NATS gives this node for that filter goes to exactly one of them (the next
// online one in turn, else any member, which queues it). matches and scratch are used only by
// the cluster's data loop (DeliverRemote, DeliverShared), which is one goroutine.
type clusterState struct {
	mu     sync.Mutex
	shares map[string]*shareMembers

	matches topics.Matches
	scratch packets.Publish

	// remoteFailed records that the store refused a forwarded message's delivery rows since
	// the last Committed answer; remoteDone, bound once, is those messages' works' finish.
	remoteFailed atomic.Bool
	remoteDone   func(failed bool)
}

type shareMembers struct {
	next    int
	members []shareMember
}

type shareMember struct {
	key  uint64
	opts topics.SubOptions
	id   uint32
}

// AttachCluster joins the broker to a cluster. Call it after New (recovery) and before Listen:
// the sessions and subscriptions recovered from the store are announced to the cluster here.
func (b *Broker) AttachCluster(c Cluster) {
	b.cs = &clusterState{shares: make(map[string]*shareMembers)}
	cs := b.cs
	cs.remoteDone = func(failed bool) {
		if failed {
			cs.remoteFailed.Store(true)
		}
	}
	b.cluster = c
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, e := range b.sessions {
		c.Hold(id)
		e.mu.Lock()
		for filter, s := range e.s.Subscriptions {
			b.clusterSubscribed(e.s.Key, filter, s.Options, s.ID, false)
		}
		e.mu.Unlock()
	}
}

// ClusterLocal returns what the cluster calls into: the receiving side of forwarding,
// retained state, takeover and wills. Its method set is cluster.Local.
func (b *Broker) ClusterLocal() *ClusterLocal { return &ClusterLocal{b: b} }

// ClusterLocal is the broker as the cluster sees it (cluster.Local).
type ClusterLocal struct{ b *Broker }

// clusterSubscribed records a local subscription with the cluster; replaced is a SUBSCRIBE of
// a filter the session already held, which changes its options and not the count.
func (b *Broker) clusterSubscribed(key uint64, filter string, opts topics.SubOptions, id uint32, replaced bool) {
	if !replaced {
		b.cluster.Subscribe(filter)
	}
	if _, _, shared := topics.ParseShare(filter); !shared {
		return
	}
	b.cs.mu.Lock()
	defer b.cs.mu.Unlock()
	g := b.cs.shares[filter]
	if g == nil {
		g = &shareMembers{}
		b.cs.shares[filter] = g
	}
	for i := range g.members {
		if g.members[i].key == key {
			g.members[i] = shareMember{key, opts, id}
			return
		}
	}
	g.members = append(g.members, shareMember{key, opts, id})
}

// clusterUnsubscribed undoes clusterSubscribed.
func (b *Broker) clusterUnsubscribed(key uint64, filter string) {
	b.cluster.Unsubscribe(filter)
	if _, _, shared := topics.ParseShare(filter); !shared {
		return
	}
	b.cs.mu.Lock()
	defer b.cs.mu.Unlock()
	g := b.cs.shares[filter]
	if g == nil {
		return
	}
	for i := range g.members {
		if g.members[i].key == key {
			g.members = append(g.members[:i], g.members[i+1:]...)
			break
		}
	}
	if len(g.members) == 0 {
		delete(b.cs.shares, filter)
	}
}

// clusterAttached runs after a connection attached to its session: this node holds the session
// now, and the peers keep a copy of the will.
func (b *Broker) clusterAttached(id string, will *session.Will, expiry uint32) {
	b.cluster.Hold(id)
	if will == nil {
		b.cluster.ClearWill(id)
		return
	}
	buf := b.encodeMessage(will.Message, will.Message.QoS, will.Message.Retain)
	// The will waits for its delay, or for the session's end when that comes first
	// [MQTT-3.1.3-9], as detach decides on this node.
	b.cluster.SetWill(id, *buf, min(will.Delay, expiry))
	b.writeBuffers.Put(buf)
}

// forward hands a message accepted here to the cluster when it reaches this node's
// subscribers (retainNow), with its retained update. $SYS topics are each node's own
// statistics and stay on it. With w set (a QoS 1/2 message), w's completion, and so the
// publisher's acknowledgement, waits for the nodes the message reached to commit it: one
// more count of w until the cluster calls its callback.
func (b *Broker) forward(msg *session.Message, w *durableWork) {
	if strings.HasPrefix(msg.Topic, "$SYS/") {
		if msg.Retain {
			b.setRetained(msg)
		}
		return
	}
	buf := b.encodeMessage(msg, msg.QoS, msg.Retain)
	if msg.Retain {
		// One closure per retained message: the index update must run inside the cluster's
		// decision, not before it, or a peer's update decided meanwhile could be overwritten
		// here and win everywhere else.
		b.cluster.Retain(msg.Topic, *buf, len(msg.Payload) == 0, func() { b.setRetained(msg) })
	}
	if w != nil && msg.QoS > 0 {
		w.left.Add(1)
		if !b.cluster.Forward(msg.Topic, msg.Publisher, *buf, w.callback) {
			w.left.Add(-1) // nobody to wait for; the caller still holds its own count
		}
	} else {
		b.cluster.Forward(msg.Topic, msg.Publisher, *buf, nil)
	}
	b.writeBuffers.Put(buf)
}

// Committed calls done once the durable effects of every forwarded message delivered so far
// committed (the store's writer completes operations in order), with an error when one of
// them failed.
func (l *ClusterLocal) Committed(done func(error)) {
	b := l.b
	if !b.durable {
		done(nil)
		return
	}
	b.store.Barrier(func(error) {
		if b.cs.remoteFailed.Swap(false) {
			done(errRemoteStore)
			return
		}
		done(nil)
	})
}

var errRemoteStore = errors.New("engine: a forwarded message's delivery rows were not stored")

// encodeMessage writes msg as a 5.0 PUBLISH into a pooled buffer the caller puts back.
func (b *Broker) encodeMessage(msg *session.Message, qos byte, retain bool) *[]byte {
	buf := b.writeBuffers.Get().(*[]byte)
	pk := b.packets.Get().(*packets.Packet)
	o := session.Outgoing{Message: msg, QoS: qos, Retain: retain}
	if qos > 0 {
		o.PacketID = 1 // a QoS 1/2 PUBLISH needs one [MQTT-2.2.1-3]; the receiver ignores it
	}
	// The clock is read only for a message that expires (its remaining interval): time.Now
	// was 10-15% of a forwarding node's CPU in the two-node pairs profile.
	var t int64
	if msg.Expires != 0 {
		t = now()
	}
	*buf = session.AppendPublish((*buf)[:0], &pk.Publish, packets.V5, &o, t, 0, false)
	pk.Publish = packets.Publish{}
	b.packets.Put(pk)
	return buf
}

var errBadPacket = errors.New("engine: cluster packet is not a PUBLISH")

// receivedAt is the time a forwarded message's expiry counts from: read from the clock only
// when the message has a Message Expiry Interval (time.Now was 8% of a receiving node's CPU).
func receivedAt(p *packets.Publish) int64 {
	if p.Properties.Has(packets.PropMessageExpiry) {
		return now()
	}
	return 0
}

// decodePublish parses a packet made by encodeMessage into p, whose slices alias packet.
func decodePublish(packet []byte, p *packets.Publish) error {
	if len(packet) < 2 || packets.Type(packet[0]>>4) != packets.TypePublish {
		return errBadPacket
	}
	remaining, i := 0, 1
	for shift := 0; ; shift += 7 {
		if i >= len(packet) || i > 4 {
			return errBadPacket
		}
		c := packet[i]
		i++
		remaining |= int(c&0x7F) << shift
		if c < 0x80 {
			break
		}
	}
	if len(packet)-i != remaining {
		return errBadPacket
	}
	return p.Decode(packets.V5, packet[0]&0x0F, packet[i:])
}

// dropShared removes $share deliveries from a match: in a cluster a shared group's member is
// chosen by NATS among every node's members, never by one node's router alone.
func dropShared(m *topics.Matches) {
	kept := m.Deliveries[:0]
	for _, d := range m.Deliveries {
		if !d.Shared {
			kept = append(kept, d)
		}
	}
	m.Deliveries = kept
}

// DeliverRemote routes a message forwarded by another node to this node's subscribers. It
// leaves the retained state alone even when the message has the retain flag.
func (l *ClusterLocal) DeliverRemote(packet []byte) {
	b := l.b
	p := &b.cs.scratch
	if err := decodePublish(packet, p); err != nil {
		b.log.Warn("cluster: dropped a forwarded message", "err", err)
		return
	}
	msg := b.messages.Get(p, p.Topic, 0, receivedAt(p), 0)
	// Not here: its retained update comes through ApplyRetained, decided by last writer.
	if work := b.deliverMatching(msg, &b.cs.matches, false, false); work != nil {
		work.finish = b.cs.remoteDone
		work.done(nil)
	}
	msg.Release()
}

// DeliverShared gives a message to one local member of filter's shared group.
func (l *ClusterLocal) DeliverShared(filter string, packet []byte) {
	b := l.b
	p := &b.cs.scratch
	if err := decodePublish(packet, p); err != nil {
		b.log.Warn("cluster: dropped a forwarded message", "err", err)
		return
	}
	member, ok := b.pickShareMember(filter)
	if !ok {
		return // the last member left while the message was on its way
	}
	msg := b.messages.Get(p, p.Topic, 0, receivedAt(p), 0)
	m := &b.cs.matches
	m.Reset()
	var ids []uint32
	if member.id != 0 {
		ids = []uint32{member.id}
	}
	m.Deliveries = append(m.Deliveries, topics.Delivery{Client: member.key, QoS: member.opts.QoS,
		RetainAsPublished: member.opts.RetainAsPublished, IDs: ids, Shared: true})
	b.keepReaders(m, msg.Topic)
	if work := b.deliverTo(msg, m, false, false); work != nil {
		work.finish = b.cs.remoteDone
		work.done(nil)
	}
	msg.Release()
}

// pickShareMember takes the next member of a group in turn, preferring online ones.
func (b *Broker) pickShareMember(filter string) (shareMember, bool) {
	b.cs.mu.Lock()
	defer b.cs.mu.Unlock()
	g := b.cs.shares[filter]
	if g == nil || len(g.members) == 0 {
		return shareMember{}, false
	}
	var fallback *shareMember
	for range g.members {
		m := &g.members[g.next%len(g.members)]
		g.next++
		e := b.registry.get(m.key)
		if e == nil {
			continue
		}
		if e.online.Load() {
			return *m, true
		}
		if fallback == nil {
			fallback = m
		}
	}
	if fallback == nil {
		return shareMember{}, false
	}
	return *fallback, true
}

// ApplyRetained sets or clears, in the index, a retained message another node decided. It
// runs under the cluster's decision lock: no store operation here (StoreRetained).
func (l *ClusterLocal) ApplyRetained(packet []byte) {
	b := l.b
	var p packets.Publish
	if err := decodePublish(packet, &p); err != nil {
		b.log.Warn("cluster: dropped a retained update", "err", err)
		return
	}
	msg := session.NewMessage(&p, p.Topic, 0, receivedAt(&p), 0) // outside the pool: the index keeps it
	if len(msg.Payload) == 0 {
		b.retained.Delete(msg.Topic) // [MQTT-3.3.1-6]
		return
	}
	b.retained.Set(msg.Topic, msg, msg.Size()) // [MQTT-3.3.1-5]
}

// StoreRetained writes a retained update ApplyRetained applied to the store, with no lock of
// the cluster's held.
func (l *ClusterLocal) StoreRetained(packet []byte) {
	b := l.b
	if !b.durable {
		return
	}
	var p packets.Publish
	if err := decodePublish(packet, &p); err != nil {
		return // ApplyRetained logged it
	}
	msg := session.NewMessage(&p, p.Topic, 0, receivedAt(&p), 0)
	if len(msg.Payload) == 0 {
		b.store.DeleteRetained(msg.Topic, b.logStoreError("delete retained"))
		return
	}
	b.store.SaveRetained(storedMessage(msg, now()), b.logStoreError("save retained"))
}

// VisitRetained encodes every retained message for a peer's snapshot. $SYS topics are each
// node's own and are not shared.
func (l *ClusterLocal) VisitRetained(fn func(topic string, packet []byte)) {
	b := l.b
	b.retained.Visit("#", func(topic string, msg *session.Message) bool {
		buf := b.encodeMessage(msg, msg.QoS, true)
		fn(topic, *buf)
		b.writeBuffers.Put(buf)
		return true
	})
}

// PublishWill publishes the will of a client of a dead node, as this node's own publication.
func (l *ClusterLocal) PublishWill(packet []byte) {
	b := l.b
	var p packets.Publish
	if err := decodePublish(packet, &p); err != nil {
		b.log.Warn("cluster: dropped a will", "err", err)
		return
	}
	var m topics.Matches
	if work := b.route(session.NewMessage(&p, p.Topic, 0, now(), 0), &m); work != nil {
		work.done(nil)
	}
}

// TakeOver ends the local session of id for another node: a live connection gets DISCONNECT
// 0x8E [MQTT-3.1.4-3] and is waited for; then the session's state is exported (when asked)
// and the session ends here, so exactly one node holds it.
//
// b.mu stays held from the export to the session's end, the store waits included: a CONNECT
// of the same client id here meanwhile would otherwise attach to a session being moved. No
// store callback takes b.mu, so the writer never waits for it.
func (l *ClusterLocal) TakeOver(id string, export bool) []byte {
	b := l.b
	for {
		b.mu.Lock()
		e := b.sessions[id]
		if e == nil {
			b.mu.Unlock()
			return nil
		}
		e.mu.Lock()
		old := e.client
		e.mu.Unlock()
		if old != nil {
			b.mu.Unlock()
			if !b.endTakenOver(old, 2*old.writeTimeout(), "cluster takeover", id) {
				return nil
			}
			continue
		}
		var state []byte
		if export {
			state = b.exportSession(e)
		}
		will := b.endSessionLocked(e) // its store rows go only now, after the export read them
		b.mu.Unlock()
		if will != nil {
			b.publishWill(will)
		}
		return state
	}
}

// exportSession encodes an offline session for the node taking it over: expiry u32;
// subscriptions (u16 count; filter u16+bytes, options byte, id u32); deliveries (u32 count;
// QoS, flags, packet id u16, ids u16 count + u32 each, PUBLISH u32 length + bytes). Every
// delivery the session owes goes: the inflight ones with their packet ids and QoS 2 state, so
// the client's resend state survives the move, the memory queue, and the deliveries only the
// store holds (spilled beyond the memory queue, spill.go). b.mu is held, e.mu is not.
//
// Order of the steps: the session leaves the router first, so no new delivery is matched for
// it; a store Barrier then lets every delivery matched before that commit its row (and any
// page-in in flight queue what it read); the memory state is read under e.mu, and the store's
// rows of the session after it, skipping those already taken from memory. What a publisher
// matched before the unsubscribe and submits after the Barrier is missed (a window of one
// route call). Rejected: exporting the memory queue alone (the first integration), which
// lost every spilled delivery with the old node's rows.
func (b *Broker) exportSession(e *entry) []byte {
	e.mu.Lock()
	// The session goes on elsewhere: its pending will is cancelled as for a reconnection here
	// [MQTT-3.1.3-9].
	if e.willTimer != nil {
		e.willTimer.Stop()
		e.willTimer = nil
	}
	e.pendingWill = nil
	for filter := range e.s.Subscriptions {
		b.router.Unsubscribe(e.s.Key, filter) // endSessionLocked's second call finds nothing
	}
	durable := e.durable.Load()
	e.mu.Unlock()
	if durable {
		b.waitStore()
	}
	e.mu.Lock()
	out, deliveries, count, exported := b.exportMemoryLocked(e)
	e.mu.Unlock()
	if durable {
		deliveries, count = b.exportStored(e.s.ClientID, deliveries, count, exported)
	}
	out = binary.BigEndian.AppendUint32(out, count)
	return append(out, deliveries...)
}

// waitStore returns once every store operation submitted before it has completed.
func (b *Broker) waitStore() {
	committed := make(chan struct{})
	b.store.Barrier(func(error) { close(committed) })
	<-committed
}

// exportMemoryLocked encodes the head of a session's export and the deliveries it holds in
// memory, and returns the store ids among them. e.mu is held.
func (b *Broker) exportMemoryLocked(e *entry) (head, deliveries []byte, count uint32, exported map[uint64]struct{}) {
	s := e.s
	head = binary.BigEndian.AppendUint32(nil, s.ExpiryInterval)
	head = binary.BigEndian.AppendUint16(head, uint16(len(s.Subscriptions)))
	for _, sub := range s.Subscriptions {
		head = binary.BigEndian.AppendUint16(head, uint16(len(sub.Filter)))
		head = append(head, sub.Filter...)
		head = append(head, packOptions(sub.Options))
		head = binary.BigEndian.AppendUint32(head, sub.ID)
	}
	exported = make(map[uint64]struct{})
	add := func(o *session.Outgoing) {
		deliveries = b.appendExported(deliveries, o.QoS, o.Retain, o.Released, o.PacketID, o.SubscriptionIDs, o.Message)
		count++
		if id := o.Message.StoreID; id != 0 {
			exported[id] = struct{}{}
		}
	}
	s.Resend(add)
	s.SendQuota = 1 << 30 // drain the queue through the window: the session ends right after
	t := now()
	for {
		o, ok := s.Next(t)
		if !ok {
			break
		}
		q := *o // a QoS 0 message's reference is now ours, released once encoded
		q.PacketID, q.Released = 0, false
		add(&q)
		if q.QoS == 0 {
			q.Message.Release()
		}
	}
	return head, deliveries, count, exported
}

// exportStored appends the stored deliveries of clientID not in exported, read in pages of
// the store's writer, in id order. A failed read is logged: what was read still goes.
func (b *Broker) exportStored(clientID string, deliveries []byte, count uint32, exported map[uint64]struct{}) ([]byte, uint32) {
	const page = 1024
	type result struct {
		rows []persist.StoredDelivery
		err  error
	}
	from := uint64(0)
	for {
		read := make(chan result, 1)
		b.store.ReadDeliveries(clientID, from, page, func(rows []persist.StoredDelivery, err error) { read <- result{rows, err} })
		r := <-read
		if r.err != nil {
			b.stats.StoreFailures.Add(1)
			b.log.Error("cluster takeover: reading the stored deliveries failed", "client", clientID, "err", r.err)
			return deliveries, count
		}
		for _, row := range r.rows {
			from = row.Delivery.MessageID + 1
			if _, done := exported[row.Delivery.MessageID]; done {
				continue
			}
			d := &row.Delivery
			deliveries = b.appendExported(deliveries, d.QoS, d.Retain, d.State == persist.Released, d.PacketID, d.SubIDs, restoredMessage(row.Message))
			count++
		}
		if len(r.rows) < page {
			return deliveries, count
		}
	}
}

// appendExported encodes one delivery of an exported session.
func (b *Broker) appendExported(out []byte, qos byte, retain, released bool, packetID uint16, subIDs []uint32, msg *session.Message) []byte {
	flags := byte(0)
	if retain {
		flags |= 1
	}
	if released {
		flags |= 2
	}
	out = append(out, qos, flags)
	out = binary.BigEndian.AppendUint16(out, packetID)
	out = binary.BigEndian.AppendUint16(out, uint16(len(subIDs)))
	for _, id := range subIDs {
		out = binary.BigEndian.AppendUint32(out, id)
	}
	buf := b.encodeMessage(msg, msg.QoS, msg.Retain)
	out = binary.BigEndian.AppendUint32(out, uint32(len(*buf)))
	out = append(out, *buf...)
	b.writeBuffers.Put(buf)
	return out
}

func packOptions(o topics.SubOptions) byte {
	v := o.QoS & 3
	if o.NoLocal {
		v |= 4
	}
	if o.RetainAsPublished {
		v |= 8
	}
	return v | (o.RetainHandling&3)<<4
}

func unpackOptions(v byte) topics.SubOptions {
	return topics.SubOptions{QoS: v & 3, NoLocal: v&4 != 0, RetainAsPublished: v&8 != 0, RetainHandling: v >> 4 & 3}
}

var errBadSession = errors.New("engine: malformed session from another node")

// claimSession asks the cluster for id's session before CONNECT attaches; a session that
// comes back replaces any this node held, as the one a client last used.
func (b *Broker) claimSession(id string, cleanStart bool) {
	state := b.cluster.Claim(id, cleanStart)
	if state == nil {
		return
	}
	if err := b.importSession(id, state); err != nil {
		b.log.Warn("cluster takeover: session not imported", "client", id, "err", err)
	}
}

func (b *Broker) importSession(id string, state []byte) error {
	r := state
	take := func(n int) []byte {
		if len(r) < n {
			r = nil
			return nil
		}
		v := r[:n]
		r = r[n:]
		return v
	}
	u16 := func() int {
		if v := take(2); v != nil {
			return int(binary.BigEndian.Uint16(v))
		}
		return 0
	}
	u32 := func() uint32 {
		if v := take(4); v != nil {
			return binary.BigEndian.Uint32(v)
		}
		return 0
	}
	e := &entry{}
	e.s = session.New(id, 0, b.limits)
	e.s.ExpiryInterval = u32()
	subs := make([]session.Subscription, u16())
	for i := range subs {
		filter := string(take(u16()))
		opt := take(1)
		if opt == nil {
			return errBadSession
		}
		subs[i] = session.Subscription{Filter: filter, Options: unpackOptions(opt[0]), ID: u32()}
	}
	outs := make([]session.Outgoing, u32())
	for i := range outs {
		head := take(2)
		if head == nil {
			return errBadSession
		}
		o := session.Outgoing{QoS: head[0], Retain: head[1]&1 != 0, Released: head[1]&2 != 0}
		o.PacketID = uint16(u16())
		if n := u16(); n > 0 {
			o.SubscriptionIDs = make([]uint32, n)
			for j := range o.SubscriptionIDs {
				o.SubscriptionIDs[j] = u32()
			}
		}
		var p packets.Publish
		if err := decodePublish(take(int(u32())), &p); err != nil {
			return errors.Join(errBadSession, err)
		}
		o.Message = session.NewMessage(&p, p.Topic, 0, now(), 0)
		outs[i] = o
	}
	if r == nil {
		return errBadSession
	}
	b.mu.Lock()
	if old := b.sessions[id]; old != nil {
		if will := b.endSessionLocked(old); will != nil {
			defer b.publishWill(will)
		}
	}
	e.s.Key = b.registry.add(e)
	b.sessions[id] = e
	for _, s := range subs {
		if _, err := b.router.Subscribe(subscription(e.s.Key, s.Filter, s.Options, s.ID)); err != nil {
			continue
		}
		e.s.Subscriptions[s.Filter] = s
		b.clusterSubscribed(e.s.Key, s.Filter, s.Options, s.ID, false)
	}
	durable := b.durable && e.s.ExpiryInterval > 0
	if durable {
		// The moved session is stored here as it was on the old node, before its client's
		// CONNACK (which waits for the store), and its deliveries get rows of this node: a
		// restart here keeps them, and those beyond the memory queue wait in the store
		// (spill.go) instead of pushing the oldest out of the queue.
		e.durable.Store(true)
		b.saveSession(id, e.s.ExpiryInterval, 0, nil)
		for _, s := range e.s.Subscriptions {
			b.saveSubscription(id, s)
		}
		for i := range outs {
			o := &outs[i]
			if o.QoS == 0 {
				continue
			}
			o.Message.StoreID = b.store.NextMessageID()
			d := []persist.Delivery{{ClientID: id, QoS: o.QoS, Retain: o.Retain, SubIDs: o.SubscriptionIDs}}
			b.store.AddDeliveries(storedMessage(o.Message, 0), d, b.logStoreError("add moved delivery"))
			if o.PacketID != 0 {
				state := persist.Sent
				if o.Released {
					state = persist.Released
				}
				b.store.UpdateDelivery(id, o.Message.StoreID, o.PacketID, state, b.logStoreError("update moved delivery"))
			}
		}
	}
	e.mu.Lock()
	for _, o := range outs {
		if o.PacketID != 0 && e.s.Restore(o) {
			continue
		}
		o.PacketID, o.Released = 0, false
		if !b.spillLocked(e, &o) {
			e.s.Enqueue(o, true)
		}
	}
	e.mu.Unlock()
	b.mu.Unlock()
	return nil
}
