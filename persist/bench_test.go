package persist

import (
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchmarkWriter submits b.N single-delivery QoS 1 ops (64-byte payload) from 8 goroutines, as
// publishers would, and waits for every callback. ops/s is the durable QoS 1 rate the writer
// sustains; allocs/op counts the store's own allocations (the records are built before the timer).
func benchmarkWriter(b *testing.B, synchronous string, interval time.Duration, fanout int) {
	cfg := testConfig(b.TempDir())
	cfg.SQLite.Synchronous = synchronous
	cfg.BatchInterval = interval
	s := open(b, cfg)
	for i := range fanout {
		must(b, func(d func(error)) { s.SaveSession(&Session{ClientID: "c" + strconv.Itoa(i), Expiry: NeverExpires}, d) })
	}
	now := time.Now().UnixNano()
	payload := make([]byte, 64)
	msgs := make([]Message, b.N)
	dels := make([]Delivery, b.N*fanout)
	for i := range msgs {
		msgs[i] = Message{ID: s.NextMessageID(), Topic: "bench/topic", Payload: payload, QoS: 1, Created: now}
		for j := range fanout {
			dels[i*fanout+j] = Delivery{ClientID: "c" + strconv.Itoa(j), QoS: 1}
		}
	}
	var pending atomic.Int64
	pending.Store(int64(b.N))
	finished := make(chan struct{})
	done := func(err error) {
		if err != nil {
			b.Error(err)
		}
		if pending.Add(-1) == 0 {
			close(finished)
		}
	}
	const producers = 8
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpuStart := processCPU()
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				s.AddDeliveries(&msgs[i], dels[i*fanout:(i+1)*fanout], done)
			}
		}()
	}
	wg.Wait()
	<-finished
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	b.ReportMetric(float64(processCPU()-cpuStart)/float64(b.N), "cpu-ns/op")
	st := s.Stats()
	if st.Batches > 0 {
		b.ReportMetric(float64(st.Committed)/float64(st.Batches), "ops/batch")
	}
}

func BenchmarkWriterQoS1Normal(b *testing.B) { benchmarkWriter(b, "NORMAL", 0, 1) }
func BenchmarkWriterQoS1NormalInterval(b *testing.B) {
	benchmarkWriter(b, "NORMAL", 2*time.Millisecond, 1)
}
func BenchmarkWriterQoS1Full(b *testing.B)       { benchmarkWriter(b, "FULL", 2*time.Millisecond, 1) }
func BenchmarkWriterFanout10Normal(b *testing.B) { benchmarkWriter(b, "NORMAL", 0, 10) }

// BenchmarkWriterAckCycle is the whole life of a durable QoS 1 delivery: stored, sent, acknowledged.
func BenchmarkWriterAckCycle(b *testing.B) {
	s := open(b, testConfig(b.TempDir()))
	must(b, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: NeverExpires}, d) })
	payload := make([]byte, 64)
	now := time.Now().UnixNano()
	msgs := make([]Message, b.N)
	dels := make([]Delivery, b.N)
	for i := range msgs {
		msgs[i] = Message{ID: s.NextMessageID(), Topic: "bench/topic", Payload: payload, QoS: 1, Created: now}
		dels[i] = Delivery{ClientID: "c", QoS: 1}
	}
	var pending atomic.Int64
	pending.Store(int64(3 * b.N))
	finished := make(chan struct{})
	done := func(err error) {
		if err != nil {
			b.Error(err)
		}
		if pending.Add(-1) == 0 {
			close(finished)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range msgs {
		s.AddDeliveries(&msgs[i], dels[i:i+1], done)
		s.UpdateDelivery("c", msgs[i].ID, uint16(i%65535+1), Sent, done)
		s.DeleteDelivery("c", msgs[i].ID, done)
	}
	<-finished
}

// BenchmarkRecoverRetained measures Load over stored retained messages (ns/op is per message).
func BenchmarkRecoverRetained(b *testing.B) { benchmarkRecoverRetained(b, false) }

// BenchmarkRecoverRetainedBatch is BenchmarkRecoverRetained through RetainedBatch, the consumer
// copying each message's bytes once as the engine does.
func BenchmarkRecoverRetainedBatch(b *testing.B) { benchmarkRecoverRetained(b, true) }

func benchmarkRecoverRetained(b *testing.B, batched bool) {
	cfg := testConfig(b.TempDir())
	s := open(b, cfg)
	payload := make([]byte, 64)
	var wg sync.WaitGroup
	for i := range b.N {
		wg.Add(1)
		s.SaveRetained(&Message{Topic: "retained/" + strconv.Itoa(i), Payload: payload, QoS: 1, Created: 1}, func(err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	s = reopen(b, s)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	r := Recovery{Retained: func(Message) error { n++; return nil }}
	if batched {
		var copied []byte
		r = Recovery{RetainedBatch: func(topics [][]byte, ms []Message) error {
			for i := range ms {
				copied = append(append(copied[:0], topics[i]...), ms[i].Payload...)
				n++
			}
			return nil
		}}
	}
	cpuStart := processCPU()
	if _, err := s.Load(r); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU()-cpuStart)/float64(b.N), "cpu-ns/op")
	if n != b.N {
		b.Fatalf("recovered %d of %d", n, b.N)
	}
}

// processCPU is the CPU time (user and system) this process has used. On a machine shared with
// other work, wall time per op swings with the load; CPU time per op barely does.
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkWriterAckBacklog is a subscriber working through a stored backlog: b.N deliveries
// stored beforehand (in batches, as a publisher's), then each sent and acknowledged, the two
// writes timed (ns/op per delivery).
func BenchmarkWriterAckBacklog(b *testing.B) {
	s := open(b, testConfig(b.TempDir()))
	must(b, func(d func(error)) { s.SaveSession(&Session{ClientID: "c", Expiry: NeverExpires}, d) })
	payload := make([]byte, 64)
	now := time.Now().UnixNano()
	msgs := make([]Message, b.N)
	dels := make([]Delivery, b.N)
	var pending atomic.Int64
	var finished chan struct{}
	done := func(err error) {
		if err != nil {
			b.Error(err)
		}
		if pending.Add(-1) == 0 {
			close(finished)
		}
	}
	pending.Store(int64(b.N))
	finished = make(chan struct{})
	for i := range msgs {
		msgs[i] = Message{ID: s.NextMessageID(), Topic: "bench/topic", Payload: payload, QoS: 1, Created: now}
		dels[i] = Delivery{ClientID: "c", QoS: 1}
		s.AddDeliveries(&msgs[i], dels[i:i+1], done)
	}
	<-finished
	pending.Store(int64(2 * b.N))
	finished = make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	cpuStart := processCPU()
	for i := range msgs {
		s.UpdateDelivery("c", msgs[i].ID, uint16(i%65535+1), Sent, done)
		s.DeleteDelivery("c", msgs[i].ID, done)
	}
	<-finished
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpuStart)/float64(b.N), "cpu-ns/op")
}
