package engine

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/session"
)

// withWill adds a will on topic "will" to a CONNECT; delay and expiry are seconds (0: none).
func withWill(payload string, delay, sessionExpiry uint32) func(*packets.Connect) {
	return func(p *packets.Connect) {
		p.WillFlag, p.WillQoS, p.WillTopic, p.WillPayload = true, 1, []byte("will"), []byte(payload)
		if delay > 0 {
			p.WillProperties.Set(packets.PropWillDelay)
			p.WillProperties.WillDelay = delay
		}
		if sessionExpiry > 0 {
			expiring(sessionExpiry)(p)
		}
	}
}

// watcher subscribes to the will topic and the marker.
func watcher(t *testing.T, addr string) *rawClient {
	w := dialRaw(t, addr, packets.V5)
	w.mustConnect("watcher", nil)
	w.subscribe(1, 0, sub("will", 1), sub("marker", 0))
	return w
}

// TestWillOnAbnormalEnd: the will is published when the connection ends in any way but a
// normal DISCONNECT, and only then [MQTT-3.1.2-8] [MQTT-3.1.2-10].
func TestWillOnAbnormalEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		version byte
		end     func(t *testing.T, c *rawClient, addr string)
		publish bool
	}{
		{"socket closed", packets.V5, func(t *testing.T, c *rawClient, _ string) { c.conn.Close() }, true},
		{"3.1.1 socket closed", packets.V311, func(t *testing.T, c *rawClient, _ string) { c.conn.Close() }, true},
		{"protocol error", packets.V5, func(t *testing.T, c *rawClient, _ string) {
			c.write([]byte{0xC0, 0x01, 0x00})
			c.expectDisconnect(packets.MalformedPacket)
		}, true},
		{"keep-alive timeout", packets.V5, func(t *testing.T, c *rawClient, _ string) { c.expectDisconnect(packets.KeepAliveTimeout) }, true},
		{"takeover", packets.V5, func(t *testing.T, c *rawClient, addr string) {
			dialRaw(t, addr, packets.V5).mustConnect("testament", nil)
			c.expectDisconnect(packets.SessionTakenOver)
		}, true},
		{"DISCONNECT with will 0x04", packets.V5, func(t *testing.T, c *rawClient, _ string) { c.disconnect(packets.DisconnectWithWill) }, true},
		{"normal DISCONNECT", packets.V5, func(t *testing.T, c *rawClient, _ string) { c.disconnect(packets.NormalDisconnection) }, false},
		{"3.1.1 DISCONNECT", packets.V311, func(t *testing.T, c *rawClient, _ string) { c.disconnect(packets.NormalDisconnection) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := testBroker(t, nil)
			w := watcher(t, addr)
			c := dialRaw(t, addr, tc.version)
			c.mustConnect("testament", func(p *packets.Connect) {
				withWill("gone", 0, 0)(p)
				p.KeepAlive = 1
			})
			stop := make(chan struct{})
			defer close(stop)
			if tc.name != "keep-alive timeout" {
				go func() { // keep the client alive until it ends as the case says
					for {
						select {
						case <-stop:
							return
						case <-time.After(300 * time.Millisecond):
							c.conn.Write(packets.AppendPingreq(nil))
						}
					}
				}()
			}
			tc.end(t, c, addr)
			if tc.publish {
				if m := w.receive(); m.Topic != "will" || m.Payload != "gone" {
					t.Fatalf("got %+v, want the will", m)
				}
			}
			dialRaw(t, addr, packets.V5).mustConnect("marker", nil)
			mk := dialRaw(t, addr, packets.V5)
			mk.mustConnect("mk", nil)
			mk.pub("marker", 0, 0, "m")
			expectMarker(t, w.nextPublish())
		})
	}
}

// TestWillOnShutdown: a server shutdown is an abnormal end for the client: its will is
// published (seen here as the retained message it leaves behind).
func TestWillOnShutdown(t *testing.T) {
	t.Parallel()
	cfg := conf.Default()
	cfg.Server.Bind = "127.0.0.1:0"
	cfg.Storage.DataDir = ""
	b, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		b.Serve(ctx)
	}()
	c := dialRaw(t, b.Addrs()[0].String(), packets.V5)
	c.mustConnect("testament", func(p *packets.Connect) {
		withWill("shutdown", 0, 0)(p)
		p.WillRetain = true
	})
	c.ping()
	cancel()
	c.expectDisconnect(packets.ServerShuttingDown)
	<-served
	var got string
	b.retained.Visit("will", func(_ string, m *session.Message) bool {
		got = string(m.Payload)
		return true
	})
	if got != "shutdown" {
		t.Fatalf("retained will %q, want it published at shutdown", got)
	}
}

// TestWillDelay: a delayed will waits its Will Delay Interval, is cancelled by a reconnect
// in time, and is published no later than the session's end.
func TestWillDelay(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name           string
		delay, expiry  uint32
		reconnectAfter time.Duration // 0: no reconnect
		wantAfter      time.Duration // 0: never published
	}{
		{"published after the delay", 1, 60, 0, time.Second},
		{"cancelled by a reconnect", 2, 60, 500 * time.Millisecond, 0},
		{"session end comes first", 60, 1, 0, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := testBroker(t, nil)
			w := watcher(t, addr)
			c := dialRaw(t, addr, packets.V5)
			c.mustConnect("delayed", withWill("late", tc.delay, tc.expiry))
			start := time.Now()
			c.conn.Close()
			if tc.reconnectAfter > 0 {
				letTimePass(tc.reconnectAfter)
				dialRaw(t, addr, packets.V5).mustConnect("delayed", resume(tc.expiry))
				letTimePass(time.Duration(tc.delay)*time.Second + 200*time.Millisecond - tc.reconnectAfter)
				mk := dialRaw(t, addr, packets.V5)
				mk.mustConnect("mk", nil)
				mk.pub("marker", 0, 0, "m")
				expectMarker(t, w.nextPublish())
				return
			}
			m := w.receive()
			d := time.Since(start)
			if m.Payload != "late" || d < tc.wantAfter-100*time.Millisecond || d > tc.wantAfter+time.Second {
				t.Fatalf("got %q after %v, want the will after %v", m.Payload, d, tc.wantAfter)
			}
		})
	}
}

// TestWillMessageExpiry: a will's Message Expiry Interval counts from its publication, not
// from the CONNECT that carried it [MQTT-3.1.3-?: the will is published as a PUBLISH would be].
func TestWillMessageExpiry(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	w := watcher(t, addr)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("expiring-will", func(p *packets.Connect) {
		withWill("still fresh", 0, 0)(p)
		p.WillProperties.Set(packets.PropMessageExpiry)
		p.WillProperties.MessageExpiry = 1
	})
	letTimePass(1200 * time.Millisecond) // connected for longer than the will's expiry
	c.conn.Close()
	m := w.receive()
	if m.Payload != "still fresh" || !m.Props.Has(packets.PropMessageExpiry) || m.Props.MessageExpiry != 1 {
		t.Fatalf("got %q expiry %d, want the will with 1 s left", m.Payload, m.Props.MessageExpiry)
	}
}

// TestWillProperties: a will's forwardable properties arrive with it.
func TestWillProperties(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	w := watcher(t, addr)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("props-will", func(p *packets.Connect) {
		withWill("bye", 0, 0)(p)
		wp := &p.WillProperties
		wp.Set(packets.PropContentType)
		wp.ContentType = []byte("text/plain")
		wp.Set(packets.PropResponseTopic)
		wp.ResponseTopic = []byte("reply")
		wp.Set(packets.PropCorrelationData)
		wp.CorrelationData = []byte{9}
		wp.Set(packets.PropUserProperty)
		wp.User = userProps("k", "v")
	})
	c.conn.Close()
	m := w.receive()
	if string(m.Props.ContentType) != "text/plain" || string(m.Props.ResponseTopic) != "reply" || string(m.Props.CorrelationData) != "\x09" ||
		len(m.Props.User) != 1 || string(m.Props.User[0].Key) != "k" {
		t.Fatalf("will properties %+v", m.Props)
	}
}

// TestWillPaho: the will of a paho.golang client whose connection drops reaches another
// paho.golang client with its properties.
func TestWillPaho(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	r := newReceived()
	wc, _ := connect5(t, addr, &paho.Connect{ClientID: "watcher", CleanStart: true, KeepAlive: 30}, r, nil)
	if _, err := wc.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "status/+", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	connect5(t, addr, &paho.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 30, WillMessage: &paho.WillMessage{Topic: "status/dev1", QoS: 1, Payload: []byte("offline")},
		WillProperties: &paho.WillProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}}, nil,
		func(cc *paho.ClientConfig) { conn = cc.Conn })
	conn.Close() // the connection drops under the client
	got := r.next(t)
	// paho.golang v0.23 packs will properties as CONNECT properties, so it never sends a
	// will's Content Type; the user property is what it does send.
	if string(got.Payload) != "offline" || got.Topic != "status/dev1" || got.Properties == nil ||
		len(got.Properties.User) != 1 || got.Properties.User[0].Key != "k" {
		t.Fatalf("will %q on %q props %+v", got.Payload, got.Topic, got.Properties)
	}
}

// withWill311 adds a QoS 1 will to a 3.x CONNECT.
func withWill311(topic, payload string) func(*packets.Connect) {
	return func(p *packets.Connect) {
		p.WillFlag, p.WillQoS, p.WillTopic, p.WillPayload = true, 1, []byte(topic), []byte(payload)
	}
}
