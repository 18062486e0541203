package engine

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

func TestPublishSubscribeEachQoS(t *testing.T) {
	_, addr := testBroker(t, nil)
	r := newReceived()
	sub, _ := connect5(t, addr, &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30}, r, nil)
	pub, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30}, nil, nil)
	sa, err := sub.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "a/+/c", QoS: 2}}})
	if err != nil || sa.Reasons[0] != 2 {
		t.Fatalf("subscribe: %v %+v", err, sa)
	}
	for qos := byte(0); qos <= 2; qos++ {
		payload := []byte(fmt.Sprintf("qos %d", qos))
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "a/b/c", QoS: qos, Payload: payload}); err != nil {
			t.Fatalf("publish qos %d: %v", qos, err)
		}
		got := r.next(t)
		if got.Topic != "a/b/c" || got.QoS != qos || !bytes.Equal(got.Payload, payload) {
			t.Fatalf("qos %d: got topic %q qos %d payload %q", qos, got.Topic, got.QoS, got.Payload)
		}
	}
}
