package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// A persistent session moved by a takeover carries every delivery it is owed, those its old
// node had spilled to the store beyond the memory queue included (issue 12).
func TestClusterTakeoverMovesSpilledDeliveries(t *testing.T) {
	const limit, total = 8, 60 // the memory queue holds 8: most of the 60 wait in the store
	nodes := startCluster(t, 2, "--max-queued-messages", fmt.Sprint(limit))
	a1, a2 := nodes[0].proc.addr, nodes[1].proc.addr

	roamer, _ := connectInbox(t, a1, "spill-roamer", clientOptions{cleanStart: true, expiry: 300})
	roamer.subscribe(t, "sp/#", 1)
	// Node 2 learns of node 1's session before the move: the session's takeover subscription
	// left node 1 before this witness's filter, on the same connection.
	witness, _ := connectInbox(t, a1, "spill-witness", clientOptions{cleanStart: true})
	witness.subscribe(t, "sp-probe", 0)
	probe, _ := connectInbox(t, a2, "spill-probe", clientOptions{cleanStart: true})
	awaitInterest(t, probe, "sp-probe", witness)
	roamer.disconnectNow(t)

	pub, _ := connectInbox(t, a1, "spill-pub", clientOptions{cleanStart: true})
	for i := 0; i < total; i++ {
		pub.publish(t, "sp/x", fmt.Sprintf("s-%d", i), 1, false) // acked: its row committed
	}

	moved, ca := connectInbox(t, a2, "spill-roamer", clientOptions{cleanStart: false, expiry: 300})
	if !ca.SessionPresent {
		t.Fatal("session not present on node 2 after the takeover")
	}
	if !moved.waitUntil(clusterGuard, func(got []received) bool { return len(countPayloads(got)) >= total }) {
		t.Fatalf("the moved session received %d of %d queued messages; node 1 log:\n%s\nnode 2 log:\n%s",
			len(countPayloads(moved.snapshot())), total, nodes[0].proc.log(), nodes[1].proc.log())
	}
	counts := countPayloads(moved.snapshot())
	for i := 0; i < total; i++ {
		if n := counts[fmt.Sprintf("s-%d", i)]; n != 1 {
			t.Errorf("s-%d received %d times", i, n)
		}
	}
	var order []string
	for _, r := range moved.snapshot() {
		order = append(order, r.payload)
	}
	for i := 1; i < len(order); i++ {
		var prev, cur int
		fmt.Sscanf(order[i-1], "s-%d", &prev)
		fmt.Sscanf(order[i], "s-%d", &cur)
		if cur <= prev {
			t.Errorf("%s arrived after %s", order[i], order[i-1])
			break
		}
	}
}

// disconnectNow ends the inbox's connection with a normal DISCONNECT.
func (in *inbox) disconnectNow(t *testing.T) {
	t.Helper()
	if err := in.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}

// A QoS 1 message acknowledged to its publisher on one node survives the death of the node
// holding its persistent subscriber: the PUBACK waited for that node's commit (issue 12).
func TestClusterAckedMessagesSurviveReceiverKill(t *testing.T) {
	nodes := startCluster(t, 2)
	a1, a2 := nodes[0].proc.addr, nodes[1].proc.addr

	sub, _ := connectInbox(t, a2, "durable-sub", clientOptions{cleanStart: true, expiry: 300})
	sub.subscribe(t, "dur/#", 1)
	pub, _ := connectInbox(t, a1, "durable-pub", clientOptions{cleanStart: true})
	awaitInterest(t, pub, "dur/probe", sub) // node 1 routes dur/# to node 2 and knows its filter
	sub.disconnectNow(t)                    // offline: every message waits in node 2's store

	const total = 200
	for i := 0; i < total; i++ {
		pub.publish(t, "dur/x", fmt.Sprintf("d-%d", i), 1, false) // returns on its PUBACK
	}
	nodes[1].proc.kill() // SIGKILL right after the last PUBACK
	nodes[1].restart(t, nodes)

	back, ca := connectInbox(t, nodes[1].proc.addr, "durable-sub", clientOptions{cleanStart: false, expiry: 300})
	if !ca.SessionPresent {
		t.Fatal("the persistent session did not survive node 2's restart")
	}
	if !back.waitUntil(clusterGuard, func(got []received) bool { return len(countPayloads(got)) >= total }) {
		t.Fatalf("after node 2's SIGKILL and restart its subscriber got %d of %d acknowledged messages",
			len(countPayloads(back.snapshot())), total)
	}
	counts := countPayloads(back.snapshot())
	for i := 0; i < total; i++ {
		if counts[fmt.Sprintf("d-%d", i)] == 0 {
			t.Errorf("acknowledged message d-%d lost", i)
		}
	}
	_ = a2
}

// The wills of a dead node's clients wait for their Will Delay Interval, and a client that
// connects again within it cancels its will (Clean Start 0) or has it published at once
// (Clean Start 1: its session ends) [MQTT-3.1.3-9], on another live node than the one
// publishing the wills.
func TestClusterDeadNodeWillDelay(t *testing.T) {
	nodes := startCluster(t, 3)
	a1, a2, a3 := nodes[0].proc.addr, nodes[1].proc.addr, nodes[2].proc.addr
	sub, _ := connectInbox(t, a1, "wd-sub", clientOptions{cleanStart: true})
	sub.subscribe(t, "wd/#", 1)
	const lateDelay = 2
	willOf := func(id string, delay uint32) clientOptions {
		return clientOptions{cleanStart: true, expiry: 300, willDelay: delay,
			will: &paho.WillMessage{Topic: "wd/" + id, Payload: []byte(id), QoS: 1}}
	}
	late, _ := connectInbox(t, a3, "wd-late", willOf("wd-late", lateDelay))
	back, _ := connectInbox(t, a3, "wd-back", willOf("wd-back", 60))
	clean, _ := connectInbox(t, a3, "wd-clean", willOf("wd-clean", 60))
	for _, c := range []*inbox{late, back, clean} {
		awaitInterest(t, c, "wd/probe", sub) // its will's copy left node 3 before the probe
	}
	// A publisher on node 1 and a subscriber on node 2: a message between them is the barrier
	// that tells node 1's takeover subscriptions (made as it holds the wills) reached node 2.
	barrierSub, _ := connectInbox(t, a2, "wd-barrier-sub", clientOptions{cleanStart: true})
	barrierSub.subscribe(t, "wdb/#", 0)
	barrierPub, _ := connectInbox(t, a1, "wd-barrier-pub", clientOptions{cleanStart: true})
	awaitInterest(t, barrierPub, "wdb/probe", barrierSub)

	nodes[2].proc.kill()
	for _, id := range []string{"wd-late", "wd-back", "wd-clean"} {
		if _, ok := nodes[0].proc.waitLog(`"msg":"cluster: will delayed","node":"node-1","client":"`+id+`"`, clusterGuard); !ok {
			t.Fatalf("node 1 did not hold the will of %s for its delay:\n%s", id, nodes[0].proc.log())
		}
	}
	delayedAt := time.Now()
	// Route traffic from node 1 to node 2 keeps its order, so once a message published on
	// node 1 after the wills were held reaches node 2, node 2 knows node 1's takeover
	// subscriptions; a CONNECT before that is the documented window (docs/cluster.md).
	awaitInterest(t, barrierPub, "wdb/after-verdict", barrierSub)

	// Back on node 2, which asks node 1 (it holds the waiting will) as it would a session.
	connectInbox(t, a2, "wd-back", clientOptions{cleanStart: false, expiry: 300})
	if _, ok := nodes[0].proc.waitLog(`"msg":"cluster: delayed will cancelled: its client connected again","node":"node-1","client":"wd-back"`, clusterGuard); !ok {
		t.Fatalf("the will of wd-back was not cancelled by its reconnection:\n%s", nodes[0].proc.log())
	}
	connectInbox(t, a2, "wd-clean", clientOptions{cleanStart: true})
	if !sub.waitUntil(clusterGuard, hasPayload("wd-clean")) {
		t.Fatal("a clean start did not publish the waiting will of the session it ended")
	}
	if hasPayload("wd-late")(sub.snapshot()) {
		t.Fatalf("wd-late's will arrived before its %d s delay", lateDelay)
	}
	if !sub.waitUntil(clusterGuard, hasPayload("wd-late")) {
		t.Fatal("the delayed will was never published")
	}
	if waited := time.Since(delayedAt); waited < lateDelay*time.Second-100*time.Millisecond {
		t.Fatalf("the will of wd-late came %v after its node was found dead, before its %d s delay", waited, lateDelay)
	}
	// Published after wd-back was cancelled: had its timer survived, it would fire only
	// later (60 s); what proves the cancel is the timer's removal, logged above.
	if hasPayload("wd-back")(sub.snapshot()) {
		t.Fatal("the will of a client that connected again was published")
	}
}

// A client that connects again elsewhere before its dead node is found dead (the failure
// timeout) has its delayed will cancelled when the verdict comes [MQTT-3.1.3-9].
func TestClusterWillCancelledByEarlyReconnect(t *testing.T) {
	nodes := startCluster(t, 3)
	a1, a2, a3 := nodes[0].proc.addr, nodes[1].proc.addr, nodes[2].proc.addr
	sub, _ := connectInbox(t, a1, "we-sub", clientOptions{cleanStart: true})
	sub.subscribe(t, "we/#", 1)
	early, _ := connectInbox(t, a3, "we-early", clientOptions{cleanStart: true, expiry: 300, willDelay: 60,
		will: &paho.WillMessage{Topic: "we/early", Payload: []byte("early"), QoS: 1}})
	awaitInterest(t, early, "we/probe", sub) // its will's copy is on node 1

	nodes[2].proc.kill()
	connectInbox(t, a2, "we-early", clientOptions{cleanStart: false, expiry: 300}) // within the failure timeout
	if _, ok := nodes[0].proc.waitLog(`"msg":"cluster: node dead","node":"node-1","peer":"node-3"`, clusterGuard); !ok {
		t.Fatalf("node 1 did not find node 3 dead:\n%s", nodes[0].proc.log())
	}
	if _, ok := nodes[0].proc.waitLog(`"msg":"cluster: delayed will cancelled: its client connected again","node":"node-1","client":"we-early"`, clusterGuard); !ok {
		t.Fatalf("the will of a client back on node 2 was not cancelled:\n%s", nodes[0].proc.log())
	}
	if _, delayed := nodes[0].proc.waitLog(`"msg":"cluster: will delayed","node":"node-1","client":"we-early"`, 0); delayed {
		t.Fatal("the will was scheduled although its client was back")
	}
}
