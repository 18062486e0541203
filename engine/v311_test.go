package engine

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// connect311 connects a paho.mqtt.golang (MQTT 3.1.1) client; onMessage receives every
// message (there are no per-subscription handlers here).
func connect311(t *testing.T, addr, id string, clean bool, edit func(*mqtt.ClientOptions)) (mqtt.Client, chan mqtt.Message) {
	t.Helper()
	msgs := make(chan mqtt.Message, 1024)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { msgs <- m })
	if edit != nil {
		edit(opts)
	}
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(rawWait) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, msgs
}

func wait311(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(rawWait) {
		t.Fatalf("%s: no answer within %v", what, rawWait)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func next311(t *testing.T, msgs chan mqtt.Message) mqtt.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(rawWait):
		t.Fatal("no message")
		return nil
	}
}

// TestPaho311 drives the deliverables that exist in 3.1.1 with paho.mqtt.golang.
func TestPaho311(t *testing.T) {
	t.Parallel()
	t.Run("QoS matrix", func(t *testing.T) {
		t.Parallel()
		_, addr := testBroker(t, nil)
		sub, msgs := connect311(t, addr, "sub", true, nil)
		pub, _ := connect311(t, addr, "pub", true, nil)
		for q := byte(0); q <= 2; q++ {
			wait311(t, sub.Subscribe(fmt.Sprint("q/", q), q, nil), "subscribe")
		}
		for sq := byte(0); sq <= 2; sq++ {
			for pq := byte(0); pq <= 2; pq++ {
				payload := fmt.Sprintf("%d-%d", pq, sq)
				wait311(t, pub.Publish(fmt.Sprint("q/", sq), pq, false, payload), "publish")
				m := next311(t, msgs)
				if string(m.Payload()) != payload || m.Qos() != min(pq, sq) {
					t.Fatalf("got %q QoS %d, want %q QoS %d", m.Payload(), m.Qos(), payload, min(pq, sq))
				}
			}
		}
	})
	t.Run("retained set replace clear", func(t *testing.T) {
		t.Parallel()
		_, addr := testBroker(t, nil)
		pub, _ := connect311(t, addr, "pub", true, nil)
		wait311(t, pub.Publish("r/a", 1, true, "one"), "publish")
		wait311(t, pub.Publish("r/a", 1, true, "two"), "publish")
		wait311(t, pub.Publish("r/b", 1, true, "bee"), "publish")
		wait311(t, pub.Publish("r/b", 1, true, ""), "clear")
		sub, msgs := connect311(t, addr, "sub", true, nil)
		wait311(t, sub.Subscribe("r/+", 1, nil), "subscribe")
		if m := next311(t, msgs); m.Topic() != "r/a" || string(m.Payload()) != "two" || !m.Retained() {
			t.Fatalf("got %s %q retained %v", m.Topic(), m.Payload(), m.Retained())
		}
		wait311(t, sub.Subscribe("marker", 0, nil), "subscribe")
		wait311(t, pub.Publish("marker", 0, false, "m"), "marker")
		if m := next311(t, msgs); m.Topic() != "marker" {
			t.Fatalf("got %s, want the marker (r/b was cleared)", m.Topic())
		}
	})
	t.Run("persistent session receives while offline", func(t *testing.T) {
		t.Parallel()
		_, addr := testBroker(t, nil)
		sub, _ := connect311(t, addr, "durable", false, nil)
		wait311(t, sub.Subscribe("off", 2, nil), "subscribe")
		sub.Disconnect(100)
		pub, _ := connect311(t, addr, "pub", true, nil)
		for q := byte(1); q <= 2; q++ {
			wait311(t, pub.Publish("off", q, false, fmt.Sprint("qos ", q)), "publish")
		}
		_, msgs := connect311(t, addr, "durable", false, nil)
		for q := byte(1); q <= 2; q++ {
			if m := next311(t, msgs); string(m.Payload()) != fmt.Sprint("qos ", q) {
				t.Fatalf("got %q", m.Payload())
			}
		}
	})
	t.Run("will on lost connection, none on DISCONNECT", func(t *testing.T) {
		t.Parallel()
		_, addr := testBroker(t, nil)
		w, msgs := connect311(t, addr, "watcher", true, nil)
		wait311(t, w.Subscribe("will/+", 1, nil), "subscribe")
		polite, _ := connect311(t, addr, "polite", true, func(o *mqtt.ClientOptions) { o.SetWill("will/polite", "bye", 1, false) })
		polite.Disconnect(100)
		rude := dialRaw(t, addr, 4)
		rude.mustConnect("rude", withWill311("will/rude", "gone"))
		rude.conn.Close()
		if m := next311(t, msgs); m.Topic() != "will/rude" || string(m.Payload()) != "gone" {
			t.Fatalf("got %s %q, want only the rude client's will", m.Topic(), m.Payload())
		}
	})
	t.Run("unsubscribe", func(t *testing.T) {
		t.Parallel()
		_, addr := testBroker(t, nil)
		c, msgs := connect311(t, addr, "c", true, nil)
		wait311(t, c.Subscribe("u", 1, nil), "subscribe")
		wait311(t, c.Subscribe("marker", 1, nil), "subscribe")
		wait311(t, c.Unsubscribe("u"), "unsubscribe")
		wait311(t, c.Publish("u", 1, false, "x"), "publish")
		wait311(t, c.Publish("marker", 1, false, "m"), "publish")
		if m := next311(t, msgs); m.Topic() != "marker" {
			t.Fatalf("got %s after UNSUBSCRIBE", m.Topic())
		}
	})
	t.Run("takeover", func(t *testing.T) {
		t.Parallel()
		_, addr := testBroker(t, nil)
		lost := make(chan error, 1)
		connect311(t, addr, "twin", true, func(o *mqtt.ClientOptions) {
			o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
		})
		connect311(t, addr, "twin", true, nil)
		select {
		case <-lost:
		case <-time.After(rawWait):
			t.Fatal("the first client was not disconnected by the takeover")
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		t.Parallel()
		_, addr := testBroker(t, nil)
		// paho pings on its own: the connection stays beyond 1.5 keep-alives. Three seconds
		// leave the ping 1.5 s of slack on a loaded CI machine (1 s was flaky under -race).
		c, msgs := connect311(t, addr, "pinger", true, func(o *mqtt.ClientOptions) { o.SetKeepAlive(3 * time.Second) })
		wait311(t, c.Subscribe("ka", 0, nil), "subscribe")
		letTimePass(5 * time.Second)
		wait311(t, c.Publish("ka", 0, false, "alive"), "publish")
		if m := next311(t, msgs); string(m.Payload()) != "alive" {
			t.Fatalf("got %q", m.Payload())
		}
	})
}
