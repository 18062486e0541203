package main

import (
	endian "encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

// TestClusterPairsBenchmark measures the hop between nodes (issue 12): P publisher/subscriber
// pairs at QoS 0, 64-byte payloads, each publisher on node 1 and its subscriber on node 2 of a
// two-process cluster, against the same pairs on one node with cluster.enabled = false, rounds
// interleaved in the same run. It prints messages per second delivered and the latency
// percentiles (publish to receipt, measured by the test process). Run it with
//
//	PMQ_CLUSTER_BENCH=1 go test -run TestClusterPairsBenchmark -v ./cmd/promptmqd
//
// (bench/cluster.sh does). PMQ_BENCH_PAIRS (100), PMQ_BENCH_SECONDS (5), PMQ_BENCH_ROUNDS (3),
// PMQ_BENCH_RATE (20000, the paced run); PMQ_BENCH_PUB_ADDR and PMQ_BENCH_SUB_ADDR run once
// against brokers started by hand, to profile them. PMQ_BENCH_BASE names a promptmqd binary built
// at an earlier commit: its two-node rounds run interleaved with this build's, an A/B of the hop
// in the same run (bench/cluster.sh HOP_BASE builds it).
// The generator in bench/ takes one broker address, so it cannot place a pair's two ends on
// different nodes; this harness speaks MQTT over raw sockets with the same flow control idea
// (a window of messages in flight per pair) so the brokers, not the client, set the pace.
func TestClusterPairsBenchmark(t *testing.T) {
	if os.Getenv("PMQ_CLUSTER_BENCH") == "" {
		t.Skip("set PMQ_CLUSTER_BENCH=1 to run the cluster benchmark")
	}
	pairs := envInt("PMQ_BENCH_PAIRS", 100)
	seconds := envInt("PMQ_BENCH_SECONDS", 5)
	rounds := envInt("PMQ_BENCH_ROUNDS", 3)
	rate := envInt("PMQ_BENCH_RATE", 20000)
	if pubAddr, subAddr := os.Getenv("PMQ_BENCH_PUB_ADDR"), os.Getenv("PMQ_BENCH_SUB_ADDR"); pubAddr != "" && subAddr != "" {
		// Brokers started by hand (to profile them): one saturated run against them.
		t.Logf("external: %s", runPairs(t, pubAddr, subAddr, pairs, time.Duration(seconds)*time.Second, 0))
		return
	}
	base := os.Getenv("PMQ_BENCH_BASE")
	for _, mode := range []struct {
		name string
		rate int
	}{{"saturated", 0}, {fmt.Sprintf("paced %d msgs/s", rate), rate}} {
		var single, clustered, baseline []pairsResult
		for round := 1; round <= rounds; round++ {
			one := startBroker(t, "127.0.0.1:0", "--data-dir", "")
			r := runPairs(t, one.addr, one.addr, pairs, time.Duration(seconds)*time.Second, mode.rate)
			one.stop()
			single = append(single, r)
			t.Logf("%s round %d single  %s", mode.name, round, r)

			nodes := startCluster(t, 2)
			r = runPairs(t, nodes[0].proc.addr, nodes[1].proc.addr, pairs, time.Duration(seconds)*time.Second, mode.rate)
			for _, n := range nodes {
				n.proc.stop()
			}
			clustered = append(clustered, r)
			t.Logf("%s round %d cluster %s", mode.name, round, r)

			if base != "" {
				// The test processes start `binary`; these rounds start the base build instead.
				own := binary
				binary = base
				nodes := startCluster(t, 2)
				binary = own
				r = runPairs(t, nodes[0].proc.addr, nodes[1].proc.addr, pairs, time.Duration(seconds)*time.Second, mode.rate)
				for _, n := range nodes {
					n.proc.stop()
				}
				baseline = append(baseline, r)
				t.Logf("%s round %d base    %s", mode.name, round, r)
			}
		}
		s, c := medianResult(single), medianResult(clustered)
		t.Logf("%s: median of %d rounds, %d pairs QoS 0, load %s", mode.name, rounds, pairs, loadAvg())
		t.Logf("  single node:          %s", s)
		t.Logf("  2 nodes, cross-node:  %s", c)
		t.Logf("  cluster/single msgs/s %.2f; p50 added by the hop %v; p99 added by the hop %v", c.rate/s.rate, c.p50-s.p50, c.p99-s.p99)
		if len(baseline) > 0 {
			bl := medianResult(baseline)
			t.Logf("  2 nodes, base build:  %s", bl)
			t.Logf("  base/single msgs/s %.2f; p50 added by the hop %v; p99 added by the hop %v", bl.rate/s.rate, bl.p50-s.p50, bl.p99-s.p99)
		}
	}
}

type pairsResult struct {
	rate          float64 // messages delivered per second
	p50, p99, max time.Duration
}

func (r pairsResult) String() string {
	return fmt.Sprintf("%9.0f msgs/s  p50 %8v  p99 %8v  max %8v", r.rate, r.p50, r.p99, r.max)
}

func medianResult(rs []pairsResult) pairsResult {
	pick := func(get func(pairsResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return pairsResult{
		rate: pick(func(r pairsResult) float64 { return r.rate }),
		p50:  time.Duration(pick(func(r pairsResult) float64 { return float64(r.p50) })),
		p99:  time.Duration(pick(func(r pairsResult) float64 { return float64(r.p99) })),
		max:  time.Duration(pick(func(r pairsResult) float64 { return float64(r.max) })),
	}
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if len(b) > 14 {
		b = b[:14]
	}
	return string(b)
}

// pairWindow is how many messages a pair may have published and not yet received.
const pairWindow = 100

// runPairs runs the pairs for d after a one-second warm-up: publishers connect to pubAddr,
// subscribers to subAddr.
func runPairs(t *testing.T, pubAddr, subAddr string, pairs int, d time.Duration, rate int) pairsResult {
	t.Helper()
	type pair struct {
		received atomic.Uint64
		wake     chan struct{}
	}
	ps := make([]*pair, pairs)
	var measuring atomic.Bool
	var mu sync.Mutex
	var latencies []time.Duration
	var delivered atomic.Uint64
	var failed atomic.Int32
	var ready sync.WaitGroup
	ready.Add(pairs)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	subs := make([]*mqttConn, pairs)
	for i := range ps {
		ps[i] = &pair{wake: make(chan struct{}, 1)}
		sub, err := dialMQTT(subAddr, "bench-sub-"+strconv.Itoa(i), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.subscribe("bench/pair/"+strconv.Itoa(i), 0); err != nil {
			t.Fatal(err)
		}
		subs[i] = sub
	}
	pubs := make([]*mqttConn, pairs)
	for i := range ps {
		pub, err := dialMQTT(pubAddr, "bench-pub-"+strconv.Itoa(i), true, 0)
		if err != nil {
			t.Fatal(err)
		}
		pubs[i] = pub
	}
	for i := range ps {
		p := ps[i]
		sub, pub := subs[i], pubs[i]
		wg.Add(2)
		go func() {
			defer wg.Done()
			var local []time.Duration
			var pk packets.Publish
			for {
				sub.conn.SetReadDeadline(time.Now().Add(rawTimeout + clusterGuard))
				fh, body, err := sub.r.ReadPacket()
				if err != nil {
					break
				}
				if fh.Type != packets.TypePublish || pk.Decode(packets.V5, fh.Flags, body) != nil || len(pk.Payload) < 8 {
					continue
				}
				if measuring.Load() {
					sent := int64(endian.BigEndian.Uint64(pk.Payload))
					local = append(local, time.Duration(time.Now().UnixNano()-sent))
					delivered.Add(1)
				}
				p.received.Add(1)
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			topic := []byte("bench/pair/" + strconv.Itoa(i))
			payload := make([]byte, 64)
			var buf []byte
			// Interest reaches the publisher's node asynchronously: probe until one arrives.
			deadline := time.After(clusterGuard)
			for p.received.Load() == 0 {
				endian.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
				pk := packets.Publish{Version: packets.V5, Topic: topic, Payload: payload}
				if _, err := pub.conn.Write(pk.Append(nil)); err != nil {
					return
				}
				select {
				case <-p.wake:
				case <-time.After(100 * time.Millisecond):
				case <-deadline:
					failed.Add(1)
					ready.Done()
					return
				}
			}
			ready.Done()
			sent := p.received.Load()
			if rate > 0 {
				// Paced: one message per interval, the latency row's way of measuring a hop
				// without the queueing of a saturated broker.
				interval := time.Duration(int64(time.Second) * int64(pairs) / int64(rate))
				tick := time.NewTicker(interval)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					endian.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
					pk := packets.Publish{Version: packets.V5, Topic: topic, Payload: payload}
					buf = pk.Append(buf[:0])
					if _, err := pub.conn.Write(buf); err != nil {
						return
					}
				}
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				room := pairWindow - int(sent-p.received.Load())
				if room <= 0 {
					select {
					case <-p.wake:
					case <-stop:
						return
					case <-time.After(time.Second): // a QoS 0 message may be dropped: do not wait forever
						p.received.Store(sent)
					}
					continue
				}
				buf = buf[:0]
				for k := 0; k < room; k++ {
					endian.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
					pk := packets.Publish{Version: packets.V5, Topic: topic, Payload: payload}
					buf = pk.Append(buf)
				}
				if _, err := pub.conn.Write(buf); err != nil {
					return
				}
				sent += uint64(room)
			}
		}()
	}
	ready.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d pairs never connected across nodes", failed.Load())
	}
	time.Sleep(time.Second) // warm-up: the measured interval is a duration, not an event
	measuring.Store(true)
	start := time.Now()
	time.Sleep(d)
	measuring.Store(false)
	elapsed := time.Since(start)
	n := delivered.Load()
	close(stop)
	for i := range ps {
		pubs[i].disconnect()
		subs[i].disconnect()
	}
	wg.Wait()
	slices.Sort(latencies)
	r := pairsResult{rate: float64(n) / elapsed.Seconds()}
	if len(latencies) > 0 {
		r.p50 = latencies[len(latencies)/2]
		r.p99 = latencies[len(latencies)*99/100]
		r.max = latencies[len(latencies)-1]
	}
	return r
}
