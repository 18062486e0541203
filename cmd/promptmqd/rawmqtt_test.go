package main

import (
	endian "encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// mqttConn is a minimal MQTT 5.0 client over a raw socket for the durability tests and
// benchmarks: it pipelines QoS 1 publishes up to the broker's Receive Maximum, so the client
// is never what limits the broker, and it reports every PUBACK with its reason code.
type mqttConn struct {
	conn    net.Conn
	r       *packets.Reader
	pkt     packets.Packet
	connack packets.Connack
	// receiveMaximum is the broker's Receive Maximum from CONNACK (65535 when absent).
	receiveMaximum int
}

// rawTimeout bounds each wait on the broker so a hung broker fails a test instead of hanging it.
const rawTimeout = 30 * time.Second

func dialMQTT(addr, clientID string, cleanStart bool, sessionExpiry uint32) (*mqttConn, error) {
	conn, err := net.DialTimeout("tcp", addr, rawTimeout)
	if err != nil {
		return nil, err
	}
	c := &mqttConn{conn: conn, r: packets.NewReader(conn, 64<<10)}
	c.r.SetVersion(packets.V5)
	cp := packets.Connect{Version: packets.V5, CleanStart: cleanStart, ClientID: []byte(clientID)}
	if sessionExpiry > 0 {
		cp.Properties.Set(packets.PropSessionExpiry)
		cp.Properties.SessionExpiry = sessionExpiry
	}
	if _, err := conn.Write(cp.Append(nil)); err != nil {
		conn.Close()
		return nil, err
	}
	t, err := c.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("CONNECT %q: %w", clientID, err)
	}
	if t != packets.TypeConnack || c.pkt.Connack.Reason != packets.Success {
		conn.Close()
		return nil, fmt.Errorf("CONNECT %q: got %v reason %v", clientID, t, c.pkt.Connack.Reason)
	}
	c.connack = c.pkt.Connack
	c.receiveMaximum = 65535
	if c.connack.Properties.Has(packets.PropReceiveMaximum) {
		c.receiveMaximum = int(c.connack.Properties.ReceiveMaximum)
	}
	return c, nil
}

// read reads and decodes the next packet into c.pkt.
func (c *mqttConn) read() (packets.Type, error) {
	c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	fh, body, err := c.r.ReadPacket()
	if err != nil {
		return 0, err
	}
	if err := c.pkt.Decode(packets.V5, fh, body); err != nil {
		return 0, err
	}
	return fh.Type, nil
}

// subscribe subscribes to filter and waits for the SUBACK.
func (c *mqttConn) subscribe(filter string, qos byte) error {
	s := packets.Subscribe{Version: packets.V5, PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(filter), QoS: qos}}}
	if _, err := c.conn.Write(s.Append(nil)); err != nil {
		return err
	}
	for {
		t, err := c.read()
		if err != nil {
			return err
		}
		if t == packets.TypeSuback {
			if r := c.pkt.Suback.Reasons; len(r) != 1 || r[0] > 2 {
				return fmt.Errorf("SUBACK %v", r)
			}
			return nil
		}
	}
}

func (c *mqttConn) disconnect() {
	c.conn.Write((&packets.Disconnect{Version: packets.V5}).Append(nil))
	c.conn.Close()
}

// ackResult is one PUBACK: the index of the publish it answers and its reason code.
type ackResult struct {
	index  int
	reason packets.ReasonCode
}

// publishPipelined publishes count QoS 1 messages, keeping up to window unacknowledged (at most
// the broker's Receive Maximum). payload(i, buf) fills message i's payload into buf; topic(i)
// names its topic. onAck runs on the reading goroutine for each PUBACK, in order. It returns
// when every message is acknowledged or the connection fails (the error says why).
func (c *mqttConn) publishPipelined(count, window int, retain bool, topic func(i int) string,
	payload func(i int, buf []byte) []byte, onAck func(ackResult)) error {
	window = min(window, c.receiveMaximum, 65535)
	slots := make(chan struct{}, window)
	// ids maps a packet id to the index it carries; ids are reused only after their PUBACK,
	// so with window <= 65535 no two publishes in flight share one.
	ids := make([]int, 65536)
	var mu sync.Mutex
	readErr := make(chan error, 1)
	go func() {
		acked := 0
		for acked < count {
			t, err := c.read()
			if err != nil {
				readErr <- err
				return
			}
			if t != packets.TypePuback {
				continue
			}
			mu.Lock()
			index := ids[c.pkt.Ack.PacketID]
			mu.Unlock()
			if onAck != nil {
				onAck(ackResult{index: index, reason: c.pkt.Ack.Reason})
			}
			acked++
			<-slots
		}
		readErr <- nil
	}()
	var buf, body []byte
	var p packets.Publish
	for i := 0; i < count; i++ {
		select {
		case slots <- struct{}{}:
		case err := <-readErr:
			if err == nil {
				err = fmt.Errorf("reader stopped early")
			}
			return err
		}
		id := uint16(i%65535) + 1
		mu.Lock()
		ids[id] = i
		mu.Unlock()
		body = payload(i, body[:0])
		p = packets.Publish{Version: packets.V5, QoS: 1, Retain: retain, Topic: []byte(topic(i)), PacketID: id, Payload: body}
		buf = p.Append(buf)
		// Write whenever nothing more may be sent now, or the buffer is large: many publishes
		// per syscall, as a fast client would.
		if len(slots) == cap(slots) || len(buf) >= 32<<10 || i == count-1 {
			c.conn.SetWriteDeadline(time.Now().Add(rawTimeout))
			if _, err := c.conn.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return <-readErr
}

// seqPayload is a payload of size bytes (at least 8) starting with the big-endian sequence number.
func seqPayload(size int) func(i int, buf []byte) []byte {
	return func(i int, buf []byte) []byte {
		buf = endian.BigEndian.AppendUint64(buf, uint64(i))
		for len(buf) < size {
			buf = append(buf, 'x')
		}
		return buf
	}
}

func fixedTopic(name string) func(int) string { return func(int) string { return name } }

// publishOne sends one QoS 1 PUBLISH of 16 bytes to topic and returns the reason code of its
// PUBACK.
func (c *mqttConn) publishOne(t *testing.T, topic string) packets.ReasonCode {
	t.Helper()
	var reason packets.ReasonCode
	if err := c.publishPipelined(1, 1, false, fixedTopic(topic), seqPayload(16), func(a ackResult) { reason = a.reason }); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return reason
}

// leaveDurableSubscriber connects clientID with a session that lasts an hour, subscribes to
// filters at QoS 1 and disconnects: the broker then stores a delivery row for each QoS 1
// message on them.
func leaveDurableSubscriber(t *testing.T, addr, clientID string, filters ...string) {
	t.Helper()
	c, err := dialMQTT(addr, clientID, true, 3600)
	if err != nil {
		t.Fatal(err)
	}
	for _, filter := range filters {
		if err := c.subscribe(filter, 1); err != nil {
			t.Fatal(err)
		}
	}
	c.disconnect()
}
