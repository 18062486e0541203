package engine

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
)

// marker publishes a QoS 0 message on topic "marker" from c: a later event that proves
// everything routed before it to a subscriber of "marker" has been written.
func expectMarker(t *testing.T, m message) {
	t.Helper()
	if m.Topic != "marker" {
		t.Fatalf("got %q %q, want the marker (nothing before it)", m.Topic, m.Payload)
	}
}

func TestSubackReasonCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		version byte
		edit    func(*conf.Config)
		subs    []packets.Subscription
		want    []packets.ReasonCode
	}{
		{"granted QoS per filter", packets.V5, nil,
			[]packets.Subscription{sub("a", 0), sub("b", 1), sub("c/+", 2)}, []packets.ReasonCode{0, 1, 2}},
		{"Maximum QoS downgrades the grant", packets.V5, func(c *conf.Config) { c.MQTT.MaxQoS = 1 },
			[]packets.Subscription{sub("a", 2), sub("b", 0)}, []packets.ReasonCode{1, 0}},
		{"wildcards not available", packets.V5, func(c *conf.Config) { c.MQTT.WildcardAvailable = false },
			[]packets.Subscription{sub("a/+", 1), sub("a/b", 1), sub("#", 0)},
			[]packets.ReasonCode{packets.WildcardSubscriptionsNotSupported, 1, packets.WildcardSubscriptionsNotSupported}},
		{"shared subscriptions not available", packets.V5, func(c *conf.Config) { c.MQTT.SharedSubAvailable = false },
			[]packets.Subscription{sub("$share/g/a", 1), sub("a", 2)}, []packets.ReasonCode{packets.SharedSubscriptionsNotSupported, 2}},
		{"3.1.1 failure is 0x80", packets.V311, func(c *conf.Config) { c.MQTT.WildcardAvailable = false },
			[]packets.Subscription{sub("a/#", 1), sub("a", 1)}, []packets.ReasonCode{0x80, 1}},
		{"3.1.1 granted QoS", packets.V311, nil,
			[]packets.Subscription{sub("a", 2), sub("b", 0)}, []packets.ReasonCode{2, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := testBroker(t, tc.edit)
			c := dialRaw(t, addr, tc.version)
			c.mustConnect("s", nil)
			if got := c.subscribe(1, 0, tc.subs...); !slices.Equal(got, tc.want) {
				t.Fatalf("SUBACK %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUnsubackReasonCodes(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("u", nil)
	c.subscribe(1, 0, sub("a/+", 1), sub("$share/g/b", 1))
	c.send(&packets.Unsubscribe{Version: packets.V5, PacketID: 2, Filters: [][]byte{[]byte("a/+"), []byte("nope"), []byte("$share/g/b")}})
	ua := c.expect(packets.TypeUnsuback).Unsuback
	if want := []packets.ReasonCode{0, packets.NoSubscriptionExisted, 0}; ua.PacketID != 2 || !slices.Equal(ua.Reasons, want) {
		t.Fatalf("UNSUBACK %d %v, want 2 %v", ua.PacketID, ua.Reasons, want)
	}
	// Unsubscribed: only the marker arrives.
	c.subscribe(3, 0, sub("marker", 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.pub("a/x", 1, 1, "gone")
	p.pub("b", 1, 2, "gone")
	p.pub("marker", 0, 0, "m")
	expectMarker(t, c.nextPublish())
}

// TestNoLocal: two clients that both subscribe with No Local each get the other's message
// and never their own [MQTT-3.8.3-3] (Paho's test_request_response).
func TestNoLocal(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	a, b := dialRaw(t, addr, packets.V5), dialRaw(t, addr, packets.V5)
	a.mustConnect("a", nil)
	b.mustConnect("b", nil)
	for _, c := range []*rawClient{a, b} {
		c.subscribe(1, 0, packets.Subscription{Filter: []byte("rr"), QoS: 1, NoLocal: true}, sub("marker", 0))
	}
	a.pub("rr", 1, 1, "from a")
	if m := b.receive(); m.Payload != "from a" {
		t.Fatalf("b got %q", m.Payload)
	}
	b.pub("rr", 1, 1, "from b")
	if m := a.receive(); m.Payload != "from b" {
		t.Fatalf("a got %q", m.Payload)
	}
	a.pub("marker", 0, 0, "m")
	expectMarker(t, a.nextPublish()) // a's own "from a" never came
	expectMarker(t, b.nextPublish())
}

func TestRetainAsPublished(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("rap", nil)
	c.subscribe(1, 0, packets.Subscription{Filter: []byte("rap/keep"), QoS: 1, RetainAsPublished: true}, sub("rap/clear", 1))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.publish(&packets.Publish{Topic: []byte("rap/keep"), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("k")})
	p.publish(&packets.Publish{Topic: []byte("rap/clear"), QoS: 1, PacketID: 2, Retain: true, Payload: []byte("c")})
	if m := c.receive(); m.Topic != "rap/keep" || !m.Retain {
		t.Fatalf("Retain As Published: got %+v, want retain set", m)
	}
	if m := c.receive(); m.Topic != "rap/clear" || m.Retain {
		t.Fatalf("without Retain As Published: got %+v, want retain clear [MQTT-3.3.1-13]", m)
	}
}

// TestRetainHandling covers Retain Handling 0, 1 and 2 on a first subscription and on a
// resubscription to the same filter.
func TestRetainHandling(t *testing.T) {
	t.Parallel()
	cases := []struct {
		handling     byte
		first, again bool // retained message sent on the first and on the repeated SUBSCRIBE
	}{{0, true, true}, {1, true, false}, {2, false, false}}
	for _, tc := range cases {
		t.Run(fmt.Sprint("handling ", tc.handling), func(t *testing.T) {
			t.Parallel()
			_, addr := testBroker(t, nil)
			p := dialRaw(t, addr, packets.V5)
			p.mustConnect("p", nil)
			p.publish(&packets.Publish{Topic: []byte("rh/a"), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("kept")})
			c := dialRaw(t, addr, packets.V5)
			c.mustConnect("c", nil)
			c.subscribe(1, 0, sub("marker", 0))
			for i, want := range []bool{tc.first, tc.again} {
				c.subscribe(uint16(2+i), 0, packets.Subscription{Filter: []byte("rh/+"), QoS: 1, RetainHandling: tc.handling})
				if want {
					if m := c.receive(); m.Topic != "rh/a" || !m.Retain || m.Payload != "kept" {
						t.Fatalf("subscribe %d: got %+v, want the retained message with RETAIN", i, m)
					}
				}
				p.pub("marker", 0, 0, "m")
				expectMarker(t, c.nextPublish())
			}
		})
	}
}

// TestSubscriptionIdentifiers: overlapping subscriptions of one client give one delivery
// at the highest QoS carrying every matching identifier.
func TestSubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("ids", nil)
	c.subscribe(1, 11, sub("sid/+", 1))
	c.subscribe(2, 22, sub("sid/#", 2))
	c.subscribe(3, 0, sub("sid/a", 0), sub("marker", 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.pub("sid/a", 2, 1, "x")
	m := c.receive()
	ids := slices.Sorted(slices.Values(m.Props.SubscriptionIDs))
	if m.QoS != 2 || !slices.Equal(ids, []uint32{11, 22}) {
		t.Fatalf("got QoS %d ids %v, want QoS 2 ids [11 22]", m.QoS, m.Props.SubscriptionIDs)
	}
	p.pub("marker", 0, 0, "m")
	expectMarker(t, c.nextPublish()) // one delivery, not one per subscription
}

// TestSharedSubscription: each message goes to one member of the group; a group gets no
// retained messages on subscribe; a non-shared subscriber still gets every message.
func TestSharedSubscription(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.publish(&packets.Publish{Topic: []byte("sh/r"), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("retained")})
	members := make([]*rawClient, 3)
	for i := range members {
		members[i] = dialRaw(t, addr, packets.V5)
		members[i].mustConnect(fmt.Sprint("m", i), nil)
		if got := members[i].subscribe(1, 0, sub("$share/g/sh/+", 1), sub("marker", 0)); !slices.Equal(got, []packets.ReasonCode{1, 0}) {
			t.Fatalf("SUBACK %v", got)
		}
	}
	plain := dialRaw(t, addr, packets.V5)
	plain.mustConnect("plain", nil)
	plain.subscribe(1, 0, packets.Subscription{Filter: []byte("sh/+"), QoS: 1, RetainHandling: 2}, sub("marker", 0))
	const n = 30
	for i := 1; i <= n; i++ {
		p.pub("sh/x", 1, uint16(i+1), fmt.Sprint(i))
	}
	p.pub("marker", 0, 0, "m")
	seen := map[string]int{}
	for _, c := range members {
		for {
			m := c.nextPublish()
			if m.Topic == "marker" {
				break
			}
			c.ackPublish(m)
			if m.Payload == "retained" {
				t.Fatalf("a shared subscription got a retained message [MQTT-3.3.1-?]")
			}
			seen[m.Payload]++
		}
	}
	for i := 1; i <= n; i++ {
		if seen[fmt.Sprint(i)] != 1 {
			t.Fatalf("message %d delivered %d times to the group, want once: %v", i, seen[fmt.Sprint(i)], seen)
		}
	}
	for i := 1; i <= n; i++ {
		if m := plain.receive(); m.Payload != fmt.Sprint(i) {
			t.Fatalf("plain subscriber got %q, want %d", m.Payload, i)
		}
	}
}

// TestDollarTopics: a filter starting with a wildcard does not match a topic starting with
// '$' [MQTT-4.7.2-1].
func TestDollarTopics(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("d", nil)
	c.subscribe(1, 0, sub("#", 0), sub("+/x", 0), sub("$app/x", 0))
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	p.pub("$app/x", 0, 0, "dollar")
	if m := c.nextPublish(); m.Topic != "$app/x" || len(m.Props.SubscriptionIDs) != 0 {
		t.Fatalf("got %+v", m)
	}
	p.pub("marker", 0, 0, "m")
	expectMarker(t, c.nextPublish()) // one delivery only: # and +/x did not match
}

// TestRetained: stored, replaced, cleared by an empty payload, with its expiry.
func TestRetained(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	retain := func(topic, payload string, expiry uint32) {
		pp := &packets.Publish{Topic: []byte(topic), QoS: 1, PacketID: 1, Retain: true, Payload: []byte(payload)}
		if expiry > 0 {
			pp.Properties.Set(packets.PropMessageExpiry)
			pp.Properties.MessageExpiry = expiry
		}
		p.publish(pp)
	}
	fresh := func(id string) *rawClient {
		c := dialRaw(t, addr, packets.V5)
		c.mustConnect(id, nil)
		c.subscribe(1, 0, sub("marker", 0))
		return c
	}
	retain("ret/a", "one", 0)
	retain("ret/a", "two", 0) // replaces
	retain("ret/b", "bee", 0)
	retain("ret/c", "short", 1)
	c := fresh("c1")
	c.subscribe(2, 0, sub("ret/+", 1))
	got := map[string]string{}
	for range 3 {
		m := c.receive()
		if !m.Retain {
			t.Fatalf("retained message without RETAIN: %+v", m)
		}
		got[m.Topic] = m.Payload
		if m.Topic == "ret/c" && (!m.Props.Has(packets.PropMessageExpiry) || m.Props.MessageExpiry > 1) {
			t.Fatalf("retained ret/c carries expiry %v %d, want at most 1", m.Props.Has(packets.PropMessageExpiry), m.Props.MessageExpiry)
		}
	}
	if want := map[string]string{"ret/a": "two", "ret/b": "bee", "ret/c": "short"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("retained %v, want %v", got, want)
	}
	retain("ret/b", "", 0) // clears
	c.receive()            // the live clear goes to the existing subscriber
	c2 := fresh("c2")
	c2.subscribe(2, 0, sub("ret/b", 1))
	p.pub("marker", 0, 0, "m")
	expectMarker(t, c2.nextPublish())
}

// TestRetainedExpiry: a retained message whose expiry passed is not sent on subscribe.
func TestRetainedExpiry(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	p := dialRaw(t, addr, packets.V5)
	p.mustConnect("p", nil)
	pp := &packets.Publish{Topic: []byte("exp/r"), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("soon gone")}
	pp.Properties.Set(packets.PropMessageExpiry)
	pp.Properties.MessageExpiry = 1
	p.publish(pp)
	letTimePass(1100 * time.Millisecond)
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("c", nil)
	c.subscribe(1, 0, sub("exp/r", 1), sub("marker", 0))
	p.pub("marker", 0, 0, "m")
	expectMarker(t, c.nextPublish())
}

// TestSharedSubscriptionPaho is the same rule driven by paho.golang clients.
func TestSharedSubscriptionPaho(t *testing.T) {
	t.Parallel()
	_, addr := testBroker(t, nil)
	r1, r2 := newReceived(), newReceived()
	s1, _ := connect5(t, addr, &paho.Connect{ClientID: "s1", CleanStart: true, KeepAlive: 30}, r1, nil)
	s2, _ := connect5(t, addr, &paho.Connect{ClientID: "s2", CleanStart: true, KeepAlive: 30}, r2, nil)
	for _, s := range []*paho.Client{s1, s2} {
		if _, err := s.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/grp/work", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	pub, _ := connect5(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30}, nil, nil)
	const n = 20
	for i := range n {
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "work", QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range n {
		var m *paho.Publish
		select {
		case m = <-r1.ch:
		case m = <-r2.ch:
		case <-ctx5(t).Done():
			t.Fatalf("only %d of %d messages reached the group", len(seen), n)
		}
		if seen[string(m.Payload)] {
			t.Fatalf("message %s delivered twice", m.Payload)
		}
		seen[string(m.Payload)] = true
	}
}
