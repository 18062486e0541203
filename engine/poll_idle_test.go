package engine

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// parkingBroker is a test broker that reports each connection that parks.
func parkingBroker(t *testing.T) (*Broker, string) {
	t.Helper()
	b := newTestBrokerUnstarted(t)
	return b, serveTestBroker(t, b)
}

func newTestBrokerUnstarted(t *testing.T) *Broker {
	t.Helper()
	b := newTestBrokerConfig(t, nil)
	b.parkNotify = make(chan *client, 256)
	return b
}

// park sweeps until the connection of client id has parked: the first sweep clears the
// activity of its last packet, the next parkAfterSweeps count its silence and the last asks
// its reader to park. The broker's own sweeper
// may park it (or others) meanwhile; each park is reported on b.parkNotify.
func park(t *testing.T, b *Broker, id string) *client {
	t.Helper()
	if b.poller == nil {
		t.Skip("no idle poller on this platform")
	}
	deadline := time.After(rawWait)
	for {
		if c := b.clientOf(id); c != nil && c.state.Load() == connParked {
			return c
		}
		for range parkAfterSweeps + 1 {
			b.sweepOnce(nil)
		}
		// A sweep does nothing to a connection whose reader has not yet left CONNECT
		// handling, so sweep again unless a park is reported soon.
		select {
		case <-b.parkNotify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s did not park", id)
		}
	}
}

// clientOf returns the connection attached to the session of id, nil when none.
func (b *Broker) clientOf(id string) *client {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.sessions[id]
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.client
}

// TestParkedConnectionServes: a parked connection gets deliveries through its writer, and
// wakes its reader for anything it sends, as often as it parks.
func TestParkedConnectionServes(t *testing.T) {
	b, addr := parkingBroker(t)
	s := dialRaw(t, addr, packets.V5)
	s.mustConnect("parked-sub", nil)
	s.subscribe(1, 0, sub("parked/t", 1))
	pub := dialRaw(t, addr, packets.V5)
	pub.mustConnect("parked-pub", nil)

	c := park(t, b, "parked-sub")
	if got := c.state.Load(); got != connParked {
		t.Fatalf("state %d, want parked", got)
	}
	pub.pub("parked/t", 0, 0, "while parked")
	if m := s.nextPublish(); string(m.Payload) != "while parked" {
		t.Fatalf("got %q", m.Payload)
	}
	s.ping() // bytes on a parked socket resume its reader

	park(t, b, "parked-sub") // again: the socket is re-armed, not added
	pub.pub("parked/t", 1, 7, "qos1 while parked")
	m := s.nextPublish()
	if string(m.Payload) != "qos1 while parked" {
		t.Fatalf("got %q", m.Payload)
	}
	s.ackPublish(m) // a PUBACK resumes it
	s.ping()
	s.disconnect(packets.NormalDisconnection)
}

// TestParkedKeepAlive: a parked connection holds no timer, yet ends 1.5 keep-alives after its
// last packet [MQTT-3.1.2-22]: the sweeper resumes it before its deadline.
func TestParkedKeepAlive(t *testing.T) {
	t.Parallel()
	b, addr := parkingBroker(t)
	c := dialRaw(t, addr, packets.V5)
	start := time.Now()
	c.mustConnect("parked-ka", func(p *packets.Connect) { p.KeepAlive = 5 })
	park(t, b, "parked-ka")
	// 1.5 keep-alives: longer than expectDisconnect waits.
	if typ, err := c.readPacket(10 * time.Second); err != nil || typ != packets.TypeDisconnect || c.pkt.Disconnect.Reason != packets.KeepAliveTimeout {
		t.Fatalf("got %v %v (%v), want DISCONNECT 0x8D", typ, c.pkt.Disconnect.Reason, err)
	}
	c.expectClosed()
	if took := time.Since(start); took < 7500*time.Millisecond {
		t.Fatalf("ended after %v, before 1.5 keep-alives", took)
	}
}

// TestParkedTakeover: a new connection with the same Client Identifier takes over a parked
// one, which gets DISCONNECT 0x8E [MQTT-3.1.4-3].
func TestParkedTakeover(t *testing.T) {
	b, addr := parkingBroker(t)
	old := dialRaw(t, addr, packets.V5)
	old.mustConnect("parked-twin", func(p *packets.Connect) {
		p.CleanStart = false
		p.Properties.Set(packets.PropSessionExpiry)
		p.Properties.SessionExpiry = 60
	})
	park(t, b, "parked-twin")
	neu := dialRaw(t, addr, packets.V5)
	ca := neu.mustConnect("parked-twin", func(p *packets.Connect) { p.CleanStart = false })
	if !ca.SessionPresent {
		t.Fatal("session not present after takeover")
	}
	old.expectDisconnect(packets.SessionTakenOver)
	neu.ping()
}

// TestParkedWill: a parked connection that drops without DISCONNECT publishes its will.
func TestParkedWill(t *testing.T) {
	b, addr := parkingBroker(t)
	watcher := dialRaw(t, addr, packets.V5)
	watcher.mustConnect("parked-watcher", nil)
	watcher.subscribe(1, 0, sub("parked/will", 0))
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("parked-will", func(p *packets.Connect) {
		p.WillFlag = true
		p.WillTopic = []byte("parked/will")
		p.WillPayload = []byte("gone")
	})
	park(t, b, "parked-will")
	c.conn.Close()
	if m := watcher.nextPublish(); string(m.Payload) != "gone" {
		t.Fatalf("will %q", m.Payload)
	}
}

// TestParkedShutdown: shutdown ends parked connections like the others: DISCONNECT 0x8B,
// and Serve returns.
func TestParkedShutdown(t *testing.T) {
	b := newTestBrokerUnstarted(t)
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Serve(ctx)
	}()
	c := dialRaw(t, b.Addrs()[0].String(), packets.V5)
	c.mustConnect("parked-shutdown", nil)
	park(t, b, "parked-shutdown")
	cancel()
	c.expectDisconnect(packets.ServerShuttingDown)
	select {
	case <-done:
	case <-time.After(rawWait):
		t.Fatal("Serve did not return")
	}
}

// TestParkedHoldsNoGoroutine: parking returns the reader goroutine.
func TestParkedHoldsNoGoroutine(t *testing.T) {
	b, addr := parkingBroker(t)
	const n = 20
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialRaw(t, addr, packets.V311)
		clients[i].mustConnect("parked-many-"+string(rune('a'+i)), func(p *packets.Connect) { p.KeepAlive = 0 })
	}
	before := runtime.NumGoroutine()
	for i := range clients {
		park(t, b, "parked-many-"+string(rune('a'+i)))
	}
	eventually(t, rawWait, "parked readers return", func() bool { return runtime.NumGoroutine() <= before-n })
	for _, c := range clients {
		c.ping()
	}
}

// TestParkDeclinedMidPacket: a reader asked to park while half a packet is buffered reads on,
// and the packet completes.
func TestParkDeclinedMidPacket(t *testing.T) {
	b, addr := parkingBroker(t)
	if b.poller == nil {
		t.Skip("no idle poller on this platform")
	}
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("parked-half", nil)
	p := &packets.Publish{Version: packets.V5, QoS: 1, PacketID: 3, Topic: []byte("half/t"), Payload: []byte("split")}
	raw := p.Append(nil)
	c.write(raw[:4])
	cl := b.clientOf("parked-half")
	eventually(t, rawWait, "half a packet read", func() bool { return cl.active.Load() })
	for range parkAfterSweeps {
		b.sweepOnce(nil) // clears the activity, then counts the silence
	}
	b.sweepOnce(nil) // asks to park: declined, bytes are buffered
	eventually(t, rawWait, "park request handled", func() bool { return !cl.parkRequested.Load() })
	c.write(raw[4:])
	if got := c.expectAck(packets.TypePuback); got.Ack.PacketID != 3 {
		t.Fatalf("PUBACK for %d", got.Ack.PacketID)
	}
	if got := cl.state.Load(); got != connReading {
		t.Fatalf("state %d, want reading", got)
	}
}

// TestReleaseAfterParkingWave: memory is given back once a wave of parking is over (a sweep
// that asks nobody to park), and not again within minReleaseInterval.
func TestReleaseAfterParkingWave(t *testing.T) {
	b, _ := parkingBroker(t)
	b.parkedSinceRelease.Store(releaseAfterParks)
	b.sweepOnce(nil)
	if n := b.parkedSinceRelease.Load(); n != 0 {
		t.Fatalf("after a quiet sweep %d parks still counted, want a release", n)
	}
	b.parkedSinceRelease.Store(releaseAfterParks)
	b.sweepOnce(nil)
	if n := b.parkedSinceRelease.Load(); n != releaseAfterParks {
		t.Fatalf("released again within %v", minReleaseInterval)
	}
}
