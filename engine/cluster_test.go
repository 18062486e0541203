package engine

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/telemetry"
	"github.com/x0a1b/promptmq/topics"
)

// fakeCluster records what the engine asks of its cluster.
type fakeCluster struct {
	mu        sync.Mutex
	forwarded []forwarded
	interest  map[string]int
	holds     map[string]bool
	wills     map[string][]byte
	claim     []byte
}

type forwarded struct {
	topic           string
	packet          []byte
	retain, cleared bool
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{interest: map[string]int{}, holds: map[string]bool{}, wills: map[string][]byte{}}
}

func (f *fakeCluster) Forward(topic string, _ uint64, packet []byte, _ func(error)) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarded = append(f.forwarded, forwarded{topic, append([]byte(nil), packet...), false, false})
	return false
}

// Retain records the update (before the message's Forward) and applies it, as the only node.
func (f *fakeCluster) Retain(topic string, packet []byte, cleared bool, apply func()) {
	f.mu.Lock()
	f.forwarded = append(f.forwarded, forwarded{topic, append([]byte(nil), packet...), true, cleared})
	f.mu.Unlock()
	apply()
}
func (f *fakeCluster) Subscribe(filter string)   { f.mu.Lock(); f.interest[filter]++; f.mu.Unlock() }
func (f *fakeCluster) Unsubscribe(filter string) { f.mu.Lock(); f.interest[filter]--; f.mu.Unlock() }
func (f *fakeCluster) Claim(string, bool) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.claim
	f.claim = nil
	return c
}
func (f *fakeCluster) Hold(id string)    { f.mu.Lock(); f.holds[id] = true; f.mu.Unlock() }
func (f *fakeCluster) Release(id string) { f.mu.Lock(); delete(f.holds, id); f.mu.Unlock() }
func (f *fakeCluster) SetWill(id string, p []byte, _ uint32) {
	f.mu.Lock()
	f.wills[id] = append([]byte(nil), p...)
	f.mu.Unlock()
}
func (f *fakeCluster) ClearWill(id string)       { f.mu.Lock(); delete(f.wills, id); f.mu.Unlock() }
func (f *fakeCluster) Leave()                    {}
func (f *fakeCluster) LiveNodes() int            { return 1 }
func (f *fakeCluster) ForwardedMessages() uint64 { return 0 }
func (f *fakeCluster) ForwardedBytes() uint64    { return 0 }
func (f *fakeCluster) ReceivedMessages() uint64  { return 0 }
func (f *fakeCluster) ReceivedBytes() uint64     { return 0 }
func (f *fakeCluster) RouteErrors() uint64       { return 0 }

func (f *fakeCluster) snapshot() []forwarded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]forwarded(nil), f.forwarded...)
}

func testConfig() conf.Config {
	cfg := conf.Default()
	cfg.Server.Bind = "127.0.0.1:0"
	cfg.Storage.DataDir = ""
	cfg.Metrics.Enabled = false
	return cfg
}

func clusteredBroker(t *testing.T) (*Broker, string, *fakeCluster) {
	t.Helper()
	b, err := New(Options{Config: testConfig()})
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeCluster()
	b.AttachCluster(fc)
	return b, serveTestBroker(t, b), fc
}

func TestClusterForwardsAndDeliversRemote(t *testing.T) {
	a, addrA, fa := clusteredBroker(t)
	b, addrB, _ := clusteredBroker(t)
	_ = a

	subscriber := dialRaw(t, addrB, packets.V5)
	subscriber.mustConnect("sub", nil)
	subscriber.subscribe(1, 0, sub("t/#", 2))

	pub := dialRaw(t, addrA, packets.V5)
	pub.mustConnect("pub", func(c *packets.Connect) {
		c.WillFlag, c.WillTopic, c.WillPayload, c.WillQoS = true, []byte("w"), []byte("bye"), 1
	})
	fa.mu.Lock()
	_, hasWill := fa.wills["pub"]
	held := fa.holds["pub"]
	fa.mu.Unlock()
	if !hasWill || !held {
		t.Errorf("after CONNECT: will given %v, session held %v", hasWill, held)
	}
	pub.pub("t/1", 1, 1, "hello")
	var got []forwarded
	eventually(t, 5*time.Second, "forward", func() bool { got = fa.snapshot(); return len(got) == 1 })
	if got[0].topic != "t/1" || got[0].retain {
		t.Fatalf("forwarded %+v", got[0])
	}
	var p packets.Publish
	if err := decodePublish(got[0].packet, &p); err != nil || string(p.Payload) != "hello" || p.QoS != 1 {
		t.Fatalf("forwarded packet decodes to %+v, %v", p, err)
	}
	b.ClusterLocal().DeliverRemote(got[0].packet)
	if m := subscriber.receive(); m.Topic != "t/1" || m.Payload != "hello" || m.QoS != 1 {
		t.Fatalf("remote delivery: %+v", m)
	}
	pub.disconnect(packets.Success)
	eventually(t, 5*time.Second, "will cleared", func() bool {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		_, ok := fa.wills["pub"]
		return !ok
	})
}

func TestClusterSharedGroupsGoThroughTheCluster(t *testing.T) {
	b, addr, fc := clusteredBroker(t)
	m1 := dialRaw(t, addr, packets.V5)
	m1.mustConnect("m1", nil)
	m1.subscribe(1, 0, sub("$share/g/s/#", 1))
	m2 := dialRaw(t, addr, packets.V5)
	m2.mustConnect("m2", nil)
	m2.subscribe(1, 0, sub("$share/g/s/#", 1))
	fc.mu.Lock()
	members := fc.interest["$share/g/s/#"]
	fc.mu.Unlock()
	if members != 2 {
		t.Fatalf("cluster interest in the group: %d, want 2", members)
	}
	pub := dialRaw(t, addr, packets.V5)
	pub.mustConnect("pub", nil)
	pub.pub("s/x", 1, 1, "one")
	pub.pub("s/x", 1, 2, "two")
	got := fc.snapshot()
	if len(got) != 2 {
		t.Fatalf("forwarded %d, want 2", len(got))
	}
	// Clustered, the local router does not pick a member: the message returns through the
	// cluster's queue group, and then goes to one member each time.
	local := b.ClusterLocal()
	local.DeliverShared("$share/g/s/#", got[0].packet)
	local.DeliverShared("$share/g/s/#", got[1].packet)
	a, c := m1.receive(), m2.receive()
	if a.Payload == c.Payload {
		t.Fatalf("both members got %q", a.Payload)
	}
	m1.disconnect(packets.Success)
	m2.disconnect(packets.Success)
	eventually(t, 5*time.Second, "interest released", func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.interest["$share/g/s/#"] == 0
	})
}

func TestClusterSessionMovesBetweenBrokers(t *testing.T) {
	a, addrA, _ := clusteredBroker(t)
	b, addrB, fb := clusteredBroker(t)
	c := dialRaw(t, addrA, packets.V5)
	c.mustConnect("mover", func(p *packets.Connect) {
		p.CleanStart = false
		p.Properties.Set(packets.PropSessionExpiry)
		p.Properties.SessionExpiry = 300
	})
	c.subscribe(1, 7, sub("m/#", 1))
	c.disconnect(packets.Success)
	pub := dialRaw(t, addrA, packets.V5)
	pub.mustConnect("pub", nil)
	pub.pub("m/1", 1, 1, "queued-1")
	pub.pub("m/2", 0, 0, "queued-0")

	state := a.ClusterLocal().TakeOver("mover", true)
	if state == nil {
		t.Fatal("no state exported")
	}
	if a.subscribed("mover", "m/#") {
		t.Fatal("the old broker kept the session")
	}
	fb.mu.Lock()
	fb.claim = state
	fb.mu.Unlock()
	n := dialRaw(t, addrB, packets.V5)
	ca := n.mustConnect("mover", func(p *packets.Connect) {
		p.CleanStart = false
		p.Properties.Set(packets.PropSessionExpiry)
		p.Properties.SessionExpiry = 300
	})
	if !ca.SessionPresent {
		t.Fatal("moved session not present")
	}
	if m := n.receive(); m.Payload != "queued-1" || m.QoS != 1 {
		t.Fatalf("first moved message %+v", m)
	}
	fb.mu.Lock()
	interest := fb.interest["m/#"]
	fb.mu.Unlock()
	if !b.subscribed("mover", "m/#") || interest != 1 {
		t.Fatal("moved subscription not installed")
	}
}

func TestDropShared(t *testing.T) {
	m := topics.Matches{Deliveries: []topics.Delivery{{Client: 1}, {Client: 2, Shared: true}, {Client: 3}}}
	dropShared(&m)
	if len(m.Deliveries) != 2 || m.Deliveries[0].Client != 1 || m.Deliveries[1].Client != 3 {
		t.Fatalf("dropShared kept %+v", m.Deliveries)
	}
}

func TestSubOptionsPacking(t *testing.T) {
	for qos := byte(0); qos <= 2; qos++ {
		for rh := byte(0); rh <= 2; rh++ {
			o := topics.SubOptions{QoS: qos, NoLocal: qos == 1, RetainAsPublished: rh == 1, RetainHandling: rh}
			if got := unpackOptions(packOptions(o)); got != o {
				t.Errorf("%+v -> %+v", o, got)
			}
		}
	}
}

func BenchmarkClusterForwardEncode(b *testing.B) {
	br, err := New(Options{Config: testConfig()})
	if err != nil {
		b.Fatal(err)
	}
	fc := &nullCluster{}
	br.AttachCluster(fc)
	p := packets.Publish{Version: packets.V5, QoS: 1, Topic: []byte("bench/topic"), Payload: make([]byte, 64)}
	msg := br.messages.Get(&p, p.Topic, 0, now(), 0)
	b.ReportAllocs()
	for b.Loop() {
		br.forward(msg, nil)
	}
	msg.Release()
}

// nullCluster drops everything, to measure the engine's side alone.
type nullCluster struct{ fakeCluster }

func (*nullCluster) Forward(string, uint64, []byte, func(error)) bool { return false }
func (*nullCluster) Retain(_ string, _ []byte, _ bool, apply func())  { apply() }

func TestClusterMetricsRegistered(t *testing.T) {
	b, err := New(Options{Config: testConfig()})
	if err != nil {
		t.Fatal(err)
	}
	b.AttachCluster(newFakeCluster())
	reg := telemetry.NewRegistry()
	b.Instrument(reg)
	var out strings.Builder
	if err := reg.WritePrometheus(&out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"promptmq_cluster_nodes 1", "promptmq_cluster_forwarded_messages_total",
		"promptmq_cluster_forwarded_bytes_total", "promptmq_cluster_received_messages_total",
		"promptmq_cluster_received_bytes_total", "promptmq_cluster_route_errors_total"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

// A retained PUBLISH accepted here goes to the cluster's retained rule, which applies it to the
// index; the same packet forwarded by another node reaches subscribers (flag kept only for
// Retain As Published) and leaves the index alone: that node's update comes through
// ApplyRetained, decided by last writer.
func TestClusterRetainedOnlyThroughTheRule(t *testing.T) {
	a, addrA, fa := clusteredBroker(t)
	b, addrB, _ := clusteredBroker(t)
	pub := dialRaw(t, addrA, packets.V5)
	pub.mustConnect("pub", nil)
	pub.publish(&packets.Publish{Topic: []byte("ret/1"), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("set-here")})
	got := fa.snapshot()
	if len(got) != 2 || !got[0].retain || got[0].cleared || got[1].retain || got[0].topic != "ret/1" {
		t.Fatalf("forwarded %+v, want the retained update then the message", got)
	}
	if m, ok := a.retained.Get("ret/1"); !ok || string(m.Payload) != "set-here" {
		t.Fatalf("origin's retained index: %v, %v", m, ok)
	}

	watcher := dialRaw(t, addrB, packets.V5)
	watcher.mustConnect("watcher", nil)
	watcher.subscribe(1, 0, packets.Subscription{Filter: []byte("ret/#"), QoS: 1, RetainAsPublished: true})
	b.ClusterLocal().DeliverRemote(got[1].packet)
	if m := watcher.receive(); m.Payload != "set-here" || !m.Retain {
		t.Fatalf("forwarded retained message: %+v, want it with the flag (Retain As Published)", m)
	}
	if _, ok := b.retained.Get("ret/1"); ok {
		t.Fatal("a forwarded PUBLISH set the retained index, bypassing last-writer-wins")
	}
	b.ClusterLocal().ApplyRetained(got[0].packet)
	if m, ok := b.retained.Get("ret/1"); !ok || string(m.Payload) != "set-here" {
		t.Fatalf("ApplyRetained: %v, %v", m, ok)
	}
}

// ackingCluster asks for every QoS 1/2 forward's acknowledgement and hands its callback to
// the test, which plays the other nodes.
type ackingCluster struct {
	*fakeCluster
	waits chan func(error)
}

func (a *ackingCluster) Forward(topic string, publisher uint64, packet []byte, acked func(error)) bool {
	a.fakeCluster.Forward(topic, publisher, packet, nil)
	if acked == nil {
		return false
	}
	a.waits <- acked
	return true
}

// A clustered QoS 1 PUBLISH is acknowledged when the other nodes acknowledged it, and refused
// (0x80) when the cluster reports that one of them did not.
func TestClusterPubackWaitsForOtherNodes(t *testing.T) {
	b, err := New(Options{Config: testConfig()})
	if err != nil {
		t.Fatal(err)
	}
	ac := &ackingCluster{fakeCluster: newFakeCluster(), waits: make(chan func(error), 4)}
	b.AttachCluster(ac)
	pub := dialRaw(t, serveTestBroker(t, b), packets.V5)
	pub.mustConnect("acked-pub", nil)
	pub.send(&packets.Publish{Version: packets.V5, Topic: []byte("a/1"), QoS: 1, PacketID: 1, Payload: []byte("one")})
	pub.send(&packets.Publish{Version: packets.V5, Topic: []byte("a/2"), QoS: 1, PacketID: 2, Payload: []byte("two")})
	pub.send(&packets.Publish{Version: packets.V5, Topic: []byte("a/3"), QoS: 0, Payload: []byte("zero")})
	first, second := <-ac.waits, <-ac.waits
	pub.ping() // its PINGRESP comes first: no PUBACK was queued before the other nodes'

	first(nil)
	if a := pub.expectAck(packets.TypePuback).Ack; a.PacketID != 1 || a.Reason != packets.Success {
		t.Fatalf("first PUBACK %+v, want id 1 success", a)
	}
	second(errors.New("a node did not answer"))
	if a := pub.expectAck(packets.TypePuback).Ack; a.PacketID != 2 || a.Reason != packets.UnspecifiedError {
		t.Fatalf("second PUBACK %+v, want id 2 refused (0x80)", a)
	}
	select {
	case <-ac.waits:
		t.Fatal("a QoS 0 message asked for an acknowledgement")
	default:
	}
	if got := len(ac.snapshot()); got != 3 {
		t.Fatalf("%d messages forwarded, want 3", got)
	}
}
