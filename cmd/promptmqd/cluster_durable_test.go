package main

import (
	"fmt"
	"testing"

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
