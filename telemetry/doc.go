// Package telemetry owns what the broker tells its operators: the registry of metric families
// exported as Prometheus text (values read from the owners' lock-free counters at scrape time,
// lock-free histograms, and the go_* and process_* metrics of VictoriaMetrics/metrics), the HTTP
// side server (/metrics, /health, /ready, /debug/pprof/), and the setup of the process's
// log/slog logger. It imports nothing of the broker: the engine registers its own counters here
// and cmd/promptmqd wires the two together, so the protocol packages never depend on how they
// are observed.
package telemetry
