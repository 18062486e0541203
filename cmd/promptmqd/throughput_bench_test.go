package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/engine"
)

// BenchmarkQoS1Throughput measures QoS 1 publishes per second from one pipelined raw-socket
// publisher (up to the broker's Receive Maximum in flight) to one offline persistent subscriber,
// 64 B payloads: durable (synchronous NORMAL, WAL, each PUBACK after its row committed) beside
// memory-only (storage.data-dir = ""), in the same run; cpu-ns/op is the process's CPU time
// per message (broker and client). Issue 7's target: durable at least 50,000
// msgs/s and at least 40% of memory-only.
//
//	go test -run '^$' -bench QoS1Throughput -benchtime 200000x -count 5 ./cmd/promptmqd
func BenchmarkQoS1Throughput(b *testing.B) {
	b.Run("durable", func(b *testing.B) { benchmarkQoS1(b, b.TempDir()) })
	b.Run("memory", func(b *testing.B) { benchmarkQoS1(b, "") })
}

func benchmarkQoS1(b *testing.B, dataDir string) {
	cfg := conf.Default()
	cfg.Server.Bind = "127.0.0.1:0"
	cfg.Metrics.Enabled = false
	cfg.Storage.DataDir = dataDir
	cfg.Storage.SQLite.Synchronous = "NORMAL"
	cfg.Storage.SQLite.JournalMode = "WAL"
	broker, err := engine.New(engine.Options{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	if err := broker.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		broker.Serve(ctx)
	}()
	defer func() {
		cancel()
		<-served
	}()
	addr := broker.Addrs()[0].String()

	sub, err := dialMQTT(addr, "bench-subscriber", true, 3600)
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.subscribe("bench/qos1", 1); err != nil {
		b.Fatal(err)
	}
	sub.disconnect()
	pub, err := dialMQTT(addr, "bench-publisher", true, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.disconnect()

	refused := 0
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpuStart := processCPU()
	err = pub.publishPipelined(b.N, pub.receiveMaximum, false, fixedTopic("bench/qos1"), seqPayload(64), func(a ackResult) {
		if a.reason != 0 {
			refused++
		}
	})
	elapsed := time.Since(start)
	cpu := processCPU() - cpuStart
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if refused > 0 {
		b.Fatalf("%d publishes refused", refused)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time (user and system) of this process, broker and client together: on
// a machine shared with other work wall time per message swings with the load, CPU time per
// message barely does.
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
