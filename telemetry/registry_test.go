package telemetry

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestRegistryWritesHelpTypeAndValues(t *testing.T) {
	r := NewRegistry().WithoutRuntime()
	var n uint64 = 7
	r.Counter("app_things_total", "Things done.", "", func() uint64 { return n })
	r.Counter("app_drops_total", "Things dropped, by reason.", Labels("reason", "full"), func() uint64 { return 2 })
	r.Counter("app_drops_total", "Things dropped, by reason.", Labels("reason", "expired"), func() uint64 { return 3 })
	r.Gauge("app_level", "A level.\nSecond line \\ here.", "", func() float64 { return 1.5 })
	h := r.Histogram("app_wait_seconds", "Waits.", "", []int64{1000, 5000}, Nanoseconds)
	h.Observe(500)
	h.Observe(1000)
	h.Observe(4000)
	h.Observe(9000)
	var out bytes.Buffer
	if err := r.WritePrometheus(&out); err != nil {
		t.Fatal(err)
	}
	want := `# HELP app_things_total Things done.
# TYPE app_things_total counter
app_things_total 7
# HELP app_drops_total Things dropped, by reason.
# TYPE app_drops_total counter
app_drops_total{reason="full"} 2
app_drops_total{reason="expired"} 3
# HELP app_level A level.\nSecond line \\ here.
# TYPE app_level gauge
app_level 1.5
# HELP app_wait_seconds Waits.
# TYPE app_wait_seconds histogram
app_wait_seconds_bucket{le="1e-06"} 2
app_wait_seconds_bucket{le="5e-06"} 3
app_wait_seconds_bucket{le="+Inf"} 4
app_wait_seconds_sum 1.45e-05
app_wait_seconds_count 4
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	checkWithPromtool(t, out.Bytes())
}

func TestRegistryPanicsOnProgrammingErrors(t *testing.T) {
	cases := map[string]func(r *Registry){
		"bad name":      func(r *Registry) { r.Gauge("1bad", "x", "", nil) },
		"duplicate":     func(r *Registry) { r.Gauge("a", "x", "", nil); r.Gauge("a", "x", "", nil) },
		"other type":    func(r *Registry) { r.Gauge("a", "x", "", nil); r.Counter("a", "x", `k="v"`, nil) },
		"odd labels":    func(*Registry) { Labels("k") },
		"bad label":     func(*Registry) { Labels("a-b", "v") },
		"unsorted hist": func(r *Registry) { r.Histogram("h", "x", "", []int64{2, 1}, 1) },
		"empty buckets": func(r *Registry) { r.Histogram("h", "x", "", nil, 1) },
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			fn(NewRegistry())
		})
	}
}

// The whole exposition, runtime metrics included, passes Prometheus' own checker.
func TestExpositionPassesPromtool(t *testing.T) {
	r := NewRegistry()
	r.Counter("app_things_total", "Things done.", "", func() uint64 { return 1 })
	r.Histogram("app_batch_size", "Batch sizes.", "", SizeBuckets(), 1).Observe(3)
	var out bytes.Buffer
	if err := r.WritePrometheus(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# TYPE go_goroutines gauge", "# TYPE process_cpu_seconds_total counter", "# TYPE go_gc_duration_seconds summary"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	checkWithPromtool(t, out.Bytes())
}

func TestHistogramObserveAllocatesNothing(t *testing.T) {
	h := NewHistogram(DurationBuckets(), Nanoseconds)
	if n := testing.AllocsPerRun(1000, func() { h.Observe(123456) }); n != 0 {
		t.Errorf("Observe allocates %v times", n)
	}
	if h.Count() != 1001 || h.Sum() != 1001*123456 {
		t.Errorf("count %d sum %d", h.Count(), h.Sum())
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewHistogram(DurationBuckets(), Nanoseconds)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(int64(i & 0xFFFFF))
	}
}

func BenchmarkWritePrometheus(b *testing.B) {
	r := NewRegistry()
	for i := range 40 {
		r.Counter("app_things_total", "Things.", Labels("n", string(rune('a'+i%26))+string(rune('a'+i/26))), func() uint64 { return uint64(i) })
	}
	b.ReportAllocs()
	var out bytes.Buffer
	for b.Loop() {
		out.Reset()
		r.WritePrometheus(&out)
	}
}

// checkWithPromtool runs `promtool check metrics` on an exposition. promtool comes with the
// Debian package prometheus, which .ci/run installs; without it the test skips, except in
// CI, where a missing checker must not pass silently.
func checkWithPromtool(t *testing.T, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing (Debian package prometheus) and CI=true")
		}
		t.Skip("promtool is missing: install the Debian package prometheus")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
