package cluster

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// fakeLocal records what a node hands to its engine.
type fakeLocal struct {
	mu       sync.Mutex
	remote   [][]byte
	shared   map[string]int
	retained [][]byte
	wills    [][]byte
	taken    []string
	state    []byte            // what TakeOver returns
	held     map[string][]byte // what VisitRetained offers, by topic
	got      chan struct{}
}

func newFakeLocal() *fakeLocal {
	return &fakeLocal{shared: make(map[string]int), got: make(chan struct{}, 1024)}
}

func (f *fakeLocal) note() {
	select {
	case f.got <- struct{}{}:
	default:
	}
}

func (f *fakeLocal) DeliverRemote(p []byte) {
	f.mu.Lock()
	f.remote = append(f.remote, append([]byte(nil), p...))
	f.mu.Unlock()
	f.note()
}

func (f *fakeLocal) DeliverShared(filter string, _ []byte) {
	f.mu.Lock()
	f.shared[filter]++
	f.mu.Unlock()
	f.note()
}

func (f *fakeLocal) ApplyRetained(p []byte) {
	f.mu.Lock()
	f.retained = append(f.retained, p)
	f.mu.Unlock()
	f.note()
}

func (f *fakeLocal) StoreRetained([]byte) {}

func (f *fakeLocal) VisitRetained(fn func(string, []byte)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for topic, p := range f.held {
		fn(topic, p)
	}
}

func (f *fakeLocal) TakeOver(id string, export bool) []byte {
	f.mu.Lock()
	f.taken = append(f.taken, id)
	state := f.state
	f.mu.Unlock()
	f.note()
	if !export {
		return nil
	}
	return state
}

func (f *fakeLocal) PublishWill(p []byte) {
	f.mu.Lock()
	f.wills = append(f.wills, p)
	f.mu.Unlock()
	f.note()
}

// Committed acknowledges at once: the fake stores nothing.
func (f *fakeLocal) Committed(done func(error)) { done(nil) }

func startTestNode(t *testing.T, id string, local Local, peers ...string) *Node {
	t.Helper()
	n, err := Start(Config{NodeID: id, Bind: "127.0.0.1:0", Peers: peers}, local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

func TestInterestIsCountedPerFilter(t *testing.T) {
	n := startTestNode(t, "solo", newFakeLocal())
	base := n.pub.NumSubscriptions()
	n.Subscribe("a/+")
	n.Subscribe("a/+")
	if got := n.pub.NumSubscriptions() - base; got != 1 {
		t.Fatalf("two holders of a/+: %d NATS subscriptions, want 1", got)
	}
	n.Subscribe("a/#") // two subjects: a.> and a
	if got := n.pub.NumSubscriptions() - base; got != 3 {
		t.Fatalf("a/+ and a/#: %d NATS subscriptions, want 3", got)
	}
	n.Unsubscribe("a/+")
	if n.Interest("a/+") != 1 || n.pub.NumSubscriptions()-base != 3 {
		t.Fatal("the first unsubscribe of two holders must keep the NATS subscription")
	}
	n.Unsubscribe("a/+")
	n.Unsubscribe("a/#")
	if got := n.pub.NumSubscriptions() - base; got != 0 || n.Interest("a/+") != 0 {
		t.Fatalf("after the last holders left: %d NATS subscriptions", got)
	}
	n.Subscribe("$share/g/a/b")
	if n.queue.NumSubscriptions() != 1 {
		t.Fatalf("a shared filter: %d queue subscriptions, want 1", n.queue.NumSubscriptions())
	}
	n.Unsubscribe("$share/g/a/b")
	if n.queue.NumSubscriptions() != 0 {
		t.Fatal("the queue subscription outlived its last member")
	}
}

// A node's own shared member is a candidate for its own messages, and overlapping plain
// filters yield one delivery per message.
func TestOneNodeOverlapAndOwnSharedMember(t *testing.T) {
	local := newFakeLocal()
	n := startTestNode(t, "solo", local)
	n.Subscribe("$share/g/x/#")
	if err := n.queue.Flush(); err != nil {
		t.Fatal(err)
	}
	n.Forward("x/y", 1, []byte{0x30, 0}, nil)
	waitFor(t, local, func() bool { return local.shared["$share/g/x/#"] == 1 })
	if len(local.remote) != 0 {
		t.Fatal("a node received its own forwarded message as remote")
	}
}

func waitFor(t *testing.T, f *fakeLocal, ok func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second) // a guard, not a wait for the event
	for {
		f.mu.Lock()
		done := ok()
		f.mu.Unlock()
		if done {
			return
		}
		select {
		case <-f.got:
		case <-time.After(100 * time.Millisecond): // state some fakes change without a note
		case <-deadline:
			t.Fatal("timed out")
		}
	}
}

func TestNodeIDIsKept(t *testing.T) {
	dir := t.TempDir()
	first, err := nodeID("", dir)
	if err != nil || len(first) != 16 {
		t.Fatalf("generated id %q, %v", first, err)
	}
	again, err := nodeID("", dir)
	if err != nil || again != first {
		t.Fatalf("second start read %q, want %q", again, first)
	}
	if got, _ := nodeID("fixed", dir); got != "fixed" {
		t.Fatalf("configured id ignored: %q", got)
	}
	if _, err := nodeID("", ""); err == nil {
		t.Fatal("no id and no data directory accepted")
	}
}

// BenchmarkForward is the sending side of one forwarded message: header, subject (cached per
// topic) and the NATS publish into the connection's buffer.
func BenchmarkForward(b *testing.B) {
	n, err := Start(Config{NodeID: "bench", Bind: "127.0.0.1:0"}, newFakeLocal())
	if err != nil {
		b.Fatal(err)
	}
	defer n.Stop()
	packet := make([]byte, 90)
	b.ReportAllocs()
	for b.Loop() {
		n.Forward("bench/topic/1", 1, packet, nil)
	}
}

func startFastNode(t *testing.T, id string, local Local, peers ...string) *Node {
	t.Helper()
	n, err := Start(Config{NodeID: id, Bind: "127.0.0.1:0", Peers: peers,
		HeartbeatInterval: 100 * time.Millisecond, DeadAfter: 400 * time.Millisecond}, local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// pollUntil re-checks state that has no event to wait on (peer tables fill by heartbeat).
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two and then three nodes in one process: forwarding with overlapping filters, retained
// updates and the snapshot a joining node gets, takeover, and a stopped node's wills.
func TestNodesInProcess(t *testing.T) {
	l1, l2, l3 := newFakeLocal(), newFakeLocal(), newFakeLocal()
	l1.held = map[string][]byte{"old/topic": []byte("old-packet")}
	n1 := startFastNode(t, "n1", l1)
	route := n1.srv.ClusterAddr().String()
	n2 := startFastNode(t, "n2", l2, route)
	pollUntil(t, "two nodes", func() bool { return n1.LiveNodes() == 2 && n2.LiveNodes() == 2 })

	// n2 joined: it asked n1 for its retained messages.
	waitFor(t, l2, func() bool { return len(l2.retained) == 1 && string(l2.retained[0]) == "old-packet" })

	n2.Subscribe("d/+")
	n2.Subscribe("d/#")
	for i := 0; ; i++ { // interest crosses the route asynchronously
		n1.Forward("d/probe", 1, []byte("probe"), nil)
		l2.mu.Lock()
		arrived := len(l2.remote) > 0
		l2.mu.Unlock()
		if arrived {
			break
		}
		select {
		case <-l2.got:
		case <-time.After(50 * time.Millisecond):
		}
		if i > 200 {
			t.Fatal("interest never reached n1")
		}
	}
	n1.Forward("d/1", 1, []byte("one"), nil)
	n1.Forward("d/2", 1, []byte("two"), nil)
	n1.Forward("d/3", 1, []byte("end"), nil)
	waitFor(t, l2, func() bool { return len(l2.remote) > 0 && string(l2.remote[len(l2.remote)-1]) == "end" })
	l2.mu.Lock()
	var order []string
	for _, p := range l2.remote {
		if string(p) != "probe" {
			order = append(order, string(p))
		}
	}
	l2.mu.Unlock()
	if strings.Join(order, " ") != "one two end" {
		t.Errorf("two overlapping filters, three messages: got %q", order)
	}

	// A retained update reaches every node, with no interest needed; an older one loses.
	n1.Retain("r/a", []byte("r-a"), false, nil)
	waitFor(t, l2, func() bool { return len(l2.retained) == 2 })
	stale := appendRetained(nil, "n0", "r/a", version{at: 1, origin: "n0"}, []byte("stale"))
	if err := n1.pub.Publish(retainedSubj, stale); err != nil {
		t.Fatal(err)
	}
	n1.Retain("r/b", []byte("r-b"), false, nil) // after the stale one on the same connection
	waitFor(t, l2, func() bool { return len(l2.retained) == 3 })
	l2.mu.Lock()
	if string(l2.retained[2]) != "r-b" {
		t.Errorf("a stale retained update was applied: %q", l2.retained)
	}
	l2.mu.Unlock()

	// Takeover: the holder answers with its state.
	l2.state = []byte("session-state")
	n2.Hold("roamer")
	var state []byte
	pollUntil(t, "claim answered", func() bool { state = n1.Claim("roamer", false); return state != nil })
	if string(state) != "session-state" {
		t.Fatalf("Claim returned %q", state)
	}
	if n1.Claim("nobody", true) != nil {
		t.Fatal("a client no node holds was claimed")
	}

	// A third node joins and gets n1's retained messages by snapshot.
	n3 := startFastNode(t, "n3", l3, route)
	pollUntil(t, "three nodes", func() bool { return n1.LiveNodes() == 3 && n3.LiveNodes() == 3 })
	waitFor(t, l3, func() bool {
		for _, p := range l3.retained {
			if string(p) == "old-packet" {
				return true
			}
		}
		return false
	})

	// n3 dies with a client's will: n1, the lowest live id, publishes it; n2 does not.
	n3.SetWill("doomed", []byte("will-packet"), 0)
	n3.SetWill("left", []byte("other"), 0)
	n3.ClearWill("left")
	n3.Forward("sync", 1, []byte("x"), nil) // nothing: just sent after the wills
	pollUntil(t, "wills known", func() bool {
		n1.willMu.Lock()
		defer n1.willMu.Unlock()
		return len(n1.wills[willKey("n3", n3.incarnation)]) == 1
	})
	n3.Stop()
	waitFor(t, l1, func() bool { return len(l1.wills) == 1 && string(l1.wills[0]) == "will-packet" })
	pollUntil(t, "n3 dead on n2", func() bool { return n2.LiveNodes() == 2 })
	l2.mu.Lock()
	if len(l2.wills) != 0 {
		t.Errorf("n2 published a will too: %q", l2.wills)
	}
	l2.mu.Unlock()
	if n1.RouteErrors() != 0 || n2.RouteErrors() != 0 {
		t.Errorf("route errors: n1 %d, n2 %d", n1.RouteErrors(), n2.RouteErrors())
	}
	if n1.ForwardedMessages() == 0 || n2.ReceivedMessages() == 0 || n1.ForwardedBytes() == 0 || n2.ReceivedBytes() == 0 {
		t.Error("counters did not move")
	}
}

// nats-url: a node uses an existing NATS server instead of embedding one.
func TestExternalNATS(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("external NATS server did not start")
	}
	t.Cleanup(srv.Shutdown)
	l1, l2 := newFakeLocal(), newFakeLocal()
	n1, err := Start(Config{NodeID: "e1", NATSURL: srv.ClientURL(), HeartbeatInterval: 100 * time.Millisecond}, l1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n1.Stop)
	n2, err := Start(Config{NodeID: "e2", NATSURL: srv.ClientURL(), HeartbeatInterval: 100 * time.Millisecond}, l2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n2.Stop)
	if n1.srv != nil || n2.srv != nil {
		t.Fatal("a node embedded a server although nats-url was set")
	}
	n2.Subscribe("x/#")
	if err := n2.pub.Flush(); err != nil { // one server: the subscription is known once flushed
		t.Fatal(err)
	}
	n1.Forward("x/1", 1, []byte("via-external"), nil)
	waitFor(t, l2, func() bool { return len(l2.remote) == 1 && string(l2.remote[0]) == "via-external" })
	pollUntil(t, "peers by heartbeat", func() bool { return n1.LiveNodes() == 2 })
}

// countingLocal counts deliveries and keeps nothing: the receiving side's cost alone.
type countingLocal struct {
	fakeLocal
	delivered int
}

func (c *countingLocal) DeliverRemote([]byte) { c.delivered++ }

// BenchmarkReceiveBatch is the receiving side of one forwarded message in a batch of 100
// (64-byte payloads): header, dedupe, frame split, hand-off. 0 allocs per batch.
func BenchmarkReceiveBatch(b *testing.B) {
	local := &countingLocal{}
	n := &Node{local: local}
	var bs batches
	packet := make([]byte, 90)
	var batch *batch
	for range 100 {
		batch, _ = bs.add("pmq.m.bench", "origin", 1, packet)
	}
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		binary.BigEndian.PutUint64(batch.buf[batch.seqAt:], seq)
		n.receive(nil, batch.buf)
	}
	if local.delivered != 100*int(seq) {
		b.Fatalf("delivered %d of %d", local.delivered, 100*seq)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(local.delivered), "ns/msg")
}

// A CONNECT of a client no other node holds sends no takeover request: the embedded server's
// view of the subscriptions answers, this node's own hold not counted.
func TestClaimWithoutHolderSendsNothing(t *testing.T) {
	n := startTestNode(t, "solo", newFakeLocal())
	before := n.pub.Stats().OutMsgs
	if n.Claim("new-client", false) != nil {
		t.Fatal("a client nobody holds was claimed")
	}
	n.Hold("mine")
	if n.Claim("mine", false) != nil {
		t.Fatal("this node's own session was claimed from itself")
	}
	if sent := n.pub.Stats().OutMsgs - before; sent != 0 {
		t.Fatalf("%d messages sent for claims no other node could answer", sent)
	}
}

// TestBatchesKeepPublisherOrder: frames go out as the open batches, oldest first, so a
// publisher's frame that would join a batch older than the one with its latest frame must
// first send what is open; a publisher that keeps to its topic never forces a send.
func TestBatchesKeepPublisherOrder(t *testing.T) {
	type step struct {
		subject   string
		publisher uint64
		frame     string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"alternating topics", []step{{"a", 1, "1"}, {"b", 1, "2"}, {"a", 1, "3"}, {"b", 1, "4"}}},
		{"two publishers each on its topic", []step{{"a", 1, "1"}, {"b", 2, "x"}, {"a", 1, "2"}, {"b", 2, "y"}, {"a", 1, "3"}}},
		{"one publisher, other publisher between", []step{{"a", 1, "1"}, {"b", 2, "x"}, {"b", 1, "2"}, {"a", 1, "3"}, {"a", 2, "y"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bs batches
			var sent [][]byte // frames in the order they reach a peer
			sends := 0
			flush := func() {
				for _, b := range bs.open {
					sent = append(sent, splitFrames(t, b)...)
				}
				bs.reset()
				sends++
			}
			for _, st := range tt.steps {
				if bs.conflicts(st.subject, st.publisher) {
					flush()
				}
				bs.add(st.subject, "origin", st.publisher, []byte(strconv.FormatUint(st.publisher, 10)+st.frame))
			}
			flush()
			last := map[byte]string{}
			for _, f := range sent {
				pub, frame := f[0], string(f[1:])
				if frame <= last[pub] {
					t.Fatalf("publisher %c: frame %q after %q (sent %q)", pub, frame, last[pub], sent)
				}
				last[pub] = frame
			}
			if tt.name == "two publishers each on its topic" && sends != 1 {
				t.Fatalf("%d sends, want 1: publishers keeping to their topics batch fully", sends)
			}
		})
	}
}

// splitFrames returns the frames of batch b, as a receiving node sees them.
func splitFrames(t *testing.T, b *batch) [][]byte {
	t.Helper()
	var frames [][]byte
	rest := b.buf[b.seqAt+8:]
	for len(rest) > 0 {
		size, n := binary.Uvarint(rest)
		if n <= 0 || uint64(len(rest)-n) < size {
			t.Fatalf("bad frame at %d", len(b.buf)-len(rest))
		}
		frames = append(frames, append([]byte(nil), rest[n:n+int(size)]...))
		rest = rest[n+int(size):]
	}
	return frames
}
