package telemetry

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
)

// Registry holds the metric families a process exports and writes them as Prometheus text
// (format 0.0.4), each with its HELP and TYPE lines, followed by the standard go_* and
// process_* metrics.
//
// Invariants: a family's name is unique and its series are written contiguously, in
// registration order, so the exposition is stable from scrape to scrape. Values are never
// stored here: a counter or gauge is a function read at scrape time (the owner keeps its
// own atomic counter beside the structure it counts, DESIGN.md "Concurrency"), and a
// histogram is a *Histogram the owner observes into without a lock. Registration takes the
// lock; the hot path never does.
//
// Rejected: a VictoriaMetrics metrics.Set for our own families. It sorts series by name,
// writes HELP and TYPE only behind a process-wide switch (metrics.ExposeMetadata), and has
// no HELP text; its PrometheusHistogram takes a mutex on every Update.
type Registry struct {
	mu       sync.Mutex // guards families, byName and onScrape
	families []*family
	byName   map[string]*family
	onScrape []func()
	// scrapeMu serialises scrapes, so a snapshot taken by an OnScrape hook is the one the
	// gauges of the same scrape read.
	scrapeMu sync.Mutex
	// runtime adds the go_* and process_* metrics of VictoriaMetrics/metrics.
	runtime bool
}

// Kind is a metric family's TYPE.
type Kind string

// The metric types this registry writes.
const (
	KindCounter   Kind = "counter"
	KindGauge     Kind = "gauge"
	KindHistogram Kind = "histogram"
)

type family struct {
	name, help string
	kind       Kind
	series     []series
}

// series is one labelled time series of a family: exactly one of counter, gauge, hist is set.
type series struct {
	labels  string // `a="b",c="d"`, or "" for none
	counter func() uint64
	gauge   func() float64
	hist    *Histogram
}

// NewRegistry returns an empty registry that also writes the Go runtime and process metrics.
func NewRegistry() *Registry {
	return &Registry{byName: make(map[string]*family), runtime: true}
}

// WithoutRuntime drops the go_* and process_* metrics, for tests that assert exact output.
func (r *Registry) WithoutRuntime() *Registry {
	r.mu.Lock()
	r.runtime = false
	r.mu.Unlock()
	return r
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Labels formats label pairs (name, value, name, value, ...) for Counter, Gauge and
// Histogram. It panics on an odd count or an invalid name: labels are fixed in code.
func Labels(pairs ...string) string {
	if len(pairs)%2 != 0 {
		panic("telemetry: Labels needs name, value pairs")
	}
	var b []byte
	for i := 0; i < len(pairs); i += 2 {
		if !labelName.MatchString(pairs[i]) {
			panic(fmt.Sprintf("telemetry: invalid label name %q", pairs[i]))
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, pairs[i]...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, pairs[i+1])
	}
	return string(b)
}

// add registers one series. Registering is done once at start-up from code, so a bad name,
// a kind or help that differs from the family's, or a duplicate series is a programming
// error and panics with the name.
func (r *Registry) add(name, help string, kind Kind, s series) {
	if !metricName.MatchString(name) {
		panic(fmt.Sprintf("telemetry: invalid metric name %q", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.byName[name]
	if f == nil {
		f = &family{name: name, help: help, kind: kind}
		r.byName[name] = f
		r.families = append(r.families, f)
	} else if f.kind != kind || f.help != help {
		panic(fmt.Sprintf("telemetry: metric %s registered again with another type or help", name))
	}
	for _, old := range f.series {
		if old.labels == s.labels {
			panic(fmt.Sprintf("telemetry: series %s{%s} registered twice", name, s.labels))
		}
	}
	f.series = append(f.series, s)
}

// Counter registers a monotonic counter read from value at each scrape. The name should
// end in _total.
func (r *Registry) Counter(name, help, labels string, value func() uint64) {
	r.add(name, help, KindCounter, series{labels: labels, counter: value})
}

// Gauge registers a gauge computed by value at each scrape.
func (r *Registry) Gauge(name, help, labels string, value func() float64) {
	r.add(name, help, KindGauge, series{labels: labels, gauge: value})
}

// Histogram registers and returns a new histogram. bounds are the buckets' inclusive upper
// bounds in the unit the owner observes (nanoseconds, operations), ascending; perUnit is how
// many observed units make one exported unit (Nanoseconds: 1e9 per second; 1 for counts).
func (r *Registry) Histogram(name, help, labels string, bounds []int64, perUnit float64) *Histogram {
	h := NewHistogram(bounds, perUnit)
	r.add(name, help, KindHistogram, series{labels: labels, hist: h})
	return h
}

// OnScrape registers fn to run at the start of every scrape, before any value is read: an
// owner computes there, once, a snapshot that several gauges read.
func (r *Registry) OnScrape(fn func()) {
	r.mu.Lock()
	r.onScrape = append(r.onScrape, fn)
	r.mu.Unlock()
}

// WritePrometheus writes every family, then the runtime metrics, as Prometheus text.
func (r *Registry) WritePrometheus(w io.Writer) error {
	r.scrapeMu.Lock()
	defer r.scrapeMu.Unlock()
	r.mu.Lock()
	families := append([]*family(nil), r.families...)
	hooks := append([]func(){}, r.onScrape...)
	runtime := r.runtime
	r.mu.Unlock()
	for _, fn := range hooks {
		fn()
	}
	var buf bytes.Buffer
	for _, f := range families {
		buf.WriteString("# HELP ")
		buf.WriteString(f.name)
		buf.WriteByte(' ')
		buf.WriteString(escapeHelp(f.help))
		buf.WriteString("\n# TYPE ")
		buf.WriteString(f.name)
		buf.WriteByte(' ')
		buf.WriteString(string(f.kind))
		buf.WriteByte('\n')
		for i := range f.series {
			f.series[i].write(&buf, f.name)
		}
	}
	if runtime {
		writeRuntimeMetrics(&buf)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

func (s *series) write(buf *bytes.Buffer, name string) {
	switch {
	case s.counter != nil:
		writeSample(buf, name, "", s.labels, "", strconv.AppendUint(nil, s.counter(), 10))
	case s.gauge != nil:
		writeSample(buf, name, "", s.labels, "", appendFloat(nil, s.gauge()))
	case s.hist != nil:
		s.hist.write(buf, name, s.labels)
	}
}

// writeSample writes `name+suffix{labels,extra} value`.
func writeSample(buf *bytes.Buffer, name, suffix, labels, extra string, value []byte) {
	buf.WriteString(name)
	buf.WriteString(suffix)
	if labels != "" || extra != "" {
		buf.WriteByte('{')
		buf.WriteString(labels)
		if labels != "" && extra != "" {
			buf.WriteByte(',')
		}
		buf.WriteString(extra)
		buf.WriteByte('}')
	}
	buf.WriteByte(' ')
	buf.Write(value)
	buf.WriteByte('\n')
}

func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// escapeHelp escapes what the text format requires in HELP: backslash and newline.
func escapeHelp(s string) string {
	if !bytes.ContainsAny([]byte(s), "\\\n") {
		return s
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}

// Histogram counts observations of an integer quantity (nanoseconds, operations) into fixed
// buckets without a lock: an observation is a short scan of the bounds and two atomic adds.
//
// Invariants: counts has one slot per bound plus one for +Inf, each counting the
// observations of its bucket alone (not cumulative); the total count is their sum, so the
// exported _count always equals the +Inf bucket. _sum is read apart from the buckets and
// may be ahead of them by observations in progress, as in every lock-free histogram.
//
// Chosen: integer observations, so the sum is one atomic add. Rejected: float64 values,
// whose sum needs a compare-and-swap loop that spins under contention.
type Histogram struct {
	bounds []int64
	counts []atomic.Uint64
	sum    atomic.Int64
	// perUnit divides observations into the exported unit; dividing (1000/1e9) rounds
	// exactly where multiplying (1000*1e-9) would print 1.0000000000000002e-06.
	perUnit float64
	les     []string // the bounds formatted in the exported unit, once
}

// NewHistogram returns an unregistered histogram; Registry.Histogram is the usual way.
func NewHistogram(bounds []int64, perUnit float64) *Histogram {
	if len(bounds) == 0 {
		panic("telemetry: histogram needs at least one bucket")
	}
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic("telemetry: histogram bounds must ascend")
		}
	}
	h := &Histogram{bounds: append([]int64(nil), bounds...), counts: make([]atomic.Uint64, len(bounds)+1), perUnit: perUnit}
	for _, b := range bounds {
		h.les = append(h.les, string(appendFloat(nil, float64(b)/perUnit)))
	}
	return h
}

// Observe records one observation. It is safe for concurrent use and allocates nothing.
func (h *Histogram) Observe(v int64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(v)
}

// Count is the number of observations so far.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Sum is the total of the observations so far, in the observed unit.
func (h *Histogram) Sum() int64 { return h.sum.Load() }

func (h *Histogram) write(buf *bytes.Buffer, name, labels string) {
	var cumulative uint64
	for i, le := range h.les {
		cumulative += h.counts[i].Load()
		writeSample(buf, name, "_bucket", labels, `le="`+le+`"`, strconv.AppendUint(nil, cumulative, 10))
	}
	cumulative += h.counts[len(h.les)].Load()
	writeSample(buf, name, "_bucket", labels, `le="+Inf"`, strconv.AppendUint(nil, cumulative, 10))
	writeSample(buf, name, "_sum", labels, "", appendFloat(nil, float64(h.sum.Load())/h.perUnit))
	writeSample(buf, name, "_count", labels, "", strconv.AppendUint(nil, cumulative, 10))
}

// DurationBuckets are upper bounds in nanoseconds from 10 µs to 10 s, for latencies of an
// in-memory path (a publish routed) up to a slow disk (an fsync under load). Use with unit
// Nanoseconds.
func DurationBuckets() []int64 {
	return []int64{
		10e3, 25e3, 50e3, 100e3, 250e3, 500e3,
		1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
		1e9, 2.5e9, 10e9,
	}
}

// Nanoseconds is the perUnit that exports nanosecond observations as seconds.
const Nanoseconds = 1e9

// SizeBuckets are upper bounds for counts of things (operations in one batch).
func SizeBuckets() []int64 {
	return []int64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}
}
