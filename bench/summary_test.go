package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestSummarizeMediansRatiosAndBars(t *testing.T) {
	var in bytes.Buffer
	add := func(label, row string, perCPU, rss float64, lost uint64) {
		r := result{Label: label, Row: row, PerBrokerCPUSec: perCPU, RSSPerConnKB: rss, Lost: lost}
		b, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		in.Write(append(b, '\n'))
	}
	for _, v := range []float64{100e3, 120e3, 110e3} {
		add("mosquitto", "pairs-q0", v, 0, 0)
	}
	for _, v := range []float64{1.0e6, 0.5e6, 1.2e6} { // median 1.0M: 9.09x, bar 8x met
		add("promptmq", "pairs-q0", v, 0, 0)
	}
	add("mochi", "pairs-q0", 150e3, 0, 3)
	add("mosquitto", "conns", 0, 0.7, 0)
	add("promptmq", "conns", 0, 9.5, 0) // absolute bar 4 KB: not met
	in.WriteString("not json, ignored\n")

	var out bytes.Buffer
	if err := summarize(&in, &out, "mosquitto", "promptmq", "mochi"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	find := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, "| "+prefix) {
				return l
			}
		}
		t.Fatalf("no row %q in\n%s", prefix, out.String())
		return ""
	}
	pairs := find("pairs QoS 0")
	for _, want := range []string{"| 110k |", "| 150k (lost 3, dup 0, ooo 0) |", "| 1.00M |", "9.09x", "| yes |"} {
		if !strings.Contains(pairs, want) {
			t.Errorf("pairs row lacks %q: %s", want, pairs)
		}
	}
	if conns := find("conns"); !strings.Contains(conns, "**no**") || !strings.Contains(conns, "9.50") {
		t.Errorf("conns row: %s", conns)
	}
	if strings.Contains(out.String(), "fanin") {
		t.Errorf("a row without results was printed:\n%s", out.String())
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
