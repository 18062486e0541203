package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// testRelay is the smallest broker the generator's flows need: CONNECT,
// SUBSCRIBE to exact filters or a trailing "#", PUBLISH at every QoS with
// its acknowledgements, and DISCONNECT. It exists to test the generator
// without depending on the engine.
type testRelay struct {
	ln   net.Listener
	mu   sync.Mutex
	subs []relaySub
	wg   sync.WaitGroup
}

type relaySub struct {
	filter []byte
	conn   *relayConn
}

type relayConn struct {
	mu       sync.Mutex
	conn     net.Conn
	version  byte
	packetID uint16
}

func (c *relayConn) write(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.conn.Write(b)
}

func startRelay(t *testing.T) *testRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &testRelay{ln: ln}
	r.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Go(func() { r.serve(conn) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		r.mu.Lock()
		for _, s := range r.subs {
			_ = s.conn.conn.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func matches(filter, topic []byte) bool {
	if prefix, ok := bytes.CutSuffix(filter, []byte("#")); ok {
		return bytes.HasPrefix(topic, prefix)
	}
	return bytes.Equal(filter, topic)
}

func (r *testRelay) serve(nc net.Conn) {
	defer nc.Close()
	c := &relayConn{conn: nc}
	rd := packets.NewReader(nc, 4096)
	var p packets.Packet
	for {
		fh, body, err := rd.ReadPacket()
		if err != nil {
			return
		}
		if err := p.Decode(c.version, fh, body); err != nil {
			return
		}
		switch fh.Type {
		case packets.TypeConnect:
			c.version = p.Connect.Version
			rd.SetVersion(c.version)
			ack := packets.Connack{Version: c.version}
			c.write(ack.Append(nil))
		case packets.TypeSubscribe:
			r.mu.Lock()
			for _, s := range p.Subscribe.Subscriptions {
				r.subs = append(r.subs, relaySub{filter: bytes.Clone(s.Filter), conn: c})
			}
			r.mu.Unlock()
			ack := packets.Suback{Version: c.version, PacketID: p.Subscribe.PacketID, Reasons: []packets.ReasonCode{packets.ReasonCode(p.Subscribe.Subscriptions[0].QoS)}}
			c.write(ack.Append(nil))
		case packets.TypePublish:
			r.forward(&p.Publish)
			switch p.Publish.QoS {
			case 1:
				ack := packets.Ack{Type: packets.TypePuback, Version: c.version, PacketID: p.Publish.PacketID}
				c.write(ack.Append(nil))
			case 2:
				ack := packets.Ack{Type: packets.TypePubrec, Version: c.version, PacketID: p.Publish.PacketID}
				c.write(ack.Append(nil))
			}
		case packets.TypePubrel:
			ack := packets.Ack{Type: packets.TypePubcomp, Version: c.version, PacketID: p.Ack.PacketID}
			c.write(ack.Append(nil))
		case packets.TypePubrec:
			ack := packets.Ack{Type: packets.TypePubrel, Version: c.version, PacketID: p.Ack.PacketID}
			c.write(ack.Append(nil))
		case packets.TypeDisconnect:
			return
		}
	}
}

func (r *testRelay) forward(pub *packets.Publish) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.subs {
		if !matches(s.filter, pub.Topic) {
			continue
		}
		out := packets.Publish{Version: s.conn.version, QoS: pub.QoS, Topic: pub.Topic, Payload: pub.Payload}
		s.conn.mu.Lock()
		if out.QoS > 0 {
			s.conn.packetID++
			if s.conn.packetID == 0 {
				s.conn.packetID = 1
			}
			out.PacketID = s.conn.packetID
		}
		_, _ = s.conn.conn.Write(out.Append(nil))
		s.conn.mu.Unlock()
	}
}

func TestScenariosAgainstRelay(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"fanin qos0 v5", []string{"-scenario", "fanin", "-publishers", "4"}},
		{"pairs qos1 v311", []string{"-scenario", "pairs", "-pairs", "5", "-qos", "1", "-mqtt", "3.1.1"}},
		{"pairs qos2 v5", []string{"-scenario", "pairs", "-pairs", "3", "-qos", "2", "-inflight", "4"}},
		{"fanout qos1", []string{"-scenario", "fanout", "-subscribers", "10", "-qos", "1"}},
		{"latency qos1", []string{"-scenario", "latency", "-pairs", "4", "-rate", "2000", "-qos", "1"}},
		{"connrate", []string{"-scenario", "connrate", "-workers", "2"}},
		{"conns", []string{"-scenario", "conns", "-conns", "50", "-sources", "2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			relay := startRelay(t)
			args := append([]string{"-addr", relay.ln.Addr().String(), "-duration", "200ms", "-warmup", "50ms"}, tc.args...)
			c, err := parseFlags(args)
			if err != nil {
				t.Fatal(err)
			}
			res, err := run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if c.scenario == "conns" {
				if res.Conns != 50 {
					t.Fatalf("conns: held %d, want 50", res.Conns)
				}
				return
			}
			if res.Errors != "" {
				t.Fatalf("errors: %s", res.Errors)
			}
			if c.scenario == "connrate" {
				if res.Cycles == 0 {
					t.Fatal("connrate: no cycle completed")
				}
				return
			}
			if res.Delivered == 0 || res.TotalPublished == 0 {
				t.Fatalf("nothing flowed: %+v", res)
			}
			if res.Lost+res.Duplicated+res.OutOfOrder != 0 {
				t.Fatalf("lost %d, duplicated %d, out of order %d of %d", res.Lost, res.Duplicated, res.OutOfOrder, res.TotalExpected)
			}
			if c.scenario == "latency" && (res.P50us <= 0 || res.MaxUs < res.P99us) {
				t.Fatalf("latency quantiles: %+v", res)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-qos", "3"}, {"-mqtt", "3.1"}, {"-size", "8"}, {"-scenario", "nope"}, {"-inflight", "0"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestConnectRefusedIsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c, err := parseFlags([]string{"-addr", addr, "-scenario", "pairs", "-pairs", "1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := run(ctx, c); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run against a closed port: %v", err)
	}
}
