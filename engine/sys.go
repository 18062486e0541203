package engine

import (
	"math"
	"strconv"
	"time"

	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/topics"
)

// sysPublisher publishes the $SYS/broker/... topics every mqtt.sys-interval, as Mosquitto
// does: retained, so a new subscriber sees the latest values at once, and routed to current
// subscribers like any message. Clients cannot publish to $SYS topics of their own, and a
// filter starting with a wildcard does not match them [MQTT-4.7.2-1], so only a subscription
// naming $SYS sees them.
//
// It runs on one goroutine that owns every field; Serve starts it and shutdown stops it.
// The load averages are exponentially damped per-minute rates over 1, 5 and 15 minutes,
// updated at each tick from the counters' increase since the previous one (Mosquitto's
// definition). Chosen: sampling counters already kept. Rejected: a second set of counters
// per interval, which would cost the publish path another atomic add.
type sysPublisher struct {
	b       *Broker
	started time.Time
	last    time.Time
	prev    sysCounters
	loads   map[string]*[3]float64 // topic suffix → 1, 5, 15 minute loads
	matches topics.Matches
}

type sysCounters struct {
	received, sent, bytesIn, bytesOut, connections uint64
}

func (b *Broker) sysCounters() sysCounters {
	s := &b.stats
	return sysCounters{
		received:    s.MessagesReceived.Load(),
		sent:        s.MessagesSent.Load() + s.PacketsSent[packets.TypePublish].Load(),
		bytesIn:     s.BytesReceived.Load(),
		bytesOut:    s.BytesSent.Load(),
		connections: s.Connected.Load(),
	}
}

// startSys starts the $SYS publisher when mqtt.sys-interval is above zero; stopSys stops it
// and waits for it to end.
func (b *Broker) startSys() {
	interval := b.cfg.MQTT.SysInterval
	if interval <= 0 {
		return
	}
	t := time.Now()
	p := &sysPublisher{b: b, started: t, last: t, prev: b.sysCounters(), loads: make(map[string]*[3]float64)}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		p.publish(time.Now())
		for {
			select {
			case <-quit:
				return
			case t := <-ticker.C:
				p.publish(t)
			}
		}
	}()
	b.tel.sysMu.Lock()
	b.tel.sysStop = func() {
		close(quit)
		<-done
	}
	b.tel.sysMu.Unlock()
}

// stopSys stops the $SYS publisher, if running; shutdown calls it before kicking clients.
func (b *Broker) stopSys() {
	b.tel.sysMu.Lock()
	stop := b.tel.sysStop
	b.tel.sysStop = nil
	b.tel.sysMu.Unlock()
	if stop != nil {
		stop()
	}
}

func (p *sysPublisher) publish(t time.Time) {
	b := p.b
	g := b.Gauges()
	c := b.sysCounters()
	u := strconv.FormatUint
	i := func(v int) string { return strconv.Itoa(v) }
	p.send("$SYS/broker/version", "promptmq "+b.tel.version)
	p.send("$SYS/broker/uptime", strconv.FormatInt(int64(t.Sub(p.started)/time.Second), 10)+" seconds")
	p.send("$SYS/broker/clients/connected", i(g.SessionsOnline))
	p.send("$SYS/broker/clients/disconnected", i(g.SessionsOffline))
	p.send("$SYS/broker/clients/total", i(g.SessionsOnline+g.SessionsOffline))
	p.send("$SYS/broker/connections/total", u(c.connections, 10))
	p.send("$SYS/broker/messages/received", u(c.received, 10))
	p.send("$SYS/broker/messages/sent", u(c.sent, 10))
	p.send("$SYS/broker/publish/messages/received", u(c.received, 10))
	p.send("$SYS/broker/publish/messages/sent", u(c.sent, 10))
	p.send("$SYS/broker/publish/messages/dropped", u(b.droppedTotal(), 10))
	p.send("$SYS/broker/messages/inflight", i(g.InflightMessages))
	p.send("$SYS/broker/messages/stored", i(g.QueuedMessages+g.RetainedMessages))
	p.send("$SYS/broker/store/messages/count", i(g.QueuedMessages+g.RetainedMessages))
	p.send("$SYS/broker/bytes/received", u(c.bytesIn, 10))
	p.send("$SYS/broker/bytes/sent", u(c.bytesOut, 10))
	p.send("$SYS/broker/subscriptions/count", i(g.Subscriptions))
	p.send("$SYS/broker/retained messages/count", i(g.RetainedMessages))

	elapsed := t.Sub(p.last).Seconds()
	if elapsed > 0 {
		p.load("messages/received", c.received-p.prev.received, elapsed)
		p.load("messages/sent", c.sent-p.prev.sent, elapsed)
		p.load("publish/received", c.received-p.prev.received, elapsed)
		p.load("publish/sent", c.sent-p.prev.sent, elapsed)
		p.load("bytes/received", c.bytesIn-p.prev.bytesIn, elapsed)
		p.load("bytes/sent", c.bytesOut-p.prev.bytesOut, elapsed)
		p.load("connections", c.connections-p.prev.connections, elapsed)
	}
	p.last, p.prev = t, c
}

// load damps one per-minute rate into its three averages and publishes them as
// $SYS/broker/load/<name>/{1min,5min,15min}.
func (p *sysPublisher) load(name string, delta uint64, elapsed float64) {
	l := p.loads[name]
	if l == nil {
		l = new([3]float64)
		p.loads[name] = l
	}
	perMinute := float64(delta) * 60 / elapsed
	for k, minutes := range [3]float64{1, 5, 15} {
		decay := math.Exp(-elapsed / (minutes * 60))
		l[k] = l[k]*decay + perMinute*(1-decay)
	}
	p.send("$SYS/broker/load/"+name+"/1min", strconv.FormatFloat(l[0], 'f', 2, 64))
	p.send("$SYS/broker/load/"+name+"/5min", strconv.FormatFloat(l[1], 'f', 2, 64))
	p.send("$SYS/broker/load/"+name+"/15min", strconv.FormatFloat(l[2], 'f', 2, 64))
}

// send publishes one retained $SYS value. The retained index gets the message directly, and
// routing sees a copy with RETAIN clear: a $SYS value is state the broker recomputes, so it
// is kept out of the store (after a restart it would be stale), and a forwarded message
// carries RETAIN only for Retain As Published subscriptions [MQTT-3.3.1-12], which a live
// $SYS update does not need. Neither copy counts as a message received from a client.
func (p *sysPublisher) send(topic, value string) {
	b := p.b
	pub := packets.Publish{Version: packets.V5, Topic: []byte(topic), Payload: []byte(value), Retain: true}
	retained := session.NewMessage(&pub, pub.Topic, 0, now(), 0)
	b.retained.Set(retained.Topic, retained, retained.Size())
	pub.Retain = false
	b.route(session.NewMessage(&pub, pub.Topic, 0, now(), 0), &p.matches)
}

// droppedTotal sums the drops of every reason.
func (b *Broker) droppedTotal() uint64 {
	var n uint64
	for i := range b.stats.Dropped {
		n += b.stats.Dropped[i].Load()
	}
	return n + b.stats.NoSubscribers.Load()
}
