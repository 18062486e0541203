package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config is what a node is started from (the [cluster] section plus what it needs of others).
type Config struct {
	// NodeID names the node; empty means read DataDir/node-id, or generate and write it.
	NodeID  string
	DataDir string
	// Bind is the embedded server's route listener, host:port.
	Bind string
	// Peers are route addresses of other nodes.
	Peers []string
	// NATSURL joins an existing NATS cluster instead of embedding a server.
	NATSURL string
	Logger  *slog.Logger
	// HeartbeatInterval and DeadAfter tune failure detection; zero means 1 s and 3 s.
	HeartbeatInterval, DeadAfter time.Duration
}

// Local is the engine's side: what a node asks of the broker it belongs to. Packets are MQTT
// 5.0 PUBLISH packets as the engine encodes them; session state is opaque bytes the engine
// both writes and reads.
type Local interface {
	// DeliverRemote routes a message accepted by another node to this node's non-shared
	// subscribers (not to $share groups, and with no retained update).
	DeliverRemote(packet []byte)
	// DeliverShared gives a message to one local member of the shared subscription filter
	// ("$share/g/f"), which NATS chose this node for.
	DeliverShared(filter string, packet []byte)
	// ApplyRetained sets (or, for an empty payload, clears) the retained message in this
	// node's index, as decided for an update from another node. It is called with the
	// decision's lock held and must not wait for anything but the index.
	ApplyRetained(packet []byte)
	// StoreRetained writes that update to this node's store, after the lock is released
	// (a store submit can wait for the store's writer, which may be waiting for that lock:
	// a retained publish's commit runs Node.Retain). Calls come in decision order.
	StoreRetained(packet []byte)
	// VisitRetained calls fn for every retained message this node holds.
	VisitRetained(fn func(topic string, packet []byte))
	// TakeOver ends the local session of clientID, disconnecting its client with 0x8E; when
	// export is set it returns the session's state for the node that takes it.
	TakeOver(clientID string, export bool) []byte
	// PublishWill publishes the will of a client of a node that died.
	PublishWill(packet []byte)
	// Committed calls done once every durable effect of the messages handed to DeliverRemote
	// and DeliverShared so far has committed to this node's store (err: one of them failed),
	// or at once when nothing is stored. This node then acknowledges them to their origin.
	Committed(done func(err error))
}

// Stats are the node's counters, read with atomic loads.
type Stats struct {
	ForwardedMessages, ForwardedBytes atomic.Uint64
	ReceivedMessages, ReceivedBytes   atomic.Uint64
	RouteErrors                       atomic.Uint64
}

const (
	clusterName    = "promptmq"
	retainedSubj   = "pmq.r"
	heartbeatSubj  = "pmq.hb"
	willSubj       = "pmq.w"
	interestSubj   = "pmq.i"
	ackPrefix      = "pmq.ack."
	snapshotPrefix = "pmq.snap."
	inboxSize      = 1 << 16
	// maxPayload bounds one NATS message: a PUBLISH (mqtt.max-packet-size) or an exported
	// session with its queue.
	maxPayload = 8 << 20
	// maxControlLine must hold the subject of the longest topic after escaping.
	maxControlLine  = 256 << 10
	takeoverWait    = 5 * time.Second
	subjectCacheMax = 4096
)

// Node is this process's membership in the cluster.
//
// Design: two NATS connections. pub has No Echo: it publishes every frame and holds the plain
// subscriptions, so a node never receives its own forwarded messages (it routed them locally
// already). queue holds the $share queue subscriptions and has echo on, so this node's own
// member is a candidate like any other for a message it published. Received frames go into
// two channels: data (forwarded messages, one goroutine, which keeps per-origin order and lets
// dedupe use a high-water mark) and control (retained, heartbeats, wills, snapshots), so a
// flood of data cannot delay heartbeats into a false death. Rejected: one async NATS handler
// per subscription: nats.go runs each on its own goroutine, so copies of one message through
// overlapping filters, and one publisher's messages through different filters, would race.
//
// Lock order: pubMu, intMu, retMu, peerMu and willMu are leaves, never held together, except
// retMu which is held while calling Local.ApplyRetained and Retain's apply (the engine then
// takes its retained index lock; VisitRetained and StoreRetained, which can wait for the
// store's writer, are never called with retMu held). view.mu and acks.mu (acks.go) are
// leaves taken under pubMu (a batch's wait is registered as it is sent) and intMu (this node's
// own $share groups); acknowledgement waiters, which run engine code, are called with no lock
// of this package held.
type Node struct {
	cfg         Config
	id          string
	incarnation uint64
	log         *slog.Logger
	local       Local
	srv         *server.Server
	pub, queue  *nats.Conn
	data, ctrl  chan *nats.Msg
	stats       Stats
	stop        chan struct{}
	stopOnce    sync.Once
	loops       sync.WaitGroup

	pubMu    sync.Mutex // guards seq, subjects and the batches
	seq      uint64
	subjects map[string]string
	batches  batches
	kick     chan struct{} // a frame is pending: the forwarder flushes
	forwards sync.WaitGroup

	intMu    sync.Mutex
	interest map[string]*interest
	holds    map[string]*nats.Subscription
	shareOf  sync.Map // *nats.Subscription -> the "$share/g/f" filter

	retMu    sync.Mutex
	versions map[string]version

	peerMu sync.Mutex
	peers  map[string]*peer

	willMu   sync.Mutex
	wills    map[string]map[string]willCopy // by origin/incarnation, then client id
	ownWills map[string]willCopy
	// delayed are the wills of dead nodes' clients this node will publish when their delay
	// ends, unless the client connects again first (willwait.go).
	delayed map[string]*delayedWill
	dedupe  dedupe // data loop only

	// view is the other nodes' announced filters, acks the forwarded QoS 1/2 batches waiting
	// for them (acks.go).
	view     *interestView
	acks     *ackWaits
	ctrlSubs []*nats.Subscription
}

type interest struct {
	count int
	subs  []*nats.Subscription
}

// version orders retained updates of one topic: last writer wins, by origin time, then id.
type version struct {
	at      int64
	origin  string
	deleted bool
}

func (v version) newer(than version) bool {
	return v.at > than.at || v.at == than.at && v.origin > than.origin
}

type peer struct {
	incarnation uint64
	lastSeen    time.Time
}

// Start runs the node: the embedded NATS server (unless NATSURL is set), its connections and
// loops. local receives what other nodes send from the moment Start returns.
func Start(cfg Config, local Local) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 3 * cfg.HeartbeatInterval
	}
	id, err := nodeID(cfg.NodeID, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, id: id, log: cfg.Logger.With("node", id), local: local,
		incarnation: uint64(time.Now().UnixNano()),
		data:        make(chan *nats.Msg, inboxSize),
		ctrl:        make(chan *nats.Msg, inboxSize),
		stop:        make(chan struct{}),
		kick:        make(chan struct{}, 1),
		subjects:    make(map[string]string),
		interest:    make(map[string]*interest),
		holds:       make(map[string]*nats.Subscription),
		versions:    make(map[string]version),
		peers:       make(map[string]*peer),
		wills:       make(map[string]map[string]willCopy),
		ownWills:    make(map[string]willCopy),
		delayed:     make(map[string]*delayedWill),
		view:        newInterestView(),
		acks:        newAckWaits(),
	}
	n.seq = n.incarnation
	url := cfg.NATSURL
	if url == "" {
		if n.srv, err = startServer(id, cfg.Bind, cfg.Peers); err != nil {
			return nil, err
		}
		url = n.srv.ClientURL()
	}
	if err := n.connect(url); err != nil {
		n.Stop()
		return nil, err
	}
	go n.acks.loop(n.stop)
	n.forwards.Add(1)
	go n.forwarder()
	n.loops.Add(3)
	go n.dataLoop()
	go n.ctrlLoop()
	go n.heartbeatLoop()
	n.log.Info("cluster node started", "incarnation", n.incarnation, "nats", url, "bind", cfg.Bind, "peers", cfg.Peers)
	return n, nil
}

// nodeID returns the configured id, or the one kept in dataDir, or a new one it keeps there.
func nodeID(configured, dataDir string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if dataDir == "" {
		return "", errors.New("cluster: node-id is empty and there is no data directory to keep a generated one")
	}
	path := filepath.Join(dataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cluster: read node id: %w", err)
	}
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("cluster: keep node id: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("cluster: keep node id: %w", err)
	}
	return id, nil
}

func startServer(id, bind string, peers []string) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %q: %w", bind, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %q: %w", bind, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:     id,
		Host:           "127.0.0.1",
		Port:           server.RANDOM_PORT,
		NoLog:          true,
		NoSigs:         true,
		MaxPayload:     maxPayload,
		MaxControlLine: maxControlLine,
		Cluster:        server.ClusterOpts{Name: clusterName, Host: host, Port: port},
	}
	for _, p := range peers {
		u, err := url.Parse("nats-route://" + p)
		if err != nil {
			return nil, fmt.Errorf("cluster: peer %q: %w", p, err)
		}
		opts.Routes = append(opts.Routes, u)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("cluster: embedded NATS server did not start (route listener %s)", bind)
	}
	return srv, nil
}

func (n *Node) connect(url string) error {
	opts := []nats.Option{
		nats.Name("promptmq-" + n.id),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			n.stats.RouteErrors.Add(1)
			n.log.Warn("cluster: NATS error", "err", err)
		}),
	}
	var err error
	if n.pub, err = nats.Connect(url, append(opts, nats.NoEcho())...); err != nil {
		return fmt.Errorf("cluster: connect to NATS %s: %w", url, err)
	}
	if n.queue, err = nats.Connect(url, opts...); err != nil {
		return fmt.Errorf("cluster: connect to NATS %s: %w", url, err)
	}
	for _, subj := range []string{retainedSubj, heartbeatSubj, willSubj, interestSubj, snapshotPrefix + n.id} {
		sub, err := n.pub.ChanSubscribe(subj, n.ctrl)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		n.ctrlSubs = append(n.ctrlSubs, sub)
	}
	// Acknowledgements on their own goroutine (nats.go's, for this subscription): they come at
	// the data's rate and must not queue behind retained snapshots or delay heartbeats.
	sub, err := n.pub.Subscribe(ackPrefix+n.id, func(m *nats.Msg) { n.receiveAck(m.Data) })
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", ackPrefix+n.id, err)
	}
	n.ctrlSubs = append(n.ctrlSubs, sub)
	return n.pub.Flush()
}

// ID is the node's id.
func (n *Node) ID() string { return n.id }

// Stats returns the node's counters.
func (n *Node) Stats() *Stats { return &n.stats }

// ForwardedMessages counts messages sent to other nodes.
func (n *Node) ForwardedMessages() uint64 { return n.stats.ForwardedMessages.Load() }

// ForwardedBytes counts the bytes of those messages.
func (n *Node) ForwardedBytes() uint64 { return n.stats.ForwardedBytes.Load() }

// ReceivedMessages counts forwarded messages received from other nodes.
func (n *Node) ReceivedMessages() uint64 { return n.stats.ReceivedMessages.Load() }

// ReceivedBytes counts the bytes of those messages.
func (n *Node) ReceivedBytes() uint64 { return n.stats.ReceivedBytes.Load() }

// RouteErrors counts failures to send, receive or decode.
func (n *Node) RouteErrors() uint64 { return n.stats.RouteErrors.Load() }

// LiveNodes counts the nodes heard from recently, this one included.
func (n *Node) LiveNodes() int {
	n.peerMu.Lock()
	defer n.peerMu.Unlock()
	return 1 + len(n.peers)
}

// Leave is Stop, under the name the engine's Cluster interface gives it.
func (n *Node) Leave() { n.Stop() }

// Stop leaves the cluster: peers see the heartbeats stop. Wills of this node's clients are
// the engine's to publish (its clients are disconnected by its own shutdown).
func (n *Node) Stop() {
	n.stopOnce.Do(n.stopNow)
}

func (n *Node) stopNow() {
	close(n.stop)
	n.forwards.Wait() // its last flush goes out before the connection closes
	if n.pub != nil {
		n.pub.Close()
	}
	if n.queue != nil {
		n.queue.Close()
	}
	n.loops.Wait()
	<-n.acks.done
	n.acks.run(true) // what still waits is refused: this node no longer hears acknowledgements
	n.willMu.Lock()
	for _, d := range n.delayed {
		d.timer.Stop() // the broker is stopping: nobody to publish them
	}
	clear(n.delayed)
	n.willMu.Unlock()
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// Forward sends a message accepted on this node to every node with interest in its topic:
// it joins the batch of its subject, which the forwarder sends (batches.go). publisher
// identifies the sender, whose order is kept across topics; packet is the engine's PUBLISH
// encoding, copied before Forward returns.
//
// acked, for a QoS 1/2 message, asks for the other nodes' acknowledgement (acks.go): Forward
// reports true when it will call acked once every node with interest committed the message
// (nil) or one failed, died or did not answer within the failure timeout (an error), never
// from within Forward; false when there is nothing to wait for, acked is then not called.
// Waiters are called in the order Forward got them.
func (n *Node) Forward(topic string, publisher uint64, packet []byte, acked func(error)) bool {
	if strings.HasPrefix(topic, "$SYS/") {
		return false // each node's own statistics, not the cluster's
	}
	wait := false
	if acked != nil {
		// The fast path: no earlier waiter, no node to ask. The check and the frame's
		// batching need not be atomic: a filter announced in between is as late as one
		// announced after the message was sent.
		wait = n.acks.outstanding.Load() > 0 || n.view.any(topic, n.id)
	}
	n.pubMu.Lock()
	subject, ok := n.subjects[topic]
	if !ok {
		if len(n.subjects) >= subjectCacheMax {
			clear(n.subjects)
		}
		subject = string(AppendSubject(nil, topic))
		n.subjects[topic] = subject
	}
	if n.batches.conflicts(subject, publisher) {
		n.flushLocked()
	}
	b, first := n.batches.add(subject, n.id, publisher, packet)
	b.topic = topic
	if wait {
		n.acks.outstanding.Add(1)
		b.waiters = append(b.waiters, acked)
	}
	if len(b.buf) >= batchBytes {
		// All open batches, oldest first: this one alone could overtake a publisher's
		// earlier frames in an older batch.
		n.flushLocked()
	} else if first {
		select {
		case n.kick <- struct{}{}:
		default: // a kick is pending: the forwarder has not flushed yet
		}
	}
	n.pubMu.Unlock()
	return wait
}

// forwarder sends the pending batches each time it is kicked. No timer: a lone message goes
// out as soon as this goroutine runs, and while it waits for a processor, frames gather.
func (n *Node) forwarder() {
	defer n.forwards.Done()
	for {
		select {
		case <-n.stop:
			n.flush()
			return
		case <-n.kick:
		}
		// Let the goroutines that are forwarding right now append before this flush: a
		// yield, not a wait, so an idle node adds nothing.
		runtime.Gosched()
		n.flush()
	}
}

// flush sends every pending batch, oldest first.
func (n *Node) flush() {
	n.pubMu.Lock()
	n.flushLocked()
	n.pubMu.Unlock()
}

// flushLocked is flush with pubMu held.
func (n *Node) flushLocked() {
	for _, b := range n.batches.open {
		n.sendLocked(b)
	}
	n.batches.reset()
}

// sendLocked publishes b's frames as one NATS message under the next sequence and empties
// b. pubMu is held: sequences go out in the order they are given, which dedupe relies on.
func (n *Node) sendLocked(b *batch) {
	if b.frames == 0 {
		return
	}
	n.seq++
	binary.BigEndian.PutUint64(b.buf[b.seqAt:], n.seq)
	b.buf[0] = kindBatch
	if len(b.waiters) > 0 {
		// Registered before the send, which an acknowledgement can follow at once.
		b.buf[0] = kindBatchAck
		waiters := append([]func(error){}, b.waiters...)
		n.acks.add(n.seq, n.view.expected(b.topic, n.id), waiters, time.Now().Add(n.cfg.DeadAfter))
		clear(b.waiters)
		b.waiters = b.waiters[:0]
	}
	err := n.pub.Publish(b.subject, b.buf)
	if err != nil {
		n.stats.RouteErrors.Add(1)
	} else {
		n.stats.ForwardedMessages.Add(uint64(b.frames))
		n.stats.ForwardedBytes.Add(uint64(len(b.buf)))
	}
	b.buf, b.frames = b.buf[:b.seqAt+8], 0
}

func (n *Node) published(size int, err error) {
	if err != nil {
		n.stats.RouteErrors.Add(1)
		return
	}
	n.stats.ForwardedMessages.Add(1)
	n.stats.ForwardedBytes.Add(uint64(size))
}

// Retain decides a retained update made on this node (cleared: packet's empty payload clears
// the topic [MQTT-3.3.1-6]) and broadcasts it to every node. apply, which sets this node's
// retained index, runs under retMu with the decision, the lock under which updates from other
// nodes are decided and applied too (applyRetained): one rule, last writer wins by (time,
// node id), orders every update of a topic on every node. The version is above every version
// of the topic this node has seen, so an update made here after one it applied wins over it,
// even when the other node's clock runs ahead.
func (n *Node) Retain(topic string, packet []byte, cleared bool, apply func()) {
	n.retMu.Lock()
	v := version{at: time.Now().UnixNano(), origin: n.id, deleted: cleared}
	if cur, ok := n.versions[topic]; ok && cur.at >= v.at {
		v.at = cur.at + 1
	}
	n.versions[topic] = v
	if apply != nil {
		apply()
	}
	n.retMu.Unlock()
	frame := appendRetained(nil, n.id, topic, v, packet)
	n.published(len(frame), n.pub.Publish(retainedSubj, frame))
}

func appendRetained(dst []byte, origin, topic string, v version, packet []byte) []byte {
	dst = appendHeader(dst, kindRetained, origin, uint64(v.at))
	deleted := byte(0)
	if v.deleted {
		deleted = 1
	}
	dst = append(dst, deleted)
	dst = appendString16(dst, topic)
	return append(dst, packet...)
}

// Subscribe records that a local session holds filter (as sent, "$share/g/f" included). The
// first holder of a filter subscribes in NATS; later ones only count.
func (n *Node) Subscribe(filter string) {
	n.intMu.Lock()
	defer n.intMu.Unlock()
	in := n.interest[filter]
	if in != nil {
		in.count++
		return
	}
	in = &interest{count: 1}
	n.interest[filter] = in
	defer n.announce(filter, true) // after the NATS subscriptions, on the same connection
	inner, shared := shareInner(filter)
	if !shared {
		inner = filter
	}
	for _, subj := range FilterSubjects(inner) {
		var sub *nats.Subscription
		var err error
		if shared {
			sub, err = n.queue.ChanQueueSubscribe(subj, queueName(filter), n.data)
			if err == nil {
				n.shareOf.Store(sub, filter)
			}
		} else {
			sub, err = n.pub.ChanSubscribe(subj, n.data)
		}
		if err != nil {
			n.stats.RouteErrors.Add(1)
			n.log.Warn("cluster: subscribe failed", "filter", filter, "subject", subj, "err", err)
			continue
		}
		in.subs = append(in.subs, sub)
	}
}

// Unsubscribe drops one local holder of filter; the last one unsubscribes in NATS.
func (n *Node) Unsubscribe(filter string) {
	n.intMu.Lock()
	defer n.intMu.Unlock()
	in := n.interest[filter]
	if in == nil {
		return
	}
	if in.count--; in.count > 0 {
		return
	}
	delete(n.interest, filter)
	for _, sub := range in.subs {
		_ = sub.Unsubscribe()
		n.shareOf.Delete(sub)
	}
	n.announce(filter, false)
}

// announce tells the other nodes that this node holds filter, or no longer does, so they know
// whose acknowledgement a QoS 1/2 message needs. Its own $share groups go into its view too:
// NATS may pick this node's member. intMu is held.
func (n *Node) announce(filter string, add bool) {
	if _, shared := shareInner(filter); shared {
		n.view.set(n.id, n.incarnation, filter, add)
	}
	frame := appendHeader(nil, kindInterest, n.id, n.incarnation)
	frame = appendInterest(frame, filter, add)
	n.published(len(frame), n.pub.Publish(interestSubj, frame))
}

func appendInterest(dst []byte, filter string, add bool) []byte {
	flag := byte(0)
	if add {
		flag = 1
	}
	return appendString16(append(dst, flag), filter)
}

// rebroadcastInterest sends every filter this node holds, for a node that joined (or
// restarted and knows none of them), in frames of up to batchBytes.
func (n *Node) rebroadcastInterest() {
	n.intMu.Lock()
	filters := make([]string, 0, len(n.interest))
	for f := range n.interest {
		filters = append(filters, f)
	}
	n.intMu.Unlock()
	head := appendHeader(nil, kindInterest, n.id, n.incarnation)
	frame := head
	for _, f := range filters {
		frame = appendInterest(frame, f, true)
		if len(frame) >= batchBytes {
			n.published(len(frame), n.pub.Publish(interestSubj, frame))
			frame = append(frame[:0], head...)
		}
	}
	if len(frame) > len(head) {
		n.published(len(frame), n.pub.Publish(interestSubj, frame))
	}
}

// recordInterest applies a node's announcement to this node's view of it.
func (n *Node) recordInterest(f frame) {
	origin := string(f.origin)
	if origin == n.id {
		return
	}
	for rest := f.rest; len(rest) > 0; {
		add := rest[0] == 1
		filter, more, err := cutString16(rest[1:])
		if err != nil {
			n.stats.RouteErrors.Add(1)
			return
		}
		n.view.set(origin, f.n, filter, add)
		rest = more
	}
}

// receiveAck records a node's acknowledgement of a batch this node sent.
func (n *Node) receiveAck(data []byte) {
	f, err := parseFrame(data)
	if err != nil || f.kind != kindAck || len(f.rest) < 1 {
		n.stats.RouteErrors.Add(1)
		return
	}
	key, _, err := cutString16(f.rest[1:])
	if err != nil {
		n.stats.RouteErrors.Add(1)
		return
	}
	if key == "" {
		key = string(f.origin)
	}
	n.acks.acked(f.n, key, f.rest[0] == 1)
}

// sendAck acknowledges the batch seq of origin once its durable effects here committed (ok),
// or failed. shareFilter names the $share group the batch came through, empty for this
// node's plain filters.
func (n *Node) sendAck(origin string, seq uint64, shareFilter string, ok bool) {
	if origin == n.id { // this node's own $share member got it (the queue connection echoes)
		key := shareFilter
		if key == "" {
			key = n.id
		}
		n.acks.acked(seq, key, ok)
		return
	}
	flag := byte(0)
	if ok {
		flag = 1
	}
	frame := appendHeader(nil, kindAck, n.id, seq)
	frame = appendString16(append(frame, flag), shareFilter)
	if err := n.pub.Publish(ackPrefix+origin, frame); err != nil {
		n.stats.RouteErrors.Add(1)
	}
}

// Interest is the number of local holders of filter (for tests and diagnostics).
func (n *Node) Interest(filter string) int {
	n.intMu.Lock()
	defer n.intMu.Unlock()
	if in := n.interest[filter]; in != nil {
		return in.count
	}
	return 0
}

// shareInner returns the filter of "$share/{group}/{filter}".
func shareInner(filter string) (inner string, ok bool) {
	rest, found := strings.CutPrefix(filter, "$share/")
	if !found {
		return "", false
	}
	_, inner, ok = strings.Cut(rest, "/")
	return inner, ok
}

// dataLoop handles forwarded batches, in the order the connections received them.
func (n *Node) dataLoop() {
	defer n.loops.Done()
	for {
		select {
		case <-n.stop:
			return
		case m := <-n.data:
			n.receive(m.Sub, m.Data)
		}
	}
}

// receive hands each message of a batch to the engine. It allocates nothing: frames are
// slices of data.
func (n *Node) receive(sub *nats.Subscription, data []byte) {
	f, err := parseFrame(data)
	if err != nil || f.kind != kindBatch && f.kind != kindBatchAck {
		n.stats.RouteErrors.Add(1)
		return
	}
	n.stats.ReceivedBytes.Add(uint64(len(data)))
	var filter string
	if v, shared := n.shareOf.Load(sub); shared {
		filter = v.(string)
	} else if !n.dedupe.first(f.origin, f.n) {
		return // another subscription of this node's connection matched the same batch
	}
	frames, rest := 0, f.rest
	for len(rest) > 0 {
		packet, more, ok := cutFrame(rest)
		if !ok {
			n.stats.RouteErrors.Add(1)
			break
		}
		rest = more
		frames++
		if filter != "" {
			n.local.DeliverShared(filter, packet)
		} else {
			n.local.DeliverRemote(packet)
		}
	}
	n.stats.ReceivedMessages.Add(uint64(frames))
	if f.kind == kindBatchAck {
		origin, seq := string(f.origin), f.n
		n.local.Committed(func(err error) { n.sendAck(origin, seq, filter, err == nil) })
	}
}

// ctrlLoop handles retained updates, snapshots, heartbeats and wills.
func (n *Node) ctrlLoop() {
	defer n.loops.Done()
	for {
		select {
		case <-n.stop:
			return
		case m := <-n.ctrl:
			f, err := parseFrame(m.Data)
			if err != nil {
				n.stats.RouteErrors.Add(1)
				continue
			}
			switch f.kind {
			case kindRetained:
				n.applyRetained(f)
			case kindSnapEnd:
				_ = m.Sub.Unsubscribe()
			case kindHeartbeat:
				n.heard(string(f.origin), f.n)
			case kindWill:
				n.recordWill(f)
			case kindInterest:
				n.recordInterest(f)
			case kindSnapAsk:
				if m.Reply != "" {
					go n.sendSnapshot(m.Reply)
				}
			default:
				n.stats.RouteErrors.Add(1)
			}
		}
	}
}

func (n *Node) applyRetained(f frame) {
	if len(f.rest) < 1 {
		return
	}
	v := version{at: int64(f.n), origin: string(f.origin), deleted: f.rest[0] == 1}
	topic, packet, err := cutString16(f.rest[1:])
	if err != nil {
		n.stats.RouteErrors.Add(1)
		return
	}
	n.retMu.Lock()
	if cur, ok := n.versions[topic]; ok && !v.newer(cur) {
		n.retMu.Unlock()
		return
	}
	n.versions[topic] = v
	n.local.ApplyRetained(packet)
	n.retMu.Unlock()
	n.local.StoreRetained(packet) // the control loop only: store writes keep decision order
}

// requestSnapshot asks peer for every retained message it holds; the frames come back into
// the control loop through a fresh inbox, which the final frame unsubscribes.
func (n *Node) requestSnapshot(peer string) {
	inbox := nats.NewInbox()
	sub, err := n.pub.ChanSubscribe(inbox, n.ctrl)
	if err != nil {
		n.stats.RouteErrors.Add(1)
		return
	}
	ask := appendHeader(nil, kindSnapAsk, n.id, n.incarnation)
	if err := n.pub.PublishRequest(snapshotPrefix+peer, inbox, ask); err != nil {
		_ = sub.Unsubscribe()
		n.stats.RouteErrors.Add(1)
	}
}

// sendSnapshot streams this node's retained messages, and the clears it knows of, to reply.
// The messages are gathered first so VisitRetained never runs with retMu held.
func (n *Node) sendSnapshot(reply string) {
	type item struct {
		topic  string
		packet []byte
	}
	var items []item
	n.local.VisitRetained(func(topic string, packet []byte) {
		items = append(items, item{topic, append([]byte(nil), packet...)})
	})
	n.retMu.Lock()
	versions := make(map[string]version, len(n.versions))
	for t, v := range n.versions {
		versions[t] = v
	}
	n.retMu.Unlock()
	var buf []byte
	for _, it := range items {
		v := versions[it.topic]
		if v.origin == "" {
			v.origin = n.id // known only from this node's store: the oldest possible version
		}
		delete(versions, it.topic)
		buf = appendRetained(buf[:0], v.origin, it.topic, v, it.packet)
		n.published(len(buf), n.pub.Publish(reply, buf))
	}
	for topic, v := range versions {
		if v.deleted {
			buf = appendRetained(buf[:0], v.origin, topic, v, nil)
			n.published(len(buf), n.pub.Publish(reply, buf))
		}
	}
	end := append([]byte{kindSnapEnd, byte(len(n.id))}, n.id...)
	n.published(len(end), n.pub.Publish(reply, end))
}

// heartbeatLoop announces this node and declares silent peers dead.
func (n *Node) heartbeatLoop() {
	defer n.loops.Done()
	tick := time.NewTicker(n.cfg.HeartbeatInterval / 2)
	defer tick.Stop()
	var last time.Time
	hb := appendHeader(nil, kindHeartbeat, n.id, n.incarnation)
	for {
		select {
		case <-n.stop:
			return
		case t := <-tick.C:
			if t.Sub(last) >= n.cfg.HeartbeatInterval {
				last = t
				if err := n.pub.Publish(heartbeatSubj, hb); err != nil {
					n.stats.RouteErrors.Add(1)
				}
			}
			n.checkPeers(t)
			n.acks.fail("", t)
		}
	}
}

// heard records a heartbeat. A new node, or a new incarnation of one (it restarted, perhaps
// faster than DeadAfter), gets this node's retained snapshot request and its wills again.
func (n *Node) heard(origin string, incarnation uint64) {
	if origin == n.id {
		return
	}
	n.peerMu.Lock()
	p := n.peers[origin]
	fresh := p == nil || p.incarnation != incarnation
	var died uint64
	if p != nil && p.incarnation != incarnation {
		died = p.incarnation
	}
	if p == nil {
		p = &peer{}
		n.peers[origin] = p
	}
	p.incarnation, p.lastSeen = incarnation, time.Now()
	n.peerMu.Unlock()
	if died != 0 {
		n.nodeDied(origin, died)
	}
	if fresh {
		n.log.Info("cluster: node joined", "peer", origin)
		n.requestSnapshot(origin)
		n.rebroadcastWills()
		n.rebroadcastInterest()
	}
}

func (n *Node) checkPeers(t time.Time) {
	type dead struct {
		id          string
		incarnation uint64
	}
	var gone []dead
	n.peerMu.Lock()
	for id, p := range n.peers {
		if t.Sub(p.lastSeen) > n.cfg.DeadAfter {
			gone = append(gone, dead{id, p.incarnation})
			delete(n.peers, id)
		}
	}
	n.peerMu.Unlock()
	for _, d := range gone {
		n.log.Warn("cluster: node dead", "peer", d.id, "silent_for", n.cfg.DeadAfter)
		n.nodeDied(d.id, d.incarnation)
	}
}

// nodeDied publishes the wills of a dead node's clients when this node is the live node with
// the lowest id: every live node reaches the same verdict from its own peer table, with no
// election. The others forget those wills.
func (n *Node) nodeDied(id string, incarnation uint64) {
	// Its filters no longer hold anything up; what waits for its acknowledgement is refused
	// (the publisher sends it again, and it goes to the nodes still alive).
	n.view.drop(id, incarnation)
	n.acks.fail(id, time.Time{})
	key := willKey(id, incarnation)
	n.willMu.Lock()
	wills := n.wills[key]
	delete(n.wills, key)
	n.willMu.Unlock()
	if len(wills) == 0 || !n.lowestLive() {
		return
	}
	n.log.Info("cluster: publishing the wills of a dead node", "peer", id, "wills", len(wills))
	for clientID, w := range wills {
		if w.delay == 0 {
			n.local.PublishWill(w.packet)
			continue
		}
		n.delayWill(clientID, w)
	}
}

func (n *Node) lowestLive() bool {
	n.peerMu.Lock()
	defer n.peerMu.Unlock()
	for id := range n.peers {
		if id < n.id {
			return false
		}
	}
	return true
}

func willKey(id string, incarnation uint64) string {
	return id + "/" + strconv.FormatUint(incarnation, 10)
}

// SetWill announces the will of a client connected to this node, so a peer publishes it if
// this node dies: delay seconds after it finds this node dead (the Will Delay Interval, or
// the Session Expiry Interval when shorter), unless the client connects again first.
func (n *Node) SetWill(clientID string, packet []byte, delay uint32) {
	w := willCopy{packet: append([]byte(nil), packet...), delay: delay}
	n.willMu.Lock()
	n.ownWills[clientID] = w
	n.willMu.Unlock()
	n.sendWill(clientID, w, true)
}

// willCopy is a client's will as its node announced it.
type willCopy struct {
	packet []byte
	delay  uint32 // seconds
}

// ClearWill withdraws a will: the client left cleanly, was taken over, or its will was
// published by this node.
func (n *Node) ClearWill(clientID string) {
	n.willMu.Lock()
	_, had := n.ownWills[clientID]
	delete(n.ownWills, clientID)
	n.willMu.Unlock()
	if had {
		n.sendWill(clientID, willCopy{}, false)
	}
}

func (n *Node) sendWill(clientID string, w willCopy, set bool) {
	b := appendHeader(nil, kindWill, n.id, n.incarnation)
	flag := byte(0)
	if set {
		flag = 1
	}
	b = append(b, flag)
	b = appendString16(b, clientID)
	b = binary.BigEndian.AppendUint32(b, w.delay)
	b = append(b, w.packet...)
	n.published(len(b), n.pub.Publish(willSubj, b))
}

func (n *Node) rebroadcastWills() {
	n.willMu.Lock()
	own := make(map[string]willCopy, len(n.ownWills))
	for id, p := range n.ownWills {
		own[id] = p
	}
	n.willMu.Unlock()
	for id, p := range own {
		n.sendWill(id, p, true)
	}
}

func (n *Node) recordWill(f frame) {
	if len(f.rest) < 1 {
		return
	}
	set := f.rest[0] == 1
	client, rest, err := cutString16(f.rest[1:])
	if err != nil || len(rest) < 4 {
		n.stats.RouteErrors.Add(1)
		return
	}
	w := willCopy{delay: binary.BigEndian.Uint32(rest), packet: rest[4:]}
	key := willKey(string(f.origin), f.n)
	n.willMu.Lock()
	defer n.willMu.Unlock()
	if !set {
		delete(n.wills[key], client)
		return
	}
	m := n.wills[key]
	if m == nil {
		m = make(map[string]willCopy)
		n.wills[key] = m
	}
	m[client] = w
}

// Hold makes this node answer takeover requests for clientID: it now holds that session.
func (n *Node) Hold(clientID string) {
	n.intMu.Lock()
	defer n.intMu.Unlock()
	if n.holds[clientID] != nil {
		return
	}
	sub, err := n.pub.Subscribe(sessionSubject(clientID), func(m *nats.Msg) {
		export := len(m.Data) > 0 && m.Data[0] == 1
		// TakeOver waits for the connection to end: not on nats.go's dispatch goroutine.
		go func() {
			state := n.local.TakeOver(clientID, export)
			if err := m.Respond(state); err != nil {
				n.stats.RouteErrors.Add(1)
			}
		}()
	})
	if err != nil {
		n.stats.RouteErrors.Add(1)
		return
	}
	n.holds[clientID] = sub
}

// Release stops answering for clientID: the session ended here.
func (n *Node) Release(clientID string) {
	n.intMu.Lock()
	sub := n.holds[clientID]
	delete(n.holds, clientID)
	n.intMu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
}

// Claim asks the other nodes for clientID's session before this node accepts its CONNECT.
// The node holding it disconnects its client with 0x8E and, unless cleanStart, returns the
// session's state, which Claim returns. A client id no other node holds costs no request
// with the embedded server (heldElsewhere); with an external one, one round trip to it
// (NATS no-responders).
func (n *Node) Claim(clientID string, cleanStart bool) []byte {
	n.reconnected(clientID, cleanStart)
	if !n.heldElsewhere(clientID) {
		return nil
	}
	req := []byte{1}
	if cleanStart {
		req[0] = 0
	}
	reply, err := n.pub.Request(sessionSubject(clientID), req, takeoverWait)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil
	case err != nil:
		n.stats.RouteErrors.Add(1)
		n.log.Warn("cluster: takeover request failed", "client", clientID, "err", err)
		return nil
	}
	if len(reply.Data) == 0 {
		return nil
	}
	return reply.Data
}

// heldElsewhere reports whether another node may hold clientID's session. The embedded
// server's account knows every node's takeover subscription (routes carry each one's
// interest), so a look-up in it answers what a request would, without the round trip and
// its reply subscription: that request was most of the extra cost of a clustered CONNECT.
// A subscription still on its way from another node is missed alike by both. With an
// external NATS server there is no local view: the request is made.
func (n *Node) heldElsewhere(clientID string) bool {
	if n.srv == nil {
		return true
	}
	interest := n.srv.GlobalAccount().Interest(sessionSubject(clientID))
	n.intMu.Lock()
	if n.holds[clientID] != nil {
		interest-- // this node's own, which its request would not reach (no echo)
	}
	n.intMu.Unlock()
	return interest > 0
}
