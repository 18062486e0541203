package engine

import (
	"encoding/binary"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/session"
)

// A persistent session's QoS 1 messages beyond its queue limit wait in the store and are all
// delivered, in order, when it comes back: none is dropped (DESIGN.md, slow consumers).
func TestSpilledMessagesWaitInTheStore(t *testing.T) {
	const limit, messages = 8, 300
	b, addr := testBroker(t, func(cfg *conf.Config) {
		cfg.Storage.DataDir = t.TempDir()
		cfg.MQTT.MaxQueuedMessages = limit
	})
	expiry := uint32(3600)
	connect := func(clean bool, r *received) *paho.Client {
		c, _ := connect5(t, addr, &paho.Connect{ClientID: "slow", CleanStart: clean, KeepAlive: 30,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, r, nil)
		return c
	}
	sub := connect(true, nil)
	if _, err := sub.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "spill", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(&paho.Disconnect{})

	pub, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30}, nil, nil)
	for i := range messages {
		payload := binary.BigEndian.AppendUint32(nil, uint32(i))
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "spill", QoS: 1, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	r := newReceived()
	connect(false, r)
	for i := range messages {
		p := r.next(t)
		if got := binary.BigEndian.Uint32(p.Payload); got != uint32(i) {
			t.Fatalf("message %d: got number %d", i, got)
		}
	}
	if n := b.Stats().Dropped[session.DropQueueFull].Load(); n != 0 {
		t.Errorf("%d messages dropped for a full queue", n)
	}
}
