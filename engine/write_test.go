package engine

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
)

// TestWriteWaitKeepsTheConnection: a subscriber that stops reading for less than the write
// timeout makes the broker's write wait for the socket (the only time a write deadline is
// set); once it reads again it gets every message, and after more than the write timeout
// without traffic the next message still arrives: the deadline of the earlier wait was
// cleared, not left to expire under a later write.
func TestWriteWaitKeepsTheConnection(t *testing.T) {
	t.Parallel()
	const writeTimeout = 400 * time.Millisecond
	const messages = 1000 // 16 MB: more than the loopback socket buffers hold
	b, s, p := floodWriteTest(t, writeTimeout, "pausing", messages)
	p.ping()                     // every message has been routed
	time.Sleep(writeTimeout / 4) // the subscriber reads nothing meanwhile: the broker's write waits
	for i := range messages {
		m := s.nextPublish()
		if got := m.Payload[:4]; got != fmt.Sprintf("%04d", i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	letTimePass(2 * writeTimeout)
	p.pub("flood/pausing", 0, 0, "after")
	if m := s.nextPublish(); m.Payload != "after" {
		t.Fatalf("after the pause: %q", m.Payload)
	}
	if n := b.Stats().Accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections, want 2", n)
	}
}

// TestWriteTimeoutEndsAStuckSubscriber: a subscriber that never reads, with the socket full,
// is disconnected once a write has waited the write timeout.
func TestWriteTimeoutEndsAStuckSubscriber(t *testing.T) {
	t.Parallel()
	b, _, _ := floodWriteTest(t, 300*time.Millisecond, "stuck", 400)
	eventually(t, 5*time.Second, "the stuck subscriber to be disconnected", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		e := b.sessions["stuck"]
		return e == nil || !e.online.Load()
	})
}

// floodWriteTest starts a broker with the write timeout, a subscriber id to flood/<id> and a
// publisher that has sent it messages of 16 KiB, each starting with its number (%04d).
func floodWriteTest(t *testing.T, writeTimeout time.Duration, id string, messages int) (*Broker, *rawClient, *rawClient) {
	t.Helper()
	b, addr := testBroker(t, func(c *conf.Config) {
		c.Server.WriteTimeout = writeTimeout
		c.MQTT.MaxQueuedMessages = 100000
	})
	topic := "flood/" + id
	s := dialRaw(t, addr, packets.V5)
	s.mustConnect(id, nil)
	s.subscribe(1, 0, sub(topic, 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect(id+"-publisher", nil)
	payload := bytes.Repeat([]byte{'x'}, 16<<10)
	var out []byte
	for i := range messages {
		out = (&packets.Publish{Version: packets.V5, Topic: []byte(topic), Payload: append([]byte(fmt.Sprintf("%04d", i)), payload...)}).Append(out[:0])
		p.write(out)
	}
	return b, s, p
}
