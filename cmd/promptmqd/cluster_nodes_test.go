package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Cluster acceptance tests (issue 12): promptmqd processes on loopback joined by embedded NATS
// routes. Every wait is on an event (a log line, a received message) with a guard timeout;
// where an event cannot be observed directly (a subscription's interest reaching the other
// nodes), the test publishes probes until one arrives, which is that event.

const clusterGuard = 20 * time.Second

// clusterNode is one promptmqd of a test cluster.
type clusterNode struct {
	id, route, dataDir string
	extra              []string // more flags, the same on every node
	proc               *brokerProc
}

// freeRoutePorts reserves n distinct loopback ports by listening on :0 and closing; a port
// taken again in between makes the node fail to start, which startCluster retries.
func freeRoutePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	return addrs
}

// startCluster starts n nodes with ids node-1..node-n, each routing to all the others, and
// waits until every node has heard every other.
func startCluster(t *testing.T, n int, extra ...string) []*clusterNode {
	t.Helper()
	for attempt := 0; ; attempt++ {
		nodes, ok := tryCluster(t, n, extra)
		if ok {
			return nodes
		}
		for _, node := range nodes {
			if node.proc != nil {
				node.proc.kill()
			}
		}
		if attempt == 2 {
			t.Fatal("cluster did not start")
		}
	}
}

func tryCluster(t *testing.T, n int, extra []string) ([]*clusterNode, bool) {
	routes := freeRoutePorts(t, n)
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		nodes[i] = &clusterNode{id: fmt.Sprintf("node-%d", i+1), route: routes[i], dataDir: t.TempDir(), extra: extra}
	}
	for _, node := range nodes {
		node.proc = launchBroker(t, "127.0.0.1:0", node.args(nodes)...)
	}
	for _, node := range nodes {
		if !node.waitListening() {
			t.Logf("%s did not start:\n%s", node.id, node.proc.log())
			return nodes, false
		}
	}
	for _, node := range nodes {
		for _, other := range nodes {
			if other != node && !node.waitJoined(other.id) {
				t.Fatalf("%s did not hear %s:\n%s", node.id, other.id, node.proc.log())
			}
		}
	}
	return nodes, true
}

func (node *clusterNode) args(all []*clusterNode) []string {
	var peers []string
	for _, other := range all {
		if other != node {
			peers = append(peers, other.route)
		}
	}
	args := append(durableArgs(node.dataDir), "--cluster-enabled", "--cluster-node-id", node.id,
		"--cluster-bind", node.route, "--cluster-peers", strings.Join(peers, ","))
	return append(args, node.extra...)
}

func (node *clusterNode) waitListening() bool {
	line, ok := node.proc.waitLog(`"msg":"listening"`, startTimeout)
	if !ok {
		return false
	}
	i := strings.Index(line, `"addr":"`)
	if i < 0 {
		return false
	}
	rest := line[i+len(`"addr":"`):]
	node.proc.addr = rest[:strings.IndexByte(rest, '"')]
	return true
}

// waitJoined waits for the log line saying node heard peer (a new incarnation of it included).
func (node *clusterNode) waitJoined(peer string) bool {
	_, ok := node.proc.waitLog(`"msg":"cluster: node joined","node":"`+node.id+`","peer":"`+peer+`"`, clusterGuard)
	return ok
}

// restart starts the node again on its data directory and route port.
func (node *clusterNode) restart(t *testing.T, all []*clusterNode) {
	node.proc = launchBroker(t, "127.0.0.1:0", node.args(all)...)
	if !node.waitListening() {
		t.Fatalf("%s did not restart:\n%s", node.id, node.proc.log())
	}
}

// inbox is a paho.golang 5.0 client that records what it receives.
type inbox struct {
	c          *paho.Client
	mu         sync.Mutex
	got        []received
	wake       chan struct{}
	disconnect chan byte // reason of a DISCONNECT from the server
}

type received struct {
	topic, payload string
	qos            byte
	retain         bool
}

type clientOptions struct {
	cleanStart bool
	expiry     uint32
	will       *paho.WillMessage
	willDelay  uint32 // seconds
}

func connectInbox(t *testing.T, addr, id string, opts clientOptions) (*inbox, *paho.Connack) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, rawTimeout)
	if err != nil {
		t.Fatal(err)
	}
	in := &inbox{wake: make(chan struct{}, 1), disconnect: make(chan byte, 1)}
	in.c = paho.NewClient(paho.ClientConfig{Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			in.mu.Lock()
			in.got = append(in.got, received{p.Packet.Topic, string(p.Packet.Payload), p.Packet.QoS, p.Packet.Retain})
			in.mu.Unlock()
			select {
			case in.wake <- struct{}{}:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case in.disconnect <- d.ReasonCode:
			default:
			}
		},
		OnClientError: func(error) {},
	})
	cp := &paho.Connect{ClientID: id, CleanStart: opts.cleanStart, KeepAlive: 60, WillMessage: opts.will}
	if opts.expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &opts.expiry}
	}
	if opts.willDelay > 0 {
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &opts.willDelay}
	}
	ctx, cancel := context.WithTimeout(context.Background(), rawTimeout)
	defer cancel()
	ca, err := in.c.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	t.Cleanup(func() { in.c.Disconnect(&paho.Disconnect{}) })
	return in, ca
}

func (in *inbox) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rawTimeout)
	defer cancel()
	if _, err := in.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

func (in *inbox) publish(t *testing.T, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rawTimeout)
	defer cancel()
	if _, err := in.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// waitUntil waits until ok holds for what the inbox received, or the guard passes.
func (in *inbox) waitUntil(guard time.Duration, ok func([]received) bool) bool {
	deadline := time.After(guard) // a guard against a lost message, not a wait for an event
	for {
		in.mu.Lock()
		done := ok(in.got)
		in.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-in.wake:
		case <-deadline:
			return false
		}
	}
}

func (in *inbox) snapshot() []received {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]received(nil), in.got...)
}

func hasPayload(payload string) func([]received) bool {
	return func(got []received) bool {
		for _, r := range got {
			if r.payload == payload {
				return true
			}
		}
		return false
	}
}

// awaitInterest publishes probes from pub on topic until every inbox has one: then the
// subscriptions behind them are known on pub's node.
func awaitInterest(t *testing.T, pub *inbox, topic string, subs ...*inbox) {
	t.Helper()
	deadline := time.Now().Add(clusterGuard)
	for i := 0; ; i++ {
		probe := fmt.Sprintf("probe-%d", i)
		pub.publish(t, topic, probe, 0, false)
		all := true
		for _, s := range subs {
			all = all && s.waitUntil(100*time.Millisecond, hasPayload(probe))
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions on %s never became known to the publisher's node", topic)
		}
	}
}

// countPayloads counts the non-probe payloads received.
func countPayloads(got []received) map[string]int {
	counts := make(map[string]int)
	for _, r := range got {
		if !strings.HasPrefix(r.payload, "probe-") {
			counts[r.payload]++
		}
	}
	return counts
}

func TestClusterThreeNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	a1, a2, a3 := nodes[0].proc.addr, nodes[1].proc.addr, nodes[2].proc.addr

	t.Run("routing QoS 0/1/2 exactly once", func(t *testing.T) {
		pub, _ := connectInbox(t, a1, "pub-1", clientOptions{cleanStart: true})
		sub2, _ := connectInbox(t, a2, "sub-2", clientOptions{cleanStart: true})
		sub2.subscribe(t, "r/#", 2)
		sub2.subscribe(t, "r/+", 2) // overlapping: still one copy per message
		sub3, _ := connectInbox(t, a3, "sub-3", clientOptions{cleanStart: true})
		sub3.subscribe(t, "r/+", 1)
		awaitInterest(t, pub, "r/x", sub2, sub3)
		const each = 100
		for qos := byte(0); qos <= 2; qos++ {
			for i := 0; i < each; i++ {
				pub.publish(t, "r/x", fmt.Sprintf("q%d-%d", qos, i), qos, false)
			}
		}
		pub.publish(t, "r/x", "end", 1, false) // one publisher's order: everything before it arrived
		for _, s := range []struct {
			in     *inbox
			maxQoS byte
		}{{sub2, 2}, {sub3, 1}} {
			if !s.in.waitUntil(clusterGuard, hasPayload("end")) {
				t.Fatalf("end marker not received")
			}
			got := s.in.snapshot()
			counts := countPayloads(got)
			// One publisher's order survives the hop [MQTT-4.6.0-6]: its messages arrive in the
			// order it sent them (each one once, checked below).
			var order []string
			for _, r := range got {
				if !strings.HasPrefix(r.payload, "probe-") {
					order = append(order, r.payload)
				}
			}
			for i := 1; i < len(order); i++ {
				if publishIndex(order[i]) <= publishIndex(order[i-1]) {
					t.Errorf("%s arrived after %s", order[i], order[i-1])
					break
				}
			}
			for qos := byte(0); qos <= 2; qos++ {
				for i := 0; i < each; i++ {
					if n := counts[fmt.Sprintf("q%d-%d", qos, i)]; n != 1 {
						t.Errorf("q%d-%d received %d times", qos, i, n)
					}
				}
			}
			for _, r := range got {
				var q byte
				if _, err := fmt.Sscanf(r.payload, "q%d-", &q); err == nil && r.qos != min(q, s.maxQoS) {
					t.Errorf("%s arrived at QoS %d, want %d", r.payload, r.qos, min(q, s.maxQoS))
				}
			}
		}
	})

	t.Run("shared group across nodes gets each message once", func(t *testing.T) {
		pub, _ := connectInbox(t, a1, "share-pub", clientOptions{cleanStart: true})
		m2, _ := connectInbox(t, a2, "share-m2", clientOptions{cleanStart: true})
		m3, _ := connectInbox(t, a3, "share-m3", clientOptions{cleanStart: true})
		m2.subscribe(t, "$share/g/s/#", 1)
		m3.subscribe(t, "$share/g/s/#", 1)
		// Interest: a plain subscriber beside each member shows the node's subscriptions arrived.
		w2, _ := connectInbox(t, a2, "share-w2", clientOptions{cleanStart: true})
		w2.subscribe(t, "s/probe", 0)
		w3, _ := connectInbox(t, a3, "share-w3", clientOptions{cleanStart: true})
		w3.subscribe(t, "s/probe", 0)
		awaitInterest(t, pub, "s/probe", w2, w3)
		const total = 1000
		for i := 0; i < total; i++ {
			pub.publish(t, "s/x", fmt.Sprintf("m-%d", i), 1, false)
		}
		counted := func() (map[string]int, int) {
			c2, c3 := countPayloads(m2.snapshot()), countPayloads(m3.snapshot())
			sum := make(map[string]int)
			for k, v := range c2 {
				sum[k] += v
			}
			for k, v := range c3 {
				sum[k] += v
			}
			n := 0
			for _, v := range sum {
				n += v
			}
			return sum, n
		}
		deadline := time.After(clusterGuard)
		for {
			_, n := counted()
			if n >= total {
				break
			}
			select {
			case <-m2.wake:
			case <-m3.wake:
			case <-deadline:
				t.Fatalf("shared group received %d of %d", n, total)
			}
		}
		sum, n := counted()
		for i := 0; i < total; i++ {
			if c := sum[fmt.Sprintf("m-%d", i)]; c != 1 {
				t.Errorf("m-%d received %d times", i, c)
			}
		}
		t.Logf("shared group: %d messages, node 2 member %d, node 3 member %d", n, len(countPayloads(m2.snapshot())), len(countPayloads(m3.snapshot())))
	})

	t.Run("retained set on node 3 reaches node 1, clearing too", func(t *testing.T) {
		pub, _ := connectInbox(t, a3, "ret-pub", clientOptions{cleanStart: true})
		pub.publish(t, "ret/a", "kept", 1, true)
		pub.publish(t, "ret/b", "marker-1", 1, true)
		// The retained update travels apart from the PUBACK: a new subscriber tries until
		// the later marker is there, which the node applies after the first.
		retainedOn := func(addr, marker string) []received {
			deadline := time.Now().Add(clusterGuard)
			for i := 0; ; i++ {
				in, _ := connectInbox(t, addr, fmt.Sprintf("ret-sub-%s-%d", marker, i), clientOptions{cleanStart: true})
				in.subscribe(t, "ret/#", 1)
				if in.waitUntil(200*time.Millisecond, hasPayload(marker)) {
					in.waitUntil(200*time.Millisecond, func(got []received) bool { return len(got) >= 2 })
					return in.snapshot()
				}
				if time.Now().After(deadline) {
					t.Fatalf("retained marker %s never reached %s", marker, addr)
				}
			}
		}
		if got := retainedOn(a1, "marker-1"); !hasPayload("kept")(got) {
			t.Fatalf("node 1 subscriber got %v, want the retained message set on node 3", got)
		}
		pub.publish(t, "ret/a", "", 1, true) // clears ret/a cluster-wide
		pub.publish(t, "ret/b", "marker-2", 1, true)
		if got := retainedOn(a2, "marker-2"); hasPayload("kept")(got) {
			t.Fatalf("node 2 still has the cleared retained message: %v", got)
		}
	})

	t.Run("client id taken over across nodes", func(t *testing.T) {
		old, _ := connectInbox(t, a1, "roamer", clientOptions{cleanStart: true, expiry: 300})
		old.subscribe(t, "tk/#", 1)
		probe, _ := connectInbox(t, a2, "tk-probe", clientOptions{cleanStart: true})
		awaitInterest(t, probe, "tk/probe", old) // node 2 knows node 1's interests, its session included
		fresh, ca := connectInbox(t, a2, "roamer", clientOptions{cleanStart: false, expiry: 300})
		select {
		case code := <-old.disconnect:
			if code != 0x8E {
				t.Fatalf("old connection got DISCONNECT 0x%02X, want 0x8E", code)
			}
		case <-time.After(clusterGuard):
			t.Fatalf("old connection on node 1 was not disconnected; node 1 log:\n%s\nnode 2 log:\n%s", nodes[0].proc.log(), nodes[1].proc.log())
		}
		if !ca.SessionPresent {
			t.Error("session not present on node 2 after takeover")
		}
		pub3, _ := connectInbox(t, a3, "tk-pub", clientOptions{cleanStart: true})
		awaitInterest(t, pub3, "tk/probe", fresh) // the moved subscription works from node 3
		pub3.publish(t, "tk/1", "moved", 1, false)
		if !fresh.waitUntil(clusterGuard, hasPayload("moved")) {
			t.Fatal("the moved session's subscription got nothing")
		}
	})
}

func TestClusterNodeKilled(t *testing.T) {
	nodes := startCluster(t, 3)
	a1, a2, a3 := nodes[0].proc.addr, nodes[1].proc.addr, nodes[2].proc.addr

	sub, _ := connectInbox(t, a1, "kill-sub", clientOptions{cleanStart: true})
	sub.subscribe(t, "k/#", 1)
	sub.subscribe(t, "will/#", 1)
	pub, _ := connectInbox(t, a2, "kill-pub", clientOptions{cleanStart: true})
	doomed, _ := connectInbox(t, a3, "doomed", clientOptions{cleanStart: true,
		will: &paho.WillMessage{Topic: "will/doomed", Payload: []byte("gone"), QoS: 1}})
	awaitInterest(t, pub, "k/probe", sub)
	// The will's copy left node 3 before this message on the same connection: once the message
	// is on node 1, so is the will.
	awaitInterest(t, doomed, "k/probe", sub)

	const before, after = 200, 200
	for i := 0; i < before; i++ {
		pub.publish(t, "k/x", fmt.Sprintf("k-%d", i), 1, false)
	}
	start := time.Now()
	nodes[2].proc.kill()
	for i := before; i < before+after; i++ {
		pub.publish(t, "k/x", fmt.Sprintf("k-%d", i), 1, false)
	}
	if !sub.waitUntil(clusterGuard, func(got []received) bool { return len(countPayloads(got)) >= before+after }) {
		t.Fatalf("after SIGKILL of node 3, node 1 received %d of %d QoS 1 messages", len(countPayloads(sub.snapshot())), before+after)
	}
	counts := countPayloads(sub.snapshot())
	for i := 0; i < before+after; i++ {
		if n := counts[fmt.Sprintf("k-%d", i)]; n != 1 {
			t.Errorf("k-%d received %d times", i, n)
		}
	}
	if !sub.waitUntil(clusterGuard, hasPayload("gone")) {
		t.Fatalf("the will of node 3's client was not published; node 1 log:\n%s", nodes[0].proc.log())
	}
	t.Logf("will published %v after SIGKILL", time.Since(start).Round(time.Millisecond))

	// While node 3 is down a retained message is set; after restart it rejoins and has it.
	pub.publish(t, "rk/1", "while-down", 1, true)
	nodes[2].restart(t, nodes)
	for _, other := range nodes[:2] {
		if !other.waitJoined("node-3") {
			t.Fatalf("%s did not see node 3 rejoin", other.id)
		}
	}
	_ = a3
	deadline := time.Now().Add(clusterGuard)
	for i := 0; ; i++ {
		in, _ := connectInbox(t, nodes[2].proc.addr, fmt.Sprintf("rk-sub-%d", i), clientOptions{cleanStart: true})
		in.subscribe(t, "rk/#", 1)
		if in.waitUntil(200*time.Millisecond, hasPayload("while-down")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted node 3 did not catch up on retained state")
		}
	}
}

// publishIndex is the position of a routing test's payload in its publisher's sequence.
func publishIndex(payload string) int {
	if payload == "end" {
		return 1 << 30
	}
	var qos, i int
	fmt.Sscanf(payload, "q%d-%d", &qos, &i)
	return qos*1000 + i
}
