package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// A comparison row: what compare.sh runs under a name, which number of the
// result it compares, and the bar PromptMQ must meet against the baseline
// broker measured in the same session.
type matrixRow struct {
	name   string
	title  string
	metric string // a key of metricOf
	// ratio: bar on candidate/baseline; otherwise bar on the candidate's
	// absolute value.
	ratio bool
	// higher: a larger value is better (throughput); else smaller (latency,
	// memory).
	higher bool
	bar    float64
}

var matrix = []matrixRow{
	{"fanin-q0", "fanin QoS 0, 64 B, P=16 (msgs per broker CPU-s)", "per_cpu", true, true, 8},
	{"pairs-q0", "pairs QoS 0, 64 B, N=100 (msgs per broker CPU-s)", "per_cpu", true, true, 8},
	{"pairs-q1", "pairs QoS 1, 64 B, N=100, inflight 16 (msgs per broker CPU-s)", "per_cpu", true, true, 5},
	{"fanout-q0", "fanout QoS 0, 64 B, S=1000 (deliveries per broker CPU-s)", "per_cpu", true, true, 20},
	{"latency-q1", "latency QoS 1 at 20,000 msgs/s, N=100: p99 (µs)", "p99", true, false, 1.0},
	{"conns", "conns 10,000 idle: RSS per connection (KB)", "rss_per_conn", false, false, 4},
	{"connrate", "connrate (cycles per broker CPU-s)", "per_cpu", true, true, 1.0},
}

func metricOf(r *result, metric string) float64 {
	switch metric {
	case "per_cpu":
		return r.PerBrokerCPUSec
	case "p99":
		return r.P99us
	case "rss_per_conn":
		return r.RSSPerConnKB
	}
	return 0
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize reads compare.sh's results and prints the medians per row and
// broker, the ratio candidate/baseline and whether the bar holds; others
// are further brokers shown with their medians (Mochi).
func summarize(in io.Reader, w io.Writer, baseline, candidate string, others ...string) error {
	type cell struct {
		values, brokerUtil, genUtil []float64
		limited, runs               int
		lost, dup, ooo              uint64
		errors                      []string
	}
	cells := map[string]*cell{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l result
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("results line %q: %w", line, err)
		}
		row := rowByName(l.Row)
		if row == nil {
			continue
		}
		key := l.Row + "|" + l.Label
		c := cells[key]
		if c == nil {
			c = &cell{}
			cells[key] = c
		}
		c.runs++
		c.values = append(c.values, metricOf(&l, row.metric))
		c.brokerUtil = append(c.brokerUtil, l.BrokerUtil)
		c.genUtil = append(c.genUtil, l.GeneratorUtil)
		if l.GeneratorLimited {
			c.limited++
		}
		c.lost += l.Lost
		c.dup += l.Duplicated
		c.ooo += l.OutOfOrder
		if l.Errors != "" {
			c.errors = append(c.errors, l.Errors)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading results: %w", err)
	}
	extraHead, extraRule := "", ""
	for _, o := range others {
		extraHead += " " + o + " |"
		extraRule += "---|"
	}
	fmt.Fprintf(w, "| scenario | %s |%s %s | ratio | bar | met | broker CPU (%s / %s) | generator CPU, runs it limited | lost / dup / out of order |\n", baseline, extraHead, candidate, baseline, candidate)
	fmt.Fprintln(w, "|---|---|"+extraRule+"---|---|---|---|---|---|---|")
	var notes []string
	for _, row := range matrix {
		b, c := cells[row.name+"|"+baseline], cells[row.name+"|"+candidate]
		if b == nil && c == nil {
			continue
		}
		if b == nil {
			b = &cell{}
		}
		if c == nil {
			c = &cell{}
		}
		bm, cm := median(b.values), median(c.values)
		ratio := 0.0
		if bm > 0 {
			ratio = cm / bm
		}
		value := ratio
		if !row.ratio {
			value = cm
		}
		met := (row.higher && value >= row.bar) || (!row.higher && value > 0 && value <= row.bar)
		cmp := "≥"
		if !row.higher {
			cmp = "≤"
		}
		barText := fmt.Sprintf("%s %gx", cmp, row.bar)
		if !row.ratio {
			barText = fmt.Sprintf("%s %g (absolute)", cmp, row.bar)
		}
		extra := ""
		for _, o := range others {
			if oc := cells[row.name+"|"+o]; oc != nil {
				extra += " " + formatValue(median(oc.values)) + " |"
				if oc.lost+oc.dup+oc.ooo > 0 {
					extra = strings.TrimSuffix(extra, " |") + fmt.Sprintf(" (lost %d, dup %d, ooo %d) |", oc.lost, oc.dup, oc.ooo)
				}
			} else {
				extra += " |"
			}
		}
		fmt.Fprintf(w, "| %s | %s |%s %s | %.2fx | %s | %s | %.0f%% / %.0f%% | %.0f%% / %.0f%%, %d / %d | %d/%d/%d, %d/%d/%d |\n",
			row.title, formatValue(bm), extra, formatValue(cm), ratio, barText, yesNo(met),
			100*median(b.brokerUtil), 100*median(c.brokerUtil),
			100*median(b.genUtil), 100*median(c.genUtil), b.limited, c.limited,
			b.lost, b.dup, b.ooo, c.lost, c.dup, c.ooo)
		for _, e := range append(b.errors, c.errors...) {
			notes = append(notes, row.name+": "+e)
		}
	}
	for _, n := range notes {
		fmt.Fprintf(w, "\nerror: %s", strings.ReplaceAll(n, "\n", " "))
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
	return nil
}

func rowByName(name string) *matrixRow {
	for i := range matrix {
		if matrix[i].name == name {
			return &matrix[i]
		}
	}
	return nil
}

func formatValue(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// runSummary is `bench summarize FILE BASELINE CANDIDATE [OTHER...]`.
func runSummary(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("usage: bench summarize RESULTS.jsonl BASELINE-LABEL CANDIDATE-LABEL [OTHER-LABEL...]")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return fmt.Errorf("summarize: %w", err)
	}
	defer f.Close()
	return summarize(f, os.Stdout, args[1], args[2], args[3:]...)
}
