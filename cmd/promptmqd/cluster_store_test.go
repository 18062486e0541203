package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/persist"
)

// A publish with durable effects crosses to other nodes only once its rows committed, and never
// when they failed: the publisher is refused with 0x80 and no node delivers the message. The
// failure is a trigger added to node 1's database while it is stopped (as in
// TestRefusedWritesAreNotForwarded); node 1 holds an offline durable subscriber to refused/#
// and kept/#, so a QoS 1 publish there needs a delivery row.
func TestClusterRefusedPublishIsNotForwarded(t *testing.T) {
	nodes := startCluster(t, 2)
	leaveDurableSubscriber(t, nodes[0].proc.addr, "offline-subscriber", "refused/#", "kept/#")
	if err := nodes[0].proc.stop(); err != nil {
		t.Fatal(err)
	}
	injectWriteFailures(t, filepath.Join(nodes[0].dataDir, persist.DatabaseFile),
		`CREATE TRIGGER fail_delivery BEFORE INSERT ON deliveries WHEN NEW.topic LIKE 'refused/%'
			BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;`)
	nodes[0].restart(t, nodes)
	a1, a2 := nodes[0].proc.addr, nodes[1].proc.addr

	remote, _ := connectInbox(t, a2, "remote-subscriber", clientOptions{cleanStart: true})
	remote.subscribe(t, "refused/#", 1)
	remote.subscribe(t, "kept/#", 1)
	probe, _ := connectInbox(t, a1, "prober", clientOptions{cleanStart: true})
	awaitInterest(t, probe, "kept/probe", remote) // QoS 0: no row, so no failure

	pub, err := dialMQTT(a1, "publisher", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.disconnect()
	if r := pub.publishOne(t, "refused/1"); r != packets.UnspecifiedError {
		t.Fatalf("publish whose delivery row failed: reason %v, want 0x80", r)
	}
	if r := pub.publishOne(t, "kept/1"); r != packets.Success {
		t.Fatalf("publish after the failure: reason %v", r)
	}
	// A QoS 0 marker on the refused topic leaves node 1 after the refusal, on the same
	// subject: had the refused message been forwarded, it would arrive before the marker.
	probe.publish(t, "refused/1", "marker", 0, false)
	if !remote.waitUntil(clusterGuard, hasPayload("marker")) || !remote.waitUntil(clusterGuard, func(got []received) bool {
		for _, r := range got {
			if r.topic == "kept/1" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("node 2 did not get the marker and kept/1: %v", remote.snapshot())
	}
	for _, r := range remote.snapshot() {
		if r.topic == "refused/1" && r.payload != "marker" {
			t.Fatalf("node 2 received the refused publish: %+v", r)
		}
	}
}

// Two nodes set the same retained topic at the same time while each has a subscriber to it,
// so each node also receives the other's PUBLISH as a forwarded message. Both nodes end with
// the same retained message: the forwarded PUBLISH does not touch the retained index, and
// local and remote updates are decided by one last-writer-wins rule.
func TestClusterRetainedLastWriterWins(t *testing.T) {
	nodes := startCluster(t, 2)
	a1, a2 := nodes[0].proc.addr, nodes[1].proc.addr
	w1, _ := connectInbox(t, a1, "watch-1", clientOptions{cleanStart: true})
	w1.subscribe(t, "lww/#", 0)
	w2, _ := connectInbox(t, a2, "watch-2", clientOptions{cleanStart: true})
	w2.subscribe(t, "lww/#", 0)
	p1, _ := connectInbox(t, a1, "setter-1", clientOptions{cleanStart: true})
	p2, _ := connectInbox(t, a2, "setter-2", clientOptions{cleanStart: true})
	awaitInterest(t, p1, "lww/probe", w2)
	awaitInterest(t, p2, "lww/probe", w1)

	const rounds = 300
	for i := range rounds {
		p1.publish(t, "lww/t", fmt.Sprintf("n1-%d", i), 0, true)
		p2.publish(t, "lww/t", fmt.Sprintf("n2-%d", i), 0, true)
	}
	// Each setter's last update, seen by both watchers, means every forwarded PUBLISH of the
	// topic was handled on both nodes; the retained markers, set after on each node and
	// seen on the other, mean every retained update was decided there too (one origin's
	// updates arrive in order).
	last1, last2 := fmt.Sprintf("n1-%d", rounds-1), fmt.Sprintf("n2-%d", rounds-1)
	for _, w := range []*inbox{w1, w2} {
		if !w.waitUntil(clusterGuard, hasPayload(last1)) || !w.waitUntil(clusterGuard, hasPayload(last2)) {
			t.Fatal("a watcher did not get both setters' last update")
		}
	}
	p1.publish(t, "lww/m1", "end-1", 1, true)
	p2.publish(t, "lww/m2", "end-2", 1, true)
	// The markers reach the other node through its control loop, after that node's updates
	// of lww/t: a reader that gets both markers as retained messages reads the final lww/t.
	retainedOn := func(addr, node string) string {
		t.Helper()
		deadline := time.Now().Add(clusterGuard)
		for i := 0; ; i++ {
			in, _ := connectInbox(t, addr, fmt.Sprintf("reader-%s-%d", node, i), clientOptions{cleanStart: true})
			in.subscribe(t, "lww/#", 0)
			markers := func(got []received) bool {
				n := 0
				for _, r := range got {
					if r.retain && strings.HasPrefix(r.payload, "end-") {
						n++
					}
				}
				return n == 2
			}
			if in.waitUntil(200*time.Millisecond, markers) {
				// Retained messages come in topic order: lww/t after the markers.
				retainedT := func(got []received) bool {
					for _, r := range got {
						if r.topic == "lww/t" && r.retain {
							return true
						}
					}
					return false
				}
				if !in.waitUntil(clusterGuard, retainedT) {
					t.Fatalf("%s has no retained lww/t: %v", node, in.snapshot())
				}
				for _, r := range in.snapshot() {
					if r.topic == "lww/t" && r.retain {
						return r.payload
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the other node's retained marker never arrived", node)
			}
		}
	}
	got1, got2 := retainedOn(a1, "node-1"), retainedOn(a2, "node-2")
	if got1 != got2 {
		t.Fatalf("the nodes disagree on lww/t: node 1 %q, node 2 %q", got1, got2)
	}
	if !strings.HasSuffix(got1, fmt.Sprintf("-%d", rounds-1)) {
		t.Errorf("retained lww/t is %q, want one of the setters' last updates", got1)
	}
	t.Logf("both nodes retain lww/t = %q", got1)
}
