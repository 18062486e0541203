package engine

import (
	"time"

	"github.com/x0a1b/promptmq/persist"
	"github.com/x0a1b/promptmq/telemetry"
)

// instrumentStore exports the durable store's work: operations by kind, the database size,
// and the size and duration of each group commit (DESIGN.md: the group commit is what keeps
// durable QoS 1 fast, so it is what an operator watches).
func (b *Broker) instrumentStore(r *telemetry.Registry) {
	store := b.store
	for _, kind := range persist.OperationKinds() {
		r.Counter("promptmq_storage_operations_total", "Store operations committed or failed, by kind.",
			telemetry.Labels("op", kind), func() uint64 { return store.OperationCount(kind) })
	}
	r.Counter("promptmq_storage_failures_total", "Store writes that failed; the broker kept serving.", "", b.stats.StoreFailures.Load)
	r.Gauge("promptmq_storage_size_bytes", "Size of the SQLite database and its write-ahead log.", "",
		func() float64 { return float64(store.SizeBytes()) })
	batch := r.Histogram("promptmq_storage_batch_size", "Operations per group commit.", "", telemetry.SizeBuckets(), 1)
	commit := r.Histogram("promptmq_storage_commit_duration_seconds", "Duration of one group commit transaction.", "",
		telemetry.DurationBuckets(), telemetry.Nanoseconds)
	store.SetBatchObserver(func(ops int, took time.Duration) {
		batch.Observe(int64(ops))
		commit.Observe(int64(took))
	})
}
