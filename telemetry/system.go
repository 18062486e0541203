package telemetry

import (
	"runtime"
	"runtime/metrics"
)

// RegisterSystem adds the promptmq_system_* gauges: the process's memory as the Go runtime
// accounts it and its goroutines. They overlap go_* on purpose: the seed documents name them,
// and a dashboard built on promptmq_* needs no knowledge of the runtime's names.
func RegisterSystem(r *Registry) {
	r.Gauge("promptmq_system_memory_usage_bytes", "Memory mapped by the Go runtime for this process (heap, stacks and runtime structures).", "", memoryMapped)
	r.Gauge("promptmq_system_goroutines", "Goroutines that currently exist.", "", func() float64 { return float64(runtime.NumGoroutine()) })
}

// memoryMapped reads /memory/classes/total:bytes, which, unlike runtime.ReadMemStats, does
// not stop the world.
func memoryMapped() float64 {
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return float64(sample[0].Value.Uint64())
}
