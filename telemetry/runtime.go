package telemetry

import (
	"bytes"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// writeRuntimeMetrics appends the go_* and process_* metrics of VictoriaMetrics/metrics
// with the HELP and TYPE lines it writes only behind a process-wide switch we leave alone.
// The type is inferred from the samples: le buckets make a histogram, quantiles a summary,
// _total a counter, anything else a gauge. Families named *_count outside a histogram or
// summary (go_cgo_calls_count and the like) are left out: Prometheus' own lint rejects
// them, and they are not among the standard metrics a dashboard expects.
func writeRuntimeMetrics(buf *bytes.Buffer) {
	var raw bytes.Buffer
	metrics.WriteProcessMetrics(&raw)
	var current string // the family whose metadata was written last
	var currentKind Kind
	for line := range strings.Lines(raw.String()) {
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels := splitSample(line)
		family, kind := runtimeFamily(name, labels)
		if current != "" && (currentKind == KindHistogram || currentKind == "summary") &&
			(name == current+"_sum" || name == current+"_count" || name == current+"_bucket") {
			buf.WriteString(line)
			continue
		}
		if kind == "" {
			continue
		}
		if family != current {
			current, currentKind = family, kind
			buf.WriteString("# HELP ")
			buf.WriteString(family)
			buf.WriteByte(' ')
			buf.WriteString(runtimeHelp(family))
			buf.WriteString("\n# TYPE ")
			buf.WriteString(family)
			buf.WriteByte(' ')
			buf.WriteString(string(kind))
			buf.WriteByte('\n')
		}
		buf.WriteString(line)
	}
}

// splitSample returns the metric name of a sample line and its label text.
func splitSample(line string) (name, labels string) {
	end := strings.IndexAny(line, "{ ")
	if end < 0 {
		return strings.TrimSpace(line), ""
	}
	name = line[:end]
	if line[end] == '{' {
		if close := strings.IndexByte(line[end:], '}'); close > 0 {
			labels = line[end+1 : end+close]
		}
	}
	return name, labels
}

// runtimeFamily names the family of a sample and its type; kind "" means leave it out.
func runtimeFamily(name, labels string) (string, Kind) {
	switch {
	case strings.HasSuffix(name, "_bucket") && strings.Contains(labels, "le="):
		return strings.TrimSuffix(name, "_bucket"), KindHistogram
	case strings.Contains(labels, "quantile="):
		return name, "summary"
	case strings.HasSuffix(name, "_total"):
		return name, KindCounter
	case strings.HasSuffix(name, "_count"), strings.HasSuffix(name, "_sum"):
		return name, ""
	}
	return name, KindGauge
}

// runtimeHelp describes the runtime metrics a dashboard uses; the rest get a pointer to
// where they come from.
func runtimeHelp(family string) string {
	switch family {
	case "go_goroutines":
		return "Number of goroutines that currently exist."
	case "go_threads":
		return "Number of OS threads created."
	case "go_gc_duration_seconds":
		return "A summary of the pause duration of garbage collection cycles."
	case "go_memstats_alloc_bytes":
		return "Number of bytes allocated and still in use."
	case "go_memstats_sys_bytes":
		return "Number of bytes obtained from the system."
	case "go_memstats_heap_inuse_bytes":
		return "Number of heap bytes that are in use."
	case "go_info":
		return "Information about the Go environment."
	case "process_cpu_seconds_total":
		return "Total user and system CPU time spent in seconds."
	case "process_resident_memory_bytes":
		return "Resident memory size in bytes."
	case "process_virtual_memory_bytes":
		return "Virtual memory size in bytes."
	case "process_start_time_seconds":
		return "Start time of the process since unix epoch in seconds."
	case "process_open_fds":
		return "Number of open file descriptors."
	case "process_max_fds":
		return "Maximum number of open file descriptors."
	}
	if strings.HasPrefix(family, "go_") {
		return "Go runtime metric " + family + ", as github.com/VictoriaMetrics/metrics reports it."
	}
	return "Process metric " + family + ", as github.com/VictoriaMetrics/metrics reports it."
}
