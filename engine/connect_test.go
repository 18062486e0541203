package engine

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
)

// TestConnectRefusals: every CONNECT the broker refuses gets the exact CONNACK code of
// its version, and the connection ends.
func TestConnectRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		edit    func(*conf.Config)
		connect packets.Connect
		raw     []byte             // sent instead of connect when set
		want    packets.ReasonCode // the CONNACK reason (for 3.x, its 5.0 equivalent)
		version byte               // the CONNACK's version
	}{
		{name: "5.0 unsupported level 6", raw: connectLevel("MQTT", 6), want: packets.UnsupportedProtocolVersion, version: packets.V5},
		{name: "3.1.1 name with level 3", raw: connectLevel("MQTT", 3), want: packets.UnsupportedProtocolVersion, version: packets.V311},
		{name: "MQIsdp with level 4", raw: connectLevel("MQIsdp", 4), want: packets.UnsupportedProtocolVersion, version: packets.V311},
		{name: "3.1.1 empty id with clean session 0", connect: packets.Connect{Version: packets.V311}, want: packets.ClientIdentifierNotValid, version: packets.V311},
		{name: "3.1 empty id", connect: packets.Connect{Version: packets.V31, CleanStart: true}, want: packets.ClientIdentifierNotValid, version: packets.V31},
		{name: "3.1 id longer than 23", connect: packets.Connect{Version: packets.V31, CleanStart: true, ClientID: []byte(strings.Repeat("x", 24))}, want: packets.ClientIdentifierNotValid, version: packets.V31},
		{name: "AUTH method", connect: packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte("a"),
			Properties: packets.Properties{Present: 1 << packets.PropAuthMethod, AuthMethod: []byte("SCRAM-SHA-1")}}, want: packets.BadAuthenticationMethod, version: packets.V5},
		{name: "will QoS above maximum", edit: func(c *conf.Config) { c.MQTT.MaxQoS = 1 },
			connect: packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte("a"), WillFlag: true, WillQoS: 2, WillTopic: []byte("w")}, want: packets.QoSNotSupported, version: packets.V5},
		{name: "will retain not available", edit: func(c *conf.Config) { c.MQTT.RetainAvailable = false },
			connect: packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte("a"), WillFlag: true, WillRetain: true, WillTopic: []byte("w")}, want: packets.RetainNotSupported, version: packets.V5},
		{name: "will topic with a wildcard", connect: packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte("a"), WillFlag: true, WillTopic: []byte("w/#")},
			want: packets.TopicNameInvalid, version: packets.V5},
		{name: "reserved flag", raw: func() []byte {
			b := (&packets.Connect{Version: packets.V5, CleanStart: true, ClientID: []byte("a")}).Append(nil)
			b[9] |= 0x01
			return b
		}(), want: packets.MalformedPacket, version: packets.V5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := testBroker(t, tc.edit)
			c := dialRaw(t, addr, tc.version)
			if tc.raw != nil {
				c.write(tc.raw)
			} else {
				c.send(&tc.connect)
			}
			ca := c.expect(packets.TypeConnack).Connack
			want := tc.want
			if tc.version != packets.V5 {
				// The 3.x return code maps back to the nearest 5.0 code.
				want = packets.ReasonCode(packets.ConnackCode311(tc.want))
				if got := packets.ConnackCode311(ca.Reason); got != byte(want) {
					t.Fatalf("CONNACK code %d, want %d", got, want)
				}
			} else if ca.Reason != want {
				t.Fatalf("CONNACK %v, want %v", ca.Reason, want)
			}
			c.expectClosed()
		})
	}
}

// connectLevel is a minimal CONNECT with the given protocol name and level.
func connectLevel(name string, level byte) []byte {
	body := []byte{0, byte(len(name))}
	body = append(body, name...)
	body = append(body, level, 0x02, 0, 30, 0, 1, 'x')
	if level == 5 || level > 5 {
		body = append(body[:len(body)-3], 0, 0, 1, 'x') // empty property block before the id
	}
	return append([]byte{0x10, byte(len(body))}, body...)
}

// TestProtocolVersions: 3.1, 3.1.1 and 5.0 clients connect and exchange a message each.
func TestProtocolVersions(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	for _, v := range []byte{packets.V31, packets.V311, packets.V5} {
		c := dialRaw(t, addr, v)
		c.mustConnect("v", nil) // takes over the previous one
		c.subscribe(1, 0, sub("ver", 1))
		// A second connection publishes: on one connection the PUBACK and the delivery of
		// the client's own message may come in either order.
		p := dialRaw(t, addr, v)
		p.mustConnect("v-pub", nil)
		p.pub("ver", 1, 2, "hello")
		if m := c.receive(); m.Payload != "hello" {
			t.Fatalf("v%d got %q", v, m.Payload)
		}
		p.disconnect(packets.NormalDisconnection)
		c.disconnect(packets.NormalDisconnection)
	}
}

// TestAssignedClientID: an empty id gets an Assigned Client Identifier in 5.0 and a
// working session in 3.1.1 with clean session 1.
func TestAssignedClientID(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	c, ca := connect5(t, addr, &paho.Connect{CleanStart: true, KeepAlive: 30}, nil, nil)
	if ca.Properties == nil || ca.Properties.AssignedClientID == "" {
		t.Fatalf("no Assigned Client Identifier in %+v", ca.Properties)
	}
	_ = c
	raw := dialRaw(t, addr, packets.V311)
	raw.mustConnect("", nil)
	raw.ping()
}

// TestConnackProperties: the CONNACK announces every limit the configuration sets.
func TestConnackProperties(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) {
		c.MQTT.MaxInflight = 7
		c.MQTT.MaxQoS = 1
		c.MQTT.RetainAvailable = false
		c.MQTT.MaxPacketSize = 5000
		c.MQTT.MaxTopicAlias = 9
		c.MQTT.WildcardAvailable = false
		c.MQTT.SubscriptionIDAvailable = false
		c.MQTT.SharedSubAvailable = false
		c.MQTT.KeepAlive = 20
		c.MQTT.MaxSessionExpiry = 100 * time.Second
	})
	c := dialRaw(t, addr, packets.V5)
	ca := c.mustConnect("props", func(p *packets.Connect) {
		p.KeepAlive = 60
		expiring(1000)(p)
	})
	pr := &ca.Properties
	checks := []struct {
		id        packets.PropertyID
		got, want int
	}{
		{packets.PropReceiveMaximum, int(pr.ReceiveMaximum), 7},
		{packets.PropMaximumQoS, int(pr.MaximumQoS), 1},
		{packets.PropRetainAvailable, int(pr.RetainAvailable), 0},
		{packets.PropMaximumPacketSize, int(pr.MaximumPacketSize), 5000},
		{packets.PropTopicAliasMaximum, int(pr.TopicAliasMaximum), 9},
		{packets.PropWildcardAvailable, int(pr.WildcardAvailable), 0},
		{packets.PropSubIDAvailable, int(pr.SubIDAvailable), 0},
		{packets.PropSharedSubAvailable, int(pr.SharedSubAvailable), 0},
		{packets.PropServerKeepAlive, int(pr.ServerKeepAlive), 20},
		{packets.PropSessionExpiry, int(pr.SessionExpiry), 100},
	}
	for _, ch := range checks {
		if !pr.Has(ch.id) || ch.got != ch.want {
			t.Errorf("%v: present %v value %d, want %d", ch.id, pr.Has(ch.id), ch.got, ch.want)
		}
	}
	// Defaults announce nothing that is the protocol's default.
	_, addr = testBroker(t, nil)
	c = dialRaw(t, addr, packets.V5)
	ca = c.mustConnect("defaults", nil)
	for _, id := range []packets.PropertyID{packets.PropMaximumQoS, packets.PropRetainAvailable, packets.PropWildcardAvailable,
		packets.PropSubIDAvailable, packets.PropSharedSubAvailable, packets.PropServerKeepAlive, packets.PropAssignedClientID} {
		if ca.Properties.Has(id) {
			t.Errorf("default CONNACK carries %v", id)
		}
	}
}

// TestRequestInformation: Request Problem Information 0 and Request Response Information
// 1 are accepted; with problem information off the broker sends no Reason String.
func TestRequestInformation(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) { c.MQTT.MaxQoS = 1 })
	c := dialRaw(t, addr, packets.V5)
	ca := c.mustConnect("info", func(p *packets.Connect) {
		p.Properties.Set(packets.PropRequestProblemInfo)
		p.Properties.RequestProblemInfo = 0
		p.Properties.Set(packets.PropRequestResponseInfo)
		p.Properties.RequestResponseInfo = 1
	})
	if ca.Properties.Has(packets.PropReasonString) {
		t.Fatal("Reason String in CONNACK")
	}
	c.send(&packets.Unsubscribe{Version: packets.V5, PacketID: 1, Filters: [][]byte{[]byte("none")}})
	if ua := c.expect(packets.TypeUnsuback).Unsuback; ua.Properties.Has(packets.PropReasonString) || ua.Properties.Has(packets.PropUserProperty) {
		t.Fatal("Reason String or User Property on UNSUBACK with Request Problem Information 0 [MQTT-3.1.2-29]")
	}
}

// TestTakeover: a second connection with the same id takes the session over; the first
// gets DISCONNECT 0x8E (5.0) or a close (3.1.1), and its subscriptions carry over.
func TestTakeover(t *testing.T) {
	t.Parallel()
	for _, version := range []byte{packets.V5, packets.V311} {
		_, addr := testBroker(t, nil)
		old := dialRaw(t, addr, version)
		old.mustConnect("twin", persistent(version, 60))
		old.subscribe(1, 0, sub("tk", 1))
		nu := dialRaw(t, addr, version)
		if ca := nu.mustConnect("twin", resumeAs(version, 60)); !ca.SessionPresent {
			t.Fatalf("v%d: Session Present 0 on takeover", version)
		}
		old.expectDisconnect(packets.SessionTakenOver)
		nu.pub("tk", 1, 1, "still subscribed")
		if m := nu.receive(); m.Payload != "still subscribed" {
			t.Fatalf("v%d: got %q", version, m.Payload)
		}
	}
	// The same with paho.golang: the old client is told why.
	_, addr := testBroker(t, nil)
	told := make(chan byte, 1)
	connect5(t, addr, &paho.Connect{ClientID: "paho-twin", CleanStart: true, KeepAlive: 30}, nil, func(cc *paho.ClientConfig) {
		cc.OnServerDisconnect = func(d *paho.Disconnect) { told <- d.ReasonCode }
	})
	connect5(t, addr, &paho.Connect{ClientID: "paho-twin", CleanStart: true, KeepAlive: 30}, nil, nil)
	select {
	case rc := <-told:
		if rc != byte(packets.SessionTakenOver) {
			t.Fatalf("paho got DISCONNECT 0x%02X, want 0x8E", rc)
		}
	case <-time.After(rawWait):
		t.Fatal("the taken-over paho client got no DISCONNECT")
	}
}

// TestMaxConnections: past max-connections a 5.0 client gets CONNACK 0x97 and a 3.1.1
// client "server unavailable"; a slot freed by a disconnect is usable again.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	b, addr := testBroker(t, func(c *conf.Config) { c.MQTT.MaxConnections = 2 })
	a1 := dialRaw(t, addr, packets.V5)
	a1.mustConnect("a1", nil)
	a2 := dialRaw(t, addr, packets.V311)
	a2.mustConnect("a2", nil)
	over5 := dialRaw(t, addr, packets.V5)
	if ca := over5.connect(&packets.Connect{CleanStart: true, ClientID: []byte("x")}); ca.Reason != packets.QuotaExceeded {
		t.Fatalf("5.0 over the limit: %v, want 0x97", ca.Reason)
	}
	over5.expectClosed()
	over3 := dialRaw(t, addr, packets.V311)
	if ca := over3.connect(&packets.Connect{CleanStart: true, ClientID: []byte("y")}); packets.ConnackCode311(ca.Reason) != 3 {
		t.Fatalf("3.1.1 over the limit: %v, want return code 3", ca.Reason)
	}
	over3.expectClosed()
	a1.disconnect(packets.NormalDisconnection)
	eventually(t, rawWait, "slot freed", func() bool { return b.connections.Load() == 1 })
	again := dialRaw(t, addr, packets.V5)
	again.mustConnect("again", nil)
}

// TestConnectTimeout: a socket that never sends CONNECT is closed after connect-timeout.
func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) { c.Server.ConnectTimeout = time.Second })
	c := dialRaw(t, addr, packets.V5)
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 1s", d)
	}
}

// TestConnectTimeoutPartialConnect: the connect timeout also ends a socket that sends part of
// a CONNECT (its first read does not wait, the next does) and then nothing, and a CONNECT
// that arrives in pieces within the timeout is served.
func TestConnectTimeoutPartialConnect(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) { c.Server.ConnectTimeout = time.Second })
	connect := (&packets.Connect{Version: packets.V5, ClientID: []byte("pieces"), CleanStart: true}).Append(nil)
	stalled := dialRaw(t, addr, packets.V5)
	stalled.write(connect[:3])
	start := time.Now()
	stalled.expectClosed()
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 1s", d)
	}
	pieces := dialRaw(t, addr, packets.V5)
	pieces.write(connect[:3])
	letTimePass(300 * time.Millisecond)
	pieces.write(connect[3:])
	pieces.expect(packets.TypeConnack)
	letTimePass(time.Second) // past the connect timeout: the keep-alive's deadline (none) replaced it
	pieces.ping()
}

// TestKeepAlive: a client silent for 1.5 times its keep-alive is disconnected with 0x8D
// (5.0) or closed (3.1.1); a client that pings stays.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	for _, version := range []byte{packets.V5, packets.V311} {
		_, addr := testBroker(t, nil)
		silent := dialRaw(t, addr, version)
		silent.mustConnect("silent", func(p *packets.Connect) { p.KeepAlive = 1 })
		pinger := dialRaw(t, addr, version)
		pinger.mustConnect("pinger", func(p *packets.Connect) { p.KeepAlive = 1 })
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for time.Since(start) < 2500*time.Millisecond {
				pinger.conn.Write(packets.AppendPingreq(nil))
				time.Sleep(500 * time.Millisecond)
			}
		}()
		silent.expectDisconnect(packets.KeepAliveTimeout)
		if d := time.Since(start); d < 1400*time.Millisecond || d > 3*time.Second {
			t.Fatalf("v%d: disconnected after %v, want 1.5s", version, d)
		}
		<-done
		for range 5 { // the PINGRESPs of the pings above
			pinger.expect(packets.TypePingresp)
		}
		pinger.ping()
	}
}

// TestServerKeepAlive: a client asking more than mqtt.keep-alive is told the maximum and
// held to it.
func TestServerKeepAlive(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, func(c *conf.Config) { c.MQTT.KeepAlive = 1 })
	c := dialRaw(t, addr, packets.V5)
	ca := c.mustConnect("ska", func(p *packets.Connect) { p.KeepAlive = 60 })
	if !ca.Properties.Has(packets.PropServerKeepAlive) || ca.Properties.ServerKeepAlive != 1 {
		t.Fatalf("Server Keep Alive %v %d, want 1", ca.Properties.Has(packets.PropServerKeepAlive), ca.Properties.ServerKeepAlive)
	}
	start := time.Now()
	c.expectDisconnect(packets.KeepAliveTimeout)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("disconnected after %v, want 1.5s", d)
	}
}

// TestShutdown: graceful shutdown sends 0x8B to 5.0 clients, closes 3.1.1 clients, and
// does not wait for sockets that never sent CONNECT.
func TestShutdown(t *testing.T) {
	t.Parallel()
	cfg := conf.Default()
	cfg.Server.Bind = "127.0.0.1:0"
	cfg.Storage.DataDir = ""
	cfg.Server.ConnectTimeout = 30 * time.Second
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
	addr := b.Addrs()[0].String()
	v5 := dialRaw(t, addr, packets.V5)
	v5.mustConnect("v5", nil)
	v3 := dialRaw(t, addr, packets.V311)
	v3.mustConnect("v3", nil)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	v5.ping() // both sessions are attached before the shutdown starts
	v3.ping()
	start := time.Now()
	cancel()
	v5.expectDisconnect(packets.ServerShuttingDown)
	v3.expectClosed()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s of shutdown (waiting for a socket that never sent CONNECT?)")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}
