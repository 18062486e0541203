package engine

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// rawClient speaks MQTT byte by byte over a real TCP socket, so a test can send what no
// client library would (malformed and forbidden packets) and see exactly what the broker
// answers, packet by packet, acknowledgements included.
type rawClient struct {
	t       testing.TB
	conn    net.Conn
	r       *packets.Reader
	version byte
	pkt     packets.Packet
	// early holds PUBLISH packets that came while an acknowledgement was awaited: on one
	// connection the PUBACK of a client's own message and its delivery may come in either
	// order, and neither order is wrong.
	early []message
}

// rawWait bounds every wait of a raw client on the broker.
const rawWait = 5 * time.Second

func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, rawWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: packets.NewReader(conn, 4096), version: version}
}

// appender is any packet that encodes itself.
type appender interface{ Append([]byte) []byte }

func (c *rawClient) send(p appender) { c.t.Helper(); c.write(p.Append(nil)) }

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(rawWait))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readPacket returns the next packet decoded into c.pkt, or the error that ended the stream.
func (c *rawClient) readPacket(within time.Duration) (packets.Type, error) {
	c.conn.SetReadDeadline(time.Now().Add(within))
	fh, body, err := c.r.ReadPacket()
	if err != nil {
		return 0, err
	}
	if err := c.pkt.Decode(c.version, fh, body); err != nil {
		return 0, err
	}
	return fh.Type, nil
}

// expect reads the next packet and fails unless it is of type want.
func (c *rawClient) expect(want packets.Type) *packets.Packet {
	c.t.Helper()
	got, err := c.readPacket(rawWait)
	if err != nil {
		c.t.Fatalf("waiting for %v: %v", want, err)
	}
	if got != want {
		c.t.Fatalf("got %v, want %v", got, want)
	}
	return &c.pkt
}

// connect sends CONNECT and returns the CONNACK (not yet checked).
func (c *rawClient) connect(p *packets.Connect) *packets.Connack {
	c.t.Helper()
	if p.Version == 0 {
		p.Version = c.version
	}
	c.send(p)
	ca := c.expect(packets.TypeConnack).Connack
	return &ca
}

// mustConnect connects with Clean Start and fails unless the CONNACK is a success.
func (c *rawClient) mustConnect(id string, edit func(*packets.Connect)) *packets.Connack {
	c.t.Helper()
	p := &packets.Connect{Version: c.version, CleanStart: true, KeepAlive: 30, ClientID: []byte(id)}
	if edit != nil {
		edit(p)
	}
	ca := c.connect(p)
	if ca.Reason != packets.Success {
		c.t.Fatalf("CONNACK %v", ca.Reason)
	}
	return ca
}

// subscribe subscribes and returns the SUBACK reason codes.
func (c *rawClient) subscribe(id uint16, subID uint32, subs ...packets.Subscription) []packets.ReasonCode {
	c.t.Helper()
	s := &packets.Subscribe{Version: c.version, PacketID: id, Subscriptions: subs}
	if subID != 0 {
		s.Properties.Set(packets.PropSubscriptionID)
		s.Properties.SubscriptionIDs = []uint32{subID}
	}
	c.send(s)
	sa := c.expect(packets.TypeSuback).Suback
	if sa.PacketID != id {
		c.t.Fatalf("SUBACK for id %d, want %d", sa.PacketID, id)
	}
	return append([]packets.ReasonCode(nil), sa.Reasons...)
}

// sub is a subscription with the given filter and QoS.
func sub(filter string, qos byte) packets.Subscription {
	return packets.Subscription{Filter: []byte(filter), QoS: qos}
}

// publish sends a PUBLISH and, for QoS 1 and 2, completes the exchange; it returns the
// reason code of the PUBACK or PUBREC.
func (c *rawClient) publish(p *packets.Publish) packets.ReasonCode {
	c.t.Helper()
	p.Version = c.version
	c.send(p)
	switch p.QoS {
	case 1:
		a := c.expectAck(packets.TypePuback).Ack
		return a.Reason
	case 2:
		a := c.expectAck(packets.TypePubrec).Ack
		if a.Reason.IsError() {
			return a.Reason
		}
		c.send(&packets.Ack{Type: packets.TypePubrel, Version: c.version, PacketID: p.PacketID})
		c.expectAck(packets.TypePubcomp)
		return a.Reason
	}
	return packets.Success
}

// expectAck is expect for an acknowledgement, keeping any PUBLISH that comes first for
// nextPublish.
func (c *rawClient) expectAck(want packets.Type) *packets.Packet {
	c.t.Helper()
	for {
		got, err := c.readPacket(rawWait)
		if err != nil {
			c.t.Fatalf("waiting for %v: %v", want, err)
		}
		if got == packets.TypePublish {
			c.early = append(c.early, copyMessage(&c.pkt.Publish))
			continue
		}
		if got != want {
			c.t.Fatalf("got %v, want %v", got, want)
		}
		return &c.pkt
	}
}

func (c *rawClient) pub(topic string, qos byte, id uint16, payload string) packets.ReasonCode {
	c.t.Helper()
	return c.publish(&packets.Publish{Topic: []byte(topic), QoS: qos, PacketID: id, Payload: []byte(payload)})
}

// message is a received PUBLISH copied out of the reader's buffer.
type message struct {
	Topic    string
	Payload  string
	QoS      byte
	Dup      bool
	Retain   bool
	PacketID uint16
	Props    packets.Properties
}

// nextPublish reads the next packet, which must be a PUBLISH, and copies it.
func (c *rawClient) nextPublish() message {
	c.t.Helper()
	if len(c.early) > 0 {
		m := c.early[0]
		c.early = c.early[1:]
		return m
	}
	return copyMessage(&c.expect(packets.TypePublish).Publish)
}

func copyMessage(p *packets.Publish) message {
	return message{Topic: string(p.Topic), Payload: string(p.Payload), QoS: p.QoS, Dup: p.Dup, Retain: p.Retain,
		PacketID: p.PacketID, Props: cloneProperties(&p.Properties)}
}

// receive reads a PUBLISH and acknowledges it fully (PUBACK, or PUBREC-PUBREL-PUBCOMP).
func (c *rawClient) receive() message {
	c.t.Helper()
	m := c.nextPublish()
	c.ackPublish(m)
	return m
}

func (c *rawClient) ackPublish(m message) {
	c.t.Helper()
	switch m.QoS {
	case 1:
		c.send(&packets.Ack{Type: packets.TypePuback, Version: c.version, PacketID: m.PacketID})
	case 2:
		c.send(&packets.Ack{Type: packets.TypePubrec, Version: c.version, PacketID: m.PacketID})
		if rel := c.expect(packets.TypePubrel).Ack; rel.PacketID != m.PacketID {
			c.t.Fatalf("PUBREL for %d, want %d", rel.PacketID, m.PacketID)
		}
		c.send(&packets.Ack{Type: packets.TypePubcomp, Version: c.version, PacketID: m.PacketID})
	}
}

func cloneProperties(p *packets.Properties) packets.Properties {
	q := *p
	clone := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		return append([]byte{}, b...)
	}
	q.ContentType, q.ResponseTopic, q.CorrelationData = clone(p.ContentType), clone(p.ResponseTopic), clone(p.CorrelationData)
	q.AssignedClientID, q.ReasonString, q.AuthMethod = clone(p.AssignedClientID), clone(p.ReasonString), clone(p.AuthMethod)
	q.SubscriptionIDs = append([]uint32(nil), p.SubscriptionIDs...)
	q.User = nil
	for _, u := range p.User {
		q.User = append(q.User, packets.UserProperty{Key: clone(u.Key), Value: clone(u.Value)})
	}
	return q
}

// expectDisconnect waits for a DISCONNECT with the reason code want followed by the end of
// the connection. A 3.x client gets no DISCONNECT: only the close is awaited.
func (c *rawClient) expectDisconnect(want packets.ReasonCode) {
	c.t.Helper()
	if c.version != packets.V5 {
		c.expectClosed()
		return
	}
	for {
		typ, err := c.readPacket(rawWait)
		if err != nil {
			c.t.Fatalf("waiting for DISCONNECT %v: %v", want, err)
		}
		if typ == packets.TypeDisconnect {
			if got := c.pkt.Disconnect.Reason; got != want {
				c.t.Fatalf("DISCONNECT %v, want %v", got, want)
			}
			c.expectClosed()
			return
		}
	}
}

// expectClosed reads until the broker closes the connection, failing on any DISCONNECT
// or when it stays open for rawWait.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	for {
		typ, err := c.readPacket(rawWait)
		if err == nil {
			if typ == packets.TypeDisconnect {
				c.t.Fatalf("unexpected DISCONNECT %v", c.pkt.Disconnect.Reason)
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("connection still open after %v", rawWait)
		}
		if isClosed(err) {
			return
		}
		c.t.Fatalf("reading: %v", err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}

// ping sends PINGREQ and waits for PINGRESP: everything the broker queued before it for
// this client has been read once it returns (the writer sends control packets first, so
// this proves the pipe drained only of acknowledgements; use a marker message for data).
func (c *rawClient) ping() {
	c.t.Helper()
	c.write(packets.AppendPingreq(nil))
	c.expect(packets.TypePingresp)
}

// disconnect sends a normal DISCONNECT and waits for the close.
func (c *rawClient) disconnect(reason packets.ReasonCode) {
	c.t.Helper()
	c.send(&packets.Disconnect{Version: c.version, Reason: reason})
	c.expectClosed()
}

// eventually polls cond until it holds or d passes: for state with no event to wait on
// (a goroutine count, a counter), with a bounded poll instead of a fixed sleep.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
		runtime.Gosched()
	}
}

// subscribed reports whether the session of clientID holds filter: the broker-side event a
// test waits for when the subscriber is a program that cannot tell it has subscribed.
func (b *Broker) subscribed(clientID, filter string) bool {
	b.mu.Lock()
	e := b.sessions[clientID]
	b.mu.Unlock()
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.s.Subscriptions[filter]
	return ok && e.client != nil
}

// strProps builds user properties from key, value pairs.
func userProps(kv ...string) []packets.UserProperty {
	var u []packets.UserProperty
	for i := 0; i+1 < len(kv); i += 2 {
		u = append(u, packets.UserProperty{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return u
}

// letTimePass is for rules about time itself (an expiry, a delay): there is no event to
// wait on, only a clock. Tests keep these intervals at 1-2 s.
func letTimePass(d time.Duration) { time.Sleep(d) }
