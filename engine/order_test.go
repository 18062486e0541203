package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

func TestOrderKind(t *testing.T) {
	publish := (&packets.Publish{Version: packets.V5, Topic: []byte("a/b"), Payload: []byte("x")}).Append(nil)
	subscribe := (&packets.Subscribe{Version: packets.V5, PacketID: 1, Subscriptions: []packets.Subscription{sub("a/#", 1)}}).Append(nil)
	unsubscribe := (&packets.Unsubscribe{Version: packets.V5, PacketID: 2, Filters: [][]byte{[]byte("a/#")}}).Append(nil)
	puback := (&packets.Ack{Type: packets.TypePuback, Version: packets.V5, PacketID: 3}).Append(nil)
	ping := []byte{0xC0, 0}
	long := (&packets.Publish{Version: packets.V5, Topic: []byte("a"), Payload: make([]byte, 300)}).Append(nil)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  int
	}{
		{"nothing", nil, orderNeutral},
		{"ping", ping, orderNeutral},
		{"acks", cat(puback, ping, puback), orderNeutral},
		{"publish", publish, orderPublish},
		{"ack then publish", cat(puback, publish), orderPublish},
		{"subscribe", subscribe, orderChanges},
		{"unsubscribe", unsubscribe, orderChanges},
		{"publish then subscribe", cat(publish, subscribe), orderChanges},
		{"partial publish", publish[:3], orderPublish},
		{"publish header only", long[:2], orderPublish}, // two-byte remaining length cut after one
		{"publish then partial subscribe header", cat(publish, subscribe[:1]), orderChanges},
		{"malformed remaining length", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, orderChanges},
	} {
		if got := orderKind(tc.bytes); got != tc.want {
			t.Errorf("%s: orderKind = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestArrivalOrderTurns(t *testing.T) {
	var o arrivalOrder
	o.initOrder()
	first, second, third := o.assign(), o.assign(), o.assign()
	o.waitTurn(first) // nothing before it
	o.finish(second)  // done out of order: low stays at first
	if got := o.low.Load(); got != first {
		t.Fatalf("low = %d after finishing the second, want %d", got, first)
	}
	turn := make(chan struct{})
	go func() {
		o.waitTurn(third)
		close(turn)
	}()
	o.finish(first)
	<-turn
	if got := o.low.Load(); got != third {
		t.Fatalf("low = %d, want %d", got, third)
	}
	o.finish(first) // twice: ignored
	o.finish(third + 10)
	if got := o.low.Load(); got != third {
		t.Fatalf("low = %d after stray finishes, want %d", got, third)
	}
	// A predecessor that never finishes holds a turn up for orderMaxWait, no longer.
	fourth := o.assign()
	o.waitTurn(fourth)
	if o.timeouts.Load() != 1 {
		t.Fatalf("timeouts = %d, want 1", o.timeouts.Load())
	}
	o.finish(third)
	o.finish(fourth)
	if got, want := o.low.Load(), fourth+1; got != want || len(o.done) != 0 {
		t.Fatalf("low = %d with %d pending, want %d and none", got, len(o.done), want)
	}
}

// TestSubscribeBeforeLaterPublish: a SUBSCRIBE that reached the broker before another
// client's PUBLISH takes effect first, even when both arrive while the broker sleeps and
// two cores serve them at once (the Eclipse Paho suite's test_subscribe_options and
// test_request_response do this, about 100 µs apart). Before arrival order was kept, the
// subscriber missed the message in 1 to 3 rounds in 10 on the 2-core VM this was written on,
// where a sleeping broker takes 100-300 µs to wake.
func TestSubscribeBeforeLaterPublish(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("arrival order is kept on Linux only")
	}
	b, addr := testBroker(t, nil)
	if b.order == nil {
		t.Skip("no epoll")
	}
	for _, version := range []byte{packets.V311, packets.V5} {
		for round := range 30 {
			topic := fmt.Sprintf("order/%d/%d", version, round)
			subscriber := dialRaw(t, addr, version)
			subscriber.mustConnect(fmt.Sprintf("order-sub-%d-%d", version, round), nil)
			publisher := dialRaw(t, addr, version)
			publisher.mustConnect(fmt.Sprintf("order-pub-%d-%d", version, round), nil)
			subscribe := (&packets.Subscribe{Version: version, PacketID: 1, Subscriptions: []packets.Subscription{sub(topic, 0)}}).Append(nil)
			publish := (&packets.Publish{Version: version, Topic: []byte(topic), Payload: []byte("after the subscribe")}).Append(nil)
			subscriber.write(subscribe)
			// A client library's pace between two calls. Without it the two segments can
			// reach their sockets in either order: loopback hands a segment to the
			// receiving socket from a softirq, which the kernel may defer.
			for start := time.Now(); time.Since(start) < 200*time.Microsecond; {
			}
			publisher.write(publish)
			subscriber.expect(packets.TypeSuback)
			if m := subscriber.nextPublish(); m.Topic != topic {
				t.Fatalf("version %d round %d: got %q, want a message on %q", version, round, m.Topic, topic)
			}
			subscriber.conn.Close()
			publisher.conn.Close()
		}
	}
}
