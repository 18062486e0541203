package cluster

import (
	"sync"
	"testing"
	"time"
)

// fakeLocal records what a node hands to its engine.
type fakeLocal struct {
	mu       sync.Mutex
	remote   [][]byte
	shared   map[string]int
	retained [][]byte
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

func (f *fakeLocal) VisitRetained(func(string, []byte)) {}
func (f *fakeLocal) TakeOver(string, bool) []byte       { return nil }
func (f *fakeLocal) PublishWill([]byte)                 {}

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
	n.Forward("x/y", []byte{0x30, 0}, false, false)
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
		n.Forward("bench/topic/1", packet, false, false)
	}
}
