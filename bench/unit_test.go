package main

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/packets"
)

func TestBucketRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 255, 256, 257, 1000, 1 << 20, 123456789, 1<<62 + 12345} {
		i := bucketOf(v)
		low, next := bucketLow(i), bucketLow(i+1)
		if v < low || v >= next {
			t.Errorf("value %d in bucket %d = [%d, %d)", v, i, low, next)
		}
		if v >= histSub && float64(next-low)/float64(low) > 1.0/histSub+1e-9 {
			t.Errorf("bucket of %d is %d wide: more than 1/%d", v, next-low, histSub)
		}
	}
}

func TestQuantilesWithinOnePercent(t *testing.T) {
	var h histogram
	rng := rand.New(rand.NewPCG(1, 2))
	values := make([]int64, 100000)
	for i := range values {
		values[i] = rng.Int64N(int64(50 * time.Millisecond))
		h.record(values[i])
	}
	slices.Sort(values)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := values[int(q*float64(len(values)))-1]
		got := int64(h.quantile(q))
		if got < want || float64(got-want) > float64(want)/histSub+1 {
			t.Errorf("q%.3f = %d, want %d within 1/%d above", q, got, want, histSub)
		}
	}
	if h.quantile(1) != time.Duration(values[len(values)-1]) {
		t.Errorf("q1 = %v, want the maximum %d", h.quantile(1), values[len(values)-1])
	}
	var merged histogram
	merged.merge(&h)
	merged.merge(&h)
	if merged.total != 2*h.total || merged.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("merge: total %d, median %v", merged.total, merged.quantile(0.5))
	}
}

func TestStreamCounts(t *testing.T) {
	cases := []struct {
		name               string
		seqs               []uint64
		unique, dup, order uint64
		sent               uint64
		wantLost           uint64
	}{
		{"in order", []uint64{0, 1, 2, 3}, 4, 0, 0, 4, 0},
		{"duplicate", []uint64{0, 1, 1, 2}, 3, 1, 0, 3, 0},
		{"lost in the middle", []uint64{0, 1, 3, 4}, 4, 0, 0, 5, 1},
		{"lost at the end", []uint64{0, 1}, 2, 0, 0, 4, 2},
		{"swapped", []uint64{0, 2, 1, 3}, 4, 0, 1, 4, 0},
		{"late inside a gap", []uint64{0, 5, 3, 1, 4, 2}, 6, 0, 4, 6, 0},
		{"late then again", []uint64{0, 2, 1, 1}, 3, 1, 1, 3, 0},
		{"duplicate of the gap's edge", []uint64{0, 3, 3}, 2, 1, 0, 4, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s stream
			for _, q := range tc.seqs {
				s.observe(q)
			}
			if s.unique != tc.unique || s.duplicates != tc.dup || s.outOfOrder != tc.order {
				t.Fatalf("unique %d dup %d ooo %d, want %d %d %d", s.unique, s.duplicates, s.outOfOrder, tc.unique, tc.dup, tc.order)
			}
			if lost := tc.sent - s.unique; lost != tc.wantLost {
				t.Fatalf("lost %d, want %d", lost, tc.wantLost)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("4242 (my (odd) broker) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 0 0\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Fatalf("cpu %v, %v; want 3s", cpu, err)
	}
	status := []byte("Name:\tx\nVmPeak:\t 1000 kB\nVmRSS:\t    2048 kB\nThreads: 3\n")
	rss, err := parseStatusRSS(status)
	if err != nil || rss != 2048*1024 {
		t.Fatalf("rss %d, %v", rss, err)
	}
	if _, err := parseStatusRSS([]byte("Name: x\n")); err == nil {
		t.Fatal("no VmRSS: no error")
	}
	if _, err := readProc(0); err == nil {
		t.Fatal("pid 0: no error")
	}
}

// BenchmarkSubscriberObserve is the per-message cost on the receiving side
// once a PUBLISH is framed: decode, sequence check, latency record.
func BenchmarkSubscriberObserve(b *testing.B) {
	s := &subscriber{streams: make([]stream, 1), latency: new(histogram)}
	payload := make([]byte, 64)
	pub := packets.Publish{Version: packets.V5, Topic: []byte("bench/pair/1"), Payload: payload}
	var dec packets.Publish
	wireBuf := make([]byte, 0, 128)
	b.ReportAllocs()
	for i := range b.N {
		binary.BigEndian.PutUint64(payload[payloadSeq:], uint64(i))
		wire := pub.Append(wireBuf[:0])
		if err := dec.Decode(packets.V5, wire[0]&0x0F, wire[2:]); err != nil {
			b.Fatal(err)
		}
		s.observe(dec.Payload, int64(i))
	}
}

// BenchmarkPublisherEncode is the per-message cost of filling a batch.
func BenchmarkPublisherEncode(b *testing.B) {
	payload := make([]byte, 64)
	pub := packets.Publish{Version: packets.V5, QoS: 1, Topic: []byte("bench/pair/1"), Payload: payload}
	buf := make([]byte, 0, maxWriteBatch+4096)
	b.ReportAllocs()
	for i := range b.N {
		if len(buf) > maxWriteBatch {
			buf = buf[:0]
		}
		binary.BigEndian.PutUint64(payload[payloadSeq:], uint64(i))
		pub.PacketID = uint16(i) | 1
		buf = pub.Append(buf)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h histogram
	b.ReportAllocs()
	for i := range b.N {
		h.record(int64(i) * 37)
	}
}
