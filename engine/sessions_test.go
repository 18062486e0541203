package engine

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/session"
)

func expiring(seconds uint32) func(*packets.Connect) {
	return func(p *packets.Connect) {
		p.Properties.Set(packets.PropSessionExpiry)
		p.Properties.SessionExpiry = seconds
	}
}

// persistent starts a session that outlives the connection: Session Expiry in 5.0, clean
// session 0 in 3.x (on a broker where the id has no session yet).
func persistent(version byte, seconds uint32) func(*packets.Connect) {
	if version != packets.V5 {
		return func(p *packets.Connect) { p.CleanStart = false }
	}
	return expiring(seconds)
}

// resumeAs resumes a session in either version.
func resumeAs(version byte, seconds uint32) func(*packets.Connect) {
	if version != packets.V5 {
		return func(p *packets.Connect) { p.CleanStart = false }
	}
	return resume(seconds)
}

func resume(seconds uint32) func(*packets.Connect) {
	return func(p *packets.Connect) {
		p.CleanStart = false
		expiring(seconds)(p)
	}
}

// TestOfflineQueue: a persistent session receives QoS 1 and 2 while offline (QoS 0 only
// with queue-qos0), in order, with Session Present on return (Paho's
// test_offline_message_queueing, which disconnects right after SUBSCRIBE).
func TestOfflineQueue(t *testing.T) {
	t.Parallel()
	for _, queueQoS0 := range []bool{false, true} {
		for _, version := range []byte{packets.V5, packets.V311} {
			t.Run(fmt.Sprintf("v%d queue-qos0 %v", version, queueQoS0), func(t *testing.T) {
				t.Parallel()
				_, addr := testBroker(t, func(c *conf.Config) { c.MQTT.QueueQoS0 = queueQoS0 })
				a := dialRaw(t, addr, version)
				a.mustConnect("offline", persistent(version, 60))
				// SUBSCRIBE and DISCONNECT in one write, as a hasty client sends them.
				a.write(append((&packets.Subscribe{Version: version, PacketID: 1, Subscriptions: []packets.Subscription{sub("off/#", 2)}}).Append(nil),
					(&packets.Disconnect{Version: version}).Append(nil)...))
				a.expect(packets.TypeSuback)
				a.expectClosed()
				p := dialRaw(t, addr, version)
				p.mustConnect("p", nil)
				p.pub("off/0", 0, 0, "qos 0")
				p.pub("off/1", 1, 1, "qos 1")
				p.pub("off/2", 2, 2, "qos 2")
				a = dialRaw(t, addr, version)
				if ca := a.mustConnect("offline", resumeAs(version, 60)); !ca.SessionPresent {
					t.Fatal("Session Present 0 for a resumed session")
				}
				want := []string{"qos 1", "qos 2"}
				if queueQoS0 {
					want = append([]string{"qos 0"}, want...)
				}
				for _, w := range want {
					if m := a.receive(); m.Payload != w {
						t.Fatalf("got %q, want %q", m.Payload, w)
					}
				}
				a.subscribe(2, 0, sub("marker", 0))
				p.pub("marker", 0, 0, "m")
				expectMarker(t, a.nextPublish())
			})
		}
	}
}

// TestCleanStartAndExpiry: Session Present follows Clean Start and Session Expiry; a
// session whose expiry passed is gone.
func TestCleanStartAndExpiry(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	steps := []struct {
		name        string
		edit        func(*packets.Connect)
		wantPresent bool
	}{
		{"new session", expiring(1), false},
		{"resumed", resume(1), true},
		{"clean start discards", expiring(1), false},
		{"expiry 0 session", resume(0), true},
		{"ended at disconnect with expiry 0", resume(1), false},
	}
	for _, s := range steps {
		c := dialRaw(t, addr, packets.V5)
		if ca := c.mustConnect("cs", s.edit); ca.SessionPresent != s.wantPresent {
			t.Fatalf("%s: Session Present %v, want %v", s.name, ca.SessionPresent, s.wantPresent)
		}
		c.disconnect(packets.NormalDisconnection)
	}
	letTimePass(1200 * time.Millisecond) // the 1 s expiry of the last session passes
	c := dialRaw(t, addr, packets.V5)
	if ca := c.mustConnect("cs", resume(1)); ca.SessionPresent {
		t.Fatal("Session Present 1 after the session expired")
	}
}

// Test311CleanSession: 3.1.1 clean session 0 keeps the session for ever, 1 discards it
// [MQTT-3.1.2-4] [MQTT-3.1.2-6]; Session Present is 0 whenever clean session is 1.
func Test311CleanSession(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	steps := []struct {
		clean, wantPresent bool
	}{{false, false}, {false, true}, {true, false}, {false, false}}
	for i, s := range steps {
		c := dialRaw(t, addr, packets.V311)
		if ca := c.mustConnect("c311", func(p *packets.Connect) { p.CleanStart = s.clean }); ca.SessionPresent != s.wantPresent {
			t.Fatalf("step %d: Session Present %v, want %v", i, ca.SessionPresent, s.wantPresent)
		}
		c.disconnect(packets.NormalDisconnection)
	}
}

// TestDisconnectSessionExpiry: a 5.0 client may change its expiry at DISCONNECT.
func TestDisconnectSessionExpiry(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("dse", expiring(60))
	c.send(&packets.Disconnect{Version: packets.V5, Properties: packets.Properties{Present: 1 << packets.PropSessionExpiry, SessionExpiry: 0}})
	c.expectClosed()
	c = dialRaw(t, addr, packets.V5)
	if ca := c.mustConnect("dse", resume(60)); ca.SessionPresent {
		t.Fatal("session kept although DISCONNECT set its expiry to 0")
	}
}

// TestRedeliveryWithDup: unacknowledged QoS 1 and 2 deliveries are sent again with DUP when
// the session resumes, before anything new, and a released QoS 2 gets its PUBREL again.
func TestRedeliveryWithDup(t *testing.T) {
	t.Parallel()
	for _, version := range []byte{packets.V5, packets.V311} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			t.Parallel()
			_, addr := testBroker(t, nil)
			a := dialRaw(t, addr, version)
			a.mustConnect("redeliver", persistent(version, 60))
			a.subscribe(1, 0, sub("rd/#", 2))
			p := dialRaw(t, addr, version)
			p.mustConnect("p", nil)
			p.pub("rd/1", 1, 1, "one")
			p.pub("rd/2", 2, 2, "two")
			p.pub("rd/3", 2, 3, "three")
			m1, m2, m3 := a.nextPublish(), a.nextPublish(), a.nextPublish()
			if m1.Dup || m2.Dup || m3.Dup {
				t.Fatal("DUP on a first delivery")
			}
			// Acknowledge only the PUBREC of the third, then lose the connection.
			a.send(&packets.Ack{Type: packets.TypePubrec, Version: version, PacketID: m3.PacketID})
			a.expect(packets.TypePubrel)
			a.conn.Close()
			a = dialRaw(t, addr, version)
			a.mustConnect("redeliver", resumeAs(version, 60))
			var resent []message
			for _, want := range []message{m1, m2} {
				m := a.nextPublish()
				if !m.Dup || m.PacketID != want.PacketID || m.Payload != want.Payload || m.QoS != want.QoS {
					t.Fatalf("resent %+v, want %q id %d with DUP", m, want.Payload, want.PacketID)
				}
				resent = append(resent, m)
			}
			if rel := a.expect(packets.TypePubrel).Ack; rel.PacketID != m3.PacketID {
				t.Fatalf("PUBREL %d, want %d", rel.PacketID, m3.PacketID)
			}
			a.send(&packets.Ack{Type: packets.TypePubcomp, Version: version, PacketID: m3.PacketID})
			for _, m := range resent {
				a.ackPublish(m)
			}
			a.subscribe(2, 0, sub("marker", 0))
			p.pub("marker", 0, 0, "m")
			expectMarker(t, a.nextPublish())
		})
	}
}

// TestPacketIDsNeverReused: one delivery stays unacknowledged while 70,000 more pass, so
// the allocator wraps around 65535 and must skip the id still in flight [MQTT-2.2.1-3].
func TestPacketIDsNeverReused(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) { c.MQTT.MaxQueuedMessages = 0 })
	a := dialRaw(t, addr, packets.V5)
	a.mustConnect("ids", nil)
	a.subscribe(1, 0, sub("id", 1))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.pub("id", 1, 1, "held")
	held := a.nextPublish()
	go io.Copy(io.Discard, p.conn) // the publisher's PUBACKs
	const batch, batches = 1000, 70
	for range batches {
		var out []byte
		for i := range batch {
			out = (&packets.Publish{Version: packets.V5, Topic: []byte("id"), Payload: []byte("x"), QoS: 1, PacketID: uint16(i + 2)}).Append(out)
		}
		p.write(out)
		var acks []byte
		for range batch {
			m := a.nextPublish()
			if m.PacketID == 0 || m.PacketID == held.PacketID {
				t.Fatalf("packet id %d given while %d is in flight", m.PacketID, held.PacketID)
			}
			acks = (&packets.Ack{Type: packets.TypePuback, Version: packets.V5, PacketID: m.PacketID}).Append(acks)
		}
		a.write(acks)
	}
}

// TestReceiveMaximumOutbound: the broker never has more unacknowledged QoS 1/2 deliveries to
// a client than its Receive Maximum [MQTT-3.3.4-7]; an ack lets the next one go.
func TestReceiveMaximumOutbound(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	a := dialRaw(t, addr, packets.V5)
	a.mustConnect("rm", func(p *packets.Connect) {
		p.Properties.Set(packets.PropReceiveMaximum)
		p.Properties.ReceiveMaximum = 2
	})
	a.subscribe(1, 0, sub("rm", 1), sub("marker", 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	for i := 1; i <= 4; i++ {
		p.pub("rm", 1, uint16(i), fmt.Sprint(i))
	}
	p.pub("marker", 0, 0, "m")
	m1, m2 := a.nextPublish(), a.nextPublish()
	if m1.Payload != "1" || m2.Payload != "2" {
		t.Fatalf("got %q %q", m1.Payload, m2.Payload)
	}
	// The window is full: nothing more, not even the QoS 0 marker queued behind (order).
	a.ping()
	a.ackPublish(m1)
	if m := a.nextPublish(); m.Payload != "3" {
		t.Fatalf("after one ack got %q, want 3", m.Payload)
	}
}

// TestMessageExpiry: the remaining time is forwarded, and a message that expires while
// queued is dropped and counted.
func TestMessageExpiry(t *testing.T) {
	t.Parallel()
	b, addr := testBroker(t, nil)
	a := dialRaw(t, addr, packets.V5)
	a.mustConnect("me", expiring(60))
	a.subscribe(1, 0, sub("me/#", 1))
	a.disconnect(packets.NormalDisconnection)
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	withExpiry := func(topic string, seconds uint32) *packets.Publish {
		pp := &packets.Publish{Topic: []byte(topic), QoS: 1, PacketID: 1, Payload: []byte(topic)}
		pp.Properties.Set(packets.PropMessageExpiry)
		pp.Properties.MessageExpiry = seconds
		return pp
	}
	p.publish(withExpiry("me/short", 1))
	p.publish(withExpiry("me/long", 100))
	letTimePass(1100 * time.Millisecond)
	before := b.Stats().Dropped[session.DropExpired].Load()
	a = dialRaw(t, addr, packets.V5)
	a.mustConnect("me", resume(60))
	m := a.receive()
	if m.Topic != "me/long" || !m.Props.Has(packets.PropMessageExpiry) || m.Props.MessageExpiry > 99 || m.Props.MessageExpiry < 90 {
		t.Fatalf("got %s with expiry %d, want me/long with 98-99 s left", m.Topic, m.Props.MessageExpiry)
	}
	if got := b.Stats().Dropped[session.DropExpired].Load(); got != before+1 {
		t.Fatalf("expired drops %d, want %d", got, before+1)
	}
}

// TestOfflineQueueBound: past max-queued-messages, QoS 0 is dropped and QoS 1 pushes the
// oldest out; max-queued-bytes bounds by size; every drop is counted by reason.
func TestOfflineQueueBound(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(*conf.Config)
		qos  byte
		send int
		want []string // what the resumed session receives
	}{
		{"messages QoS 1 keeps the newest", func(c *conf.Config) { c.MQTT.MaxQueuedMessages = 3 }, 1, 5, []string{"2", "3", "4"}},
		{"messages QoS 0 keeps the oldest", func(c *conf.Config) { c.MQTT.MaxQueuedMessages = 3; c.MQTT.QueueQoS0 = true }, 0, 5, []string{"0", "1", "2"}},
		{"bytes", func(c *conf.Config) { c.MQTT.MaxQueuedBytes = int64(2 * (len("qb") + 100)) }, 1, 4, []string{"2", "3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, addr := testBroker(t, tc.edit)
			a := dialRaw(t, addr, packets.V5)
			a.mustConnect("qb", expiring(60))
			a.subscribe(1, 0, sub("qb", 1))
			a.disconnect(packets.NormalDisconnection)
			p := dialRaw(t, addr, packets.V5)
			p.mustConnect("p", nil)
			for i := range tc.send {
				payload := fmt.Sprint(i)
				if strings.HasPrefix(tc.name, "bytes") {
					payload += strings.Repeat(" ", 99)
				}
				p.pub("qb", tc.qos, uint16(i+1), payload)
			}
			p.ping() // every publish before it has been routed
			dropped := tc.send - len(tc.want)
			if got := b.Stats().Dropped[session.DropQueueFull].Load(); got != uint64(dropped) {
				t.Fatalf("queue_full drops %d, want %d", got, dropped)
			}
			a = dialRaw(t, addr, packets.V5)
			a.mustConnect("qb", resume(60))
			for _, w := range tc.want {
				if m := a.receive(); strings.TrimSpace(m.Payload) != w {
					t.Fatalf("got %q, want %q", m.Payload, w)
				}
			}
			a.subscribe(2, 0, sub("marker", 0))
			p.pub("marker", 0, 0, "m")
			expectMarker(t, a.nextPublish())
		})
	}
}

// TestSlowSubscriber: a subscriber that stops reading costs only its bounded queue; the
// publisher and a second subscriber go on, and QoS 0 past the bound is dropped and counted.
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	const bound = 100
	b, addr := testBroker(t, func(c *conf.Config) {
		c.MQTT.MaxQueuedMessages = bound
		c.Server.WriteTimeout = 2 * time.Second
	})
	slow := dialRaw(t, addr, packets.V5)
	slow.mustConnect("slow", nil)
	slow.subscribe(1, 0, sub("flood", 0))
	fast := dialRaw(t, addr, packets.V5)
	fast.mustConnect("fast", nil)
	fast.subscribe(1, 0, sub("flood", 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	payload := make([]byte, 10<<10)
	size := int64(len(payload) + len("flood"))
	// Lockstep in rounds smaller than the bound, so the fast subscriber never overflows
	// while the slow one (reading nothing) overflows after the socket buffers fill.
	const rounds, perRound = 40, 50 // 20 MB in all
	for range rounds {
		var out []byte
		for range perRound {
			out = (&packets.Publish{Version: packets.V5, Topic: []byte("flood"), Payload: payload}).Append(out)
		}
		p.write(out)
		for range perRound {
			fast.nextPublish()
		}
		if q := b.memory.Load(); q > 2*bound*size {
			t.Fatalf("queued bytes %d exceed the bounds (%d)", q, 2*bound*size)
		}
	}
	if b.Stats().Dropped[session.DropQueueFull].Load() == 0 {
		t.Fatal("no QoS 0 drop counted for the slow subscriber")
	}
	// The slow subscriber's queue went on; what it could not take was dropped, not held.
	if q := b.memory.Load(); q > bound*size {
		t.Fatalf("queued bytes %d exceed one bound (%d)", q, bound*size)
	}
}

// TestMaxMemory: once queued data reaches max-memory, a 5.0 QoS 1 or 2 publish is refused
// with 0x97 and QoS 0 is dropped (counted); a 3.1.1 publisher, which cannot be refused, is
// disconnected.
func TestMaxMemory(t *testing.T) {
	t.Parallel()
	b, addr := testBroker(t, func(c *conf.Config) { c.MQTT.MaxMemory = 1 })
	holder := dialRaw(t, addr, packets.V5)
	holder.mustConnect("holder", expiring(60))
	holder.subscribe(1, 0, sub("mem", 1))
	holder.disconnect(packets.NormalDisconnection)
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	if rc := p.pub("mem", 1, 1, "fills the queue"); rc != packets.Success {
		t.Fatalf("first publish %v", rc)
	}
	if rc := p.pub("mem", 1, 2, "refused"); rc != packets.QuotaExceeded {
		t.Fatalf("QoS 1 over max-memory: %v, want 0x97", rc)
	}
	if rc := p.pub("mem", 2, 3, "refused"); rc != packets.QuotaExceeded {
		t.Fatalf("QoS 2 over max-memory: %v, want 0x97", rc)
	}
	p.pub("mem", 0, 0, "dropped")
	p.ping()
	if got := b.Stats().Dropped[session.DropMemory].Load(); got != 3 {
		t.Fatalf("max_memory drops %d, want 3", got)
	}
	old := dialRaw(t, addr, packets.V311)
	old.mustConnect("old", nil)
	old.send(&packets.Publish{Version: packets.V311, Topic: []byte("mem"), QoS: 1, PacketID: 1, Payload: []byte("x")})
	old.expectClosed()
	// The session resumes and drains: memory is free again.
	holder = dialRaw(t, addr, packets.V5)
	holder.mustConnect("holder", resume(60))
	if m := holder.receive(); m.Payload != "fills the queue" {
		t.Fatalf("got %q", m.Payload)
	}
	eventually(t, rawWait, "memory released", func() bool { return b.memory.Load() == 0 })
	if rc := p.pub("mem", 1, 4, "accepted again"); rc != packets.Success {
		t.Fatalf("publish after the queue drained: %v", rc)
	}
}
