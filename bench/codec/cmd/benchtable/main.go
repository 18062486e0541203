// Command benchtable reads `go test -bench` output of the codec module (run
// with -count N) on stdin and prints one markdown row per operation with the
// median ns/op and allocs/op of each codec, so the table in the issue can be
// checked from one run.
package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

type sample struct{ ns, allocs []float64 }

func main() {
	samples := map[string]map[string]*sample{} // op -> codec -> samples
	var order []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // drop -GOMAXPROCS
		}
		j := strings.LastIndexByte(name, '/')
		if j < 0 || !(strings.HasPrefix(name, "BenchmarkDecode/") || strings.HasPrefix(name, "BenchmarkEncode/")) {
			continue // other benchmarks of the module (topics) have their own reading
		}
		op, codec := strings.TrimPrefix(name[:j], "Benchmark"), name[j+1:]
		if samples[op] == nil {
			samples[op] = map[string]*sample{}
			order = append(order, op)
		}
		s := samples[op][codec]
		if s == nil {
			s = &sample{}
			samples[op][codec] = s
		}
		for k := 2; k+1 < len(f); k++ {
			v, err := strconv.ParseFloat(f[k], 64)
			if err != nil {
				continue
			}
			switch f[k+1] {
			case "ns/op":
				s.ns = append(s.ns, v)
			case "allocs/op":
				s.allocs = append(s.allocs, v)
			}
		}
	}
	codecs := []string{"promptmq", "mochi", "paho"}
	fmt.Println("| operation | promptmq ns/op | allocs | mochi ns/op | allocs | paho ns/op | allocs |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, op := range order {
		row := "| " + op
		for _, c := range codecs {
			s := samples[op][c]
			if s == nil {
				row += " | - | -"
				continue
			}
			row += fmt.Sprintf(" | %.4g | %.0f", median(s.ns), median(s.allocs))
		}
		fmt.Println(row + " |")
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
