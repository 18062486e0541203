package main

import (
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/engine"
	"github.com/x0a1b/promptmq/persist"
)

// BenchmarkRecoverRetained measures the broker's start-up (engine.New: open, recovery, retained
// index rebuilt) over a store of PROMPTMQ_BENCH_RETAINED retained messages (default 200,000; 64 B
// payloads), written directly through persist. ns/op is one whole start-up; msgs/s is the rate.
//
//	PROMPTMQ_BENCH_RETAINED=1000000 go test -run '^$' -bench RecoverRetained -benchtime 3x ./cmd/promptmqd
func BenchmarkRecoverRetained(b *testing.B) {
	count := envInt("PROMPTMQ_BENCH_RETAINED", 200000)
	cfg := conf.Default()
	cfg.Server.Bind = "127.0.0.1:0"
	cfg.Metrics.Enabled = false
	cfg.Storage.DataDir = b.TempDir()
	store, err := persist.Open(cfg.Storage, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	var wg sync.WaitGroup
	wg.Add(count)
	t := time.Now().UnixNano()
	for i := range count {
		store.SaveRetained(&persist.Message{Topic: "retained/" + strconv.Itoa(i), Payload: payload, QoS: 1, Retain: true, Created: t},
			func(err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			})
	}
	wg.Wait()
	if err := store.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		broker, err := engine.New(engine.Options{Config: cfg})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		broker.Shutdown()
		b.StartTimer()
	}
	b.ReportMetric(float64(count)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
