package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one run's numbers; its JSON form is the machine-readable line
// compare.sh collects, so field names are part of the tool's interface.
type result struct {
	Label    string `json:"label"`
	Scenario string `json:"scenario"`
	MQTT     string `json:"mqtt"`
	QoS      int    `json:"qos"`
	Size     int    `json:"size"`
	Inflight int    `json:"inflight,omitempty"`
	Clients  string `json:"clients"`
	Row      string `json:"row,omitempty"`   // compare.sh's matrix row
	Round    int    `json:"round,omitempty"` // and round

	Seconds        float64 `json:"seconds"`
	Published      uint64  `json:"published"` // in the measured window
	Delivered      uint64  `json:"delivered"`
	PublishRate    float64 `json:"publish_rate"`
	DeliveryRate   float64 `json:"delivery_rate"`
	TotalPublished uint64  `json:"total_published"` // whole run, warm-up and drain included
	TotalExpected  uint64  `json:"total_expected"`

	Conns        int     `json:"conns,omitempty"`
	RSSPerConnKB float64 `json:"rss_per_conn_kb,omitempty"`
	Cycles       uint64  `json:"cycles,omitempty"`
	ConnectRate  float64 `json:"connect_rate,omitempty"`

	BrokerCPU       float64 `json:"broker_cpu_s"`
	BrokerUtil      float64 `json:"broker_util"` // cores
	BrokerRSSKB     int64   `json:"broker_rss_kb"`
	PerBrokerCPUSec float64 `json:"per_broker_cpu_s"` // deliveries, connections or cycles

	GeneratorCPU     float64 `json:"generator_cpu_s"`
	GeneratorCores   int     `json:"generator_cores"`
	GeneratorUtil    float64 `json:"generator_util"` // of the cores it may use
	GeneratorLimited bool    `json:"generator_limited"`

	Lost       uint64 `json:"lost"`
	Duplicated uint64 `json:"duplicated"`
	OutOfOrder uint64 `json:"out_of_order"`
	Refused    uint64 `json:"refused"` // acks with an error reason
	Foreign    uint64 `json:"foreign"` // payloads not from this run

	P50us  float64 `json:"p50_us,omitempty"`
	P90us  float64 `json:"p90_us,omitempty"`
	P99us  float64 `json:"p99_us,omitempty"`
	P999us float64 `json:"p999_us,omitempty"`
	MaxUs  float64 `json:"max_us,omitempty"`

	// MsgsPerRead is messages a subscriber got per read (whole run): how
	// well the broker coalesces its writes.
	MsgsPerRead float64 `json:"msgs_per_read,omitempty"`

	DrainMs float64 `json:"drain_ms"`
	Errors  string  `json:"errors,omitempty"`

	drain time.Duration
}

func newResult(c config) result {
	r := result{Label: c.label, Scenario: c.scenario, QoS: int(c.qos), Size: c.size, Row: c.row, Round: c.round}
	r.MQTT = "5"
	if c.version != 5 {
		r.MQTT = "3.1.1"
	}
	if c.qos > 0 {
		r.Inflight = c.inflight
	}
	switch c.scenario {
	case "fanin":
		r.Clients = fmt.Sprintf("P=%d", c.publishers)
	case "pairs":
		r.Clients = fmt.Sprintf("N=%d", c.pairs)
	case "latency":
		r.Clients = fmt.Sprintf("N=%d rate=%d/s", c.pairs, c.rate)
	case "fanout":
		r.Clients = fmt.Sprintf("S=%d", c.subscribers)
	case "conns":
		r.Clients = fmt.Sprintf("C=%d", c.conns)
		r.Size = 0
	case "connrate":
		r.Clients = fmt.Sprintf("workers=%d", c.workers)
		r.Size = 0
	}
	return r
}

func (r *result) addError(err error) {
	if err == nil {
		return
	}
	if r.Errors != "" {
		r.Errors += "; "
	}
	r.Errors += err.Error()
}

func (r *result) setLatency(h *histogram) {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	r.P50us = us(h.quantile(0.50))
	r.P90us = us(h.quantile(0.90))
	r.P99us = us(h.quantile(0.99))
	r.P999us = us(h.quantile(0.999))
	r.MaxUs = us(time.Duration(h.max))
}

// finish derives the rates once the counts are in.
func (r *result) finish() {
	if r.Seconds > 0 {
		r.PublishRate = float64(r.Published) / r.Seconds
		r.DeliveryRate = float64(r.Delivered) / r.Seconds
	}
	if r.BrokerCPU > 0 && r.Delivered > 0 {
		r.PerBrokerCPUSec = float64(r.Delivered) / r.BrokerCPU
	}
	r.DrainMs = float64(r.drain) / float64(time.Millisecond)
}

func printTable(w io.Writer, r *result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("broker", "%s", r.Label)
	row("scenario", "%s %s, MQTT %s, QoS %d, %d B payload", r.Scenario, r.Clients, r.MQTT, r.QoS, r.Size)
	row("measured", "%.2f s", r.Seconds)
	switch r.Scenario {
	case "conns":
		row("connections", "%d at %.0f/s", r.Conns, r.ConnectRate)
		row("broker RSS per connection", "%.2f KB (RSS %d KB)", r.RSSPerConnKB, r.BrokerRSSKB)
	case "connrate":
		row("cycles", "%d, %.0f/s", r.Cycles, r.ConnectRate)
		row("cycles per broker CPU-s", "%.0f", r.PerBrokerCPUSec)
	default:
		row("published", "%d, %.0f msgs/s", r.Published, r.PublishRate)
		row("delivered", "%d, %.0f msgs/s", r.Delivered, r.DeliveryRate)
		row("deliveries per broker CPU-s", "%.0f", r.PerBrokerCPUSec)
		row("messages per subscriber read", "%.1f", r.MsgsPerRead)
	}
	if r.BrokerCPU > 0 || r.BrokerRSSKB > 0 {
		row("broker CPU", "%.2f s (%.0f%% of a core), RSS %d KB", r.BrokerCPU, 100*r.BrokerUtil, r.BrokerRSSKB)
	}
	limited := ""
	if r.GeneratorLimited {
		limited = "  << the generator was the limit"
	}
	row("generator CPU", "%.2f s (%.0f%% of %d cores)%s", r.GeneratorCPU, 100*r.GeneratorUtil, r.GeneratorCores, limited)
	if r.P50us > 0 {
		row("latency", "p50 %.0f µs, p90 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, max %.0f µs", r.P50us, r.P90us, r.P99us, r.P999us, r.MaxUs)
	}
	if r.Scenario != "conns" && r.Scenario != "connrate" {
		row("correctness", "lost %d, duplicated %d, out of order %d (of %d expected; drain %.0f ms)", r.Lost, r.Duplicated, r.OutOfOrder, r.TotalExpected, r.DrainMs)
		if r.Refused+r.Foreign > 0 {
			row("anomalies", "refused acks %d, foreign payloads %d", r.Refused, r.Foreign)
		}
	}
	if r.Errors != "" {
		row("errors", "%s", strings.ReplaceAll(r.Errors, "\n", " "))
	}
	_ = tw.Flush()
}

func printJSON(w io.Writer, r *result) {
	b, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintf(w, "{\"errors\":%q}\n", err.Error())
		return
	}
	fmt.Fprintf(w, "%s\n", b)
}
