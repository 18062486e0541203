// Package telemetry owns what the broker tells its operators: the lock-free counters and gauges
// exported as Prometheus text, the HTTP side server (/metrics, /health, /debug/pprof/), and the setup
// of the process's log/slog logger. The engine reaches it through small interfaces so that the
// protocol packets never depend on how they are observed.
package telemetry
