package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
	"github.com/x0a1b/promptmq/session"
	"github.com/x0a1b/promptmq/telemetry"
	"github.com/x0a1b/promptmq/topics"
)

// BenchmarkPublishPath measures what the broker does for one QoS 1 PUBLISH to three online
// subscribers, without sockets: make the message, route it, account for it, and take each
// delivery off its queue and acknowledge it as the writer and the client would. The two
// sub-benchmarks differ only in Instrument, so their ratio is the cost of metrics
// (acceptance: under 3%); run them in one invocation, e.g. -count=10, and compare medians.
func BenchmarkPublishPath(b *testing.B) {
	for _, instrumented := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", instrumented), func(b *testing.B) {
			br, entries := benchBroker(b, instrumented, 3)
			pub := packets.Publish{Version: packets.V5, QoS: 1, Topic: []byte("bench/topic"), Payload: make([]byte, 64)}
			var m topics.Matches
			b.ReportAllocs()
			for b.Loop() {
				start := now()
				msg := br.messages.Get(&pub, pub.Topic, 0, start, 0)
				br.route(msg, &m)
				msg.Release()
				br.routed(start, &m)
				for _, e := range entries {
					e.mu.Lock()
					o, ok := e.s.Next(start)
					if !ok {
						e.mu.Unlock()
						b.Fatal("no delivery queued")
					}
					e.s.Acked(o.PacketID)
					e.mu.Unlock()
				}
			}
			if got := br.stats.MessagesReceived.Load(); got != uint64(b.N) {
				b.Fatalf("received %d, want %d", got, b.N)
			}
		})
	}
}

// BenchmarkPublishPathMetricsOverhead runs the same publish path on two brokers, one
// instrumented, alternating in rounds of 64 publishes (and which goes first), so that load
// from other processes and CPU frequency changes fall on both alike. It reports the time per
// publish of each and the overhead in percent; the acceptance bar is under 3%.
func BenchmarkPublishPathMetricsOverhead(b *testing.B) {
	type side struct {
		br      *Broker
		entries []*entry
		m       topics.Matches
		elapsed time.Duration
		n       int
	}
	off, on := &side{}, &side{}
	off.br, off.entries = benchBroker(b, false, 3)
	on.br, on.entries = benchBroker(b, true, 3)
	pub := packets.Publish{Version: packets.V5, QoS: 1, Topic: []byte("bench/topic"), Payload: make([]byte, 64)}
	const round = 64
	run := func(s *side) {
		t0 := time.Now()
		for range round {
			start := now()
			msg := s.br.messages.Get(&pub, pub.Topic, 0, start, 0)
			s.br.route(msg, &s.m)
			msg.Release()
			s.br.routed(start, &s.m)
			for _, e := range s.entries {
				e.mu.Lock()
				if o, ok := e.s.Next(start); ok {
					e.s.Acked(o.PacketID)
				}
				e.mu.Unlock()
			}
		}
		s.elapsed += time.Since(t0)
		s.n += round
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			run(off)
			run(on)
		} else {
			run(on)
			run(off)
		}
	}
	offNs := float64(off.elapsed.Nanoseconds()) / float64(off.n)
	onNs := float64(on.elapsed.Nanoseconds()) / float64(on.n)
	b.ReportMetric(offNs, "ns/pub-off")
	b.ReportMetric(onNs, "ns/pub-on")
	b.ReportMetric((onNs-offNs)/offNs*100, "overhead-%")
}

// A counter increment on the publish path allocates nothing, nor does a histogram
// observation or the accounting of a routed PUBLISH.
func TestCounterIncrementAllocatesNothing(t *testing.T) {
	br, _ := benchBroker(t, true, 0)
	var m topics.Matches
	cases := map[string]func(){
		"counter":   func() { br.stats.MessagesReceived.Add(1) },
		"by type":   func() { br.stats.PacketsReceivedByType[packets.TypePublish].Add(1) },
		"routed":    func() { br.routed(now(), &m) },
		"sent acks": func() { br.stats.sentPackets([]byte{0x40, 0x02, 0x00, 0x01}) },
	}
	for name, fn := range cases {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

func BenchmarkCounterIncrement(b *testing.B) {
	var s Stats
	b.ReportAllocs()
	for b.Loop() {
		s.MessagesReceived.Add(1)
	}
}

// benchBroker builds a broker, not serving, with n online sessions subscribed to bench/#.
func benchBroker(tb testing.TB, instrumented bool, n int) (*Broker, []*entry) {
	cfg := conf.Default()
	cfg.Storage.DataDir = ""
	br, err := New(Options{Config: cfg})
	if err != nil {
		tb.Fatal(err)
	}
	if instrumented {
		br.Instrument(telemetry.NewRegistry())
	}
	var entries []*entry
	for i := range n {
		id := fmt.Sprintf("bench%d", i)
		e := &entry{}
		e.s = session.New(id, 0, br.limits)
		e.s.Key = br.registry.add(e)
		e.online.Store(true)
		br.sessions[id] = e
		if _, err := br.router.Subscribe(topics.Subscription{Client: e.s.Key, Filter: "bench/#", Options: topics.SubOptions{QoS: 1}}); err != nil {
			tb.Fatal(err)
		}
		entries = append(entries, e)
	}
	return br, entries
}
